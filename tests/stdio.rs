//! End to end: spawn the built `mcp-tasks stdio` and drive it with rmcp's client, as Claude or
//! Cursor would.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test here.

use std::{path::Path, process::Stdio, time::Duration};

use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
        ProtocolVersion, ReadResourceRequestParams, ResourceContents,
        ResourceUpdatedNotificationParam, ServerNotification, SubscribeRequestParams,
        SubscriptionFilter, UnsubscribeRequestParams,
    },
    service::{NotificationContext, RunningService},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, sync::mpsc};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Agent {
    updates: mpsc::UnboundedSender<String>,
}

impl ClientHandler for Agent {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("e2e", "1"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }
}

type Client = RunningService<RoleClient, Agent>;

async fn connect(db: &Path) -> (Client, mpsc::UnboundedReceiver<String>) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-tasks"));
    command
        .arg("stdio")
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .env("MCP_TASKS_LOG", "error");
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Agent { updates: tx }.serve(transport).await.unwrap();
    (client, rx)
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

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The URI of the next `notifications/resources/updated`.
async fn next_update(updates: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, updates.recv())
        .await
        .expect("a notification within the wait")
        .expect("the client is still connected")
}

fn ids(listing: &Value) -> Vec<String> {
    listing["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_agent_manages_tasks_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut updates) = connect(&dir.path().join("tasks.db")).await;

    let info = client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("switchboard-tasks")
    );
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "add_task_comment",
            "add_user",
            "create_task",
            "delete_task",
            "get_task",
            "get_tasks",
            "update_task",
            "update_task_status"
        ]
    );

    ok(
        &client,
        "add_user",
        json!({"email": "alice@example.com", "name": "Alice", "github_username": "alice"}),
    )
    .await;
    ok(&client, "add_user", json!({"email": "bob@example.com"})).await;

    // "Create a high-priority task for alice@example.com in acme/api to fix the login bug."
    let login = ok(&client, "create_task", json!({
        "title": "Fix the login bug", "description": "SSO users get a 500", "assignee_id": "alice@example.com",
        "repository": "acme/api", "priority": "high", "created_by": "agent:claude"
    })).await;
    let login_id = login["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            login["priority"].as_str(),
            login["status"].as_str(),
            login["version"].as_i64()
        ),
        (Some("high"), Some("not_started"), Some(1))
    );
    let docs = ok(&client, "create_task", json!({
        "title": "Write docs", "description": "", "assignee_id": "bob@example.com", "repository": "acme/web"
    })).await;
    let docs_id = docs["id"].as_str().unwrap().to_owned();
    let done = ok(&client, "create_task", json!({
        "title": "Old chore", "description": "", "assignee_id": "alice", "repository": "acme/api", "complexity": "low"
    })).await;
    let done_id = done["id"].as_str().unwrap().to_owned();
    ok(
        &client,
        "update_task_status",
        json!({"task_id": done_id, "new_status": "completed", "updated_by": "alice"}),
    )
    .await;

    // "What is pending in acme/api?" and each other filter.
    let pending = ok(
        &client,
        "get_tasks",
        json!({"repository": "acme/api", "status": "open"}),
    )
    .await;
    assert_eq!(ids(&pending), [login_id.as_str()]);
    assert_eq!(
        ids(&ok(
            &client,
            "get_tasks",
            json!({"user_id": "alice@example.com"})
        )
        .await),
        [done_id.as_str(), login_id.as_str()]
    );
    assert_eq!(
        ids(&ok(&client, "get_tasks", json!({"assignee": "bob@example.com"})).await),
        [docs_id.as_str()]
    );
    assert_eq!(
        ids(&ok(&client, "get_tasks", json!({"status": "completed"})).await),
        [done_id.as_str()]
    );
    assert_eq!(
        ids(&ok(&client, "get_tasks", json!({"query": "LOGIN"})).await),
        [login_id.as_str()]
    );
    assert_eq!(ids(&ok(&client, "get_tasks", json!({})).await).len(), 3);
    let first_page = ok(&client, "get_tasks", json!({"limit": 2})).await;
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let second_page = ok(&client, "get_tasks", json!({"limit": 2, "cursor": cursor})).await;
    assert_eq!(ids(&first_page).len() + ids(&second_page).len(), 3);
    assert!(second_page.get("next_cursor").is_none());

    // The resource, and a subscription to it.
    let uri = format!("task://{login_id}");
    let read = client
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("text resource")
    };
    let resource: Value = serde_json::from_str(text).unwrap();
    assert_eq!(resource["task"]["title"], "Fix the login bug");
    let templates = client
        .list_resource_templates(None)
        .await
        .unwrap()
        .resource_templates;
    assert_eq!(templates[0].uri_template, "task://{id}");
    #[allow(deprecated)] // resources/subscribe is how initialize-era clients subscribe.
    client
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();

    // "Mark it in progress and say why."
    let moved = ok(&client, "update_task_status", json!({
        "task_id": login_id, "new_status": "in_progress", "updated_by": "agent:claude", "comment": "reproduced locally"
    })).await;
    assert_eq!(moved["version"], 2);
    let notified = next_update(&mut updates).await;
    assert_eq!(notified, uri);
    // A change to another task does not notify this subscription.
    ok(
        &client,
        "add_task_comment",
        json!({"task_id": docs_id, "comment": "draft ready", "author": "bob"}),
    )
    .await;
    ok(
        &client,
        "add_task_comment",
        json!({"task_id": login_id, "comment": "fix is in PR 12"}),
    )
    .await;
    assert_eq!(next_update(&mut updates).await, uri);

    // "Show me its history."
    let detail = ok(&client, "get_task", json!({"task_id": login_id})).await;
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["field"], "status");
    assert_eq!(history[1]["old_value"], "not_started");
    assert_eq!(history[1]["new_value"], "in_progress");
    assert_eq!(history[1]["actor"], "agent:claude");
    assert_eq!(history[1]["comment"], "reproduced locally");
    assert_eq!(detail["comments"][0]["comment"], "fix is in PR 12");
    assert_eq!(detail["comments"][0]["author"], "ai-agent");

    // update_task with the version just read, then with a stale one.
    let edited = ok(&client, "update_task", json!({"task_id": login_id, "priority": "urgent", "assignee_id": "bob@example.com", "expected_version": 2})).await;
    assert_eq!(
        (
            edited["priority"].as_str(),
            edited["assignee"].as_str(),
            edited["version"].as_i64()
        ),
        (Some("urgent"), Some("bob@example.com"), Some(3))
    );
    assert_eq!(next_update(&mut updates).await, uri);

    #[allow(deprecated)]
    client
        .unsubscribe(UnsubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    ok(
        &client,
        "update_task",
        json!({"task_id": login_id, "title": "Fix the SSO login bug"}),
    )
    .await;
    let deleted = ok(
        &client,
        "delete_task",
        json!({"task_id": docs_id, "deleted_by": "bob"}),
    )
    .await;
    assert_eq!(deleted["id"], docs_id.as_str());
    assert_eq!(ids(&ok(&client, "get_tasks", json!({})).await).len(), 2);

    // Subscribe again, spelling the id in upper case: the notification names the URI as the
    // client wrote it, and it is the only one (the old subscription is gone).
    let shouted = format!("task://{}", login_id.to_uppercase());
    #[allow(deprecated)]
    client
        .subscribe(SubscribeRequestParams::new(shouted.clone()))
        .await
        .unwrap();
    ok(
        &client,
        "update_task",
        json!({"task_id": login_id, "complexity": "high"}),
    )
    .await;
    assert_eq!(next_update(&mut updates).await, shouted);
    assert!(
        updates.try_recv().is_err(),
        "one notification per change to a subscribed task, none from the unsubscribed one"
    );
    #[allow(deprecated)]
    let missing = client
        .subscribe(SubscribeRequestParams::new(
            "task://00000000-0000-7000-8000-000000000000",
        ))
        .await;
    assert!(format!("{missing:?}").contains("not found"), "{missing:?}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (client, _updates) = connect(&dir.path().join("tasks.db")).await;
    ok(&client, "add_user", json!({"email": "alice@example.com"})).await;
    let task = ok(&client, "create_task", json!({"title": "t", "description": "", "assignee_id": "alice@example.com", "repository": "acme/api"})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    ok(
        &client,
        "update_task_status",
        json!({"task_id": id, "new_status": "blocked", "updated_by": "x"}),
    )
    .await;
    let before = ok(&client, "get_task", json!({"task_id": id})).await;

    let cases = [
        (
            "update_task_status",
            json!({"task_id": id, "new_status": "done", "updated_by": "x"}),
            "expected one of `not_started`, `in_progress`, `blocked`, `in_review`, `completed`, `cancelled`",
        ),
        (
            "create_task",
            json!({"title": "t", "assignee_id": "alice@example.com", "repository": "acme/api"}),
            "missing field `description`",
        ),
        (
            "create_task",
            json!({"title": "t", "description": "", "assignee_id": "alice@exmaple.com", "repository": "acme/api"}),
            "did you mean alice@example.com",
        ),
        (
            "create_task",
            json!({"title": "t", "description": "", "assignee_id": "nobody", "repository": "acme/api"}),
            "register new users with add_user or POST /api/users",
        ),
        (
            "create_task",
            json!({"title": " ", "description": "", "assignee_id": "alice@example.com", "repository": "acme/api"}),
            "invalid title: required",
        ),
        (
            "create_task",
            json!({"title": "x".repeat(501), "description": "", "assignee_id": "alice@example.com", "repository": "acme/api"}),
            "at most 500 characters",
        ),
        (
            "create_task",
            json!({"title": "t", "description": "", "assignee_id": "alice@example.com", "repository": "acme"}),
            "owner/name",
        ),
        (
            "create_task",
            json!({"title": "t", "description": "", "assignee_id": "alice@example.com", "repository": "acme/api", "priority": "asap"}),
            "expected one of `low`, `medium`, `high`, `urgent`",
        ),
        (
            "update_task",
            json!({"task_id": id, "title": "mine", "expected_version": 1}),
            "you sent version 1 but the current version is 2",
        ),
        (
            "update_task",
            json!({"task_id": "00000000-0000-7000-8000-000000000000", "title": "x"}),
            "not found",
        ),
        ("get_task", json!({"task_id": "42"}), "not a task id"),
        (
            "add_task_comment",
            json!({"task_id": id, "comment": ""}),
            "invalid comment",
        ),
        (
            "delete_task",
            json!({"task_id": id, "expected_version": 9}),
            "the current version is 2",
        ),
        (
            "get_tasks",
            json!({"repository": "acme/apj"}),
            "did you mean acme/api",
        ),
        ("get_tasks", json!({"limit": 1000}), "between 1 and 200"),
        ("get_tasks", json!({"cursor": "nonsense"}), "invalid cursor"),
        ("get_tasks", json!({"limit": -1}), "failed to deserialize"),
        (
            "add_user",
            json!({"email": "ALICE@example.com"}),
            "already exists",
        ),
        (
            "add_user",
            json!({"email": "not an email"}),
            "invalid email",
        ),
    ];
    for (tool, arguments, expected) in cases {
        let message = refused(&client, tool, arguments.clone()).await;
        assert!(
            message.contains(expected),
            "{tool}({arguments}): {message:?} should say {expected:?}"
        );
    }
    let unknown_tool = client
        .call_tool(CallToolRequestParams::new("drop_database"))
        .await;
    assert!(unknown_tool.is_err(), "an unknown tool is a protocol error");
    let bad_uri = client
        .read_resource(ReadResourceRequestParams::new("file:///etc/passwd"))
        .await;
    assert!(
        format!("{bad_uri:?}").contains("not a task resource"),
        "{bad_uri:?}"
    );
    let missing = client
        .read_resource(ReadResourceRequestParams::new(
            "task://00000000-0000-7000-8000-000000000000",
        ))
        .await;
    assert!(format!("{missing:?}").contains("not found"), "{missing:?}");

    let after = ok(&client, "get_task", json!({"task_id": id})).await;
    assert_eq!(after, before, "no refused call changed the task");
    assert_eq!(ids(&ok(&client, "get_tasks", json!({})).await), [id]);
    client.cancel().await.unwrap();
}

/// Protocol 2026-07-28 sessions have no `resources/subscribe`; they listen instead.
#[tokio::test]
async fn a_2026_client_listens_for_task_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-tasks"));
    command
        .arg("stdio")
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("tasks.db").display()
        ))
        .env("MCP_TASKS_LOG", "error");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("e2e-2026", "1"),
    )
    .serve_with_lifecycle(transport, lifecycle)
    .await
    .unwrap();
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );

    let call = |tool: &'static str, arguments: Value| {
        let peer = client.peer().clone();
        async move {
            let Value::Object(arguments) = arguments else {
                panic!("object")
            };
            let result = peer
                .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
                .await
                .unwrap();
            assert_ne!(result.is_error, Some(true), "{tool}: {}", text(&result));
            result.structured_content.unwrap()
        }
    };
    call("add_user", json!({"email": "alice@example.com"})).await;
    let task = call("create_task", json!({"title": "t", "description": "", "assignee_id": "alice@example.com", "repository": "acme/api"})).await;
    let uri = format!("task://{}", task["id"].as_str().unwrap());

    let filter = SubscriptionFilter::builder()
        .resource_subscription(uri.clone())
        .resource_subscription("file:///etc/passwd")
        .build();
    let mut subscription = client.listen(filter).await.unwrap();
    assert_eq!(
        subscription
            .acknowledged()
            .resource_subscriptions
            .as_deref(),
        Some(&[uri.clone()][..]),
        "only task URIs are accepted"
    );
    call(
        "update_task_status",
        json!({"task_id": task["id"], "new_status": "in_review", "updated_by": "alice"}),
    )
    .await;
    let notification = tokio::time::timeout(WAIT, subscription.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match notification {
        ServerNotification::ResourceUpdatedNotification(updated) => {
            assert_eq!(updated.params.uri, uri)
        }
        other => panic!("expected resources/updated, got {other:?}"),
    }
    subscription.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// Starts the binary with no `--database-url`, the way a config entry does, and completes the
/// handshake by hand.
async fn spawn_raw(data_home: &Path) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-tasks"))
        .arg("stdio")
        .env("XDG_DATA_HOME", data_home)
        .env("HOME", data_home)
        .env_remove("DATABASE_URL")
        .current_dir(data_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin
        .write_all(format!("{INITIALIZE}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mut line = String::new();
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = tokio::io::BufReader::new(stdout);
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    let response: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        response["result"]["serverInfo"]["name"],
        "switchboard-tasks"
    );
    child
}

#[tokio::test]
async fn the_default_database_lives_in_the_data_directory_and_end_of_input_exits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let mut child = spawn_raw(home.path()).await;
    drop(child.stdin.take());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let db = home.path().join("switchboard").join("tasks.db");
    assert!(db.exists(), "database created at {}", db.display());
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains(&db.display().to_string()),
        "the path is printed on stderr: {stderr}"
    );
    let mut stdout = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(child.stdout.as_mut().unwrap(), &mut stdout)
        .await
        .unwrap();
    assert!(stdout.is_empty(), "nothing but protocol messages on stdout");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_server_while_stdin_stays_open() {
    let home = tempfile::tempdir().unwrap();
    let mut child = spawn_raw(home.path()).await;
    // Hold stdin open ourselves (tokio's wait() would close it), so only the signal can end it.
    let stdin = child.stdin.take().unwrap();
    let pid = child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
    drop(stdin);
}

/// A client that never sends `initialize` must not make the server ignore SIGTERM.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_before_initialize_stops_the_server() {
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-tasks"))
        .arg("stdio")
        .env("XDG_DATA_HOME", home.path())
        .env("MCP_TASKS_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    // The server logs which database it opens after installing its signal handlers.
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("opening") {
        line.clear();
        let read = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            read > 0,
            "stderr ended before the server opened its database"
        );
    }
    let pid = child.id().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(stdin);
}

