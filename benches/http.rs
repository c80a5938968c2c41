//! The HTTP benchmark: REST create → the event seen by an SSE client, at a fixed rate.
//!
//! `cargo bench --bench http` runs against `mcp-tasks serve` on SQLite with the in-process bus,
//! and, when `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set, on PostgreSQL + Redis too.
//! Latency is measured from each create's scheduled send time when its connection was still
//! busy then (so a stall is not hidden by the load generator waiting for it), else from the
//! actual send, to the moment the SSE client reads the event; the last
//! column is the time to the create's `201` response, measured the same way.
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
        "REST create -> SSE event, {rate} creates/s for {}s after 1s of warm-up, {CONNECTIONS} keep-alive connections",
        duration.as_secs()
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "setup", "creates", "per s", "p50 ms", "p99 ms", "max ms", "201 p50/p99"
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

    // The first second warms up: the server's database pool opens connections and prepares
    // its statements then (tens of milliseconds on PostgreSQL), which is not the steady state
    // this measures. Its creates are sent but not counted.
    let warm_up = rate;
    let total = warm_up + rate * duration.as_secs();
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
            let mut idle_since = Instant::now();
            while i < total {
                let scheduled = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(scheduled.into()).await;
                // Latency counts from the scheduled time when the connection was still busy
                // with the previous create (the server's delay), but from the actual send when
                // it was idle: tokio's timer wakes up to a millisecond late, and that lateness
                // is the load generator's, not the server's.
                let intended = if idle_since <= scheduled {
                    Instant::now()
                } else {
                    scheduled
                };
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
                idle_since = Instant::now();
                if i >= warm_up {
                    sent.push((id, intended, idle_since - intended));
                }
                i += CONNECTIONS as u64;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await??);
    }
    let elapsed = start.elapsed().saturating_sub(Duration::from_secs(1));
    // Give the last events a moment to arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    let all_seen = || {
        let seen = seen.lock().expect("lock");
        sent.iter().all(|(id, _, _)| seen.contains_key(id))
    };
    while !all_seen() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reader.abort();
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut answered = Histogram::<u64>::new(3)?;
    let mut missing = 0;
    for (id, intended, response) in &sent {
        answered.record(response.as_micros() as u64)?;
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
        "{:<28} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>6.2}/{:<6.2}",
        label,
        sent.len(),
        sent.len() as f64 / elapsed.as_secs_f64(),
        ms(histogram.value_at_quantile(0.5)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max()),
        ms(answered.value_at_quantile(0.5)),
        ms(answered.value_at_quantile(0.99)),
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
