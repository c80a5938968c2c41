//! The lab's runner against servers whose behaviour is known: a fixed delay, a fixed error
//! rate and a one-second stall (an rmcp server over Streamable HTTP, in this process), and
//! `echo_upstream` over stdio; then `mcp-hub lab run` as a user runs it, its exit codes and
//! its result file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mcp_hub::lab::{ErrorKind, Progress, RunReport, Suite, run_suite};
use rmcp::{
    ErrorData as McpError, ServerHandler,
    handler::server::common::schema_for_empty_input,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

const HUB: &str = env!("CARGO_BIN_EXE_mcp-hub");

/// A server of known behaviour. `delay {ms}` answers after `ms`; `every_tenth_fails` fails
/// calls 10, 20, 30, … (of its own count); `stall_once {after}` answers at once, except that
/// call number `after` starts a one-second stall of the whole tool: it and every call that
/// arrives during it answer when the second is over.
#[derive(Clone, Default)]
struct Known {
    calls: Arc<AtomicU64>,
    stall_until: Arc<Mutex<Option<tokio::time::Instant>>>,
}

const STALL: Duration = Duration::from_secs(1);

impl ServerHandler for Known {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("known", "1.0.0"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<rmcp::RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = ["delay", "every_tenth_fails", "stall_once"]
            .into_iter()
            .map(|name| Tool::new(name, "known behaviour", schema_for_empty_input()))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<rmcp::RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let argument = |name: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(name))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let result = match request.name.as_ref() {
            "delay" => {
                tokio::time::sleep(Duration::from_millis(argument("ms"))).await;
                CallToolResult::structured(json!({ "n": n, "ok": true }))
            }
            "every_tenth_fails" if n.is_multiple_of(10) => {
                CallToolResult::error(vec![ContentBlock::text(format!("call {n} fails"))])
            }
            "every_tenth_fails" => CallToolResult::structured(json!({ "n": n })),
            "stall_once" => {
                let until = {
                    let mut stall = self.stall_until.lock().unwrap();
                    if n == argument("after") {
                        *stall = Some(tokio::time::Instant::now() + STALL);
                    }
                    *stall
                };
                if let Some(until) = until {
                    tokio::time::sleep_until(until).await;
                }
                CallToolResult::structured(json!({ "n": n }))
            }
            other => return Err(McpError::invalid_params(format!("no tool {other}"), None)),
        };
        Ok(result.into())
    }
}

/// Serves `Known` at `http://<address>/mcp` until the test ends.
async fn known_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // One server state for every session, so counts are the server's, not a session's.
    let state = Known::default();
    let service = StreamableHttpService::new(
        move || Ok(state.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    tokio::spawn(mcp_core::http::serve(
        listener,
        app,
        std::future::pending(),
        CancellationToken::new(),
    ));
    format!("http://{address}/mcp")
}

/// The tests that measure time take turns, so they do not measure each other.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn suite(text: &str) -> Suite {
    Suite::parse(text, Path::new(".")).unwrap()
}

