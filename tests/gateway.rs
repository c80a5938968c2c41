//! The gateway end to end: the built `mcp-hub` supervises `echo_upstream` children (and an HTTP
//! one), and rmcp's client talks to the hub as Claude or Cursor would, over stdio and at
//! `/mcp`; the REST API and the live event stream are read as the dashboard reads them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

#[path = "../mcp-github/tests/support/fake_github.rs"]
mod fake_github;
mod support;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
        GetPromptRequestParams, Implementation, ProgressNotificationParam, ProgressToken,
        ReadResourceRequestParams, RequestMetaObject, ResourceContents,
    },
    service::{NotificationContext, RunningService},
    transport::{
        StreamableHttpClientTransport, TokioChildProcess,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::mpsc,
};

const WAIT: Duration = Duration::from_secs(20);

/// The example upstream; `cargo test` builds the examples beside the test binaries.
fn echo_upstream() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let path = debug.join("examples").join("echo_upstream");
    assert!(
        path.exists(),
        "{} is missing: build the examples (`cargo test` does, or `cargo build --example echo_upstream`)",
        path.display()
    );
    path
}

/// A stdio upstream table for hub.toml.
fn stdio_server(id: &str, extra_args: &[&str], rest: &str) -> String {
    let mut args = vec!["stdio".to_owned(), "--name".to_owned(), id.to_owned()];
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    format!(
        "[servers.{id}]\ncommand = {command:?}\nargs = {args:?}\n{rest}\n",
        command = echo_upstream().display().to_string(),
    )
}

/// What the agent receives besides answers.
#[derive(Debug)]
enum Notice {
    ToolsChanged,
    Progress(ProgressNotificationParam),
    Log(String),
}

#[derive(Clone)]
struct Agent {
    notices: mpsc::UnboundedSender<Notice>,
}

impl ClientHandler for Agent {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("gateway-e2e", "1"),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.notices.send(Notice::ToolsChanged);
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.notices.send(Notice::Progress(params));
    }

    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.notices.send(Notice::Log(params.data.to_string()));
    }
}

type Client = RunningService<RoleClient, Agent>;

async fn http_client(
    address: &str,
    key: Option<&str>,
) -> (Client, mpsc::UnboundedReceiver<Notice>) {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("http://{address}/mcp"));
    if let Some(key) = key {
        config = config.auth_header(key.to_owned());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Agent { notices: tx }
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    (client, rx)
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    tokio::time::timeout(
        WAIT,
        client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments)),
    )
    .await
    .expect("the call answers in time")
    .unwrap()
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// The prompts a client of the gateway is shown, in the gateway's order.
async fn prompt_names(client: &Client) -> Vec<String> {
    let prompts = client.list_all_prompts().await.unwrap();
    prompts.into_iter().map(|p| p.name).collect()
}

