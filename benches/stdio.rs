//! The stdio benchmark: `mcp-tasks stdio` over a SQLite database of 10,000 tasks, driven by
//! rmcp's client on one connection. Prints calls per second and p50/p99 latency per tool, and
//! cold start to a served `initialize`.
//!
//! `cargo bench --bench stdio` (options after `--`: `--tasks N`, `--seconds S`).

#![allow(clippy::print_stdout)] // The report is the point of a benchmark.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use mcp_core::MemoryBus;
use mcp_tasks::{
    Priority, TaskService,
    service::{NewTask, NewUser},
    store::SqliteStore,
};
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation},
    service::{Peer, RoleClient},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-tasks");

fn main() -> anyhow::Result<()> {
    let mut tasks = 10_000usize;
    let mut seconds = 5u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => tasks = args.next().context("--tasks N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(tasks, Duration::from_secs(seconds)))
}

async fn run(tasks: usize, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let seeded = Instant::now();
    seed(&db, tasks).await?;
    eprintln!(
        "seeded {tasks} tasks in {:.1}s",
        seeded.elapsed().as_secs_f64()
    );
    let url = format!("sqlite://{}", db.display());

    let cold = cold_start(&url, 30).await?;

    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["stdio", "--database-url", &url])
        .env("MCP_TASKS_LOG", "warn");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()?;
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("bench", "1"),
    )
    .serve(transport)
    .await?;
    let peer = client.peer().clone();

    let scenarios: Vec<(&str, Value)> = vec![
        ("get_tasks {} (first page: 20 tasks)", json!({})),
        ("get_tasks limit 50", json!({"limit": 50})),
        (
            "get_tasks repository+status, limit 20",
            json!({"repository": "acme/repo-3", "status": "open", "limit": 20}),
        ),
        (
            "get_tasks user_id, limit 10",
            json!({"user_id": "user-7@example.com", "limit": 10}),
        ),
    ];
    println!();
    println!(
        "mcp-tasks stdio, SQLite with {tasks} tasks, one connection, {}s per row",
        duration.as_secs()
    );
    println!("client: rmcp (the official SDK's client, as an agent host would use)");
    println!(
        "{:<40} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "call", "conc", "calls/s", "p50 ms", "p99 ms", "max ms"
    );
    for (name, args) in &scenarios {
        call(&peer, "get_tasks", args.clone()).await?; // warm the statement cache
        for concurrency in [1, 8] {
            let args = args.clone();
            let row = load(&peer, "get_tasks", concurrency, duration, move |_| {
                args.clone()
            })
            .await?;
            row.print(name, concurrency);
        }
    }
    for concurrency in [1, 8] {
        let row = load(&peer, "create_task", concurrency, duration, |i| {
            json!({
                "title": format!("bench task {i}"), "description": "created by the benchmark",
                "assignee_id": format!("user-{}@example.com", i % 10), "repository": format!("acme/repo-{}", i % 20),
                "priority": "high"
            })
        })
        .await?;
        row.print("create_task", concurrency);
    }
    client.cancel().await?;

    // The same calls from a minimal JSON-RPC client that only frames lines and matches ids, so
    // the figures are the server's, not the client library's.
    let raw = RawClient::spawn(&url).await?;
    println!();
    println!("client: raw JSON-RPC lines over the same pipes (measures the server alone)");
    println!(
        "{:<40} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "call", "conc", "calls/s", "p50 ms", "p99 ms", "max ms"
    );
    for (name, args) in &scenarios {
        for concurrency in [1, 4] {
            let row = raw.load("get_tasks", args, concurrency, duration).await?;
            row.print(name, concurrency);
        }
    }
    println!();
    println!(
        "{:<40} {:>5} {:>10} {:>9.2} {:>9.2} {:>9.2}",
        "cold start to initialize answered",
        "-",
        "-",
        ms(cold.value_at_quantile(0.5)),
        ms(cold.value_at_quantile(0.99)),
        ms(cold.max())
    );
    Ok(())
}

async fn seed(db: &std::path::Path, tasks: usize) -> anyhow::Result<()> {
    let store = SqliteStore::open(db).await?;
    let service = TaskService::new(Arc::new(store), Arc::new(MemoryBus::default()));
    for u in 0..10 {
        service
            .add_user(NewUser {
                email: format!("user-{u}@example.com"),
                ..NewUser::default()
            })
            .await?;
    }
    let statuses = [
        mcp_tasks::Status::NotStarted,
        mcp_tasks::Status::InProgress,
        mcp_tasks::Status::Completed,
        mcp_tasks::Status::InReview,
    ];
    for i in 0..tasks {
        let task = service
            .create_task(
                NewTask {
                    title: format!("Task {i}: fix something in module {}", i % 37),
                    description: "A realistic sentence or two describing the work to be done."
                        .into(),
                    assignee: format!("user-{}@example.com", i % 10),
                    repository: format!("acme/repo-{}", i % 20),
                    priority: Some(Priority::Medium),
                    complexity: None,
                },
                "seed",
            )
            .await?;
        let status = statuses[i % statuses.len()];
        if status != mcp_tasks::Status::NotStarted {
            service
                .update_status(&task.id.to_string(), status, "seed", None)
                .await?;
        }
    }
    Ok(())
}