async fn run(text: &str) -> RunReport {
    run_suite(&suite(text), Arc::new(Progress::default())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_delay_shows_as_the_latency_and_a_fixed_error_rate_as_tool_errors() {
    let _turn = TIMING.lock().await;
    let url = known_server().await;
    let report = run(&format!(
        r#"
        name = "known"
        [target]
        url = "{url}"

        [[steps]]
        kind = "list_tools"
        expect = {{ contains = "every_tenth_fails" }}

        [[steps]]
        name = "delay 20 ms"
        kind = "call"
        tool = "delay"
        arguments = {{ ms = 20 }}
        calls = 200
        concurrency = 8
        expect = {{ p99_below_ms = 250, json_path = "structuredContent.ok", equals = true }}

        [[steps]]
        name = "one in ten fails"
        kind = "call"
        tool = "every_tenth_fails"
        calls = 500
        concurrency = 4
        expect = {{ error_rate_below = 0.2 }}
        "#
    ))
    .await;
    assert!(report.session.error.is_none(), "{report:?}");
    let server = report.session.server.as_ref().unwrap();
    assert_eq!(server.name, "known");
    assert!(report.session.initialize_ms > 0.0);
    assert_eq!(report.steps.len(), 3);

    let list = &report.steps[0];
    assert_eq!((list.requests, list.ok), (1, 1), "{list:?}");
    assert!(list.passed);

    let delay = &report.steps[1];
    assert_eq!((delay.requests, delay.ok), (200, 200), "{delay:?}");
    // 20 ms of sleep: never less, and on a loopback not much more (the margin is for a
    // busy CI machine).
    assert!(delay.latency.min >= 20.0, "{:?}", delay.latency);
    assert!(
        delay.latency.p50 < 35.0 && delay.latency.p50 >= 20.0,
        "{:?}",
        delay.latency
    );
    // 8 at a time, 20 ms each: at most 400 per second.
    assert!(
        delay.throughput > 200.0 && delay.throughput <= 400.0,
        "{}",
        delay.throughput
    );
    assert!(delay.passed, "{:?}", delay.expectations);
    assert_eq!(delay.histogram.iter().map(|b| b.count).sum::<u64>(), 200);
    assert_eq!(delay.timeline.iter().map(|s| s.requests).sum::<u64>(), 200);

    // Only tool calls count: these are the server's calls 201..=700, of which exactly 50 are
    // multiples of ten.
    let flaky = &report.steps[2];
    assert_eq!(flaky.requests, 500);
    assert_eq!(flaky.errors[&ErrorKind::Tool], 50, "{flaky:?}");
    assert_eq!(flaky.ok, 450);
    for kind in [
        ErrorKind::Transport,
        ErrorKind::Protocol,
        ErrorKind::Timeout,
    ] {
        assert_eq!(flaky.errors[&kind], 0, "{kind:?}");
    }
    assert!(
        flaky.error_samples[0].message.contains("fails"),
        "{:?}",
        flaky.error_samples
    );
    assert!(flaky.passed, "{:?}", flaky.expectations);
    assert!(report.passed);

    // Failing expectations fail the run, each named.
    let failing = run(&format!(
        r#"
        name = "strict"
        [target]
        url = "{url}"
        [[steps]]
        kind = "call"
        tool = "every_tenth_fails"
        calls = 20
        [[steps]]
        kind = "call"
        tool = "delay"
        arguments = {{ ms = 5 }}
        calls = 5
        expect = {{ p99_below_ms = 1, contains = "nowhere" }}
        "#
    ))
    .await;
    assert!(!failing.passed);
    let strict = &failing.steps[0];
    assert_eq!(strict.errors[&ErrorKind::Tool], 2, "{strict:?}");
    assert!(!strict.passed);
    assert_eq!(strict.expectations[0].expectation, "no errors");
    let delay = &failing.steps[1];
    assert_eq!(delay.errors[&ErrorKind::Expectation], 5);
    let failed: Vec<&str> = delay
        .expectations
        .iter()
        .filter(|v| !v.passed)
        .map(|v| v.expectation.as_str())
        .collect();
    assert_eq!(failed, ["result contains \"nowhere\"", "p99 below 1 ms"]);
    // Expectation misses are not "errors" of the server.
    assert!(
        delay
            .expectations
            .iter()
            .any(|v| v.expectation == "no errors" && v.passed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_for_a_duration_serves_what_the_server_can() {
    let _turn = TIMING.lock().await;
    let url = known_server().await;
    let started = Instant::now();
    let report = run(&format!(
        r#"
        name = "for a second"
        [target]
        url = "{url}"
        [[steps]]
        kind = "call"
        tool = "delay"
        arguments = {{ ms = 10 }}
        duration = "1s"
        concurrency = 4
        "#
    ))
    .await;
    let step = &report.steps[0];
    // Four at a time, 10 ms each, for a second: at most 400 (plus the four in flight at the
    // end); fewer on a busy machine, but the loop kept going all the second.
    assert!(step.requests > 150 && step.requests <= 404, "{step:?}");
    assert!(step.elapsed_ms >= 1000.0, "{step:?}");
    assert_eq!(step.ok, step.requests);
    assert_eq!(step.load.mode, "duration");
    assert_eq!(step.load.calls, None);
    assert!(step.passed, "{step:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_stall_shows_in_the_p99_of_a_fixed_rate_step() {
    let _turn = TIMING.lock().await;
    let url = known_server().await;
    let started = Instant::now();
    let report = run(&format!(
        r#"
        name = "stall"
        [target]
        url = "{url}"
        [[steps]]
        kind = "call"
        tool = "stall_once"
        arguments = {{ after = 100 }}
        rate = 200
        duration = "3s"
        concurrency = 4
        "#
    ))
    .await;
    let step = &report.steps[0];
    assert_eq!((step.requests, step.ok), (600, 600), "{step:?}");
    // Sent on schedule, the run takes its three seconds, not three plus the stall.
    assert!(started.elapsed() < Duration::from_millis(4500));
    // About 200 requests were due during the stall, four of them in flight: measured from
    // when each was due, well over 1 % waited most of a second (measured from sending, only
    // the four would have); the median did not (the margin is for a busy CI machine, where
    // catching up after the stall takes a while).
    assert!(step.latency.p99 > 800.0, "{:?}", step.latency);
    assert!(step.latency.max >= 990.0, "{:?}", step.latency);
    assert!(step.latency.p50 < 200.0, "{:?}", step.latency);
    // The second the stall began holds its worst latency.
    let worst = step
        .timeline
        .iter()
        .max_by(|a, b| a.max_ms.total_cmp(&b.max_ms))
        .unwrap();
    assert!(
        worst.at_s <= 2 && worst.max_ms >= 990.0,
        "{:?}",
        step.timeline
    );
    assert!(step.send_lag_p99_ms.is_some());
}

fn echo_upstream() -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("echo_upstream");
    assert!(
        path.exists(),
        "build the examples first: cargo build --examples"
    );
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_is_driven_through_one_process_with_requests_in_flight_together() {
    let _turn = TIMING.lock().await;
    let report = run(&format!(
        r#"
        name = "stdio"
        timeout = "2s"
        [target]
        command = "{}"
        args = ["stdio", "--name", "lab-echo"]

        [[steps]]
        kind = "initialize"
        calls = 3

        [[steps]]
        kind = "call"
        tool = "echo"
        arguments = {{ text = "hello lab" }}
        calls = 300
        concurrency = 16
        expect = {{ contains = "hello lab", json_path = "$.structuredContent.text", equals = "hello lab" }}

        [[steps]]
        name = "overlapping sleeps"
        kind = "call"
        tool = "sleep"
        arguments = {{ ms = 300 }}
        calls = 8
        concurrency = 8

        [[steps]]
        name = "too slow"
        kind = "call"
        tool = "sleep"
        arguments = {{ ms = 5000 }}
        calls = 1
        expect = {{ error_rate_below = 1.0 }}
        "#,
        echo_upstream()
    ))
    .await;
    assert_eq!(report.session.server.as_ref().unwrap().name, "lab-echo");
    let initialize = &report.steps[0];
    assert_eq!(
        (initialize.requests, initialize.ok),
        (3, 3),
        "{initialize:?}"
    );
    let echo = &report.steps[1];
    assert_eq!((echo.requests, echo.ok), (300, 300), "{echo:?}");
    assert!(echo.passed);
    // Eight sleeps of 300 ms at once through one pipe: together, not one after another.
    let sleeps = &report.steps[2];
    assert_eq!(sleeps.ok, 8);
    assert!(sleeps.elapsed_ms < 1500.0, "{sleeps:?}");
    let slow = &report.steps[3];
    assert_eq!(slow.errors[&ErrorKind::Timeout], 1, "{slow:?}");
    assert!(!slow.passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_a_failed_report_not_a_hang() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = run(&format!(
        r#"
        name = "nowhere"
        [target]
        url = "http://127.0.0.1:{port}/mcp"
        [[steps]]
        kind = "list_tools"
        "#
    ))
    .await;
    assert!(!report.passed);
    assert!(report.steps.is_empty());
    let error = report.session.error.unwrap();
    assert!(error.contains("connecting to 127.0.0.1"), "{error}");

    let report = run(r#"
        name = "no such command"
        [target]
        command = "/nonexistent/mcp-server"
        [[steps]]
        kind = "list_tools"
        "#)
    .await;
    assert!(
        report
            .session
            .error
            .unwrap()
            .contains("/nonexistent/mcp-server")
    );
}

#[test]
fn bad_suites_are_refused_with_what_is_wrong() {
    let cases = [
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"",
            "steps are missing",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\ncommand = \"a\"\n[[steps]]\nkind = \"list_tools\"",
            "exactly one of url, command or upstream",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"https://h/mcp\"\n[[steps]]\nkind = \"list_tools\"",
            "https is not spoken",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"call\"",
            "steps[0].tool is required",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"call\"\ntool = \"t\"\nrate = 10",
            "steps[0].duration is required with rate",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"call\"\ntool = \"t\"\nrate = 0\nduration = \"1s\"",
            "must be a positive number of calls per second",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"call\"\ntool = \"t\"\ncalls = 5\nrate = 5",
            "exclude each other",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"list_tools\"\nconcurency = 3",
            "unknown field `concurency`",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"list_tools\"\nexpect = { json_path = \"a\" }",
            "equals is required with json_path",
        ),
        (
            "name = \"x\"\n[target]\nurl = \"http://h/mcp\"\n[[steps]]\nkind = \"list_tools\"\nexpect = { error_rate_below = 2 }",
            "error_rate_below must be above 0 and at most 1",
        ),
        (
            "name = \"x\"\n[target]\nupstream = \"tasks\"\nhub = \"/nonexistent/hub.toml\"\n[[steps]]\nkind = \"list_tools\"",
            "target upstream \"tasks\"",
        ),
    ];
    for (text, wanted) in cases {
        let error = Suite::parse(text, Path::new(".")).unwrap_err().to_string();
        assert!(
            error.contains(wanted),
            "{text}\n→ {error}\n(wanted {wanted:?})"
        );
    }
}

#[test]
fn a_hub_toml_upstream_is_a_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hub.toml"),
        "[servers.tasks]\ncommand = \"mcp-tasks\"\nargs = [\"stdio\"]\n",
    )
    .unwrap();
    let path = dir.path().join("suite.toml");
    std::fs::write(
        &path,
        "name = \"t\"\n[target]\nupstream = \"tasks\"\n[[steps]]\nkind = \"list_tools\"\n",
    )
    .unwrap();
    let suite = Suite::from_path(&path).unwrap();
    assert_eq!(suite.target.describe(), "mcp-tasks stdio");
    std::fs::write(
        &path,
        "name = \"t\"\n[target]\nupstream = \"github\"\n[[steps]]\nkind = \"list_tools\"\n",
    )
    .unwrap();
    let error = Suite::from_path(&path).unwrap_err().to_string();
    assert!(error.contains("no such server (it has: tasks)"), "{error}");
}

#[test]
fn lab_run_prints_a_summary_writes_the_result_and_exits_by_the_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.toml");
    let write = |expect: &str| {
        std::fs::write(
            &suite,
            format!(
                "name = \"echo check\"\n[target]\ncommand = \"{}\"\nargs = [\"stdio\"]\n[[steps]]\nkind = \"call\"\ntool = \"echo\"\narguments = {{ text = \"hi\" }}\ncalls = 20\nconcurrency = 4\nexpect = {{ {expect} }}\n",
                echo_upstream()
            ),
        )
        .unwrap();
    };
    let out = dir.path().join("runs");
    let lab = |args: &[&str]| {
        Command::new(HUB)
            .args(["lab", "run"])
            .arg(&suite)
            .arg("--out")
            .arg(&out)
            .args(args)
            .output()
            .unwrap()
    };

    write("contains = \"hi\"");
    let passed = lab(&[]);
    let stdout = String::from_utf8_lossy(&passed.stdout);
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    assert!(stdout.contains("echo check"), "{stdout}");
    assert!(stdout.contains("PASSED"), "{stdout}");
    let result_line = stdout.lines().find(|l| l.starts_with("result: ")).unwrap();
    let result: RunReport =
        serde_json::from_slice(&std::fs::read(result_line.trim_start_matches("result: ")).unwrap())
            .unwrap();
    assert_eq!(result.steps[0].ok, 20);
    assert!(result.passed);

    write("contains = \"bye\"");
    let failed = lab(&[]);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("expected result contains \"bye\""),
        "{stdout}"
    );

    // --target replaces the suite's: here, a server that is not there.
    write("contains = \"hi\"");
    let elsewhere = lab(&["--target", "http://127.0.0.1:9/mcp"]);
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&elsewhere.stdout).contains("session: FAILED"));

    let https = lab(&["--target", "https://127.0.0.1:9/mcp"]);
    assert_eq!(https.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&https.stderr).contains("https is not spoken"));

    std::fs::write(&suite, "name = \"broken\"\n[target]\n").unwrap();
    let broken = lab(&[]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&broken.stderr)
            .contains("needs exactly one of url, command or upstream"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
}

const ADMIN: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
const READER: &str = "rrrrrrrrrrrrrrrrrrrrrrrr";

/// One REST call to the hub: its status and JSON (or text) body.
async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, String) {
    support::call_with_text(http, method, url, Some(key), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_keeps_suites_and_runs_and_serves_their_reports() {
    use reqwest::Method;
    let _turn = TIMING.lock().await;
    let url = known_server().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("hub.db").display());
    let keys = format!("admin {ADMIN} ops,read {READER} viewer");
    let env = [("MCP_HUB_API_KEYS", keys.as_str())];
    let hub = support::spawn_hub(&["--database-url", &database], &env).await;
    let base = format!("http://{}/api/lab", hub.address);
    let http = reqwest::Client::new();
    let definition = |name: &str, ms: u64| {
        format!(
            "name = \"{name}\"\n[target]\nurl = \"{url}\"\n[[steps]]\nkind = \"call\"\ntool = \"delay\"\narguments = {{ ms = {ms} }}\ncalls = 5\nexpect = {{ json_path = \"structuredContent.ok\", equals = true }}\n"
        )
    };

    // Changing suites is the admin's: a suite may start a command.
    let (status, _, _) = api(
        &http,
        Method::POST,
        &format!("{base}/suites"),
        READER,
        Some(json!({ "definition": definition("quick", 1) })),
    )
    .await;
    assert_eq!(status, 403);
    let (status, quick, text) = api(
        &http,
        Method::POST,
        &format!("{base}/suites"),
        ADMIN,
        Some(json!({ "definition": definition("quick", 1), "interval_ms": 60000 })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(quick["name"], "quick");
    assert_eq!(quick["interval"], 60000);
    let quick_id = quick["id"].as_str().unwrap().to_owned();
    let (status, _, text) = api(
        &http,
        Method::POST,
        &format!("{base}/suites"),
        ADMIN,
        Some(json!({ "definition": definition("quick", 1) })),
    )
    .await;
    assert_eq!(status, 409, "{text}");
    let (status, error, _) = api(
        &http,
        Method::POST,
        &format!("{base}/suites"),
        ADMIN,
        Some(json!({ "definition": "name = \"x\"" })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["details"]["field"], "definition", "{error}");
    let (status, slow, _) = api(
        &http,
        Method::POST,
        &format!("{base}/suites"),
        ADMIN,
        Some(json!({ "definition": definition("slow", 400) })),
    )
    .await;
    assert_eq!(status, 201);
    let slow_id = slow["id"].as_str().unwrap().to_owned();
    let (status, list, _) = api(&http, Method::GET, &format!("{base}/suites"), READER, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["quick", "slow"]);

    // A run waited for: kept, with its report as JSON and HTML.
    let (status, run, text) = api(
        &http,
        Method::POST,
        &format!("{base}/runs"),
        ADMIN,
        Some(json!({ "suite_id": quick_id, "wait": true })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(run["passed"], true, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let (status, detail, _) = api(
        &http,
        Method::GET,
        &format!("{base}/runs/{run_id}"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(detail["report"]["steps"][0]["ok"], 5, "{detail}");
    let (status, report, _) = api(
        &http,
        Method::GET,
        &format!("{base}/runs/{run_id}/report.json"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(report["suite"], "quick");
    let (status, _, html) = api(
        &http,
        Method::GET,
        &format!("{base}/runs/{run_id}/report.html"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg class=\"chart percentiles\""), "{html}");
    let (status, _, _) = api(
        &http,
        Method::GET,
        &format!("{base}/runs/{run_id}/report.pdf"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A run in the background; the same suite cannot start again until it ends.
    let (status, _, text) = api(
        &http,
        Method::POST,
        &format!("{base}/runs"),
        ADMIN,
        Some(json!({ "suite_id": slow_id })),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let (status, _, text) = api(
        &http,
        Method::POST,
        &format!("{base}/runs"),
        ADMIN,
        Some(json!({ "suite_id": slow_id })),
    )
    .await;
    assert_eq!(status, 409, "{text}");
    let (_, suite, _) = api(
        &http,
        Method::GET,
        &format!("{base}/suites/{slow_id}"),
        READER,
        None,
    )
    .await;
    assert_eq!(suite["running"], true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, runs, _) = api(
            &http,
            Method::GET,
            &format!("{base}/runs?suite_id={slow_id}"),
            READER,
            None,
        )
        .await;
        if runs["runs"].as_array().unwrap().len() == 1 {
            assert_eq!(runs["runs"][0]["passed"], true, "{runs}");
            break;
        }
        assert!(Instant::now() < deadline, "the background run never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = api(
        &http,
        Method::POST,
        &format!("{base}/runs"),
        ADMIN,
        Some(json!({ "suite_id": "nope" })),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = api(
        &http,
        Method::GET,
        &format!("{base}/runs?limit=0"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 422);

    // Deleting a suite keeps its runs; all of it survives a restart.
    let (status, _, _) = api(
        &http,
        Method::DELETE,
        &format!("{base}/suites/{quick_id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = api(
        &http,
        Method::GET,
        &format!("{base}/suites/{quick_id}"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 404);
    hub.stop().await;
    let hub = support::spawn_hub(&["--database-url", &database], &env).await;
    let base = format!("http://{}/api/lab", hub.address);
    let (status, detail, _) = api(
        &http,
        Method::GET,
        &format!("{base}/runs/{run_id}"),
        READER,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(detail["suite_id"], serde_json::Value::Null, "{detail}");
    let (_, runs, _) = api(&http, Method::GET, &format!("{base}/runs"), READER, None).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
    let (_, list, _) = api(&http, Method::GET, &format!("{base}/suites"), READER, None).await;
    assert_eq!(list["suites"].as_array().unwrap().len(), 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_never_overlaps_a_suite_and_raises_one_alert_per_failed_run() {
    use mcp_core::{Delivery, EventBus, EventFilter, MemoryBus};
    use mcp_hub::{
        lab::{
            LAB_TOPIC, Lab,
            store::{LabStore, NewSuite, RunQuery},
        },
        snapshot::MemorySnapshotStore,
    };
    let _turn = TIMING.lock().await;
    let url = known_server().await;
    let store = Arc::new(MemorySnapshotStore::default());
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::default());
    let mut events = bus
        .subscribe(EventFilter::all().topic(LAB_TOPIC), None)
        .await
        .unwrap();
    let lab = Lab::new(store.clone()).with_events(bus.clone());
    let suite = |name: &str, ms: u64, expect: &str| NewSuite {
        definition: format!(
            "name = \"{name}\"\n[target]\nurl = \"{url}\"\n[[steps]]\nkind = \"call\"\ntool = \"delay\"\narguments = {{ ms = {ms} }}\ncalls = 2\nexpect = {{ {expect} }}\n"
        ),
        interval: Some(Duration::from_secs(1)),
    };
    // Longer than its interval, and failing: each run must wait for the one before.
    let failing = store
        .create_suite(suite("failing", 600, "contains = \"nowhere\""))
        .await
        .unwrap();
    let passing = store
        .create_suite(suite("passing", 10, "contains = \"true\""))
        .await
        .unwrap();
    // Not scheduled: no interval.
    store
        .create_suite(NewSuite {
            interval: None,
            ..suite("manual", 10, "no_error = true")
        })
        .await
        .unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let scheduler = lab.schedule(stop.clone());
    tokio::time::sleep(Duration::from_millis(3700)).await;
    stop.cancel();
    scheduler.await.unwrap();
    // Let a run that was going end and be announced.
    while lab.is_running(&failing.id) || lab.is_running(&passing.id) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let runs = |id: String| {
        let store = store.clone();
        async move {
            let mut runs = store
                .runs(RunQuery {
                    suite_id: Some(id),
                    limit: 100,
                })
                .await
                .unwrap();
            runs.reverse();
            runs
        }
    };
    let failed = runs(failing.id.clone()).await;
    assert!(failed.len() >= 2, "{failed:?}");
    for pair in failed.windows(2) {
        let (first, next) = (&pair[0], &pair[1]);
        let gap_us = next
            .started_at
            .signed_duration_since(first.started_at)
            .num_microseconds()
            .unwrap();
        #[allow(clippy::cast_precision_loss)]
        let gap_ms = gap_us as f64 / 1000.0;
        assert!(
            gap_ms >= first.duration_ms,
            "overlap: {first:?} then {next:?}"
        );
        assert!(!first.passed);
    }
    let passed = runs(passing.id.clone()).await;
    // Due at once, then every second (looked at every half second): up to four in 3.7 s,
    // at least two on a busy machine.
    assert!((2..=4).contains(&passed.len()), "{passed:?}");
    for pair in passed.windows(2) {
        let gap = pair[1]
            .started_at
            .signed_duration_since(pair[0].started_at)
            .num_milliseconds();
        assert!(gap >= 990, "{gap} ms");
    }
    assert!(passed.iter().all(|r| r.passed));
    let all = store
        .runs(RunQuery {
            suite_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        failed.len() + passed.len(),
        "the manual suite never ran"
    );

    // One probe_result per run; one system_alert per failed run, naming it.
    let mut results = Vec::new();
    let mut alerts = Vec::new();
    while let Ok(Some(Delivery::Event(event))) =
        tokio::time::timeout(Duration::from_millis(200), events.recv()).await
    {
        let run_id = event.data["run_id"].as_str().unwrap().to_owned();
        match event.kind.as_str() {
            "probe_result" => results.push(run_id),
            "system_alert" => {
                assert!(
                    event.data["message"]
                        .as_str()
                        .unwrap()
                        .contains("result contains \"nowhere\""),
                    "{:?}",
                    event.data
                );
                alerts.push(run_id);
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let mut every: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    every.sort();
    results.sort();
    assert_eq!(results, every);
    let mut failed_ids: Vec<String> = failed.iter().map(|r| r.id.clone()).collect();
    failed_ids.sort();
    alerts.sort();
    assert_eq!(alerts, failed_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_hub_serve_runs_scheduled_suites_and_pushes_each_failure_to_the_alert_backend() {
    use reqwest::Method;
    let _turn = TIMING.lock().await;
    let url = known_server().await;
    // The alert backend: another hub, receiving on channel lab_alerts.
    let backend = support::spawn_hub(&["--database-url", "memory:"], &[]).await;
    let backend_url = format!("http://{}", backend.address);
    let hub = support::spawn_hub(
        &["--database-url", "memory:", "--lab-alert-url", &backend_url],
        &[],
    )
    .await;
    let base = format!("http://{}/api/lab", hub.address);
    let http = reqwest::Client::new();
    let definition = format!(
        "name = \"always failing\"\n[target]\nurl = \"{url}\"\n[[steps]]\nkind = \"call\"\ntool = \"delay\"\narguments = {{ ms = 1 }}\nexpect = {{ contains = \"nowhere\" }}\n"
    );
    let (status, suite, text) = api(
        &http,
        Method::POST,
        &format!("{base}/suites"),
        "none",
        Some(json!({ "definition": definition, "interval_ms": 1000 })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let id = suite["id"].as_str().unwrap().to_owned();

    // The scheduler runs it without being asked: wait for two runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, runs, _) = api(
            &http,
            Method::GET,
            &format!("{base}/runs?suite_id={id}"),
            "none",
            None,
        )
        .await;
        if runs["runs"].as_array().unwrap().len() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled runs: {runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Unscheduled now; once its last run ended, count.
    let (status, _, text) = api(
        &http,
        Method::PUT,
        &format!("{base}/suites/{id}"),
        "none",
        Some(json!({ "definition": definition })),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    loop {
        let (_, suite, _) = api(
            &http,
            Method::GET,
            &format!("{base}/suites/{id}"),
            "none",
            None,
        )
        .await;
        if suite["running"] == false {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One push per failed run: the backend's snapshot revision counts them, and the latest
    // names the newest run. (Pushes are retried until they land: allow them a moment. A run
    // the scheduler began just before the change is counted as it lands.)
    loop {
        let (_, runs, _) = api(
            &http,
            Method::GET,
            &format!("{base}/runs?suite_id={id}"),
            "none",
            None,
        )
        .await;
        let runs = runs["runs"].as_array().unwrap().clone();
        assert!(runs.iter().all(|r| r["passed"] == false), "{runs:?}");
        let (_, alerts, _) = api(
            &http,
            Method::GET,
            &format!("{backend_url}/api/dashboard/lab_alerts"),
            "none",
            None,
        )
        .await;
        let snapshot = &alerts["snapshots"][0];
        if snapshot["data"]["run_id"] == runs[0]["id"] && snapshot["revision"] == runs.len() {
            assert!(
                snapshot["title"]
                    .as_str()
                    .unwrap()
                    .contains("always failing"),
                "{alerts}"
            );
            assert_eq!(snapshot["data"]["severity"], "warning");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alerts do not match the runs: {alerts} {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.stop().await;
    backend.stop().await;
}

/// The suites the README points at parse, so a user's first `lab run` is not a syntax error.
#[test]
fn the_example_suites_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/suites");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(error) = Suite::parse(&text, &dir) {
                panic!("{}: {error}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} example suites");
}

/// What reports and listings name a target by keeps its secrets out; text the store keeps
/// cannot hold NUL.
#[test]
fn targets_are_named_without_secrets_and_nul_is_refused() {
    let suite = |target: &str, name: &str| {
        format!("name = \"{name}\"\n[target]\n{target}\n[[steps]]\nkind = \"list_tools\"\n")
    };
    let parsed = Suite::parse(
        &suite("url = \"http://127.0.0.1:1/mcp?token=abc\"", "s"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(parsed.target.describe(), "http://127.0.0.1:1/mcp");
    let nul = Suite::parse(
        &suite("url = \"http://127.0.0.1:1/mcp\"", "a\\u0000b"),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(nul.contains("NUL"), "{nul}");
    let nul = Suite::parse(
        &suite("command = \"echo\"\nargs = [\"a\\u0000\"]", "s"),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(nul.contains("NUL"), "{nul}");
}