/// A hub serving the gateway over HTTP with `config` written to a file of its own.
struct GatewayHub {
    hub: support::Hub,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

async fn gateway_hub(config: &str, env: &[(&str, &str)]) -> GatewayHub {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, config).unwrap();
    let hub = support::spawn_hub(
        &[
            "--database-url",
            "memory:",
            "--config",
            path.to_str().unwrap(),
        ],
        env,
    )
    .await;
    GatewayHub {
        hub,
        config: path,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_json(address: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = http().get(format!("http://{address}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_json(address: &str, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = http().post(format!("http://{address}{path}")).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The gateway's live events, read as the page reads `/api/gateway/stream`.
struct Events {
    response: reqwest::Response,
    buffer: String,
    /// What arrived, for a failure's message.
    seen: Vec<String>,
    /// The newest state seen of each server.
    states: std::collections::HashMap<String, String>,
}

impl Events {
    async fn open(address: &str, key: Option<&str>) -> Self {
        let mut request = http().get(format!("http://{address}/api/gateway/stream"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Self {
            response,
            buffer: String::new(),
            seen: Vec::new(),
            states: std::collections::HashMap::new(),
        }
    }

    /// The next event (type, data) whatever it is.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(rest) = line.strip_prefix("event:") {
                        kind = rest.trim().to_owned();
                    } else if let Some(rest) = line.strip_prefix("data:") {
                        data.push_str(rest.trim_start());
                    }
                }
                if kind.is_empty() || data.is_empty() {
                    continue;
                }
                let envelope: Value = serde_json::from_str(&data).unwrap();
                let data = envelope["data"].clone();
                if kind == "server_status" {
                    self.states.insert(
                        data["id"].as_str().unwrap_or_default().to_owned(),
                        data["state"].as_str().unwrap_or_default().to_owned(),
                    );
                }
                let summary = match kind.as_str() {
                    "server_status" => format!("{kind} {} {}", data["id"], data["state"]),
                    _ => format!(
                        "{kind} {}",
                        data.to_string().chars().take(120).collect::<String>()
                    ),
                };
                self.seen.push(summary);
                return (kind, data);
            }
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the event stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits for an event of `kind` whose data satisfies `matches`.
    async fn wait_for(&mut self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let (k, data) = self.next().await;
                if k == kind && matches(&data) {
                    return data;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no {kind} event as expected within {WAIT:?}; the last ones: {:#?}",
                &self.seen[self.seen.len().saturating_sub(12)..]
            )
        })
    }

    /// Waits until `server` is in `state`: at once if that is the newest state seen.
    async fn wait_state(&mut self, server: &str, state: &str) {
        if self.states.get(server).map(String::as_str) == Some(state) {
            return;
        }
        self.wait_for("server_status", |s| {
            s["id"] == server && s["state"] == state
        })
        .await;
    }

    /// Like [`Events::wait_state`], for a transition that must still come; returns the status.
    async fn next_state(&mut self, server: &str, state: &str) -> Value {
        self.wait_for("server_status", |s| {
            s["id"] == server && s["state"] == state
        })
        .await
    }
}

/// The hub's children that are zombies (exited, never reaped).
fn zombie_children(pid: u32) -> Vec<String> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[1] == pid.to_string() && fields[0] == "Z" {
            zombies.push(stat);
        }
    }
    zombies
}

fn children_of(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().nth(1) == Some(&pid.to_string()))
                .unwrap_or(false)
        })
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn over_stdio_names_are_namespaced_filtered_and_routed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nprefix = \"conditional\"\n\n{}{}",
            stdio_server("alpha", &[], ""),
            stdio_server("beta", &[], "tools = { deny = [\"crash\", \"fail\"] }")
        ),
    )
    .unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-hub"));
    command
        .args(["stdio", "--config", config.to_str().unwrap()])
        .env("MCP_HUB_LOG", "warn");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = Agent { notices: tx }.serve(transport).await.unwrap();

    // Names both list are prefixed; names only one lists (after beta's deny list) are not.
    let names = tool_names(&client).await;
    for expected in [
        "alpha__echo",
        "beta__echo",
        "alpha__add",
        "beta__add",
        "crash",
        "fail",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n == "beta__crash" || n == "alpha__crash"),
        "{names:?}"
    );

    let echoed = call(&client, "beta__echo", json!({ "text": "hi" })).await;
    assert_eq!(echoed.structured_content, Some(json!({ "text": "hi" })));
    let who = call(&client, "alpha__whoami", json!({})).await;
    assert_eq!(who.structured_content.unwrap()["name"], "alpha");
    let failed = call(&client, "fail", json!({ "message": "nope" })).await;
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text(&failed), "nope");
    // The upstream's own JSON-RPC error comes through as it is, code and data too.
    let refused = client
        .call_tool(
            CallToolRequestParams::new("fail").with_arguments(
                json!({ "message": "no such row", "code": -32602 })
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap_err();
    match &refused {
        rmcp::ServiceError::McpError(error) => {
            assert_eq!(
                error.code,
                rmcp::model::ErrorCode::INVALID_PARAMS,
                "{error:?}"
            );
            assert_eq!(error.message, "no such row");
            assert_eq!(error.data, Some(json!({ "from": "fail" })));
        }
        other => panic!("expected the upstream's JSON-RPC error, got {other:?}"),
    }

    let unknown = client
        .call_tool(CallToolRequestParams::new("nope__echo"))
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("no tool is called nope__echo"),
        "{unknown}"
    );

    // Prompts are namespaced the same way; a resource URI is never rewritten: the first server
    // by id keeps it.
    let prompts = prompt_names(&client).await;
    assert_eq!(prompts, vec!["alpha__greet", "beta__greet"]);
    let greeting = client
        .get_prompt(
            GetPromptRequestParams::new("beta__greet")
                .with_arguments(json!({ "name": "Ada" }).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert!(format!("{:?}", greeting.messages).contains("Hello, Ada"));
    let read = client
        .read_resource(ReadResourceRequestParams::new("echo://info"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("text contents expected")
    };
    assert_eq!(text, "echo upstream alpha");

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_crashing_upstream_errors_clearly_restarts_and_leaves_others_alone() {
    let config = format!(
        "[gateway]\nrestart_initial = \"10ms\"\nrestart_max = \"40ms\"\n\n{}{}",
        stdio_server("a", &[], ""),
        stdio_server("b", &[], "")
    );
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let pid = gateway.hub.child.id().unwrap();
    let mut events = Events::open(&address, None).await;
    events.wait_state("a", "healthy").await;
    events.wait_state("b", "healthy").await;
    let (client, _notices) = http_client(&address, None).await;

    let crashed = call(&client, "a__crash", json!({ "code": 7 })).await;
    assert_eq!(crashed.is_error, Some(true));
    let message = text(&crashed);
    assert!(
        message.contains("upstream a") && message.contains("exited with code 7"),
        "{message}"
    );
    // The other upstream answers meanwhile.
    let echoed = call(&client, "b__echo", json!({ "text": "still here" })).await;
    assert_eq!(echoed.is_error, Some(false));
    let down = events.next_state("a", "down").await;
    assert!(
        down["last_error"].as_str().unwrap().contains("code 7"),
        "{down}"
    );
    let healthy = events.next_state("a", "healthy").await;
    assert_eq!(healthy["restarts"], 1);
    assert_eq!(
        call(&client, "a__echo", json!({ "text": "back" }))
            .await
            .is_error,
        Some(false)
    );

    // 100 crash cycles: every child is reaped, and the hub's memory stays put.
    let mut rss_after_10 = 0;
    for cycle in 1..=100 {
        let crashed = call(&client, "a__crash", json!({})).await;
        assert_eq!(crashed.is_error, Some(true), "cycle {cycle}");
        events.next_state("a", "down").await;
        events.next_state("a", "healthy").await;
        if cycle == 10 {
            rss_after_10 = rss_kib(pid);
        }
    }
    let (_, status) = get_json(&address, "/api/servers/a", None).await;
    assert_eq!(status["restarts"], 101);
    assert_eq!(status["state"], "healthy");
    assert!(
        zombie_children(pid).is_empty(),
        "{:?}",
        zombie_children(pid)
    );
    assert_eq!(children_of(pid), 2, "one child per upstream, no leftovers");
    let rss_after_100 = rss_kib(pid);
    assert!(
        rss_after_100 < rss_after_10 + 16 * 1024,
        "memory grew from {rss_after_10} KiB to {rss_after_100} KiB over 90 crash cycles"
    );
    let (_, b) = get_json(&address, "/api/servers/b", None).await;
    assert_eq!(
        (b["state"].as_str(), b["restarts"].as_u64()),
        (Some("healthy"), Some(0))
    );

    // The merged log holds the children's stderr and the gateway's notes.
    let (_, logs) = get_json(&address, "/api/logs?server=a&limit=1000", None).await;
    let messages: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"crashing"),
        "stderr lines are log entries"
    );
    assert!(messages.iter().any(|m| m.contains("exited with code 1")));

    client.cancel().await.unwrap();
    gateway.hub.stop().await;
}

/// An `echo_upstream http` and the URL it serves.
async fn http_upstream(listen: &str) -> (tokio::process::Child, String) {
    let (child, url, _) = http_upstream_with_stderr(listen, "web", &[]).await;
    (child, url)
}

/// An `echo_upstream http`, the URL it serves and its stderr lines (printed once the receiver
/// is dropped: the child's stderr is always read, so it never blocks on it).
async fn http_upstream_with_stderr(
    listen: &str,
    name: &str,
    extra_args: &[&str],
) -> (
    tokio::process::Child,
    String,
    mpsc::UnboundedReceiver<String>,
) {
    let mut child = tokio::process::Command::new(echo_upstream())
        .args(["http", "--listen", listen, "--name", name])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = mpsc::unbounded_channel();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if let Err(unread) = lines_tx.send(line) {
                eprintln!("{}", unread.0);
            }
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("the upstream prints its address");
    let url = line.strip_prefix("listening on ").unwrap().to_owned();
    (child, url, lines_rx)
}

/// Waits for `wanted` among an upstream's stderr lines.
async fn stderr_says(lines: &mut mpsc::UnboundedReceiver<String>, wanted: &str) {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.recv().await {
            if line.contains(wanted) {
                return;
            }
        }
        panic!("the upstream's stderr ended");
    })
    .await
    .unwrap_or_else(|_| panic!("the upstream did not write {wanted:?}"));
}

