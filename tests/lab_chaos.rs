//! Chaos through the hub: the built `mcp-hub serve` supervises `examples/echo_upstream` over
//! stdio, and lab suites (run in this process) load `echo__echo` at the hub's `/mcp` while a
//! `[steps.chaos]` table kills the upstream's child or injects latency or errors through
//! `/api/servers/{id}/kill|fault`; then the fault endpoint's own checks, and the suite's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

mod support;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use mcp_hub::lab::{ChaosReport, ErrorKind, Progress, RunReport, Suite, run_suite};
use serde_json::{Value, json};

const ADMIN: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
const READER: &str = "rrrrrrrrrrrrrrrrrrrrrrrr";

/// The tests that measure time take turns, so they do not measure each other.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A hub whose gateway runs one stdio upstream, `echo` (tools `echo__*`), restarted 200 ms
/// after a crash; with `extra` servers appended to its hub.toml.
struct ChaosHub {
    hub: support::Hub,
    _dir: tempfile::TempDir,
}

async fn chaos_hub(extra: &str, env: &[(&str, &str)]) -> ChaosHub {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    let config = format!(
        "[gateway]\nprefix = \"always\"\nrestart_initial = \"200ms\"\nrestart_max = \"400ms\"\n\n\
         [servers.echo]\ncommand = {command:?}\nargs = [\"stdio\", \"--name\", \"echo\"]\n{extra}",
        command = support::echo_upstream().display().to_string(),
    );
    std::fs::write(&path, config).unwrap();
    let mut env = env.to_vec();
    env.push(("MCP_HUB_RATE_LIMIT", "0"));
    let hub = support::spawn_hub(
        &[
            "--database-url",
            "memory:",
            "--config",
            path.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    let hub = ChaosHub { hub, _dir: dir };
    hub.wait_healthy("echo", ADMIN).await;
    hub
}

impl ChaosHub {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.hub.address)
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        support::call(&reqwest::Client::new(), method, &self.url(path), key, body).await
    }

    async fn server(&self, id: &str, key: &str) -> Value {
        let (status, body) = self
            .api(
                reqwest::Method::GET,
                &format!("/api/servers/{id}"),
                Some(key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits (20 s at most) until upstream `id` is healthy with its tools listed.
    async fn wait_healthy(&self, id: &str, key: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self
                .api(
                    reqwest::Method::GET,
                    &format!("/api/servers/{id}"),
                    Some(key),
                    None,
                )
                .await;
            if status == 200 && body["state"] == "healthy" && body["tools"].as_u64() > Some(0) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became healthy: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn run(text: &str) -> RunReport {
    let suite = Suite::parse(text, Path::new(".")).unwrap();
    // Bounded: a run that hangs fails the test instead of stalling it.
    tokio::time::timeout(
        Duration::from_secs(30),
        run_suite(&suite, Arc::new(Progress::default())),
    )
    .await
    .expect("the run ends")
}

/// A suite calling `echo__echo` at `rate` for `duration` at the hub, with `chaos` as its
/// `[steps.chaos]` table.
fn chaos_suite(hub: &ChaosHub, rate: u32, duration: &str, expect: &str, chaos: &str) -> String {
    format!(
        r#"
        name = "chaos"
        timeout = "2s"
        [target]
        url = "{url}"
        bearer_token = "{ADMIN}"
        [[steps]]
        kind = "call"
        tool = "echo__echo"
        arguments = {{ text = "hi" }}
        rate = {rate}
        duration = "{duration}"
        expect = {expect}
        [steps.chaos]
        {chaos}
        "#,
        url = hub.url("/mcp"),
    )
}

fn chaos_of(report: &RunReport) -> &ChaosReport {
    let step = &report.steps[0];
    step.chaos.as_ref().expect("the step reports its chaos")
}

fn hub_env() -> String {
    format!("admin {ADMIN} ops,read {READER} viewer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_upstream_mid_run_shows_the_outage_and_the_recovery() {
    let _turn = TIMING.lock().await;
    let keys = hub_env();
    let hub = chaos_hub("", &[("MCP_HUB_API_KEYS", &keys)]).await;
    let before = hub.server("echo", ADMIN).await;
    let report = run(&chaos_suite(
        &hub,
        50,
        "4s",
        "{ error_rate_below = 0.9 }",
        "at = \"1s\"\nkill = true",
    ))
    .await;
    let step = &report.steps[0];
    let chaos = chaos_of(&report);
    assert!(report.passed, "{}", report.summary());
    assert_eq!(chaos.action, "kill");
    assert_eq!(chaos.server, "echo", "the server is the tool's prefix");
    assert!(chaos.error.is_none(), "{chaos:?}");
    assert_eq!(chaos.killed_pid, before["pid"].as_u64().map(|p| p as u32));
    assert!(
        chaos.pid_after.is_some() && chaos.pid_after != chaos.killed_pid,
        "a new child: {chaos:?}"
    );
    let started = chaos.started_ms.unwrap();
    assert!((1000.0..1500.0).contains(&started), "{chaos:?}");
    assert_eq!(chaos.before.errors, 0, "{chaos:?}");
    assert!(chaos.before.requests > 20, "{chaos:?}");
    assert!(chaos.during.errors > 0, "errors after the kill: {chaos:?}");
    let recovery = chaos.recovery_ms.expect("it recovered");
    assert!(recovery > 0.0 && recovery < 4000.0, "{chaos:?}");
    assert_eq!(chaos.after.errors, 0, "{chaos:?}");
    assert!(chaos.after.requests > 20, "{chaos:?}");
    // The outage's calls are the gateway's answers: the upstream is down, or failed mid-call.
    let failed: u64 = step.errors.values().sum();
    assert_eq!(failed, chaos.during.errors);
    assert!(
        report.summary().contains("recovered in"),
        "{}",
        report.summary()
    );
    let html = report.html();
    assert!(html.contains("class=\"chaos-band\"") && html.contains("kill: recovered in"));
    // The gateway restarted it as after a crash, and said so in its log.
    let after = hub.wait_healthy("echo", ADMIN).await;
    assert_eq!(after["restarts"], before["restarts"].as_u64().unwrap() + 1);
    let (_, logs) = hub
        .api(
            reqwest::Method::GET,
            "/api/logs?server=echo&limit=1000",
            Some(ADMIN),
            None,
        )
        .await;
    let messages: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("killed by an operator")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("killed by signal 9")),
        "{messages:?}"
    );
    hub.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_shows_in_the_p99_and_ends_with_its_window() {
    let _turn = TIMING.lock().await;
    let hub = chaos_hub("", &[]).await;
    let report = run(&chaos_suite(
        &hub,
        20,
        "4s",
        "{ no_error = true }",
        "at = \"1s\"\nlatency_ms = 200\nfor = \"1s\"",
    ))
    .await;
    let step = &report.steps[0];
    let chaos = chaos_of(&report);
    assert!(report.passed, "{}", report.summary());
    assert!(chaos.error.is_none(), "{chaos:?}");
    assert_eq!(chaos.latency_ms, Some(200));
    assert!(step.latency.p99 >= 200.0, "p99 {}", step.latency.p99);
    assert!(step.latency.max < 1000.0, "max {}", step.latency.max);
    // Before the fault and a second after it, calls are fast again.
    let first = &step.timeline[0];
    let last = step.timeline.last().unwrap();
    assert!(first.requests > 10 && first.p99_ms < 100.0, "{first:?}");
    assert!(last.requests > 10 && last.p99_ms < 100.0, "{last:?}");
    let (start, end) = (chaos.started_ms.unwrap(), chaos.ended_ms.unwrap());
    assert!(end - start >= 1000.0 && end - start < 1500.0, "{chaos:?}");
    assert_eq!(
        chaos.before.errors + chaos.during.errors + chaos.after.errors,
        0
    );
    // The fault is cleared.
    let server = hub.server("echo", ADMIN).await;
    assert!(server["fault"].is_null(), "{server}");
    hub.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_fail_calls_only_inside_their_window() {
    let _turn = TIMING.lock().await;
    let hub = chaos_hub("", &[]).await;
    let report = run(&chaos_suite(
        &hub,
        20,
        "3s",
        "{ error_rate_below = 0.9 }",
        "server = \"echo\"\nat = \"1s\"\nerror_rate = 1.0\nfor = \"1s\"",
    ))
    .await;
    let step = &report.steps[0];
    let chaos = chaos_of(&report);
    assert!(report.passed, "{}", report.summary());
    assert!(chaos.error.is_none(), "{chaos:?}");
    assert_eq!(chaos.before.errors, 0, "{chaos:?}");
    assert!(chaos.during.errors >= 15, "{chaos:?}");
    // Outcomes are binned by when the answer arrived, and the window ends when the hub
    // confirmed clearing the fault: a call the fault failed just before the DELETE may be
    // answered after it (one call in flight at 20/s; seen once in a fresh-clone CI run).
    assert!(chaos.after.errors <= 1, "{chaos:?}");
    assert!(chaos.after.requests >= 15, "{chaos:?}");
    // The gateway answers an injected failure as a tool error that says what it is.
    let failed: u64 = step.errors.values().sum();
    assert_eq!(step.errors[&ErrorKind::Tool], failed);
    assert_eq!(failed, chaos.during.errors + chaos.after.errors);
    let sample = &step.error_samples[0].message;
    assert!(sample.contains("injected fault"), "{sample}");
    let recovery = chaos.recovery_ms.expect("it recovered");
    assert!(recovery < 500.0, "{chaos:?}");
    let server = hub.server("echo", ADMIN).await;
    assert!(server["fault"].is_null(), "{server}");
    hub.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_endpoints_check_what_they_are_given_and_who_asks() {
    use reqwest::Method;
    let keys = hub_env();
    let hub = chaos_hub(
        "[servers.remote]\nurl = \"http://127.0.0.1:1/mcp\"\n",
        &[("MCP_HUB_API_KEYS", &keys)],
    )
    .await;
    let put = |key: Option<&'static str>, body: Value| {
        hub.api(Method::PUT, "/api/servers/echo/fault", key, Some(body))
    };
    let ok = json!({ "error_rate": 1.0, "duration_ms": 60000 });
    assert_eq!(put(None, ok.clone()).await.0, 401);
    assert_eq!(put(Some(READER), ok.clone()).await.0, 403);
    for (body, field) in [
        (json!({ "error_rate": 1.5 }), "error_rate"),
        (json!({ "error_rate": -0.1 }), "error_rate"),
        (json!({ "latency_ms": -5 }), "latency_ms"),
        (json!({ "latency_ms": "slow" }), "latency_ms"),
        (json!({ "latency_ms": 10, "duration_ms": 0 }), "duration_ms"),
        (json!({ "latency_ms": 10, "jitter_ms": 5 }), "body"),
        (json!({}), "body"),
    ] {
        let (status, error) = put(Some(ADMIN), body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["details"]["field"], field, "{body}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field) || field == "body",
            "{error}"
        );
    }
    let (status, error) = hub
        .api(
            Method::PUT,
            "/api/servers/nope/fault",
            Some(ADMIN),
            Some(ok.clone()),
        )
        .await;
    assert_eq!(status, 404, "{error}");

    // Set, shown, effective over REST too, then cleared.
    let (status, set) = put(Some(ADMIN), ok.clone()).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["fault"]["error_rate"], 1.0);
    let server = hub.server("echo", READER).await;
    assert_eq!(server["fault"]["error_rate"], 1.0, "{server}");
    assert!(server["fault"]["expires_at"].is_string(), "{server}");
    let (status, failed) = hub
        .api(
            Method::POST,
            "/api/tools/echo__echo/execute",
            Some(ADMIN),
            Some(json!({ "arguments": { "text": "x" } })),
        )
        .await;
    assert_eq!(status, 503, "{failed}");
    assert_eq!(failed["error"]["code"], "fault_injected");
    assert_eq!(
        hub.api(
            Method::DELETE,
            "/api/servers/echo/fault",
            Some(READER),
            None
        )
        .await
        .0,
        403
    );
    let (status, cleared) = hub
        .api(Method::DELETE, "/api/servers/echo/fault", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["cleared"]["failed"], 1, "{cleared}");
    assert!(hub.server("echo", READER).await["fault"].is_null());
    assert_eq!(
        hub.api(Method::DELETE, "/api/servers/nope/fault", Some(ADMIN), None)
            .await
            .0,
        404
    );

    // A fault with a duration ends by itself.
    let (status, _) = put(Some(ADMIN), json!({ "latency_ms": 5, "duration_ms": 100 })).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !hub.server("echo", READER).await["fault"].is_null() {
        assert!(Instant::now() < deadline, "the fault never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Kill: the admin's, a stdio upstream's only.
    let kill = |path: &'static str, key: &'static str| hub.api(Method::POST, path, Some(key), None);
    assert_eq!(kill("/api/servers/echo/kill", READER).await.0, 403);
    assert_eq!(kill("/api/servers/nope/kill", ADMIN).await.0, 404);
    let (status, refused) = kill("/api/servers/remote/kill", ADMIN).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP server"),
        "{refused}"
    );

    // A lab run whose chaos the hub refuses (a read-only token) fails, saying why, and ends.
    let report = run(&format!(
        r#"
        name = "refused"
        [target]
        url = "{url}"
        bearer_token = "{READER}"
        [[steps]]
        kind = "call"
        tool = "echo__echo"
        arguments = {{ text = "hi" }}
        rate = 10
        duration = "1s"
        [steps.chaos]
        at = "0s"
        kill = true
        "#,
        url = hub.url("/mcp")
    ))
    .await;
    assert!(!report.passed);
    let chaos = chaos_of(&report);
    let error = chaos.error.as_deref().unwrap();
    assert!(error.contains("403") && error.contains("admin"), "{error}");
    assert!(
        report.summary().contains("FAILED: kill failed"),
        "{}",
        report.summary()
    );
    hub.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_tables_are_checked_when_the_suite_is_loaded_and_an_unreachable_hub_fails_the_run() {
    let step = |load: &str, chaos: &str| {
        format!(
            "name = \"x\"\n[target]\nurl = \"http://127.0.0.1:9/mcp\"\n[[steps]]\nkind = \"call\"\ntool = \"echo__echo\"\n{load}\n[steps.chaos]\n{chaos}\n"
        )
    };
    let rate = "rate = 10\nduration = \"2s\"";
    let cases = [
        (
            step(rate, "at = \"1s\"\nkill = true\nlatency_ms = 5"),
            "steps[0].chaos.kill excludes",
        ),
        (
            step(rate, "at = \"1s\""),
            "steps[0].chaos needs kill = true",
        ),
        (
            step(rate, "at = \"2s\"\nkill = true"),
            "steps[0].chaos.at is 2000 ms",
        ),
        (step(rate, "kill = true"), "steps[0].chaos.at is required"),
        (
            step(rate, "at = \"1s\"\nerror_rate = 1.5"),
            "steps[0].chaos.error_rate must be from 0 to 1",
        ),
        (
            step(rate, "at = \"1s\"\nlatency_ms = 5\nfor = \"2s\""),
            "steps[0].chaos.for ends after the step",
        ),
        (
            step(rate, "at = \"1s\"\nlatency_ms = 0"),
            "steps[0].chaos.latency_ms or error_rate must be above 0",
        ),
        (
            step(rate, "at = \"1s\"\nkill = true\nsleep = 1"),
            "unknown field `sleep`",
        ),
        (
            step(rate, "at = \"1s\"\nkill = true\nserver = \"a/b\""),
            "steps[0].chaos.server",
        ),
        (
            step(rate, "at = \"1s\"\nkill = true\nhub = \"ftp://x\""),
            "steps[0].chaos.hub",
        ),
        (
            step("calls = 10", "at = \"1s\"\nkill = true"),
            "steps[0].chaos goes with a call step that runs for a time",
        ),
    ];
    for (text, wanted) in cases {
        let error = Suite::parse(&text, Path::new(".")).unwrap_err().to_string();
        assert!(
            error.contains(wanted),
            "{wanted:?} not in {error:?}\n{text}"
        );
    }
    // A target that is not a hub's /mcp needs `hub`; a tool without a prefix needs `server`.
    let command = format!(
        "name = \"x\"\n[target]\ncommand = {:?}\nargs = [\"stdio\"]\n[[steps]]\nkind = \"call\"\ntool = \"echo\"\narguments = {{ text = \"hi\" }}\nrate = 10\nduration = \"1s\"\n[steps.chaos]\nat = \"0s\"\nkill = true\n",
        support::echo_upstream().display().to_string()
    );
    let error = Suite::parse(&command, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("steps[0].chaos.server is required"),
        "{error}"
    );
    let with_server = command.replace("kill = true", "kill = true\nserver = \"echo\"");
    let error = Suite::parse(&with_server, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(error.contains("steps[0].chaos.hub is required"), "{error}");

    // A hub nothing listens on: the chaos fails, the load still runs, the run fails in time.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = with_server.replace(
        "server = \"echo\"",
        &format!("server = \"echo\"\nhub = \"http://127.0.0.1:{port}\""),
    );
    let started = Instant::now();
    let report = run(&unreachable).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!report.passed);
    let step = &report.steps[0];
    assert_eq!(step.requests, 10);
    assert_eq!(step.ok, 10);
    let chaos = step.chaos.as_ref().unwrap();
    let error = chaos.error.as_deref().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(chaos.started_ms.is_none() && chaos.recovery_ms.is_none());
}
