//! End to end: spawn the built `mcp-github` against a fake GitHub and a fake dashboard backend
//! (both axum apps of the test's own on 127.0.0.1) and drive it with rmcp's client, over stdio
//! and Streamable HTTP, as an agent would.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test here.

#[path = "../mcp-github/tests/support/fake_github.rs"]
mod fake_github;

use std::{
    collections::BTreeSet,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use fake_github::FakeGitHub;
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(20);

/// A push the fake backend received.
#[derive(Debug, Clone)]
struct Received {
    channel: String,
    key: String,
    authorization: Option<String>,
    body: Value,
}

/// A dashboard backend that records every push and answers with a receipt (channel
/// `rejectme` gets a 422).
struct Backend {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Backend {
    async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = Router::new()
            .route("/api/dashboard/sync/{channel}", post(sync))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{address}"),
            received,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn sync(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body: Value = serde_json::from_str(&body).unwrap();
    received.lock().unwrap().push(Received {
        channel: channel.clone(),
        key: header("idempotency-key").unwrap_or_default(),
        authorization: header("authorization"),
        body: body.clone(),
    });
    if channel == "rejectme" {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"code": "invalid_data", "message": "data.things must be an array", "details": null}})),
        )
            .into_response();
    }
    Json(json!({
        "channel": channel, "repository": body["repository"], "event_id": "1763773200000-0",
        "received_at": "2026-12-02T05:00:00Z", "bytes": 1234, "duplicate": false, "broadcast": true
    }))
    .into_response()
}

type Client = RunningService<RoleClient, ()>;

/// `mcp-github stdio` with exactly these variables of its own.
async fn spawn_stdio(env: &[(&str, &str)]) -> Client {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-github"));
    command
        .arg("stdio")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_API_URL")
        .env_remove("BACKEND_API_URL")
        .env_remove("BACKEND_API_TOKEN")
        .envs(env.iter().copied())
        .env("MCP_GITHUB_LOG", "error");
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
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
    .expect("the call answers within the wait")
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

/// The structured content of a successful call.
async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool}({arguments}) failed: {}",
        text(&result)
    );
    assert!(!text(&result).is_empty(), "{tool} has a readable text");
    assert!(!text(&result).contains('\n'), "{tool}'s text is one line");
    result.structured_content.unwrap()
}

/// The message of a refused call.
async fn refused(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call(client, tool, arguments.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool}({arguments}) should fail: {result:?}"
    );
    text(&result)
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn numbers(items: &Value) -> Vec<u64> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect()
}

/// A UUID v7: 8-4-4-4-12 hex digits with version 7.
fn is_uuid_v7(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && key.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && groups[2].starts_with('7')
}

