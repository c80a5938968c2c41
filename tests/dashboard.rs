//! The issue's flow end to end, with nothing faked but GitHub: an agent (rmcp's client) calls
//! the push tools of the built `mcp-github`, pointed at the fake GitHub on 127.0.0.1 and at the
//! built `mcp-hub`; a dashboard's WebSocket receives each update; after a restart the hub still
//! serves what was pushed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

#[path = "../mcp-github/tests/support/fake_github.rs"]
mod fake_github;
mod support;

use std::{process::Stdio, time::Duration};

use futures_util::StreamExt;
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

type Client = RunningService<RoleClient, ()>;
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn spawn_hub(db: &str, keys: &str) -> support::Hub {
    support::spawn_hub(&["--database-url", db], &[("MCP_HUB_API_KEYS", keys)]).await
}

async fn agent(github_url: &str, hub_at: &str, token: &str) -> Client {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-github"));
    command
        .arg("stdio")
        .env("GITHUB_API_URL", github_url)
        .env("GITHUB_TOKEN", "test-token")
        .env("BACKEND_API_URL", format!("http://{hub_at}"))
        .env("BACKEND_API_TOKEN", token)
        .env("MCP_GITHUB_LOG", "warn");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap()
}

async fn next_update(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("an update within the wait")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["type"] != "initial_data" {
                return value;
            }
        }
    }
}

async fn get(address: &str, path: &str, token: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const WRITE_KEY: &str = "wwwwwwwwwwwwwwwwwwwwwwww";
const READ_KEY: &str = "rrrrrrrrrrrrrrrrrrrrrrrr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sends_github_data_to_the_live_dashboard() {
    let github = fake_github::FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("hub.db").display());
    let keys = format!("write {WRITE_KEY} github,read {READ_KEY} page");
    let hub = spawn_hub(&db, &keys).await;
    let hub_at = hub.address.clone();
    let url = format!("ws://{hub_at}/api/dashboard/ws?access_token={READ_KEY}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let client = agent(&github.url, &hub_at, WRITE_KEY).await;

    // "Send the open issues of acme/api to my dashboard."
    let result = call(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{:?}", result.content);
    let sent = result.structured_content.clone().unwrap();
    let update = next_update(&mut socket).await;
    assert_eq!(update["type"], "issues_update");
    assert_eq!(
        update["actor"], "key:github",
        "the push is recorded under the tool's key"
    );
    let snapshot = &update["data"];
    assert_eq!(snapshot["repository"], "acme/api");
    let numbers: Vec<u64> = snapshot["data"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect();
    // Issues 1..=8 of acme/api less the pull requests 2, 5 and 7, newest first.
    assert_eq!(numbers, [8, 6, 4, 3, 1]);
    assert_eq!(snapshot["data"]["issues"][0]["labels"], json!(["bug"]));
    assert!(
        sent.to_string().contains(update["id"].as_str().unwrap()),
        "the tool's result carries the hub's receipt: {sent}"
    );

    // "Analyse the open PRs of acme/api and push it"; "push this week's commit summary".
    let result = call(
        &client,
        "send_pr_analysis_to_dashboard",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{:?}", result.content);
    let update = next_update(&mut socket).await;
    assert_eq!(update["type"], "pull_requests_update");
    assert_eq!(
        update["data"]["data"]["pull_requests"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let result = call(
        &client,
        "send_commit_summary_to_dashboard",
        json!({"owner": "acme", "repo": "api", "since": "2026-11-27T00:00:00Z", "until": "2026-12-01T00:00:00Z"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{:?}", result.content);
    let update = next_update(&mut socket).await;
    assert_eq!(update["type"], "commits_update");
    assert!(
        !update["data"]["data"]["days"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A payload the agent curated itself, on a channel of its own.
    let result = call(
        &client,
        "send_to_dashboard",
        json!({"channel": "release-blockers", "title": "Release blockers", "repository": "acme/api",
               "data": [{"item": "SSO login", "owner": "alice"}]}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{:?}", result.content);
    let update = next_update(&mut socket).await;
    assert_eq!(update["type"], "release-blockers_update");
    assert_eq!(update["data"]["data"][0]["owner"], "alice");
    // The hub refuses what does not fit a channel, and the agent is told why.
    let result = call(
        &client,
        "send_to_dashboard",
        json!({"channel": "issues", "title": "t", "data": {"issues": "none"}}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("issues"), "{text}");
    client.cancel().await.unwrap();
    drop(socket);
    hub.stop().await;

    // Restarted, the hub still has it all.
    let hub = spawn_hub(&db, &keys).await;
    let hub_at = hub.address.clone();
    let (status, body) = get(&hub_at, "/api/dashboard/issues", READ_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issues"].as_array().unwrap().len(), 5);
    assert_eq!(body["repositories"], json!(["acme/api"]));
    let (status, body) = get(
        &hub_at,
        "/api/dashboard/pull_requests?repository=acme/api",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["pull_requests"].as_array().unwrap().len(), 3);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_issues_take_ten_github_requests_and_reach_the_dashboard() {
    let github = fake_github::FakeGitHub::start().await;
    let hub = spawn_hub(
        "memory:",
        &format!("write {WRITE_KEY} github,read {READ_KEY} page"),
    )
    .await;
    let hub_at = hub.address.clone();
    let url = format!("ws://{hub_at}/api/dashboard/ws?channels=issues&access_token={READ_KEY}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let client = agent(&github.url, &hub_at, WRITE_KEY).await;
    let before = github.requests().len();
    let result = call(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "big", "state": "open"}),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{:?}", result.content);
    assert_eq!(
        github.requests().len() - before,
        10,
        "1,000 issues at 100 a page"
    );
    let update = next_update(&mut socket).await;
    assert_eq!(
        update["data"]["data"]["issues"].as_array().unwrap().len(),
        1_000
    );
    // Again: every page is answered 304 from the ETag cache, and the dashboard gets it again.
    let before = github.requests().len();
    call(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "big"}),
    )
    .await;
    let again: Vec<_> = github.requests().into_iter().skip(before).collect();
    assert_eq!(again.len(), 10);
    assert!(again.iter().all(|r| r.status == 304), "{again:?}");
    assert_eq!(
        next_update(&mut socket).await["data"]["data"]["issues"]
            .as_array()
            .unwrap()
            .len(),
        1_000
    );
    // Without the write key the push is refused, and the agent is told so.
    client.cancel().await.unwrap();
    let client = agent(&github.url, &hub_at, READ_KEY).await;
    let result = call(
        &client,
        "send_issues_to_dashboard",
        json!({"owner": "acme", "repo": "api"}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("403") || text.contains("scope"), "{text}");
    client.cancel().await.unwrap();
    hub.stop().await;
}
