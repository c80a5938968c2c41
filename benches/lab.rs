//! The lab's load generator ceiling: how many requests per second `mcp-hub lab` can drive on
//! this machine, against a server that does nothing (answers from canned bytes, on a thread
//! of its own), so the figure is the generator's and not a server's. The target is at least
//! twice what any server here serves (a bare rmcp server: about 24,000 calls/s), so the lab
//! is never the bottleneck.
//!
//! `cargo bench --bench lab` (options after `--`: `--seconds S` per row, default 5;
//! `--connections N`, default 32).
//!
//! The rows go through the library's real path (`run_suite`: the HTTP client, the JSON
//! parse of every answer, the histograms); the no-op server parses only enough HTTP to find
//! each request's end.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // The report is the point of a benchmark.

mod support;

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::Context;
use mcp_hub::lab::{Progress, Suite, run_suite};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 5u64;
    let mut connections = 32usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            "--connections" => connections = args.next().context("--connections N")?.parse()?,
            _ => {}
        }
    }
    let address = noop_server()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&address, seconds, connections))
}

async fn run(address: &str, seconds: u64, connections: usize) -> anyhow::Result<()> {
    println!(
        "## lab load generator ceiling: no-op server, {connections} connections, {seconds}s per row\n"
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9}   CPU µs per request (lab)",
        "", "req/s", "p50 ms", "p99 ms"
    );
    // Closed loop: as fast as answers come. Then the fixed-rate mode at the target (twice a
    // bare rmcp server), to show the pacer holds that rate with the latency low.
    // A short closed-loop run first, to size the measured one to about `seconds`.
    let warm = row(
        address,
        &format!("calls = 20000\nconcurrency = {connections}"),
        "warm-up (20,000 calls)",
    )
    .await?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let calls = (warm * seconds as f64) as u64;
    let closed = row(
        address,
        &format!("calls = {calls}\nconcurrency = {connections}"),
        &format!("closed loop ({calls} calls)"),
    )
    .await?;
    let rate = 48_000.0;
    row(
        address,
        &format!("rate = {rate}\nduration = \"{seconds}s\"\nconcurrency = {connections}"),
        &format!("fixed rate {rate:.0}/s"),
    )
    .await?;
    println!(
        "\nceiling: {closed:.0} requests/s; {:.1}× a bare rmcp server's 24,000 calls/s (target >= 2×)",
        closed / 24_000.0
    );
    Ok(())
}

/// One step of `load` against the server; its throughput.
async fn row(address: &str, load: &str, name: &str) -> anyhow::Result<f64> {
    let text = format!(
        "name = \"ceiling\"\n[target]\nurl = \"http://{address}/mcp\"\n[[steps]]\nkind = \"call\"\ntool = \"noop\"\narguments = {{ text = \"hello\" }}\n{load}\n"
    );
    let suite = Suite::parse(&text, Path::new("."))?;
    let cpu = support::cpu_time(None);
    let wall = Instant::now();
    let report = run_suite(&suite, Arc::new(Progress::default())).await;
    let wall = wall.elapsed();
    let step = report.steps.first().context("the step did not run")?;
    anyhow::ensure!(step.ok == step.requests, "failures: {:?}", step.errors);
    // The no-op server's thread is in this process too: its share is measured apart.
    let used = support::cpu_time(None)
        .zip(cpu)
        .map(|(after, before)| after.saturating_sub(before));
    let per_request = used.map_or_else(
        || "-".to_owned(),
        |used| {
            format!(
                "{:.1} (with the no-op server's thread; {:.0} % of {} cores)",
                used.as_secs_f64() * 1e6 / step.requests as f64,
                used.as_secs_f64() / wall.as_secs_f64() * 100.0,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )
        },
    );
    println!(
        "{name:<34} {:>10.0} {:>9.3} {:>9.3}   {per_request}{}",
        step.throughput,
        step.latency.p50,
        step.latency.p99,
        step.send_lag_p99_ms
            .map_or_else(String::new, |lag| format!("; send lag p99 {lag:.3} ms"))
    );
    Ok(step.throughput)
}

/// A server that answers `initialize` and anything else from canned bytes, on a thread with
/// a runtime of its own; its address.
fn noop_server() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                tokio::spawn(serve(stream));
            }
        });
    });
    Ok(address)
}

fn response(body: &str, session: bool) -> Vec<u8> {
    let session = if session {
        "mcp-session-id: noop\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{session}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut stream: tokio::net::TcpStream) {
    let initialize = response(
        r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"noop","version":"1"}}}"#,
        true,
    );
    let accepted = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec();
    let mut buffer = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // One request: its head up to the blank line, then Content-Length bytes of body.
        let (head_end, length) = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, length);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = &buffer[head_end..head_end + length];
        let answer = if body.windows(12).any(|w| w == b"\"initialize\"") {
            initialize.clone()
        } else if let Some(id) = request_id(body) {
            response(
                &format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"ok"}}],"isError":false}}}}"#
                ),
                false,
            )
        } else {
            accepted.clone()
        };
        buffer.drain(..head_end + length);
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The `"id":N` of a request, read without a JSON parser.
fn request_id(body: &[u8]) -> Option<u64> {
    let at = body.windows(5).position(|w| w == b"\"id\":")? + 5;
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}
