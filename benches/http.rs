//! The HTTP benchmark: REST create → the event seen by an SSE client, at a fixed rate.
//!
//! `cargo bench --bench http` runs against `mcp-tasks serve` on SQLite with the in-process bus,
//! and, when `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set, on PostgreSQL + Redis too.
//! Latency is measured from each create's intended send time (so a stall is not hidden by the
//! load generator waiting for it) to the moment the SSE client reads the event.
//! Options after `--`: `--rate N` (creates/s, default 500), `--seconds S` (default 5).

#![allow(clippy::print_stdout)] // The report is the point of a benchmark.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-tasks");
const CONNECTIONS: usize = 4;

fn main() -> anyhow::Result<()> {
    let mut rate = 500u64;
    let mut seconds = 5u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => rate = args.next().context("--rate N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            _ => {}
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(rate, Duration::from_secs(seconds)))
}

async fn run(rate: u64, duration: Duration) -> anyhow::Result<()> {
    println!(
        "REST create -> SSE event, {rate} creates/s for {}s, {CONNECTIONS} keep-alive connections",
        duration.as_secs()
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "setup", "creates", "per s", "p50 ms", "p99 ms", "max ms"
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    measure(
        "SQLite + in-process bus",
        &["--database-url", &sqlite],
        rate,
        duration,
    )
    .await?;
    match (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_REDIS_URL"),
    ) {
        (Ok(database), Ok(redis)) => {
            measure(
                "PostgreSQL + Redis",
                &["--database-url", &database, "--redis-url", &redis],
                rate,
                duration,
            )
            .await?;
        }
        _ => println!("PostgreSQL + Redis: skipped (set TEST_DATABASE_URL and TEST_REDIS_URL)"),
    }
    Ok(())
}

async fn measure(label: &str, args: &[&str], rate: u64, duration: Duration) -> anyhow::Result<()> {
    let (mut server, address) = support::spawn_serve(BIN, args).await?;
    let email = format!("bench-{}@example.com", std::process::id());
    post(
        &mut connect(&address).await?,
        "/api/users",
        &format!(r#"{{"email":"{email}"}}"#),
    )
    .await?;
    let repository = format!(
        "bench/run-{}",
        Instant::now().elapsed().as_nanos() + u128::from(std::process::id())
    );

    // The SSE client: records when each task's event arrives.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut stream = TcpStream::connect(&address).await?;
    stream
        .write_all(b"GET /api/tasks/stream?types=task_created HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let reader = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(data) = line.strip_prefix("data: ")
                    && let Some(id) = data
                        .split("\"task_id\":\"")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                {
                    seen.lock()
                        .expect("lock")
                        .insert(id.to_owned(), Instant::now());
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let total = rate * duration.as_secs();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS as u64 {
        let address = address.clone();
        let email = email.clone();
        let repository = repository.clone();
        workers.push(tokio::spawn(async move {
            let mut connection = connect(&address).await?;
            let mut sent = Vec::new();
            let mut i = worker;
            while i < total {
                let intended = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(intended.into()).await;
                let body = format!(
                    r#"{{"title":"bench {i}","assignee_id":"{email}","repository":"{repository}"}}"#
                );
                let response = post(&mut connection, "/api/tasks", &body).await?;
                let id = response
                    .split("\"id\":\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .context("a task id in the response")?
                    .to_owned();
                sent.push((id, intended));
                i += CONNECTIONS as u64;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await??);
    }
    let elapsed = start.elapsed();
    // Give the last events a moment to arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().expect("lock").len() < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reader.abort();
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut missing = 0;
    for (id, intended) in &sent {
        match seen.get(id) {
            Some(at) => {
                histogram.record(at.saturating_duration_since(*intended).as_micros() as u64)?
            }
            None => missing += 1,
        }
    }
    if missing > 0 {
        bail!(
            "{missing} of {} created tasks never reached the SSE client",
            sent.len()
        );
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "{:<28} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2}",
        label,
        sent.len(),
        sent.len() as f64 / elapsed.as_secs_f64(),
        ms(histogram.value_at_quantile(0.5)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max())
    );
    let _ = server.kill().await;
    Ok(())
}

async fn connect(address: &str) -> anyhow::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// One POST on a keep-alive connection; the response body.
async fn post(
    connection: &mut BufReader<TcpStream>,
    path: &str,
    body: &str,
) -> anyhow::Result<String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    connection.get_mut().write_all(request.as_bytes()).await?;
    let mut status = String::new();
    connection.read_line(&mut status).await?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        connection.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    connection.read_exact(&mut body).await?;
    if !status.contains(" 201 ") {
        bail!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(String::from_utf8(body)?)
}
