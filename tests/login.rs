//! Team login end to end, as a team sets it up: `mcp-hub user add` on the hub's database, then
//! `mcp-hub serve` with login on; wrong passwords, roles, expiry and refresh, user management
//! over REST, and a restart.

#![allow(clippy::unwrap_used)]

mod support;

use support::call;

use std::{io::Write, process::Stdio, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

const HUB: &str = env!("CARGO_BIN_EXE_mcp-hub");
const SETUP_KEY: &str = "read-key-of-the-team-0001";

/// `mcp-hub user <args>` on `database` with `stdin` as its input.
fn user_cli(database: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = std::process::Command::new(HUB)
        .arg("user")
        .args(args)
        .args(["--database-url", database])
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn log_in(http: &reqwest::Client, base: &str, user: &str, password: &str) -> (u16, Value) {
    call(
        http,
        Method::POST,
        &format!("{base}/api/auth/login"),
        None,
        Some(json!({ "username": user, "password": password })),
    )
    .await
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_with_roles_tokens_expire_and_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("hub.db").display());

    // The CLI refuses what it cannot use, and adds nothing then.
    let bad_role = user_cli(
        &database,
        &["add", "alice", "--role", "owner"],
        "password1\n",
    );
    assert!(!bad_role.status.success());
    assert!(
        String::from_utf8_lossy(&bad_role.stderr).contains("not one of viewer, operator, admin")
    );
    let short = user_cli(&database, &["add", "alice", "--role", "admin"], "short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8 characters"));
    let bad_name = user_cli(
        &database,
        &["add", "al ice", "--role", "admin"],
        "password1\n",
    );
    assert!(!bad_name.status.success());
    let listed = user_cli(&database, &["list"], "");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("no users"));

    for (name, role, password) in [
        ("alice", "admin", "alice-secret-1"),
        ("bob", "viewer", "bob-secret-12"),
        ("carol", "operator", "carol-secret-1"),
    ] {
        let added = user_cli(
            &database,
            &["add", name, "--role", role],
            &format!("{password}\n"),
        );
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let again = user_cli(
        &database,
        &["add", "bob", "--role", "admin"],
        "whatever123\n",
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let listed = String::from_utf8_lossy(&user_cli(&database, &["list"], "").stdout).into_owned();
    assert!(
        listed.contains("alice") && listed.contains("operator"),
        "{listed}"
    );

    // With users, login is on: nothing is open without a token any more. API keys still work
    // beside the users.
    let keys = format!("read {SETUP_KEY} setup");
    let hub = support::spawn_hub(
        &["--database-url", &database],
        &[("MCP_HUB_API_KEYS", &keys)],
    )
    .await;
    let base = format!("http://{}", hub.address);
    let http = reqwest::Client::new();
    let (status, body) = call(&http, Method::GET, &format!("{base}/api/auth"), None, None).await;
    assert_eq!((status, &body["login"]), (200, &json!(true)));
    let (status, _) = call(
        &http,
        Method::GET,
        &format!("{base}/api/dashboard"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A wrong password and an unknown name get the same answer.
    let (status, wrong) = log_in(&http, &base, "alice", "not-her-password").await;
    assert_eq!(status, 401);
    let (status, unknown) = log_in(&http, &base, "mallory", "not-her-password").await;
    assert_eq!(status, 401);
    assert_eq!(message(&wrong), message(&unknown));
    assert_eq!(message(&wrong), "wrong user name or password");
    let (status, _) = call(
        &http,
        Method::POST,
        &format!("{base}/api/auth/login"),
        None,
        Some(json!({ "username": "alice" })),
    )
    .await;
    assert_eq!(status, 422, "a body without a password is refused");

    let (status, alice) = log_in(&http, &base, "alice", "alice-secret-1").await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["token_type"], "Bearer");
    assert_eq!(alice["user"]["role"], "admin");
    assert!(alice["expires_in"].as_u64().unwrap() > 0);
    let admin = alice["access_token"].as_str().unwrap().to_owned();
    let (status, me) = call(
        &http,
        Method::GET,
        &format!("{base}/api/auth/me"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&me["name"], &me["role"], &me["scope"]),
        (&json!("alice"), &json!("admin"), &json!("admin"))
    );

    let token_of = |body: &Value| body["access_token"].as_str().unwrap().to_owned();
    let viewer = token_of(&log_in(&http, &base, "bob", "bob-secret-12").await.1);
    let operator = token_of(&log_in(&http, &base, "carol", "carol-secret-1").await.1);

    // Roles: a viewer reads; an operator also pushes and starts runs; only an admin changes
    // suites and users.
    let push = json!({ "data": { "title": "hello" } });
    let sync = format!("{base}/api/dashboard/sync/notes");
    let suites = format!("{base}/api/lab/suites");
    let users = format!("{base}/api/users");
    let suite = json!({ "definition": "name = \"probe\"\n[target]\nurl = \"http://127.0.0.1:9/mcp\"\n[[steps]]\nkind = \"list_tools\"\n" });
    type Case<'a> = (&'a str, &'a str, Method, &'a str, Option<Value>, u16);
    let cases: [Case; 10] = [
        (
            "viewer",
            &viewer,
            Method::GET,
            &format!("{base}/api/dashboard"),
            None,
            200,
        ),
        (
            "viewer",
            &viewer,
            Method::POST,
            &sync,
            Some(push.clone()),
            403,
        ),
        ("viewer", &viewer, Method::GET, &users, None, 403),
        (
            "operator",
            &operator,
            Method::POST,
            &sync,
            Some(push.clone()),
            200,
        ),
        (
            "operator",
            &operator,
            Method::POST,
            &suites,
            Some(suite.clone()),
            403,
        ),
        ("operator", &operator, Method::GET, &users, None, 403),
        (
            "operator",
            &operator,
            Method::POST,
            &format!("{base}/api/lab/runs"),
            Some(json!({ "suite_id": "none" })),
            404,
        ),
        ("admin", &admin, Method::POST, &suites, Some(suite), 201),
        ("admin", &admin, Method::GET, &users, None, 200),
        (
            "nobody",
            "not-a-token",
            Method::GET,
            &format!("{base}/api/dashboard"),
            None,
            401,
        ),
    ];
    for (who, token, method, url, body, expected) in cases {
        let (status, answer) = call(&http, method.clone(), url, Some(token), body).await;
        assert_eq!(status, expected, "{who} {method} {url}: {answer}");
    }

    // An admin manages users over REST; bad input changes nothing.
    for (body, expected) in [
        (
            json!({ "username": "dave", "role": "boss", "password": "dave-secret-1" }),
            422,
        ),
        (
            json!({ "username": "dave", "role": "viewer", "password": "short" }),
            422,
        ),
        (
            json!({ "username": "", "role": "viewer", "password": "dave-secret-1" }),
            422,
        ),
        (
            json!({ "username": "alice", "role": "viewer", "password": "dave-secret-1" }),
            409,
        ),
        (
            json!({ "username": "dave", "role": "viewer", "password": "dave-secret-1" }),
            201,
        ),
    ] {
        let (status, answer) = call(&http, Method::POST, &users, Some(&admin), Some(body)).await;
        assert_eq!(status, expected, "{answer}");
    }
    let (_, listed) = call(&http, Method::GET, &users, Some(&admin), None).await;
    let names: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave"]);
    assert!(
        !listed.to_string().contains("argon2"),
        "hashes are never shown"
    );
    let (status, dave) = log_in(&http, &base, "dave", "dave-secret-1").await;
    assert_eq!(status, 200);
    let dave_refresh = dave["refresh_token"].as_str().unwrap().to_owned();
    // A new password ends dave's sessions; the old one stops working.
    let (status, _) = call(
        &http,
        Method::PATCH,
        &format!("{users}/dave"),
        Some(&admin),
        Some(json!({ "password": "dave-secret-2", "role": "operator" })),
    )
    .await;
    assert_eq!(status, 200);
    let refresh = |token: &str| {
        let (http, url, body) = (
            http.clone(),
            format!("{base}/api/auth/refresh"),
            json!({ "refresh_token": token }),
        );
        async move { call(&http, Method::POST, &url, None, Some(body)).await }
    };
    assert_eq!(refresh(&dave_refresh).await.0, 401);
    assert_eq!(log_in(&http, &base, "dave", "dave-secret-1").await.0, 401);
    let (status, dave) = log_in(&http, &base, "dave", "dave-secret-2").await;
    assert_eq!((status, &dave["user"]["role"]), (200, &json!("operator")));
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{users}/dave"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        refresh(dave["refresh_token"].as_str().unwrap()).await.0,
        401
    );
    assert_eq!(log_in(&http, &base, "dave", "dave-secret-2").await.0, 401);
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{users}/dave"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Neither a viewer nor an operator may manage users; an API key says what it is.
    for token in [&viewer, &operator] {
        let (status, _) = call(
            &http,
            Method::PATCH,
            &format!("{users}/alice"),
            Some(token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
        assert_eq!(status, 403);
        let (status, _) = call(
            &http,
            Method::DELETE,
            &format!("{users}/alice"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, me) = call(
        &http,
        Method::GET,
        &format!("{base}/api/auth/me"),
        Some(SETUP_KEY),
        None,
    )
    .await;
    assert_eq!(
        (status, &me["kind"], &me["scope"]),
        (200, &json!("api_key"), &json!("read"))
    );

    // Two refreshes of one token at once: exactly one gets a new pair.
    let (_, twice) = log_in(&http, &base, "carol", "carol-secret-1").await;
    let token = twice["refresh_token"].as_str().unwrap().to_owned();
    let url = format!("{base}/api/auth/refresh");
    let (a, b) = tokio::join!(
        call(
            &http,
            Method::POST,
            &url,
            None,
            Some(json!({ "refresh_token": token }))
        ),
        call(
            &http,
            Method::POST,
            &url,
            None,
            Some(json!({ "refresh_token": token }))
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);

    let (_, kept) = log_in(&http, &base, "bob", "bob-secret-12").await;
    let kept_refresh = kept["refresh_token"].as_str().unwrap().to_owned();
    hub.stop().await;

    // After a restart (a new signing key: no JWT_SECRET) old access tokens are refused, the
    // refresh token still works. Access tokens here live two seconds.
    let hub = support::spawn_hub(
        &["--database-url", &database, "--access-token-ttl", "2"],
        &[],
    )
    .await;
    let base = format!("http://{}", hub.address);
    let me_url = format!("{base}/api/auth/me");
    assert_eq!(
        call(&http, Method::GET, &me_url, Some(&viewer), None)
            .await
            .0,
        401
    );
    let refresh = |token: String| {
        let (http, url) = (http.clone(), format!("{base}/api/auth/refresh"));
        async move {
            call(
                &http,
                Method::POST,
                &url,
                None,
                Some(json!({ "refresh_token": token })),
            )
            .await
        }
    };
    let (status, renewed) = refresh(kept_refresh.clone()).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["expires_in"], 2);
    let access = renewed["access_token"].as_str().unwrap().to_owned();
    let (status, me) = call(&http, Method::GET, &me_url, Some(&access), None).await;
    assert_eq!((status, &me["name"]), (200, &json!("bob")));
    // Each refresh token works once.
    assert_eq!(refresh(kept_refresh).await.0, 401);

    // The access token expires; the refresh token gets a new one.
    let started = std::time::Instant::now();
    let expired = loop {
        let (status, body) = call(&http, Method::GET, &me_url, Some(&access), None).await;
        if status == 401 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the token never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(message(&expired).contains("expired"), "{expired}");
    let (status, again) = refresh(renewed["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &http,
        Method::GET,
        &me_url,
        Some(again["access_token"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(refresh("made-up".into()).await.0, 401);

    // Guessing is slowed down: after a burst of failures the address must wait.
    let mut limited = false;
    for _ in 0..15 {
        let (status, _) = log_in(&http, &base, "alice", "guess-guess").await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "failed logins are limited per address");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_login_is_off_and_says_how_to_turn_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("hub.db").display());
    let hub = support::spawn_hub(&["--database-url", &database], &[]).await;
    let base = format!("http://{}", hub.address);
    let http = reqwest::Client::new();
    let (status, body) = call(&http, Method::GET, &format!("{base}/api/auth"), None, None).await;
    assert_eq!((status, &body["login"]), (200, &json!(false)));
    let (status, body) = log_in(&http, &base, "alice", "alice-secret-1").await;
    assert_eq!(status, 404);
    assert!(message(&body).contains("mcp-hub user add"), "{body}");
    // Loopback without credentials: everyone is the local admin.
    let (status, me) = call(
        &http,
        Method::GET,
        &format!("{base}/api/auth/me"),
        None,
        None,
    )
    .await;
    assert_eq!((status, &me["auth"]), (200, &json!(false)));
    hub.stop().await;
}
