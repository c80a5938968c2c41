//! End to end for the hub: spawn the built `mcp-hub serve`, push over HTTP as a sink would, and
//! watch over WebSocket and SSE as a dashboard would; restart it and read what was pushed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

const WAIT: Duration = Duration::from_secs(10);

use support::spawn_hub;

/// One HTTP/1.1 request with a JSON body (or none); the status and the body as JSON (or text
/// in a JSON string when it is not JSON).
async fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            text.push_str("Content-Type: application/json\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        text.push_str("\r\n");
    }
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body)
}

async fn push(address: &str, channel: &str, body: &Value, headers: &[(&str, &str)]) -> Value {
    let (status, receipt) = request(
        address,
        "POST",
        &format!("/api/dashboard/sync/{channel}"),
        headers,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    receipt
}

fn issues(repository: &str, numbers: &[i64]) -> Value {
    let issues: Vec<Value> = numbers
        .iter()
        .map(|n| json!({"number": n, "title": format!("issue {n}"), "state": "open", "labels": ["bug"]}))
        .collect();
    json!({"repository": repository, "title": format!("Open issues of {repository}"),
           "data": {"state": "open", "issues": issues}})
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn websocket(address: &str, query: &str) -> Socket {
    let url = format!("ws://{address}/api/dashboard/ws{query}");
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    socket
}

/// The next JSON text message (pings are answered by tungstenite).
async fn next_message(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message within the wait")
            .expect("the socket is open")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Nothing arrives on `socket` for a moment: used only to check that a filtered-out push was
/// not delivered, after a later push that was delivered proved the socket is flowing.
async fn assert_quiet(socket: &mut Socket) {
    if let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(200), socket.next()).await
    {
        panic!("unexpected message: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_dashboards_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("hub.db").display());
    let hub = spawn_hub(&["--database-url", &db], &[]).await;

    let mut socket = websocket(&hub.address, "").await;
    let initial = next_message(&mut socket).await;
    assert_eq!(initial["type"], "initial_data");
    assert_eq!(initial["data"]["snapshots"], json!([]));

    let receipt = push(&hub.address, "issues", &issues("acme/api", &[1, 2, 3]), &[]).await;
    let first_id = receipt["event_id"].as_str().unwrap().to_owned();
    assert_eq!(receipt["channel"], "issues");
    assert_eq!(receipt["broadcast"], true);
    let update = next_message(&mut socket).await;
    assert_eq!(update["type"], "issues_update");
    assert_eq!(update["id"], receipt["event_id"]);
    assert_eq!(update["topic"], "dashboard");
    assert_eq!(update["subject"]["repository"], "acme/api");
    assert_eq!(update["data"]["repository"], "acme/api");
    assert_eq!(update["data"]["data"]["issues"][2]["number"], 3);

    // The original endpoints: the seed's body in, the seed's shape out.
    let (status, receipt) = request(
        &hub.address,
        "POST",
        "/api/dashboard/sync-issues",
        &[],
        Some(r#"{"repository":"acme/web","issues":[{"number":9,"title":"from the seed"}]}"#),
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    let update = next_message(&mut socket).await;
    assert_eq!(update["type"], "issues_update");
    assert_eq!(update["data"]["data"]["issues"][0]["number"], 9);
    drop(socket);
    hub.stop().await;

    let hub = spawn_hub(&["--database-url", &db], &[]).await;
    let (status, body) = request(
        &hub.address,
        "GET",
        "/api/dashboard/issues?repository=acme/api",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repository"], "acme/api");
    let numbers: Vec<i64> = body["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let (_, all) = request(&hub.address, "GET", "/api/dashboard/issues", &[], None).await;
    assert_eq!(all["repositories"], json!(["acme/api", "acme/web"]));
    assert_eq!(all["issues"].as_array().unwrap().len(), 4);
    assert_eq!(all["issues"][3]["repository"], "acme/web");
    let (status, one) = request(
        &hub.address,
        "GET",
        "/api/dashboard/issues?repository=ACME/WEB",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["issues"][0]["title"], "from the seed");
    let (status, snapshot) = request(
        &hub.address,
        "GET",
        "/api/dashboard/pull_requests?repository=acme/api",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404, "{snapshot}");
    // A dashboard connecting after the restart starts from the stored state.
    let mut socket = websocket(&hub.address, "?channels=issues&repository=acme/api").await;
    let initial = next_message(&mut socket).await;
    assert_eq!(initial["type"], "initial_data");
    assert_eq!(initial["data"]["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(
        initial["data"]["snapshots"][0]["data"]["issues"][0]["number"],
        1
    );
    // A dashboard that was watching before the restart resumes where it was: it gets what it
    // missed (the acme/web push, after its cursor), nothing it already had, then live updates.
    let mut socket = websocket(&hub.address, &format!("?last_event_id={first_id}")).await;
    let missed = next_message(&mut socket).await;
    assert_eq!(missed["type"], "issues_update");
    assert_eq!(missed["id"], receipt["event_id"]);
    assert_eq!(missed["data"]["repository"], "acme/web");
    let latest = receipt["event_id"].as_str().unwrap();
    let mut up_to_date = websocket(&hub.address, &format!("?last_event_id={latest}")).await;
    let live = push(&hub.address, "issues", &issues("acme/api", &[4]), &[]).await;
    let update = next_message(&mut up_to_date).await;
    assert_eq!(
        update["id"], live["event_id"],
        "nothing before the live update"
    );
    assert_eq!(next_message(&mut socket).await["id"], live["event_id"]);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_choose_channels_and_resume_where_they_left() {
    let hub = spawn_hub(&["--database-url", "memory:"], &[]).await;
    let mut socket = websocket(&hub.address, "?channels=issues").await;
    assert_eq!(next_message(&mut socket).await["type"], "initial_data");
    let commits =
        json!({"repository": "acme/api", "data": {"days": [{"date": "2026-12-01", "total": 2}]}});
    push(&hub.address, "commits", &commits, &[]).await;
    let first = push(&hub.address, "issues", &issues("acme/api", &[1]), &[]).await;
    let update = next_message(&mut socket).await;
    assert_eq!(
        update["type"], "issues_update",
        "the commits push is filtered out"
    );
    let cursor = update["id"].as_str().unwrap().to_owned();
    assert_eq!(update["id"], first["event_id"]);
    drop(socket);

    // Missed while disconnected: two pushes.
    let second = push(&hub.address, "issues", &issues("acme/api", &[1, 2]), &[]).await;
    let third = push(&hub.address, "issues", &issues("acme/web", &[5]), &[]).await;
    let mut socket = websocket(
        &hub.address,
        &format!("?channels=issues&last_event_id={cursor}"),
    )
    .await;
    let replayed = next_message(&mut socket).await;
    assert_eq!(
        replayed["type"], "issues_update",
        "resuming replays, no initial_data"
    );
    assert_eq!(replayed["id"], second["event_id"]);
    assert_eq!(next_message(&mut socket).await["id"], third["event_id"]);

    // The client changes its subscription and gets the state of the new one.
    socket
        .send(Message::text(
            json!({"type": "subscribe", "channels": ["commits"]}).to_string(),
        ))
        .await
        .unwrap();
    let initial = next_message(&mut socket).await;
    assert_eq!(initial["type"], "initial_data");
    let snapshots = initial["data"]["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["channel"], "commits");
    push(&hub.address, "issues", &issues("acme/api", &[3]), &[]).await;
    push(&hub.address, "commits", &commits, &[]).await;
    assert_eq!(next_message(&mut socket).await["type"], "commits_update");
    assert_quiet(&mut socket).await;

    socket
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_message(&mut socket).await["type"], "pong");
    socket.send(Message::text("not json")).await.unwrap();
    let error = next_message(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert!(
        error["message"].as_str().unwrap().contains("subscribe"),
        "{error}"
    );
    socket
        .send(Message::text(
            r#"{"type":"subscribe","channels":["Bad Channel"]}"#,
        ))
        .await
        .unwrap();
    let error = next_message(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert!(
        error["message"].as_str().unwrap().contains("channel"),
        "{error}"
    );
    // The socket still works after bad messages.
    push(&hub.address, "commits", &commits, &[]).await;
    assert_eq!(next_message(&mut socket).await["type"], "commits_update");

    // A bad subscription is refused before the upgrade, readably.
    let (status, body) = request(
        &hub.address,
        "GET",
        "/api/dashboard/ws?channels=Nope!",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = request(
        &hub.address,
        "GET",
        "/api/dashboard/ws?last_event_id=yesterday",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_carry_the_same_messages() {
    let hub = spawn_hub(&["--database-url", "memory:"], &[]).await;
    push(&hub.address, "issues", &issues("acme/api", &[1]), &[]).await;
    let mut stream = tokio::net::TcpStream::connect(&hub.address).await.unwrap();
    stream
        .write_all(b"GET /api/dashboard/stream?channels=issues HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut next_event = async || {
        let (mut kind, mut id, mut data) = (String::new(), String::new(), String::new());
        loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Some(value) = line.strip_prefix("event: ") {
                kind = value.to_owned();
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = value.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data = value.to_owned();
            } else if line.is_empty() && !kind.is_empty() {
                return (kind, id, serde_json::from_str::<Value>(&data).unwrap());
            }
        }
    };
    let (kind, id, initial) = next_event().await;
    assert_eq!(kind, "initial_data");
    assert_eq!(
        initial["data"]["snapshots"][0]["data"]["issues"][0]["number"],
        1
    );
    assert_eq!(id, initial["id"].as_str().unwrap());
    let receipt = push(&hub.address, "issues", &issues("acme/api", &[1, 2]), &[]).await;
    let (kind, id, update) = next_event().await;
    assert_eq!(kind, "issues_update");
    assert_eq!(id, receipt["event_id"].as_str().unwrap());
    assert_eq!(update["data"]["data"]["issues"][1]["number"], 2);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_get_clear_errors_and_change_nothing() {
    let hub = spawn_hub(
        &[
            "--database-url",
            "memory:",
            "--max-body-bytes",
            "2000",
            "--max-snapshots",
            "2",
        ],
        &[],
    )
    .await;
    let address = &hub.address;
    let cases: Vec<(&str, &str, Option<&str>, u16, &str)> = vec![
        (
            "/api/dashboard/sync/issues",
            "application/json",
            Some("{not json"),
            400,
            "bad_request",
        ),
        (
            "/api/dashboard/sync/issues",
            "text/plain",
            Some("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            "/api/dashboard/sync/issues",
            "application/json",
            Some(r#"{"data":{"issues":[{"number":1}]}}"#),
            422,
            "invalid_data",
        ),
        (
            "/api/dashboard/sync/issues",
            "application/json",
            Some(r#"{"data":{"issues":"many"}}"#),
            422,
            "invalid_data",
        ),
        (
            "/api/dashboard/sync/commits",
            "application/json",
            Some(r#"{"data":{"days":[{"date":"monday","total":1}]}}"#),
            422,
            "invalid_data",
        ),
        (
            "/api/dashboard/sync/Issues",
            "application/json",
            Some(r#"{"data":{}}"#),
            422,
            "invalid_argument",
        ),
        (
            "/api/dashboard/sync/ws",
            "application/json",
            Some(r#"{"data":{}}"#),
            422,
            "invalid_argument",
        ),
        (
            "/api/dashboard/sync/notes",
            "application/json",
            Some(r#"{"data":"text"}"#),
            422,
            "invalid_data",
        ),
        (
            "/api/dashboard/sync/notes",
            "application/json",
            Some(r#"{"data":{},"repository":"no-slash"}"#),
            422,
            "invalid_argument",
        ),
        (
            "/api/dashboard/sync/notes",
            "application/json",
            Some(r#"{"data":{},"extra":1}"#),
            422,
            "invalid_argument",
        ),
        (
            "/api/dashboard/sync/notes",
            "application/json",
            Some(r#"{"title":"t"}"#),
            422,
            "invalid_argument",
        ),
        (
            "/api/dashboard/sync-issues",
            "application/json",
            Some(r#"{"issues":[]}"#),
            422,
            "invalid_argument",
        ),
    ];
    for (path, content_type, body, status, code) in cases {
        let (got, error) = request(
            address,
            "POST",
            path,
            &[("Content-Type", content_type)],
            body,
        )
        .await;
        assert_eq!(got, status, "{path} {body:?}: {error}");
        assert_eq!(error["error"]["code"], code, "{path} {body:?}: {error}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    let big = json!({"data": {"text": "x".repeat(3000)}}).to_string();
    let (status, error) = request(
        address,
        "POST",
        "/api/dashboard/sync/notes",
        &[],
        Some(&big),
    )
    .await;
    assert_eq!(status, 413, "{error}");
    assert_eq!(error["error"]["code"], "payload_too_large");
    let (status, error) = request(address, "DELETE", "/api/dashboard/issues", &[], None).await;
    assert_eq!(status, 405, "{error}");
    let (status, _) = request(address, "GET", "/api/nothing", &[], None).await;
    assert_eq!(status, 404);
    let (status, error) = request(
        address,
        "GET",
        "/api/dashboard/issues?repository=x",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 422, "{error}");
    let (status, error) = request(
        address,
        "GET",
        "/api/dashboard/issues?colour=red",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 400, "{error}");
    // Nothing of the above was stored.
    let (status, overview) = request(address, "GET", "/api/dashboard", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(overview["snapshots"], json!([]));
    // A page elsewhere cannot push through the user's browser; the hub's own page can.
    let (status, _) = request(
        address,
        "POST",
        "/api/dashboard/sync/notes",
        &[("Origin", "http://evil.example")],
        Some(r#"{"data":{}}"#),
    )
    .await;
    assert_eq!(status, 403);
    // A full hub refuses a new channel or repository, and still updates what it has.
    let small = |repository: &str| json!({"repository": repository, "data": {"n": 1}});
    push(address, "notes", &small("acme/api"), &[]).await;
    push(address, "notes", &small("acme/web"), &[]).await;
    let (status, error) = request(
        address,
        "POST",
        "/api/dashboard/sync/notes",
        &[],
        Some(&small("acme/cli").to_string()),
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "snapshot_limit");
    push(address, "notes", &small("acme/api"), &[]).await;
    let own = format!("http://{address}");
    let (status, _) = request(
        address,
        "GET",
        "/api/dashboard",
        &[("Origin", own.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 200);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_needs_write_and_watching_needs_read() {
    let keys = "write wwwwwwwwwwwwwwwwwwww github,read rrrrrrrrrrrrrrrrrrrr page";
    let hub = spawn_hub(
        &["--database-url", "memory:"],
        &[("MCP_HUB_API_KEYS", keys)],
    )
    .await;
    let address = &hub.address;
    let body = issues("acme/api", &[1]).to_string();
    let sync = "/api/dashboard/sync/issues";
    let (status, _) = request(address, "POST", sync, &[], Some(&body)).await;
    assert_eq!(status, 401);
    let (status, _) = request(
        address,
        "POST",
        sync,
        &[("Authorization", "Bearer nope-nope-nope-nope")],
        Some(&body),
    )
    .await;
    assert_eq!(status, 401);
    let (status, error) = request(
        address,
        "POST",
        sync,
        &[("Authorization", "Bearer rrrrrrrrrrrrrrrrrrrr")],
        Some(&body),
    )
    .await;
    assert_eq!(status, 403, "{error}");
    // A token in the URL never authorizes a change.
    let (status, _) = request(
        address,
        "POST",
        &format!("{sync}?access_token=wwwwwwwwwwwwwwwwwwww"),
        &[],
        Some(&body),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = request(address, "GET", "/api/dashboard", &[], None).await;
    assert_eq!(status, 401);

    let url = format!("ws://{address}/api/dashboard/ws");
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let mut socket = websocket(address, "?access_token=rrrrrrrrrrrrrrrrrrrr").await;
    assert_eq!(next_message(&mut socket).await["type"], "initial_data");
    let mut with_header = url.into_client_request().unwrap();
    with_header.headers_mut().insert(
        "authorization",
        "Bearer rrrrrrrrrrrrrrrrrrrr".parse().unwrap(),
    );
    let (mut second, _) = tokio_tungstenite::connect_async(with_header).await.unwrap();
    assert_eq!(next_message(&mut second).await["type"], "initial_data");

    let receipt = push(
        address,
        "issues",
        &issues("acme/api", &[1]),
        &[("Authorization", "Bearer wwwwwwwwwwwwwwwwwwww")],
    )
    .await;
    let update = next_message(&mut socket).await;
    assert_eq!(update["id"], receipt["event_id"]);
    assert_eq!(
        update["actor"], "key:github",
        "the push records its credential"
    );
    assert_eq!(update["data"]["actor"], "key:github");
    // The page itself and the health checks need no credential.
    let (status, page) = request(address, "GET", "/", &[], None).await;
    assert_eq!(status, 200);
    assert!(
        page.as_str().unwrap().contains("<html"),
        "the page is served"
    );
    let (status, _) = request(address, "GET", "/healthz", &[], None).await;
    assert_eq!(status, 200);
    let (status, _) = request(address, "GET", "/readyz", &[], None).await;
    assert_eq!(status, 200);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_push_is_announced_once() {
    let hub = spawn_hub(&["--database-url", "memory:"], &[]).await;
    let mut socket = websocket(&hub.address, "").await;
    next_message(&mut socket).await;
    let key = [("Idempotency-Key", "push-0001")];
    let first = push(&hub.address, "issues", &issues("acme/api", &[1]), &key).await;
    let again = push(&hub.address, "issues", &issues("acme/api", &[1]), &key).await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(next_message(&mut socket).await["id"], first["event_id"]);
    let other = push(&hub.address, "issues", &issues("acme/api", &[2]), &[]).await;
    assert_eq!(
        next_message(&mut socket).await["id"],
        other["event_id"],
        "the retry was not announced"
    );
    // The counters say the same, and /metrics needs no credential (like the health checks).
    let (status, metrics) = request(&hub.address, "GET", "/metrics", &[], None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "switchboard_hub_pushes_total{outcome=\"stored\"} 2",
        "switchboard_hub_pushes_total{outcome=\"duplicate\"} 1",
        "switchboard_hub_announce_failures_total 0",
        "switchboard_hub_snapshots 1",
        "switchboard_event_streams 1",
        "switchboard_http_requests_total{method=\"POST\",route=\"/api/dashboard/sync/{channel}\",status=\"200\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    hub.stop().await;
}

/// Two hubs sharing PostgreSQL and Redis: a push to one reaches a dashboard of the other, and
/// both read the same snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_share_snapshots_and_updates() {
    let Some((database, redis)) = support::postgres_and_redis("two hubs") else {
        return;
    };
    let (url, schema) = support::fresh_schema(&database, "hub_e2e").await;
    let a = spawn_hub(&["--database-url", &url, "--redis-url", &redis], &[]).await;
    let b = spawn_hub(&["--database-url", &url, "--redis-url", &redis], &[]).await;
    let mut socket = websocket(&b.address, "?repository=acme/shared").await;
    assert_eq!(next_message(&mut socket).await["type"], "initial_data");
    let receipt = push(&a.address, "issues", &issues("acme/shared", &[4, 2]), &[]).await;
    let update = next_message(&mut socket).await;
    assert_eq!(update["type"], "issues_update");
    assert_eq!(update["id"], receipt["event_id"]);
    let (status, body) = request(
        &b.address,
        "GET",
        "/api/dashboard/issues?repository=acme/shared",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issues"][0]["number"], 4);
    a.stop().await;
    b.stop().await;
    support::drop_schema(&database, &schema).await;
}

/// With `--tasks-url`, the board follows a task service: a task created there, and its status
/// change, reach the hub's dashboards as `tasks_update`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_board_follows_a_task_service() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("tasks.db").display());
    let (_tasks, tasks_address) = support::spawn_listening(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-tasks"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db])
            .env("MCP_TASKS_LOG", "info")
            .env_remove("MCP_TASKS_API_KEYS")
            .env_remove("JWT_SECRET"),
        support::Announces::OnStderr,
    )
    .await
    .unwrap();
    let tasks_url = format!("http://{tasks_address}");
    let hub = spawn_hub(
        &["--database-url", "memory:", "--tasks-url", &tasks_url],
        &[],
    )
    .await;
    let (status, overview) = request(&hub.address, "GET", "/api/dashboard", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(
        overview["config"]["tasks"], true,
        "the page is told to show the board"
    );
    let mut socket = websocket(&hub.address, "?channels=tasks").await;

    let (status, user) = request(
        &tasks_address,
        "POST",
        "/api/users",
        &[],
        Some(r#"{"email":"alice@example.com","github_username":"alice"}"#),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, task) = request(
        &tasks_address,
        "POST",
        "/api/tasks",
        &[],
        Some(r#"{"title":"Fix login","assignee_id":"alice","repository":"acme/api"}"#),
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let board = |message: &Value| -> Option<Value> {
        let snapshot = match message["type"].as_str()? {
            "tasks_update" => message["data"].clone(),
            "initial_data" => message["data"]["snapshots"].get(0)?.clone(),
            _ => return None,
        };
        snapshot["data"]["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == id.as_str())
            .cloned()
    };
    let card = loop {
        if let Some(card) = board(&next_message(&mut socket).await) {
            break card;
        }
    };
    assert_eq!(card["title"], "Fix login");
    assert_eq!(card["status"], "not_started");
    assert_eq!(card["repository"], "acme/api");

    let (status, body) = request(
        &tasks_address,
        "PUT",
        &format!("/api/tasks/{id}/status"),
        &[],
        Some(r#"{"status":"in_progress","updated_by":"alice"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let card = loop {
        if let Some(card) =
            board(&next_message(&mut socket).await).filter(|c| c["status"] != "not_started")
        {
            break card;
        }
    };
    assert_eq!(card["status"], "in_progress");
    hub.stop().await;
}