/// Spawn to the `initialize` response, over raw pipes so only the server is timed.
async fn cold_start(url: &str, runs: usize) -> anyhow::Result<Histogram<u64>> {
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    let mut histogram = Histogram::<u64>::new(3)?;
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(BIN)
            .args(["stdio", "--database-url", url])
            .env("MCP_TASKS_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(request.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?)
            .read_line(&mut line)
            .await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
        if !line.contains("switchboard-tasks") {
            bail!("unexpected initialize answer: {line}");
        }
        drop(stdin);
        child.wait().await?;
    }
    Ok(histogram)
}

async fn call(peer: &Peer<RoleClient>, tool: &'static str, args: Value) -> anyhow::Result<()> {
    let Value::Object(args) = args else {
        bail!("arguments must be an object")
    };
    let result = peer
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await?;
    if result.is_error == Some(true) {
        bail!("{tool} failed: {:?}", result.content);
    }
    Ok(())
}

struct Row {
    calls: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
}

impl Row {
    fn print(&self, name: &str, concurrency: usize) {
        println!(
            "{:<40} {:>5} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            name,
            concurrency,
            self.calls as f64 / self.elapsed.as_secs_f64(),
            ms(self.histogram.value_at_quantile(0.5)),
            ms(self.histogram.value_at_quantile(0.99)),
            ms(self.histogram.max()),
        );
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// `concurrency` callers, each issuing its next call (`call(i)`) when the previous one is
/// answered, for `duration`.
async fn measure<F, Fut>(concurrency: usize, duration: Duration, call: F) -> anyhow::Result<Row>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3)?;
            let mut i = worker as u64 * 1_000_000;
            while Instant::now() < deadline {
                let sent = Instant::now();
                call(i).await?;
                histogram.record(sent.elapsed().as_micros() as u64)?;
                i += 1;
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
        elapsed: started.elapsed(),
        histogram,
    })
}

/// [`measure`] with rmcp's client.
async fn load(
    peer: &Peer<RoleClient>,
    tool: &'static str,
    concurrency: usize,
    duration: Duration,
    args: impl Fn(u64) -> Value + Send + Sync + Clone + 'static,
) -> anyhow::Result<Row> {
    let peer = peer.clone();
    measure(concurrency, duration, move |i| {
        let peer = peer.clone();
        let args = args(i);
        async move { call(&peer, tool, args).await }
    })
    .await
}

/// A JSON-RPC client that writes request lines and matches response lines by id, and parses
/// nothing else.
struct RawClient {
    requests: tokio::sync::mpsc::UnboundedSender<(u64, String, tokio::sync::oneshot::Sender<bool>)>,
    next_id: std::sync::atomic::AtomicU64,
    _child: tokio::process::Child,
}

impl RawClient {
    async fn spawn(url: &str) -> anyhow::Result<Arc<Self>> {
        let mut child = tokio::process::Command::new(BIN)
            .args(["stdio", "--database-url", url])
            .env("MCP_TASKS_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let hello = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
        stdin.write_all(format!("{hello}\n").as_bytes()).await?;
        let mut line = String::new();
        stdout.read_line(&mut line).await?;
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await?;

        type Waiters = std::collections::HashMap<u64, tokio::sync::oneshot::Sender<bool>>;
        let waiters: Arc<std::sync::Mutex<Waiters>> = Arc::default();
        let (requests, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<(
            u64,
            String,
            tokio::sync::oneshot::Sender<bool>,
        )>();
        let writer_waiters = waiters.clone();
        tokio::spawn(async move {
            while let Some((id, line, done)) = outgoing.recv().await {
                writer_waiters.lock().expect("lock").insert(id, done);
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut line = String::new();
            loop {
                line.clear();
                if stdout.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                // Responses start {"jsonrpc":"2.0","id":N,...}: read N without parsing the rest.
                let id = line
                    .split_once("\"id\":")
                    .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|digits| digits.parse::<u64>().ok());
                if let Some(id) = id
                    && let Some(done) = waiters.lock().expect("lock").remove(&id)
                {
                    let _ = done.send(!line.contains("\"isError\":true"));
                }
            }
        });
        Ok(Arc::new(Self {
            requests,
            next_id: std::sync::atomic::AtomicU64::new(1),
            _child: child,
        }))
    }

    async fn call(&self, tool: &str, args: &Value) -> anyhow::Result<()> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
        let (done, answered) = tokio::sync::oneshot::channel();
        self.requests
            .send((id, format!("{request}\n"), done))
            .map_err(|_| anyhow::anyhow!("server gone"))?;
        if !answered.await? {
            bail!("{tool} answered with an error");
        }
        Ok(())
    }

    async fn load(
        self: &Arc<Self>,
        tool: &'static str,
        args: &Value,
        concurrency: usize,
        duration: Duration,
    ) -> anyhow::Result<Row> {
        self.call(tool, args).await?;
        let client = self.clone();
        let args = args.clone();
        measure(concurrency, duration, move |_| {
            let client = client.clone();
            let args = args.clone();
            async move { client.call(tool, &args).await }
        })
        .await
    }
}