#[tokio::test]
async fn an_http_upstream_that_goes_away_is_down_then_healthy_and_calls_resume() {
    let (mut upstream, url) = http_upstream("127.0.0.1:0").await;
    let listen = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let config = format!(
        "[gateway]\nhealth_interval = \"200ms\"\nhealth_timeout = \"200ms\"\nrestart_initial = \"50ms\"\nrestart_max = \"200ms\"\n\n[servers.web]\nurl = {url:?}\n"
    );
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("web", "healthy").await;
    let (client, _notices) = http_client(&address, None).await;
    assert_eq!(
        call(&client, "echo", json!({ "text": "1" })).await.is_error,
        Some(false)
    );

    // It dies in the middle of a call: the call fails promptly (rmcp's client would retry the
    // lost stream forever), then the upstream shows down.
    let started = Instant::now();
    let crashed = call(&client, "crash", json!({})).await;
    assert_eq!(crashed.is_error, Some(true));
    assert!(
        text(&crashed).contains("upstream web"),
        "{}",
        text(&crashed)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = upstream.wait().await;
    let down = events.next_state("web", "down").await;
    assert!(down["last_error"].is_string(), "{down}");
    // A call while it is away fails at once, naming it.
    let started = Instant::now();
    let result = call(&client, "echo", json!({ "text": "2" })).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("upstream web"), "{}", text(&result));

    let (_upstream, _) = http_upstream(&listen).await;
    events.next_state("web", "healthy").await;
    assert_eq!(
        call(&client, "echo", json!({ "text": "3" })).await.is_error,
        Some(false)
    );
    client.cancel().await.unwrap();
    gateway.hub.stop().await;
}

