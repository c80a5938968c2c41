//! MCP `tools/call` of `get_tasks` over Streamable HTTP (session mode), against a bare axum JSON
//! endpoint on the same machine in the same run: the ratio says what MCP framing, sessions and
//! a real SQLite read cost over the HTTP stack itself.
//!
//! `cargo bench --bench mcp_http` (options after `--`: `--connections N` (default 32),
//! `--seconds S` (default 5)). Both servers are separate processes; the load comes from
//! keep-alive HTTP/1.1 connections that each wait for a response before the next request.

#![allow(clippy::print_stdout)] // The report is the point of a benchmark.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
mod support;

use support::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-tasks");

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut connections = 32usize;
    let mut seconds = 5u64;
    let mut bare = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => connections = args.next().context("--connections N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            "--bare-server" => bare = true,
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if bare {
        return runtime.block_on(bare_server());
    }
    runtime.block_on(run(connections, Duration::from_secs(seconds)))
}

/// The reference: axum answering a small JSON POST, with TCP_NODELAY, nothing else.
async fn bare_server() -> anyhow::Result<()> {
    use axum::{Json, Router, routing::post, serve::ListenerExt};
    let app = Router::new().route(
        "/echo",
        post(|Json(body): Json<serde_json::Value>| async move {
            Json(serde_json::json!({"echo": body}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("address={}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn run(connections: usize, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (_tasks, tasks_at) = support::spawn_serve(BIN, &["--database-url", &db]).await?;
    seed(&tasks_at).await?;
    let (_bare, bare_at) = support::spawn_listening(
        tokio::process::Command::new(std::env::current_exe()?).arg("--bare-server"),
        support::Announces::OnStdout,
    )
    .await?;

    println!("{connections} connections, {}s per row", duration.as_secs());
    println!(
        "{:<44} {:>10} {:>9} {:>9}",
        "call", "calls/s", "p50 ms", "p99 ms"
    );
    let bare = load(connections, duration, &bare_at, Mode::Bare).await?;
    bare.print("bare axum JSON POST");
    // What rmcp's session mode costs by itself, and a page of one task, put the page of 20 in
    // proportion.
    let ping = load(connections, duration, &tasks_at, Mode::Mcp(PING)).await?;
    ping.print("MCP ping (session mode alone)");
    let one = load(connections, duration, &tasks_at, Mode::Mcp(GET_ONE)).await?;
    one.print("MCP tools/call get_tasks limit 1");
    let mcp = load(connections, duration, &tasks_at, Mode::Mcp(GET_PAGE)).await?;
    mcp.print("MCP tools/call get_tasks (session, 20 tasks)");
    println!("ratio MCP ping / bare: {:.2}", ping.rate() / bare.rate());
    println!(
        "ratio MCP / bare: {:.2} (target >= 0.3)",
        mcp.rate() / bare.rate()
    );
    Ok(())
}

async fn seed(address: &str) -> anyhow::Result<()> {
    let mut connection = Connection::open(address).await?;
    connection
        .request("/api/users", None, r#"{"email":"bench@example.com"}"#)
        .await?;
    for i in 0..40 {
        let body = format!(
            r#"{{"title":"task {i}","assignee_id":"bench@example.com","repository":"bench/app"}}"#
        );
        connection.request("/api/tasks", None, &body).await?;
    }
    Ok(())
}

const PING: &str = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
const GET_ONE: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_tasks","arguments":{"limit":1}}}"#;
const GET_PAGE: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_tasks","arguments":{}}}"#;

#[derive(Clone, Copy)]
enum Mode {
    Bare,
    /// An MCP session sending this request over and over.
    Mcp(&'static str),
}

struct Row {
    calls: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2}",
            name,
            self.rate(),
            self.histogram.value_at_quantile(0.5) as f64 / 1000.0,
            self.histogram.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
}

async fn load(
    connections: usize,
    duration: Duration,
    address: &str,
    mode: Mode,
) -> anyhow::Result<Row> {
    let mut workers = Vec::new();
    let start = Instant::now();
    let deadline = start + duration;
    for _ in 0..connections {
        let address = address.to_owned();
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let (path, session, body) = match mode {
                Mode::Bare => (
                    "/echo",
                    None,
                    r#"{"jsonrpc":"2.0","id":1,"method":"x"}"#.to_owned(),
                ),
                Mode::Mcp(call) => {
                    let session = connection.initialize().await?;
                    ("/mcp", Some(session), call.to_owned())
                }
            };
            let mut histogram = Histogram::<u64>::new(3)?;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = connection.request(path, session.as_deref(), &body).await?;
                let answered = match mode {
                    Mode::Bare => response.contains("echo"),
                    Mode::Mcp(PING) => response.contains("\"result\":{}"),
                    Mode::Mcp(_) => response.contains("\"isError\":false"),
                };
                if !answered {
                    bail!("unexpected answer: {response}");
                }
                histogram.record(sent.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    for worker in workers {
        histogram.add(worker.await??)?;
    }
    Ok(Row {
        calls: histogram.len(),
        elapsed: start.elapsed(),
        histogram,
    })
}
