//! What the gateway costs and how fast it learns, measured against the real processes:
//!
//! - **proxy overhead**: `tools/call echo` on an `echo_upstream` over Streamable HTTP, directly
//!   and through `mcp-hub serve --config` (the same upstream behind it), in the same run:
//!   latency of one call at a time (alternating blocks, so drift hits both alike) and
//!   throughput with many connections; once with an upstream that declares logging (the hub
//!   calls it through rmcp's client, which keeps its log messages ahead of the answer) and
//!   once with one that does not (the hub POSTs the call itself);
//! - **discovery**: a gateway (embedded, as a library user runs it) connecting to 20 running
//!   HTTP upstreams and listing their tools, prompts and resources, until the catalog holds
//!   all of them; then all 20 changing their tools at once (`list_changed`) until every
//!   `tool_update` is announced;
//! - **dashboard delivery**: from a REST tool call that makes an upstream log a line to the
//!   `log_entry` event on `/api/gateway/stream`.
//!
//! `cargo build --release --example echo_upstream && cargo bench --bench gateway` (options
//! after `--`: `--calls N` sequential calls per side
//! (default 4000), `--connections N` (default 32), `--seconds S` per throughput row (default 5)).
//! The load comes from bare keep-alive HTTP/1.1 connections (benches/support), so the client
//! costs as little as can be.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // The report is the point of a benchmark.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use mcp_core::{EventBus, EventFilter, MemoryBus};
use mcp_hub::gateway::{Gateway, GatewayConfig};
use support::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};

const HUB: &str = env!("CARGO_BIN_EXE_mcp-hub");
const ECHO: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut calls = 4000usize;
    let mut connections = 32usize;
    let mut seconds = 5u64;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => calls = args.next().context("--calls N")?.parse()?,
            "--connections" => connections = args.next().context("--connections N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(calls, connections, Duration::from_secs(seconds)))
}

