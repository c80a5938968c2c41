//! `send_issues_to_dashboard` on a repository of 1,000 open issues, against the fake GitHub on
//! 127.0.0.1: how many GitHub requests one call makes, and the time from the tool call to the
//! `issues_update` a dashboard's WebSocket receives, beside the time the fake GitHub alone takes
//! to serve the same pages to a plain HTTP client.
//!
//! `cargo bench --bench dashboard` (options after `--`: `--calls N` warm calls (default 30),
//! `--cold N` cold calls (default 8)). Real processes: `mcp-hub serve` on SQLite, and
//! `mcp-github stdio` driven by rmcp's client, as Claude would; the fake GitHub runs in this
//! process. A cold call is the first of a fresh `mcp-github` (empty ETag cache: every page is
//! sent in full); a warm call repeats it (every page is answered 304 Not Modified).

#![allow(clippy::print_stdout, clippy::unwrap_used)] // The report is the point of a benchmark.

#[path = "../mcp-github/tests/support/fake_github.rs"]
mod fake_github;
mod support;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);
const PAGES: usize = 10;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut warm, mut cold) = (30usize, 8usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => warm = args.next().context("--calls N")?.parse()?,
            "--cold" => cold = args.next().context("--cold N")?.parse()?,
            _ => {}
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(warm.max(1), cold.max(1)))
}

type Client = RunningService<RoleClient, ()>;

async fn run(warm: usize, cold: usize) -> anyhow::Result<()> {
    let github = fake_github::FakeGitHub::start().await;
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite:{}", dir.path().join("hub.db").display());
    let (_hub, hub_at) = support::spawn_listening(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-hub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db])
            .env("MCP_HUB_LOG", "warn,mcp_hub=info"),
        support::Announces::OnStderr,
    )
    .await?;
    let arrivals = watch(&hub_at).await?;

    let fake_full = fetch_pages(&github.url, false, warm).await?;
    let fake_304 = fetch_pages(&github.url, true, warm).await?;

    let mut arrivals = arrivals;
    let mut cold_rows = Row::default();
    for _ in 0..cold {
        let client = connect(&github.url, &hub_at).await?;
        cold_rows.add(measure(&client, &github, &mut arrivals).await?);
        client.cancel().await?;
    }
    let client = connect(&github.url, &hub_at).await?;
    measure(&client, &github, &mut arrivals).await?; // Fills the ETag cache.
    let mut warm_rows = Row::default();
    for _ in 0..warm {
        warm_rows.add(measure(&client, &github, &mut arrivals).await?);
    }
    client.cancel().await?;

    println!("send_issues_to_dashboard, 1,000 open issues, 100 per page; hub on SQLite");
    println!(
        "{:<30} {:>6} {:>10} {:>13} {:>13} {:>13} {:>12}",
        "", "calls", "GH req/call", "call→WS p50", "call→WS p99", "fake GH p50", "beyond p50"
    );
    for (name, row, fake) in [
        ("cold (pages sent in full)", &cold_rows, &fake_full),
        ("warm (pages answered 304)", &warm_rows, &fake_304),
    ] {
        let p50 = ms(row.delivered.value_at_quantile(0.5));
        let fake_p50 = ms(fake.value_at_quantile(0.5));
        println!(
            "{name:<30} {:>6} {:>10.1} {:>10.2} ms {:>10.2} ms {:>10.2} ms {:>9.2} ms",
            row.delivered.len(),
            row.requests as f64 / row.delivered.len() as f64,
            p50,
            ms(row.delivered.value_at_quantile(0.99)),
            fake_p50,
            p50 - fake_p50,
        );
    }
    println!(
        "tool result (after the hub's receipt) p50: cold {:.2} ms, warm {:.2} ms",
        ms(cold_rows.returned.value_at_quantile(0.5)),
        ms(warm_rows.returned.value_at_quantile(0.5)),
    );
    println!(
        "\"fake GH\" is a plain keep-alive HTTP client fetching the same {PAGES} pages (with the \
         same If-None-Match for the warm row); \"beyond\" is call→WS minus that."
    );
    Ok(())
}

#[derive(Default)]
struct Row {
    delivered: Hist,
    returned: Hist,
    requests: usize,
}

struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap())
    }
}

impl std::ops::Deref for Hist {
    type Target = Histogram<u64>;
    fn deref(&self) -> &Histogram<u64> {
        &self.0
    }
}