#[tokio::test]
async fn an_agent_reads_github_and_pushes_digests_to_the_dashboard() {
    let github = FakeGitHub::start().await;
    let backend = Backend::start().await;
    let client = spawn_stdio(&[
        ("GITHUB_TOKEN", "test-token"),
        ("GITHUB_API_URL", &github.url),
        ("BACKEND_API_URL", &backend.url),
        ("BACKEND_API_TOKEN", "hub-token"),
    ])
    .await;

    let info = client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("switchboard-github")
    );
    let names: BTreeSet<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into())
        .collect();
    assert_eq!(
        names,
        set(&[
            "get_issue",
            "get_pull_request",
            "list_commits",
            "list_issues",
            "list_pull_requests",
            "search_issues",
            "send_commit_summary_to_dashboard",
            "send_issues_to_dashboard",
            "send_pr_analysis_to_dashboard",
            "send_to_dashboard",
        ])
    );

    // Read tools: compact outputs, pull requests left out of issues.
    let listing = ok(
        &client,
        "list_issues",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_eq!(listing["repository"], "acme/api");
    assert_eq!(numbers(&listing["issues"]), [8, 6, 4, 3, 1]);
    assert_eq!(
        keys(&listing["issues"][0]),
        set(&[
            "number",
            "title",
            "state",
            "labels",
            "assignees",
            "author",
            "comments",
            "created_at",
            "updated_at",
            "closed_at",
            "url"
        ])
    );
    let limited = ok(
        &client,
        "list_issues",
        json!({"owner": "acme", "repo": "big", "limit": 5}),
    )
    .await;
    assert_eq!(numbers(&limited["issues"]), [1000, 999, 998, 997, 996]);
    let issue = ok(
        &client,
        "get_issue",
        json!({"owner": "acme", "repo": "api", "number": 3}),
    )
    .await;
    assert_eq!(issue["thread"].as_array().unwrap().len(), 2);
    let pulls = ok(
        &client,
        "list_pull_requests",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_eq!(numbers(&pulls["pull_requests"]), [7, 5, 2]);
    let pull = ok(
        &client,
        "get_pull_request",
        json!({"owner": "acme", "repo": "api", "number": 5}),
    )
    .await;
    assert_eq!(pull["review_state"], "changes_requested");
    assert_eq!(pull["ci_state"], "failure");
    assert_eq!(pull["files"].as_array().unwrap().len(), 2);
    let commits = ok(
        &client,
        "list_commits",
        json!({"owner": "acme", "repo": "api", "author": "bob"}),
    )
    .await;
    assert_eq!(commits["count"], 2);
    let found = ok(
        &client,
        "search_issues",
        json!({"query": "repo:acme/api is:open", "limit": 2}),
    )
    .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 2);

    // The original tool: every open issue, 10 pages of 100, one push.
    let before = github.requests_to("/repos/acme/big/issues").len();
    let sent = ok(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "big", "state": "open"}),
    )
    .await;
    assert_eq!(
        github.requests_to("/repos/acme/big/issues").len() - before,
        10
    );
    assert_eq!(sent["count"], 1000);
    assert_eq!(sent["channel"], "issues");
    assert_eq!(sent["repository"], "acme/big");
    assert_eq!(sent["receipt"]["event_id"], "1763773200000-0");
    assert_eq!(sent["attempts"], 1);
    let pushes = backend.received();
    assert_eq!(pushes.len(), 1);
    let push = &pushes[0];
    assert_eq!(push.channel, "issues");
    assert_eq!(push.authorization.as_deref(), Some("Bearer hub-token"));
    assert!(is_uuid_v7(&push.key), "{}", push.key);
    assert_eq!(sent["idempotency_key"], push.key.as_str());
    assert_eq!(keys(&push.body), set(&["repository", "title", "data"]));
    assert_eq!(push.body["repository"], "acme/big");
    assert_eq!(push.body["title"], "Open issues of acme/big");
    assert_eq!(push.body["data"]["state"], "open");
    let issues = &push.body["data"]["issues"];
    assert_eq!(issues.as_array().unwrap().len(), 1000);
    assert_eq!(keys(&issues[0]), keys(&listing["issues"][0]));
    assert_eq!(issues[0]["number"], 1000);
    assert_eq!(issues[0]["labels"], json!(["bug"]));
    assert_eq!(issues[0]["assignees"], json!(["alice"]));
    assert_eq!(issues[0]["closed_at"], Value::Null);

    // PR analysis.
    let sent = ok(
        &client,
        "send_pr_analysis_to_dashboard",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_eq!(sent["count"], 3);
    let push = backend.received().pop().unwrap();
    assert_eq!(push.channel, "pull_requests");
    let data = &push.body["data"];
    assert_eq!(
        data["summary"],
        json!({"open": 3, "stale": 1, "awaiting_review": 0, "failing_ci": 1})
    );
    let prs = &data["pull_requests"];
    assert_eq!(numbers(prs), [7, 5, 2]);
    assert_eq!(
        keys(&prs[0]),
        set(&[
            "number",
            "title",
            "author",
            "url",
            "created_at",
            "updated_at",
            "age_days",
            "draft",
            "additions",
            "deletions",
            "changed_files",
            "size",
            "review_state",
            "ci_state",
            "stale",
            "labels"
        ])
    );
    assert_eq!(prs[1]["size"], "XL");
    assert_eq!(prs[1]["review_state"], "changes_requested");
    assert_eq!(prs[2]["review_state"], "approved");
    assert_eq!(prs[2]["ci_state"], "success");
    assert_eq!(prs[2]["stale"], true);
    assert_eq!(prs[0]["review_state"], "review_required");
    assert_eq!(prs[0]["ci_state"], "pending");

    // Commit summary.
    let sent = ok(
        &client,
        "send_commit_summary_to_dashboard",
        json!({"owner": "acme", "repo": "api", "since": "2026-11-28", "until": "2026-11-30T23:59:59Z"}),
    )
    .await;
    assert_eq!(sent["count"], 6);
    let push = backend.received().pop().unwrap();
    assert_eq!(push.channel, "commits");
    let data = &push.body["data"];
    assert_eq!(data["total"], 6);
    assert_eq!(data["since"], "2026-11-28T00:00:00Z");
    let days: Vec<(String, u64)> = data["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-11-28".to_owned(), 2),
            ("2026-11-29".to_owned(), 2),
            ("2026-11-30".to_owned(), 2)
        ]
    );
    assert_eq!(
        data["authors"],
        json!([{"author": "alice", "commits": 3}, {"author": "bob", "commits": 2}, {"author": "Carol", "commits": 1}])
    );
    assert_eq!(
        data["days"][2]["authors"],
        json!([{"author": "Carol", "commits": 1}, {"author": "alice", "commits": 1}])
    );

    // A payload the agent curated.
    let sent = ok(
        &client,
        "send_to_dashboard",
        json!({"channel": "releases", "title": "Releases", "data": [{"tag": "v1.2.0"}, {"tag": "v1.1.0"}], "repository": "acme/api"}),
    )
    .await;
    assert_eq!(sent["count"], 2);
    let push = backend.received().pop().unwrap();
    assert_eq!(push.channel, "releases");
    assert_eq!(
        push.body,
        json!({"repository": "acme/api", "title": "Releases", "data": [{"tag": "v1.2.0"}, {"tag": "v1.1.0"}]})
    );
    let keys_sent: BTreeSet<String> = backend.received().into_iter().map(|r| r.key).collect();
    assert_eq!(keys_sent.len(), 4, "one idempotency key per push");

    // Refusals are isError results with messages an agent can act on.
    let message = refused(
        &client,
        "list_issues",
        json!({"owner": "acme", "repo": "limited"}),
    )
    .await;
    assert!(message.contains("rate limit"), "{message}");
    assert!(message.contains("2030-01-01T00:00:00Z"), "{message}");
    let message = refused(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "nope"}),
    )
    .await;
    assert_eq!(
        message,
        "repository acme/nope not found (or the token cannot see it)"
    );
    let message = refused(
        &client,
        "list_issues",
        json!({"owner": "acme", "repo": "a/b"}),
    )
    .await;
    assert!(message.starts_with("invalid repo"), "{message}");
    let message = refused(
        &client,
        "send_to_dashboard",
        json!({"channel": "Bad Channel", "title": "x", "data": {}}),
    )
    .await;
    assert!(message.contains("channel"), "{message}");
    let message = refused(
        &client,
        "send_to_dashboard",
        json!({"channel": "rejectme", "title": "x", "data": {"things": 1}}),
    )
    .await;
    assert!(message.contains("422"), "{message}");
    assert!(
        message.contains("data.things must be an array"),
        "{message}"
    );
    assert!(!message.contains("hub-token"));
    let before = backend.received().len();
    let message = refused(
        &client,
        "send_to_dashboard",
        json!({"channel": "x", "title": "x", "data": "just a string"}),
    )
    .await;
    assert!(message.contains("object or array"), "{message}");
    assert_eq!(backend.received().len(), before, "nothing was sent");

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn push_tools_say_how_to_configure_a_backend() {
    let github = FakeGitHub::start().await;
    let client = spawn_stdio(&[("GITHUB_API_URL", &github.url)]).await;
    let message = refused(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert!(message.contains("BACKEND_API_URL"), "{message}");
    assert!(
        github.requests().is_empty(),
        "nothing is fetched that cannot be sent"
    );
    // Reading needs no backend (nor a token).
    let listing = ok(
        &client,
        "list_issues",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_eq!(listing["count"], 5);
    assert_eq!(github.requests()[0].authorization, None);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_backend_is_a_clear_error_within_bounded_time() {
    let github = FakeGitHub::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = spawn_stdio(&[("GITHUB_API_URL", &github.url), ("BACKEND_API_URL", &dead)]).await;
    let started = Instant::now();
    let message = refused(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        message.contains("unreachable after 4 attempt(s)"),
        "{message}"
    );
    assert!(message.contains(&dead), "{message}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn serve_speaks_streamable_http_on_loopback_only() {
    let github = FakeGitHub::start().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-github"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("BACKEND_API_URL")
        .env_remove("GITHUB_TOKEN")
        .env("GITHUB_API_URL", &github.url)
        .env("MCP_GITHUB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("the server exited before listening");
        if let Some((_, rest)) = line.split_once("address=") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://{address}/mcp"
        )))
        .await
        .unwrap();
    assert_eq!(client.list_all_tools().await.unwrap().len(), 10);
    let result = client
        .call_tool(
            CallToolRequestParams::new("list_issues").with_arguments(
                json!({"owner": "acme", "repo": "api", "limit": 2})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        numbers(&result.structured_content.unwrap()["issues"]),
        [8, 6]
    );
    client.cancel().await.unwrap();
    child.kill().await.unwrap();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-github"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0"), "{stderr}");
}

/// A repository with more issues than one push carries: the tool says it stopped at its
/// limit rather than passing 5,000 off as all of them.
#[tokio::test]
async fn a_push_that_stops_at_its_limit_says_so() {
    let github = FakeGitHub::start().await;
    let backend = Backend::start().await;
    let client = spawn_stdio(&[
        ("GITHUB_API_URL", &github.url),
        ("BACKEND_API_URL", &backend.url),
    ])
    .await;
    let sent = ok(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "huge"}),
    )
    .await;
    assert_eq!(sent["count"], 5_000);
    assert_eq!(sent["limit_reached"], true);
    let result = call(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "big"}),
    )
    .await;
    assert!(text(&result).contains("1000 item(s)"), "{}", text(&result));
    assert!(!text(&result).contains("limit"), "{}", text(&result));
    let huge = call(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "huge"}),
    )
    .await;
    assert!(
        text(&huge).contains("stopped at the tool's limit"),
        "{}",
        text(&huge)
    );
    client.cancel().await.unwrap();
}
