//! SSE fan-out: N editors stream from one `mcp-tasks serve`; one task is created; how long
//! until every stream has the event, and how much server memory each open stream costs.
//!
//! `cargo bench --bench fanout` (option after `--`: `--subscribers N`, default 10,000; needs a
//! file-descriptor limit above N in both processes).

#![allow(clippy::print_stdout)] // The report is the point of a benchmark.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::Semaphore,
};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-tasks");

fn main() -> anyhow::Result<()> {
    let mut subscribers = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--subscribers" {
            subscribers = args.next().context("--subscribers N")?.parse()?;
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(subscribers))
}

/// The resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

async fn run(subscribers: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (mut child, address) = support::spawn_serve(BIN, &["--database-url", &db]).await?;
    let pid = child.id().context("pid")?;
    post(&address, "/api/users", r#"{"email":"fan@example.com"}"#).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid)?;

    // Open every stream (a few hundred at a time), then wait for the event on all of them.
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(subscribers)));
    let opening = Arc::new(Semaphore::new(256));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    let opened_at = Instant::now();
    let mut readers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let address = address.clone();
        let arrivals = arrivals.clone();
        let opening = opening.clone();
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await?;
            let mut stream = TcpStream::connect(&address).await?;
            stream
                .write_all(
                    b"GET /api/tasks/stream?types=task_created HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                )
                .await?;
            let mut reader = BufReader::with_capacity(1024, stream);
            let mut line = String::new();
            // Up to the stream's first comment: the subscription is live.
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 {
                    bail!("stream closed while opening");
                }
                if line.starts_with(": connected") {
                    break;
                }
            }
            drop(permit);
            let _ = ready.send(()).await;
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 {
                    bail!("stream closed before the event");
                }
                if line.starts_with("data:") {
                    arrivals.lock().expect("lock").push(Instant::now());
                    return anyhow::Ok(());
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..subscribers {
        ready_rx.recv().await.context("a stream failed to open")?;
    }
    let opening_time = opened_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_streams = rss_kib(pid)?;

    let sent = Instant::now();
    post(
        &address,
        "/api/tasks",
        r#"{"title":"to everyone","assignee_id":"fan@example.com","repository":"fan/out"}"#,
    )
    .await?;
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(60), reader).await???;
    }
    let mut arrivals = std::mem::take(&mut *arrivals.lock().expect("lock"));
    arrivals.sort();
    let at = |q: f64| {
        let index = ((arrivals.len() as f64 - 1.0) * q).round() as usize;
        arrivals[index]
            .saturating_duration_since(sent)
            .as_secs_f64()
            * 1000.0
    };
    println!(
        "SSE fan-out from one mcp-tasks serve (SQLite, in-process bus), {subscribers} streams"
    );
    println!("opening all streams: {:.1} s", opening_time.as_secs_f64());
    println!(
        "one create reaches: 50% in {:.1} ms, 99% in {:.1} ms, all in {:.1} ms (target: all within 300 ms)",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "server memory: {:.1} MiB before, {:.1} MiB with the streams open: {:.1} KiB per stream (target <= 25 KiB)",
        before as f64 / 1024.0,
        with_streams as f64 / 1024.0,
        (with_streams.saturating_sub(before)) as f64 / subscribers as f64
    );
    let _ = child.kill().await;
    Ok(())
}

async fn post(address: &str, path: &str, body: &str) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    if !response.starts_with("HTTP/1.1 201") {
        bail!("{path}: {}", response.lines().next().unwrap_or_default());
    }
    Ok(())
}