struct Sample {
    delivered: Duration,
    returned: Duration,
    requests: usize,
}

impl Row {
    fn add(&mut self, sample: Sample) {
        self.delivered.0.record(micros(sample.delivered)).unwrap();
        self.returned.0.record(micros(sample.returned)).unwrap();
        self.requests += sample.requests;
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// A dashboard: a WebSocket on the issues of acme/big, reporting when each update arrives.
async fn watch(hub_at: &str) -> anyhow::Result<mpsc::UnboundedReceiver<(Instant, usize)>> {
    let url = format!("ws://{hub_at}/api/dashboard/ws?channels=issues&repository=acme/big");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let at = Instant::now();
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                if value["type"] == "issues_update" {
                    let count = value["data"]["data"]["issues"]
                        .as_array()
                        .map_or(0, Vec::len);
                    let _ = tx.send((at, count));
                }
            }
        }
    });
    Ok(rx)
}

async fn connect(github_url: &str, hub_at: &str) -> anyhow::Result<Client> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-github"));
    command
        .arg("stdio")
        .env("GITHUB_API_URL", github_url)
        .env("GITHUB_TOKEN", "bench-token")
        .env("BACKEND_API_URL", format!("http://{hub_at}"))
        .env_remove("BACKEND_API_TOKEN")
        .env("MCP_GITHUB_LOG", "warn");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(().serve(transport).await?)
}

async fn measure(
    client: &Client,
    github: &fake_github::FakeGitHub,
    arrivals: &mut mpsc::UnboundedReceiver<(Instant, usize)>,
) -> anyhow::Result<Sample> {
    let before = github.requests().len();
    let arguments = json!({"owner": "acme", "repo": "big", "state": "open"});
    let Value::Object(arguments) = arguments else {
        unreachable!()
    };
    let started = Instant::now();
    let result: CallToolResult = client
        .call_tool(CallToolRequestParams::new("send_issues_to_dashboard").with_arguments(arguments))
        .await?;
    let returned = started.elapsed();
    if result.is_error == Some(true) {
        bail!("the tool failed: {:?}", result.content);
    }
    let (at, count) = tokio::time::timeout(WAIT, arrivals.recv())
        .await
        .context("no issues_update reached the dashboard")?
        .context("the dashboard's socket closed")?;
    if count != 1_000 {
        bail!("the dashboard received {count} issues, not 1,000");
    }
    Ok(Sample {
        delivered: at.duration_since(started),
        returned,
        requests: github.requests().len() - before,
    })
}

/// The fake GitHub's own time: the same pages fetched by a plain keep-alive HTTP/1.1 client.
async fn fetch_pages(base: &str, conditional: bool, rounds: usize) -> anyhow::Result<Hist> {
    let authority = base
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .context("an http:// base URL")?
        .to_owned();
    let prefix = base
        .strip_prefix(&format!("http://{authority}"))
        .unwrap_or_default()
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await?;
    stream.set_nodelay(true)?;
    // One round first to learn the ETags.
    let mut etags = Vec::with_capacity(PAGES);
    for page in 0..PAGES {
        etags.push(
            get(&mut stream, &authority, &prefix, page + 1, None)
                .await?
                .1,
        );
    }
    let mut hist = Hist::default();
    for _ in 0..rounds {
        let started = Instant::now();
        for (page, etag) in etags.iter().enumerate() {
            let etag = etag.as_deref().filter(|_| conditional);
            let (status, _) = get(&mut stream, &authority, &prefix, page + 1, etag).await?;
            let expected = if conditional { 304 } else { 200 };
            if status != expected {
                bail!("page {} answered {status}, not {expected}", page + 1);
            }
        }
        hist.0.record(micros(started.elapsed()))?;
    }
    Ok(hist)
}

/// One GET on a kept-alive connection: the status and the ETag (bodies have a Content-Length).
async fn get(
    stream: &mut tokio::net::TcpStream,
    authority: &str,
    prefix: &str,
    page: usize,
    etag: Option<&str>,
) -> anyhow::Result<(u16, Option<String>)> {
    let mut request = format!(
        "GET {prefix}/repos/acme/big/issues?state=open&per_page=100&page={page} HTTP/1.1\r\n\
         Host: {authority}\r\nAccept: application/vnd.github+json\r\n\
         Authorization: Bearer bench-token\r\n"
    );
    if let Some(etag) = etag {
        request.push_str(&format!("If-None-Match: {etag}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("a status line")?;
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok((status, header("etag")))
}