/// Whether a process runs: gone and zombie (killed, not yet reaped by init) both count as not.
fn runs(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn what_a_stdio_upstream_started_is_stopped_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("helper.pid");
    // A wrapper script's background helper, in the server's process group.
    let script = format!(
        "sleep 300 & echo $! > {pidfile}; exec {echo} stdio --name w",
        pidfile = pidfile.display(),
        echo = echo_upstream().display()
    );
    let config = format!("[servers.w]\ncommand = \"sh\"\nargs = [\"-c\", {script:?}]\n");
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("w", "healthy").await;
    let helper = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    assert!(
        runs(&helper),
        "the helper {helper} should run while the server does"
    );

    let (status, body) = post_json(&address, "/api/servers/w/stop", None, json!({})).await;
    assert_eq!(status, 202, "{body}");
    events.wait_state("w", "stopped").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs(&helper) {
        assert!(
            Instant::now() < deadline,
            "the helper {helper} outlived its server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.hub.stop().await;
}

#[tokio::test]
async fn calls_spread_over_several_http_sessions_keep_their_own_progress() {
    let (_upstream, url) = http_upstream("127.0.0.1:0").await;
    let config = format!("[servers.web]\nurl = {url:?}\nsessions = 3\n");
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("web", "healthy").await;
    // The extra sessions open beside the first one.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status) = get_json(&address, "/api/servers/web", None).await;
        if status["sessions"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each session numbers its progress tokens from 0: six calls at once, over three
    // sessions, must each get their own progress (total = its own ms) and no one else's.
    let mut calls = Vec::new();
    for i in 0..6u64 {
        let address = address.clone();
        calls.push(tokio::spawn(async move {
            let (client, mut notices) = http_client(&address, None).await;
            let ms = 300 + 10 * i;
            let mut params = CallToolRequestParams::new("sleep")
                .with_arguments(json!({ "ms": ms }).as_object().unwrap().clone());
            let token = ProgressToken(rmcp::model::NumberOrString::String(format!("c{i}").into()));
            params.meta = Some(RequestMetaObject::with_progress_token(token));
            let slept = tokio::time::timeout(WAIT, client.call_tool(params))
                .await
                .expect("the call answers in time")
                .unwrap();
            assert_eq!(slept.is_error, Some(false), "{slept:?}");
            let mut totals = Vec::new();
            while let Ok(Some(notice)) =
                tokio::time::timeout(Duration::from_millis(200), notices.recv()).await
            {
                if let Notice::Progress(p) = notice {
                    totals.push(p.total);
                }
            }
            client.cancel().await.unwrap();
            (ms, totals)
        }));
    }
    for call in calls {
        let (ms, totals) = call.await.unwrap();
        assert!(totals.len() >= 2, "call of {ms} ms got {totals:?}");
        assert!(
            totals.iter().all(|t| *t == Some(ms as f64)),
            "call of {ms} ms got progress of others: {totals:?}"
        );
    }
    gateway.hub.stop().await;
}

#[tokio::test]
async fn list_changed_reaches_a_client_within_a_second_and_progress_logs_and_cancellation_pass_through()
 {
    let config = format!(
        "{}{}",
        stdio_server("a", &[], "call_timeout = \"500ms\""),
        stdio_server("b", &[], "")
    );
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("a", "healthy").await;
    events.wait_state("b", "healthy").await;
    let (client, mut notices) = http_client(&address, None).await;
    assert!(!tool_names(&client).await.contains(&"extra".to_owned()));

    // list_changed: upstream → gateway → this client, in well under a second.
    let started = Instant::now();
    let toggled = call(&client, "a__toggle_extra", json!({})).await;
    assert_eq!(
        toggled.structured_content,
        Some(json!({ "extra_present": true }))
    );
    loop {
        let notice = tokio::time::timeout(Duration::from_secs(1), notices.recv())
            .await
            .expect("tools/list_changed within 1 s")
            .unwrap();
        if matches!(notice, Notice::ToolsChanged) {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    eprintln!("list_changed reached the client {elapsed:?} after the call started");
    assert!(tool_names(&client).await.contains(&"extra".to_owned()));
    let update = events.wait_for("tool_update", |u| u["server"] == "a").await;
    assert_eq!(update["added"], json!(["extra"]));

    // Progress: the client's token comes back on the upstream's notifications.
    let mut params = CallToolRequestParams::new("b__sleep")
        .with_arguments(json!({ "ms": 350 }).as_object().unwrap().clone());
    let token = ProgressToken(rmcp::model::NumberOrString::String("mine-1".into()));
    params.meta = Some(RequestMetaObject::with_progress_token(token.clone()));
    let slept = client.call_tool(params).await.unwrap();
    assert_eq!(slept.is_error, Some(false));
    let mut progress = Vec::new();
    while progress.len() < 3 {
        let notice = tokio::time::timeout(WAIT, notices.recv())
            .await
            .expect("progress notifications")
            .unwrap();
        if let Notice::Progress(p) = notice {
            progress.push(p);
        }
    }
    // rmcp's client puts its own token on every request; what comes back is that one.
    let first = progress[0].progress_token.clone();
    assert!(
        progress.iter().all(|p| p.progress_token == first),
        "{progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "{progress:?}"
    );
    assert_eq!(progress[0].total, Some(350.0));
    let _ = token;

    // Log messages of an upstream reach the client whose call caused them, and the log.
    call(
        &client,
        "a__log",
        json!({ "level": "warning", "message": "careful" }),
    )
    .await;
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Notice::Log(data)) = notices.recv().await
                && data.contains("careful")
            {
                return;
            }
        }
    })
    .await
    .expect("the upstream's log message reached the client");
    let (_, logs) = get_json(&address, "/api/logs?server=a&level=warning", None).await;
    assert!(logs["logs"].to_string().contains("careful"), "{logs}");

    // A per-call timeout: a's calls may take 500 ms.
    let started = Instant::now();
    let late = call(&client, "a__sleep", json!({ "ms": 5000 })).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(late.is_error, Some(true));
    assert!(
        text(&late).contains("did not answer within 500 ms"),
        "{}",
        text(&late)
    );
    // The timed-out call was cancelled upstream, not left running.
    events
        .wait_for("log_entry", |l| {
            l["server"] == "a" && l["message"] == "sleep cancelled"
        })
        .await;

    // A client that cancels: the upstream hears of it.
    let handle = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(
                CallToolRequestParams::new("b__sleep")
                    .with_arguments(json!({ "ms": 10_000 }).as_object().unwrap().clone()),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // Let the call reach the upstream.
    handle.abort();
    events
        .wait_for("log_entry", |l| {
            l["server"] == "b" && l["message"] == "sleep cancelled"
        })
        .await;

    client.cancel().await.unwrap();
    gateway.hub.stop().await;
}

#[tokio::test]
async fn access_rules_decide_who_calls_what_and_every_call_is_audited() {
    let keys = [
        "admin aaaaaaaaaaaaaaaaaaaaaaaa root",
        "write wwwwwwwwwwwwwwwwwwwwwwww dev",
        "read rrrrrrrrrrrrrrrrrrrrrrrr viewer",
        "read iiiiiiiiiiiiiiiiiiiiiiii reader",
        "write cccccccccccccccccccccccc ci",
    ]
    .join(",");
    let config = format!(
        "{}{}\n[[access]]\nprincipals = [\"key:reader\"]\nallow = [\"*__echo\"]\n\n[[access]]\nprincipals = [\"key:ci\"]\nallow = [\"b__*\"]\ndeny = [\"b__crash\"]\n",
        stdio_server("a", &[], ""),
        stdio_server("b", &[], "")
    );
    let gateway = gateway_hub(&config, &[("MCP_HUB_API_KEYS", &keys)]).await;
    let address = gateway.hub.address.clone();
    let admin = Some("aaaaaaaaaaaaaaaaaaaaaaaa");
    let dev = Some("wwwwwwwwwwwwwwwwwwwwwwww");
    let viewer = Some("rrrrrrrrrrrrrrrrrrrrrrrr");
    let reader = Some("iiiiiiiiiiiiiiiiiiiiiiii");
    let ci = Some("cccccccccccccccccccccccc");
    let mut events = Events::open(&address, viewer).await;
    events.wait_state("a", "healthy").await;
    events.wait_state("b", "healthy").await;

    let execute = |key, tool: &str| {
        let address = address.clone();
        let path = format!("/api/tools/{tool}/execute");
        async move {
            post_json(
                &address,
                &path,
                key,
                json!({ "arguments": { "text": "x" } }),
            )
            .await
            .0
        }
    };
    // (who, tool, expected status)
    let matrix = [
        (None, "a__echo", 401),
        (admin, "a__echo", 200),
        (dev, "a__echo", 200),
        (viewer, "a__echo", 403),
        (reader, "a__echo", 200),
        (reader, "a__add", 403),
        (ci, "b__echo", 200),
        (ci, "a__echo", 403),
        (ci, "b__crash", 403),
        // Admin may call anything; the crash answers 502 (the upstream failed).
        (admin, "b__crash", 502),
    ];
    for (key, tool, expected) in matrix {
        assert_eq!(execute(key, tool).await, expected, "{key:?} calling {tool}");
    }
    // The same rules hold over MCP, and a client lists only what it may call.
    let (client, _) = http_client(&address, ci).await;
    let names = tool_names(&client).await;
    assert!(
        names.iter().all(|n| n.starts_with("b__")) && !names.contains(&"b__crash".to_owned()),
        "{names:?}"
    );
    let denied = call(&client, "a__echo", json!({ "text": "x" })).await;
    assert_eq!(denied.is_error, Some(true));
    assert!(text(&denied).contains("key:ci"), "{}", text(&denied));

    // Prompts and resources follow the same rules, by `server__prompt` and `server__<uri>`:
    // `b__*` gives ci b's prompt, not a's, nor `echo://info`, which a serves. (First, b is
    // back from admin's `b__crash` above; the events read from now on are checked below.)
    events.next_state("b", "down").await;
    events.next_state("b", "healthy").await;
    let prompts = prompt_names(&client).await;
    assert_eq!(prompts, vec!["b__greet"]);
    assert!(client.list_all_resources().await.unwrap().is_empty());
    let greet = |prompt: &str, who: &str| {
        GetPromptRequestParams::new(prompt)
            .with_arguments(json!({ "name": who }).as_object().unwrap().clone())
    };
    let refused = |error: rmcp::ServiceError| match error {
        rmcp::ServiceError::McpError(error) => {
            assert_eq!(
                error.code,
                rmcp::model::ErrorCode::INVALID_REQUEST,
                "{error:?}"
            );
            error.message.to_string()
        }
        other => panic!("expected an MCP error, got {other}"),
    };
    let denied = refused(
        client
            .get_prompt(greet("a__greet", "ci"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        denied,
        "`key:ci` may not get the prompt `a__greet`: no [[access]] rule for it allows this prompt"
    );
    let denied = client
        .read_resource(ReadResourceRequestParams::new("echo://info"))
        .await
        .unwrap_err();
    assert_eq!(
        refused(denied),
        "`key:ci` may not read `echo://info` (`a__echo://info`): no [[access]] rule for it allows this resource"
    );
    let greeting = client.get_prompt(greet("b__greet", "ci")).await.unwrap();
    assert!(format!("{:?}", greeting.messages).contains("Hello, ci"));
    client.cancel().await.unwrap();
    // Setting the log level needs an upstream the caller may use.
    let (client, _) = http_client(&address, viewer).await;
    #[allow(
        deprecated,
        reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
    )]
    let denied = client
        .set_level(rmcp::model::SetLevelRequestParams::new(
            rmcp::model::LoggingLevel::Debug,
        ))
        .await
        .unwrap_err();
    assert!(
        refused(denied).starts_with("`key:viewer` may not set the log level"),
        "viewer may use nothing"
    );
    client.cancel().await.unwrap();
    // Admin gets and reads everything. Upstream `a` writes a line for each request it serves:
    // up to admin's last one, it saw only admin's, so ci's denied ones never reached it.
    let (client, _) = http_client(&address, admin).await;
    client.get_prompt(greet("a__greet", "root")).await.unwrap();
    client
        .read_resource(ReadResourceRequestParams::new("echo://info"))
        .await
        .unwrap();
    client.get_prompt(greet("a__greet", "last")).await.unwrap();
    client.cancel().await.unwrap();
    let mut served = Vec::new();
    while served.last().map(String::as_str) != Some("get_prompt greet last") {
        let entry = events
            .wait_for("log_entry", |l| {
                let message = l["message"].as_str().unwrap_or_default();
                l["server"] == "a"
                    && (message.starts_with("get_prompt") || message.starts_with("read_resource"))
            })
            .await;
        served.push(entry["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        served,
        [
            "get_prompt greet root",
            "read_resource echo://info",
            "get_prompt greet last"
        ]
    );
    let (_, listed) = get_json(&address, "/api/tools", reader).await;
    let callable: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["callable"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(callable, vec!["a__echo", "b__echo"]);
    assert_eq!(
        listed["tools"].as_array().unwrap().len(),
        20,
        "the REST catalog lists every tool"
    );

    // Operating upstreams and reading the audit log need admin.
    assert_eq!(
        post_json(&address, "/api/servers/a/restart", dev, json!({}))
            .await
            .0,
        403
    );
    // A percent-encoded action is decoded by the router after the scope check ran on the
    // raw path; the handler checks again.
    let (status, body) = post_json(&address, "/api/servers/a/%73top", dev, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get_json(&address, "/api/%61udit", dev).await;
    assert!(status == 403 || status == 404, "{status} {body}");
    // A huge unknown tool name is cut before it is audited or quoted.
    let huge = "x".repeat(5_000);
    let (status, body) = post_json(
        &address,
        &format!("/api/tools/{huge}/execute"),
        dev,
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.to_string().len() < 1_000, "{}", body.to_string().len());
    let (status, body) = get_json(&address, "/api/audit?principal=key:ci", dev).await;
    assert_eq!(status, 403, "{body}");
    let (status, audit) = get_json(&address, "/api/audit?principal=key:ci", admin).await;
    assert_eq!(status, 200);
    let outcomes: Vec<(&str, &str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["tool"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["via"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("a__echo", "denied", "mcp"),
            ("b__crash", "denied", "rest"),
            ("a__echo", "denied", "rest"),
            ("b__echo", "ok", "rest"),
        ]
    );
    let (_, crashes) = get_json(&address, "/api/audit?tool=b__crash&outcome=failed", admin).await;
    let crash = &crashes["entries"][0];
    assert_eq!(
        (crash["principal"].as_str(), crash["server"].as_str()),
        (Some("key:root"), Some("b"))
    );
    assert!(crash["duration_ms"].as_f64().unwrap() > 0.0);

    // Restart from the API (the dashboard's button).
    let (status, body) = post_json(&address, "/api/servers/a/restart", admin, json!({})).await;
    assert_eq!(status, 202, "{body}");
    events.next_state("a", "starting").await;
    let back = events.next_state("a", "healthy").await;
    assert_eq!(back["restarts"], 1);
    gateway.hub.stop().await;
}

#[tokio::test]
async fn editing_the_config_applies_without_a_restart_and_a_bad_edit_keeps_the_last_good_one() {
    let gateway = gateway_hub(&stdio_server("a", &[], ""), &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("a", "healthy").await;
    let (client, mut notices) = http_client(&address, None).await;
    assert!(tool_names(&client).await.contains(&"echo".to_owned()));

    // Add b (an editor saves by writing a new file and renaming it over the old one).
    let both = format!(
        "{}{}",
        stdio_server("a", &[], ""),
        stdio_server("b", &[], "")
    );
    let temp = gateway.config.with_extension("toml.tmp");
    std::fs::write(&temp, &both).unwrap();
    std::fs::rename(&temp, &gateway.config).unwrap();
    events.wait_state("b", "healthy").await;
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"a__echo".to_owned()) && names.contains(&"b__echo".to_owned()),
        "{names:?}"
    );
    assert!(
        tokio::time::timeout(WAIT, async {
            while let Some(notice) = notices.recv().await {
                if matches!(notice, Notice::ToolsChanged) {
                    return;
                }
            }
        })
        .await
        .is_ok()
    );
    let (_, a_before) = get_json(&address, "/api/servers/a", None).await;

    // A broken file changes nothing and says why.
    std::fs::write(&gateway.config, "[servers.a]\ncommand = \n").unwrap();
    let error = events
        .wait_for("log_entry", |l| {
            l["server"] == "hub" && l["level"] == "error"
        })
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("keeping the last good configuration"),
        "{error}"
    );
    assert_eq!(
        call(&client, "b__echo", json!({ "text": "ok" }))
            .await
            .is_error,
        Some(false)
    );

    // Removing b stops it; a keeps its session (same pid).
    std::fs::write(&gateway.config, stdio_server("a", &[], "")).unwrap();
    events
        .wait_for("tool_update", |u| {
            u["server"] == "b" && u["tools"] == json!([])
        })
        .await;
    events.wait_state("b", "stopped").await;
    let (status, _) = get_json(&address, "/api/servers/b", None).await;
    assert_eq!(status, 404);
    let (_, a_after) = get_json(&address, "/api/servers/a", None).await;
    assert_eq!(a_before["pid"], a_after["pid"]);
    assert!(tool_names(&client).await.contains(&"echo".to_owned()));

    // Changing a restarts it: the old session ends before the new one starts, so its states
    // come in order and the last one shown is the real one.
    std::fs::write(
        &gateway.config,
        stdio_server("a", &[], "call_timeout = \"30s\""),
    )
    .unwrap();
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("healthy") {
        let status = events.wait_for("server_status", |s| s["id"] == "a").await;
        states.push(status["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, ["stopped", "starting", "healthy"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, a_changed) = get_json(&address, "/api/servers/a", None).await;
    assert_eq!(a_changed["state"], "healthy", "{a_changed}");
    assert_ne!(a_changed["pid"], a_after["pid"]);
    client.cancel().await.unwrap();
    gateway.hub.stop().await;
}

#[tokio::test]
async fn an_upstream_that_cannot_start_is_down_with_the_reason_and_the_rest_serve() {
    let config = format!(
        "[gateway]\nrestart_initial = \"50ms\"\nrestart_max = \"100ms\"\n\n[servers.ghost]\ncommand = \"/nonexistent/mcp-server\"\n\n{}",
        stdio_server("a", &[], "")
    );
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    let down = events.next_state("ghost", "down").await;
    assert!(
        down["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot start `/nonexistent/mcp-server`"),
        "{down}"
    );
    events.wait_state("a", "healthy").await;
    let (_, status) = get_json(&address, "/api/status", None).await;
    assert_eq!(status["status"], "degraded");
    let (status, body) = post_json(
        &address,
        "/api/tools/echo/execute",
        None,
        json!({ "arguments": { "text": "x" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["text"], "x");
    let (status, body) = post_json(&address, "/api/tools/nothing/execute", None, json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = post_json(&address, "/api/servers/ghost/explode", None, json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = get_json(&address, "/api/logs?level=loud", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (_, metrics) = get_json(&address, "/api/metrics", None).await;
    assert_eq!(metrics["tools"][0]["tool"], "echo");
    assert_eq!(metrics["tools"][0]["calls"], 1);
    gateway.hub.stop().await;
}

#[tokio::test]
async fn the_hub_runs_mcp_tasks_and_mcp_github_with_a_line_each() {
    let github = fake_github::FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mcp-tasks"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // What a user writes, once the binaries are on PATH:
    let config = "[servers]\n\
        tasks = { command = \"mcp-tasks\", args = [\"stdio\"] }\n\
        github = { command = \"mcp-github\", args = [\"stdio\"] }\n";
    let db = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let gateway = gateway_hub(
        config,
        &[
            ("PATH", path.as_str()),
            ("DATABASE_URL", db.as_str()),
            ("GITHUB_API_URL", github.url.as_str()),
            ("GITHUB_TOKEN", "test-token"),
        ],
    )
    .await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("tasks", "healthy").await;
    events.wait_state("github", "healthy").await;
    let (client, _) = http_client(&address, None).await;
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"create_task".to_owned()) && names.contains(&"list_issues".to_owned()),
        "{names:?}"
    );
    let user = call(
        &client,
        "add_user",
        json!({ "email": "ada@example.com", "name": "Ada" }),
    )
    .await;
    assert_eq!(user.is_error, Some(false), "{}", text(&user));
    let created = call(
        &client,
        "create_task",
        json!({
            "title": "through the gateway",
            "description": "dogfooding",
            "assignee_id": "ada@example.com",
            "repository": "acme/api",
        }),
    )
    .await;
    assert_eq!(created.is_error, Some(false), "{}", text(&created));
    let issues = call(
        &client,
        "list_issues",
        json!({ "owner": "acme", "repo": "api" }),
    )
    .await;
    assert_eq!(issues.is_error, Some(false), "{}", text(&issues));
    client.cancel().await.unwrap();
    gateway.hub.stop().await;
}

#[test]
fn the_example_config_parses_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hub.toml");
    let config = mcp_hub::gateway::GatewayConfig::from_path(&path).unwrap();
    let ids: Vec<&str> = config.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec!["github", "tasks"]);
    assert_eq!(config.prefix, mcp_hub::gateway::PrefixMode::Conditional);
    assert_eq!(config.call_timeout, Duration::from_secs(60));
}

/// An MCP session over bare HTTP, as a client without rmcp sends it (no progress token unless
/// asked): what the gateway's short way for plain `tools/call` answers.
#[derive(Clone)]
struct RawSession {
    url: String,
    id: String,
}

impl RawSession {
    async fn open(address: &str) -> Self {
        let url = format!("http://{address}/mcp");
        let response = Self::post_to(
            &url,
            None,
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
                "clientInfo": {"name": "raw", "version": "1"}}}),
        )
        .await;
        assert_eq!(response.status(), 200);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(response.text().await.unwrap().contains("serverInfo"));
        let session = Self { url, id };
        let response = session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(response.status(), 202);
        session
    }

    async fn post_to(url: &str, session: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = http()
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        request.send().await.unwrap()
    }

    async fn post(&self, body: Value) -> reqwest::Response {
        Self::post_to(&self.url, Some(&self.id), body).await
    }

    /// A `tools/call`: the response's content type and its JSON-RPC message.
    async fn call(&self, id: u64, tool: &str, arguments: Value) -> (String, Value) {
        self.send_call(
            id,
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}),
        )
        .await
    }

    /// A `tools/call` in a task of its own.
    fn spawn_call(
        &self,
        id: u64,
        tool: &'static str,
        arguments: Value,
    ) -> tokio::task::JoinHandle<(String, Value)> {
        let session = self.clone();
        tokio::spawn(async move { session.call(id, tool, arguments).await })
    }

    /// A `tools/call` with `_meta`.
    async fn call_with_meta(
        &self,
        id: u64,
        tool: &str,
        arguments: Value,
        meta: Value,
    ) -> (String, Value) {
        self.send_call(
            id,
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, "_meta": meta}}),
        )
        .await
    }

    async fn send_call(&self, id: u64, request: Value) -> (String, Value) {
        let (kind, body) = self.call_raw(request).await;
        let message = messages_of(&kind, &body)
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(id)))
            .unwrap_or_else(|| panic!("no answer in {body}"));
        (kind, message)
    }

    /// A request answered with 200: the response's content type and body.
    async fn call_raw(&self, request: Value) -> (String, String) {
        let response = self.post(request).await;
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        (kind, response.text().await.unwrap())
    }
}