/// The example upstream, built beside the benchmark by `cargo bench`.
fn echo_upstream() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = exe.parent().and_then(Path::parent).context("target dir")?;
    let path = profile.join("examples").join("echo_upstream");
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --release --example echo_upstream` first (`cargo bench --bench gateway` builds no examples)",
            path.display()
        );
    }
    Ok(path)
}

/// An `echo_upstream http` and its `host:port`.
async fn spawn_upstream(
    name: &str,
    extra_args: &[&str],
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(echo_upstream()?)
        .args(["http", "--listen", "127.0.0.1:0", "--name", name])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = lines.next_line().await?.context("no address line")?;
    let address = line
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .context("unexpected address line")?
        .to_owned();
    Ok((child, address))
}

async fn run(calls: usize, connections: usize, duration: Duration) -> anyhow::Result<()> {
    // The gateway sends a plain call straight to an HTTP upstream's session, except when an
    // MCP client awaits the log messages of an upstream that declares logging: that call goes
    // through rmcp's client, which keeps them ahead of the answer. Both are measured.
    for (what, extra_args) in [
        (
            "an upstream that declares logging (rmcp's way out)",
            &[][..],
        ),
        (
            "an upstream that declares no logging (the short way out)",
            &["--no-logging"][..],
        ),
    ] {
        println!("# {what}\n");
        let (upstream, upstream_at) = spawn_upstream("web", extra_args).await?;
        let hub = HubProcess::start(&upstream_at).await?;
        proxy(calls, connections, duration, &upstream, &upstream_at, &hub).await?;
        if extra_args.is_empty() {
            delivery(&hub.address).await?;
        }
        println!();
    }
    discovery().await?;
    Ok(())
}

/// `mcp-hub serve` with one HTTP upstream.
struct HubProcess {
    child: tokio::process::Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl HubProcess {
    async fn start(upstream_at: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hub.toml");
        std::fs::write(
            &config,
            format!("[servers.web]\nurl = \"http://{upstream_at}/mcp\"\n"),
        )?;
        let (child, address) = support::spawn_listening(
            tokio::process::Command::new(HUB)
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--database-url",
                    "memory:",
                ])
                .arg("--config")
                .arg(&config)
                .env("MCP_HUB_LOG", "info"),
            support::Announces::OnStderr,
        )
        .await?;
        wait_healthy(&address, 1).await?;
        Ok(Self {
            child,
            address,
            _dir: dir,
        })
    }
}

async fn proxy(
    calls: usize,
    connections: usize,
    duration: Duration,
    upstream: &tokio::process::Child,
    upstream_at: &str,
    hub: &HubProcess,
) -> anyhow::Result<()> {
    let hub_at = &hub.address;
    println!("## proxy overhead: tools/call echo, one call at a time ({calls} per side)");
    let (direct, through) = sequential(upstream_at, hub_at, calls).await?;
    println!("{:<28} {:>9} {:>9} {:>9}", "", "p50 ms", "p90 ms", "p99 ms");
    for (name, h) in [("direct", &direct), ("through the hub", &through)] {
        println!(
            "{:<28} {:>9.3} {:>9.3} {:>9.3}",
            name,
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99)
        );
    }
    println!(
        "added p50: {:.3} ms (target <= 0.3)",
        ms(&through, 0.5) - ms(&direct, 0.5)
    );

    println!(
        "\n## proxy throughput: {connections} connections, {}s per row",
        duration.as_secs()
    );
    let processes = [upstream.id(), hub.child.id(), None];
    let direct_rate = load(upstream_at, connections, duration, processes).await?;
    let through_rate = load(hub_at, connections, duration, processes).await?;
    println!(
        "{:<28} {:>10} {:>9} {:>9}   CPU µs per call: upstream / hub / load",
        "", "calls/s", "p50 ms", "p99 ms"
    );
    for (name, row) in [("direct", &direct_rate), ("through the hub", &through_rate)] {
        println!(
            "{:<28} {:>10.0} {:>9.2} {:>9.2}   {}",
            name,
            row.rate(),
            ms(&row.histogram, 0.5),
            ms(&row.histogram, 0.99),
            row.cpu_per_call()
        );
    }
    println!(
        "through / direct: {:.0} % (target >= 80 %)",
        100.0 * through_rate.rate() / direct_rate.rate()
    );
    Ok(())
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

async fn wait_healthy(hub_at: &str, servers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut connection = Connection::open(hub_at).await?;
    loop {
        let body = get(&mut connection, "/api/status").await?;
        let status: serde_json::Value = serde_json::from_str(&body)?;
        if status["servers"]["healthy"] == servers {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the hub's upstreams did not become healthy: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(connection: &mut Connection, path: &str) -> anyhow::Result<String> {
    connection.get(path).await
}

/// One call at a time on one session per side, alternating blocks of 100.
async fn sequential(
    direct_at: &str,
    hub_at: &str,
    calls: usize,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let mut direct = Session::open(direct_at).await?;
    let mut through = Session::open(hub_at).await?;
    // Warm both paths (connection pools, allocator, caches).
    for _ in 0..200 {
        direct.call().await?;
        through.call().await?;
    }
    let mut direct_histogram = Histogram::<u64>::new(3)?;
    let mut through_histogram = Histogram::<u64>::new(3)?;
    for _ in 0..calls.div_ceil(100) {
        for _ in 0..100 {
            direct_histogram.record(direct.call().await?)?;
        }
        for _ in 0..100 {
            through_histogram.record(through.call().await?)?;
        }
    }
    Ok((direct_histogram, through_histogram))
}

struct Session {
    connection: Connection,
    id: String,
}

impl Session {
    async fn open(address: &str) -> anyhow::Result<Self> {
        let mut connection = Connection::open(address).await?;
        let id = connection.initialize().await?;
        Ok(Self { connection, id })
    }

    /// One `tools/call echo`; its latency in microseconds.
    async fn call(&mut self) -> anyhow::Result<u64> {
        let sent = Instant::now();
        let response = self
            .connection
            .request("/mcp", Some(&self.id), ECHO)
            .await?;
        let elapsed = sent.elapsed().as_micros() as u64;
        if !response.contains("\"isError\":false") {
            bail!("unexpected answer: {response}");
        }
        Ok(elapsed)
    }
}

struct Row {
    calls: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
    /// CPU time each measured process used during the row (`None` where it cannot be read).
    cpu: Vec<Option<Duration>>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_call(&self) -> String {
        let calls = self.calls.max(1) as f64;
        self.cpu
            .iter()
            .map(|cpu| match cpu {
                Some(cpu) => format!("{:.0}", cpu.as_secs_f64() * 1e6 / calls),
                None => "-".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// `connections` sessions calling `echo` as fast as they can for `duration`. `processes`
/// (`None` is this one) have their CPU time measured over the row.
async fn load(
    address: &str,
    connections: usize,
    duration: Duration,
    processes: [Option<u32>; 3],
) -> anyhow::Result<Row> {
    let mut sessions = Vec::new();
    for _ in 0..connections {
        sessions.push(Session::open(address).await?);
    }
    let cpu_before = processes.map(support::cpu_time);
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for mut session in sessions {
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3)?;
            while Instant::now() < deadline {
                histogram.record(session.call().await?)?;
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    for worker in workers {
        histogram.add(worker.await??)?;
    }
    let elapsed = start.elapsed();
    let cpu = processes
        .map(support::cpu_time)
        .iter()
        .zip(cpu_before)
        .map(|(after, before)| Some(after.as_ref()?.saturating_sub(before?)))
        .collect();
    Ok(Row {
        calls: histogram.len(),
        elapsed,
        histogram,
        cpu,
    })
}

/// From a REST call of the upstream's `log` tool to its line on `/api/gateway/stream`.
async fn delivery(hub_at: &str) -> anyhow::Result<()> {
    let mut stream = Connection::open(hub_at).await?;
    stream
        .open_stream("/api/gateway/stream?types=log_entry")
        .await?;
    let mut caller = Connection::open(hub_at).await?;
    let mut histogram = Histogram::<u64>::new(3)?;
    for n in 0..200 {
        let marker = format!("bench line {n}");
        let body = format!(r#"{{"arguments":{{"level":"info","message":"{marker}"}}}}"#);
        let sent = Instant::now();
        caller
            .request("/api/tools/log/execute", None, &body)
            .await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next_event())
                .await
                .context("no log_entry within 10 s")??;
            if event.contains(&marker) {
                break;
            }
        }
        histogram.record(sent.elapsed().as_micros() as u64)?;
    }
    println!(
        "\n## dashboard delivery: REST tool call -> upstream logs -> log_entry on the event stream (200 lines)"
    );
    println!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target < 50 ms)",
        ms(&histogram, 0.5),
        ms(&histogram, 0.99),
        histogram.max() as f64 / 1000.0
    );
    Ok(())
}

/// An embedded gateway over 20 running HTTP upstreams.
async fn discovery() -> anyhow::Result<()> {
    const UPSTREAMS: usize = 20;
    let mut upstreams = Vec::new();
    let mut config = String::from("[gateway]\nprefix = \"always\"\n\n");
    for n in 0..UPSTREAMS {
        let (child, address) = spawn_upstream(&format!("s{n:02}"), &[]).await?;
        config.push_str(&format!(
            "[servers.s{n:02}]\nurl = \"http://{address}/mcp\"\n"
        ));
        upstreams.push(child);
    }
    let config = GatewayConfig::parse_toml(&config, Path::new("."))?;
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::default());
    let mut updates = bus
        .subscribe(EventFilter::all().types(["tool_update"]), None)
        .await?;

    let started = Instant::now();
    let gateway = Gateway::start(config, bus.clone());
    if !gateway.settle(Duration::from_secs(30)).await {
        bail!("the upstreams did not all connect");
    }
    let connected = started.elapsed();
    let servers = gateway.servers();
    let tools: usize = servers.iter().map(|s| s.tools).sum();
    if servers.iter().any(|s| s.tools == 0) {
        bail!("an upstream's tools are missing: {servers:?}");
    }
    println!("\n## discovery across {UPSTREAMS} running HTTP upstreams (embedded gateway)");
    println!(
        "connect + initialize + list all {UPSTREAMS}: {:.1} ms, {tools} tools in the catalog (target < 100 ms)",
        connected.as_secs_f64() * 1000.0
    );
    // Drain the first listings' announcements.
    while tokio::time::timeout(Duration::from_millis(200), updates.recv())
        .await
        .is_ok()
    {}

    // All 20 add a tool at once; each tells the gateway with list_changed.
    let caller = mcp_hub::gateway::Caller::anonymous();
    let started = Instant::now();
    let toggles = (0..UPSTREAMS).map(|n| {
        let gateway = gateway.clone();
        let caller = caller.clone();
        async move {
            gateway
                .call_tool(&caller, &format!("s{n:02}__toggle_extra"), None)
                .await
        }
    });
    for result in futures_util::future::join_all(toggles).await {
        result?;
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < UPSTREAMS {
        let delivery = tokio::time::timeout(Duration::from_secs(10), updates.recv())
            .await
            .context("tool_update missing")?
            .context("bus closed")?;
        if let mcp_core::Delivery::Event(event) = delivery
            && event.data["added"].to_string().contains("extra")
        {
            seen.insert(event.subject.get("server").cloned().unwrap_or_default());
        }
    }
    println!(
        "{UPSTREAMS} upstreams change their tools at once -> every tool_update announced: {:.1} ms (after the calls return)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    gateway.shutdown().await;
    drop(upstreams);
    Ok(())
}