/// The issue's race, through the real server: 50 agents call update_task at once, each with the
/// version it read. Exactly one wins; the others are told the current version; the history
/// holds exactly the winner's change.
#[tokio::test]
async fn fifty_concurrent_update_task_calls_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let (client, _updates) = connect(&dir.path().join("tasks.db")).await;
    ok(&client, "add_user", json!({"email": "alice@example.com"})).await;
    let task = ok(&client, "create_task", json!({"title": "contended", "description": "", "assignee_id": "alice@example.com", "repository": "acme/api"})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    let version = task["version"].as_i64().unwrap();

    let calls = (0..50).map(|i| {
        let peer = client.peer().clone();
        let id = id.clone();
        tokio::spawn(async move {
            let Value::Object(arguments) = json!({"task_id": id, "title": format!("writer {i}"), "expected_version": version, "updated_by": format!("agent-{i}")}) else { unreachable!() };
            peer.call_tool(CallToolRequestParams::new("update_task").with_arguments(arguments)).await.unwrap()
        })
    }).collect::<Vec<_>>();
    let mut winners = 0;
    for call in calls {
        let result = call.await.unwrap();
        if result.is_error == Some(true) {
            let message = text(&result);
            assert!(
                message.contains(&format!("the current version is {}", version + 1)),
                "{message}"
            );
        } else {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let detail = ok(&client, "get_task", json!({"task_id": id})).await;
    assert_eq!(detail["task"]["version"], version + 1);
    let titles: Vec<&Value> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["field"] == "title")
        .collect();
    assert_eq!(titles.len(), 1, "one history row, the winner's");
    assert_eq!(titles[0]["new_value"], detail["task"]["title"]);
    client.cancel().await.unwrap();
}