/// The JSON-RPC messages of a response body, JSON or SSE, in order.
fn messages_of(kind: &str, body: &str) -> Vec<Value> {
    if kind.starts_with("text/event-stream") {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .collect()
    } else {
        vec![serde_json::from_str(body).unwrap()]
    }
}

/// Starts `call` (a 10 s `sleep` on upstream `a`), hangs up once it reached the upstream, and
/// waits until the upstream says it was cancelled.
async fn hang_up(
    events: &mut Events,
    call: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let call = tokio::spawn(call);
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    events
        .wait_for("log_entry", |l| {
            l["server"] == "a" && l["message"] == "sleep cancelled"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_call_is_answered_as_json_with_errors_cancellation_and_audit() {
    let config = format!(
        "[gateway]\nprefix = \"always\"\n\n{}",
        stdio_server("a", &[], "")
    );
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("a", "healthy").await;
    let session = RawSession::open(&address).await;

    // A plain call: one JSON body, the upstream's structured answer in it. (rmcp handles
    // `notifications/initialized` after answering it, so the very first calls may still take
    // rmcp's way: an SSE stream with the same answer.)
    let deadline = Instant::now() + Duration::from_secs(2);
    let (kind, answer) = loop {
        let (kind, answer) = session.call(1, "a__echo", json!({"text": "hi"})).await;
        if kind == "application/json" || Instant::now() > deadline {
            break (kind, answer);
        }
        assert_eq!(answer["result"]["structuredContent"]["text"], "hi");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(kind, "application/json");
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["text"], "hi");
    // What the upstream logs during the call comes ahead of the answer, on the call's own
    // stream (a stdio upstream's pipe keeps the order it sent them in).
    let (kind, body) = session
        .call_raw(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "a__log", "arguments": {"level": "warning", "message": "careful"}}}),
        )
        .await;
    assert!(kind.starts_with("text/event-stream"), "{kind}: {body}");
    let messages = messages_of(&kind, &body);
    assert_eq!(messages.len(), 2, "{body}");
    assert_eq!(messages[0]["method"], "notifications/message", "{body}");
    assert_eq!(messages[0]["params"]["data"], "careful", "{body}");
    assert_eq!(messages[1]["id"], 9, "{body}");
    assert_eq!(messages[1]["result"]["isError"], false, "{body}");
    // An upstream's huge log message is cut in the merged log. (Its stderr copy is an
    // overlong line, which once ended the reading of the child's stderr: the `sleep
    // cancelled` lines below would never arrive.)
    let (_, answer) = session
        .call(
            8,
            "a__log",
            json!({"level": "info", "message": "y".repeat(20_000)}),
        )
        .await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let (_, logs) = get_json(&address, "/api/logs?server=a&limit=1000", None).await;
    let cut = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .find(|m| m.starts_with("yyy") && m.ends_with("[message longer than 8 KiB cut]"))
        .unwrap_or_else(|| panic!("no cut message in {logs}"));
    assert!(cut.len() <= 8 * 1024 + 40, "{}", cut.len());
    // An unknown tool is a protocol error, as on rmcp's way.
    let (_, answer) = session.call(2, "a__nope", json!({})).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a__nope")
    );
    // The upstream's own JSON-RPC error passes through.
    let (_, answer) = session
        .call(3, "a__fail", json!({"message": "no", "code": -32001}))
        .await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    // A call with a progress token goes rmcp's way (an SSE stream), and answers the same.
    let response = session
        .post(
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "a__echo", "arguments": {"text": "sse"}, "_meta": {"progressToken": "p"}}}),
        )
        .await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(response.text().await.unwrap().contains("\"sse\""));
    // An unknown session is refused by rmcp, never served.
    let response = RawSession::post_to(
        &session.url,
        Some("no-such-session"),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "a__echo", "arguments": {"text": "x"}}}),
    )
    .await;
    assert_eq!(response.status(), 404);

    // `notifications/cancelled` for a call answered this way reaches the upstream.
    let sleeping = session.spawn_call(6, "a__sleep", json!({"ms": 10_000}));
    tokio::time::sleep(Duration::from_millis(300)).await; // Let the call reach the upstream.
    let started = Instant::now();
    let response = session
        .post(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 6, "reason": "changed my mind"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    events
        .wait_for("log_entry", |l| {
            l["server"] == "a" && l["message"] == "sleep cancelled"
        })
        .await;
    let (_, answer) = tokio::time::timeout(WAIT, sleeping).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer["id"], 6);

    // A client that hangs up cancels its call too, over MCP and over REST.
    let caller = session.clone();
    hang_up(&mut events, async move {
        caller.call(7, "a__sleep", json!({"ms": 10_000})).await;
    })
    .await;
    let rest = address.clone();
    hang_up(&mut events, async move {
        let body = json!({"arguments": {"ms": 10_000}});
        post_json(&rest, "/api/tools/a__sleep/execute", None, body).await;
    })
    .await;
    let (_, audit) = get_json(&address, "/api/audit?limit=1", None).await;
    assert_eq!(
        (&audit["entries"][0]["outcome"], &audit["entries"][0]["via"]),
        (&json!("cancelled"), &json!("rest")),
        "{audit}"
    );

    // Every call is audited as it ended (newest first; the echo calls all succeeded).
    let (_, audit) = get_json(&address, "/api/audit", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let entries: Vec<&Value> = entries.iter().filter(|e| e["via"] == "mcp").collect();
    let outcomes: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["tool"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .filter(|&(tool, outcome)| (tool, outcome) != ("a__echo", "ok"))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("a__sleep", "cancelled"),
            ("a__sleep", "cancelled"),
            ("a__fail", "failed"),
            ("a__nope", "unknown_tool"),
            ("a__log", "ok"),
            ("a__log", "ok"),
        ],
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_call_goes_straight_to_an_http_upstream_with_logs_errors_timeouts_and_cancellation()
{
    // `web` declares logging, `quiet` does not; `quiet` wants the configured credentials on
    // every request, once each, so the short way must send what rmcp's way sends.
    let (_web, web_url, _) = http_upstream_with_stderr("127.0.0.1:0", "web", &[]).await;
    let (_quiet, quiet_url, mut stderr) = http_upstream_with_stderr(
        "127.0.0.1:0",
        "quiet",
        &[
            "--no-logging",
            "--require-header",
            "authorization=Bearer s3cret",
            "--require-header",
            "x-team=blue",
        ],
    )
    .await;
    let config = format!(
        "[gateway]\nprefix = \"always\"\n\n[servers.web]\nurl = {web_url:?}\n\n\
         [servers.quiet]\nurl = {quiet_url:?}\ncall_timeout = \"500ms\"\n\
         bearer_token = \"s3cret\"\nheaders = {{ x-team = \"blue\" }}\n"
    );
    let gateway = gateway_hub(&config, &[]).await;
    let address = gateway.hub.address.clone();
    let mut events = Events::open(&address, None).await;
    events.wait_state("web", "healthy").await;
    events.wait_state("quiet", "healthy").await;
    let session = RawSession::open(&address).await;

    // The client's `_meta` reaches the upstream as it sent it: without the progress token
    // rmcp's client adds to every request, so the call did not go through rmcp's client.
    // (Which way out a call takes does not depend on the way in.) The gateway learns each of
    // its sessions with `quiet` as rmcp initializes it, which can end just after the upstream
    // shows healthy; a call on a session not learnt yet takes rmcp's way. So: within a few
    // calls, the short way.
    let mut answer = Value::Null;
    for id in 100..150 {
        answer = session
            .call_with_meta(id, "quiet__meta", json!({}), json!({"trace": "t1"}))
            .await
            .1;
        if answer["result"]["structuredContent"] == json!({"trace": "t1"}) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer["result"]["structuredContent"],
        json!({"trace": "t1"}),
        "{answer}"
    );
    // A REST call has no client awaiting log messages: it goes the short way to `web` too.
    let (status, body) = post_json(
        &address,
        "/api/tools/web__meta/execute",
        None,
        json!({"arguments": {}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"], json!({}), "{body}");
    // An MCP client of `web`, which may log, gets rmcp's way (which keeps the upstream's log
    // messages ahead of the answer): there rmcp adds its token.
    let (_, answer) = session
        .call_with_meta(2, "web__meta", json!({}), json!({"trace": "t2"}))
        .await;
    let meta = &answer["result"]["structuredContent"];
    assert_eq!(meta["trace"], "t2", "{answer}");
    assert!(meta.get("progressToken").is_some(), "{answer}");

    // What `web` logs during the call comes to the client on the call's stream, ahead of the
    // answer, and goes to the merged log. (rmcp servers send log messages on the session's
    // own stream, so the protocol itself does not order them with the answer; the stdio test
    // above shows the order strictly.)
    let (kind, body) = session
        .call_raw(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "web__log", "arguments": {"level": "warning", "message": "careful"}}}),
        )
        .await;
    let messages = messages_of(&kind, &body);
    let answer = messages.last().unwrap();
    assert_eq!(answer["id"], 3, "{body}");
    assert_eq!(answer["result"]["isError"], false, "{body}");
    // Not asserted here: that the message came first (see above).
    if messages.len() > 1 {
        assert_eq!(messages[0]["method"], "notifications/message", "{body}");
        assert_eq!(messages[0]["params"]["data"], "careful", "{body}");
    }
    // `quiet` logs anyway: on the short way too, its message reaches the merged log.
    let (_, answer) = session
        .call(
            4,
            "quiet__log",
            json!({"level": "warning", "message": "hush"}),
        )
        .await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, logs) = get_json(&address, "/api/logs?level=warning", None).await;
        let text = logs["logs"].to_string();
        if text.contains("careful") && text.contains("hush") {
            break;
        }
        assert!(Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // On the short way: the upstream's JSON-RPC error passes through; a tool error stays a
    // result.
    let (_, answer) = session
        .call(5, "quiet__fail", json!({"message": "no", "code": -32001}))
        .await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    let (_, answer) = session
        .call(6, "quiet__fail", json!({"message": "no"}))
        .await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");

    // A call that outlives its timeout fails naming the upstream, and is cancelled there.
    let started = Instant::now();
    let (_, answer) = session.call(7, "quiet__sleep", json!({"ms": 5000})).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = answer.to_string();
    assert!(text.contains("did not answer within 500 ms"), "{answer}");
    assert!(text.contains("quiet"), "{answer}");
    stderr_says(&mut stderr, "sleep cancelled").await;

    // A client's `notifications/cancelled` reaches the upstream.
    let sleeping = session.spawn_call(8, "quiet__sleep", json!({"ms": 400}));
    tokio::time::sleep(Duration::from_millis(150)).await; // Let the call reach the upstream.
    let response = session
        .post(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 8, "reason": "changed my mind"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    stderr_says(&mut stderr, "sleep cancelled").await;
    let (_, answer) = tokio::time::timeout(WAIT, sleeping).await.unwrap().unwrap();
    assert_eq!(answer["id"], 8);

    // Sampling the upstream asks for during a call reaches the calling client (on its
    // session's stream), and the client's answer goes back to the upstream.
    let mut stream = http()
        .get(&session.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let sampling = session.spawn_call(9, "quiet__sample", json!({"prompt": "hello?"}));
    let request = tokio::time::timeout(WAIT, async {
        let mut seen = String::new();
        loop {
            let chunk = stream
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let found = seen
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|m| m["method"] == "sampling/createMessage");
            if let Some(request) = found {
                return request;
            }
        }
    })
    .await
    .expect("the sampling request reached the client");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"], "hello?",
        "{request}"
    );
    let response = session
        .post(json!({"jsonrpc": "2.0", "id": request["id"], "result": {
            "role": "assistant", "model": "m",
            "content": {"type": "text", "text": "sampled!"}}}))
        .await;
    assert_eq!(response.status(), 202);
    let (_, answer) = tokio::time::timeout(WAIT, sampling).await.unwrap().unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"], "sampled!",
        "{answer}"
    );
    drop(stream);

    // The calls are audited like any other.
    let (_, audit) = get_json(&address, "/api/audit?limit=3", None).await;
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["ok", "cancelled", "timeout"], "{audit}");
    gateway.hub.stop().await;
}
