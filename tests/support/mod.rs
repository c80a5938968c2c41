//! What the end-to-end tests share: starting `mcp-hub serve` and stopping it as a user does,
//! one REST call, the `echo_upstream` example, and the PostgreSQL + Redis that `.ci/run`
//! provides (with a schema of each test's own).

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses part of this.

#[path = "../../benches/support/mod.rs"]
mod spawn;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

pub(crate) use spawn::{Announces, spawn_listening};

const WAIT: Duration = Duration::from_secs(20);

/// The built `echo_upstream` example (`cargo build --examples` first).
pub(crate) fn echo_upstream() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let path = debug.join("examples").join("echo_upstream");
    assert!(
        path.exists(),
        "{} is missing: build the examples first (cargo build --examples)",
        path.display()
    );
    path
}

/// One JSON call to a service: its status and JSON body (`null` when the body is not JSON).
pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (status, json, _) = call_with_text(http, method, url, token, body).await;
    (status, json)
}

/// [`call`], with the body's text too (an HTML report, an error's wording).
pub(crate) async fn call_with_text(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, String) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, json, text)
}

/// A running `mcp-hub serve` and the address it bound.
pub(crate) struct Hub {
    pub(crate) child: tokio::process::Child,
    pub(crate) address: String,
}

/// `mcp-hub serve --listen <listen> <args>`, with none of the caller's hub settings but `env`.
pub(crate) async fn spawn_hub_on(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Hub {
    let (child, address) = spawn_listening(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-hub"))
            .args(["serve", "--listen", listen])
            .args(args)
            .env("MCP_HUB_LOG", "info")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("MCP_HUB_API_KEYS")
            .env_remove("MCP_HUB_API_KEYS_FILE")
            .env_remove("JWT_SECRET")
            .envs(env.iter().copied()),
        Announces::OnStderr,
    )
    .await
    .unwrap();
    Hub { child, address }
}

/// `mcp-hub serve` on a free loopback port.
pub(crate) async fn spawn_hub(args: &[&str], env: &[(&str, &str)]) -> Hub {
    spawn_hub_on("127.0.0.1:0", args, env).await
}

impl Hub {
    /// Stops the hub with SIGTERM and checks it exits cleanly in time, live connections or not.
    pub(crate) async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the hub stops on SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

/// `TEST_DATABASE_URL` and `TEST_REDIS_URL`, or `None` after saying the test skipped (under
/// `CI`, where `.ci/run` provides both, a missing one fails instead).
pub(crate) fn postgres_and_redis(what: &str) -> Option<(String, String)> {
    match (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_REDIS_URL"),
    ) {
        (Ok(database), Ok(redis)) => Some((database, redis)),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "TEST_DATABASE_URL and TEST_REDIS_URL must be set in CI"
            );
            eprintln!("skipped: TEST_DATABASE_URL or TEST_REDIS_URL is not set; {what} not tested");
            None
        }
    }
}

/// A fresh schema in `database` and a URL whose connections use it, so runs and tests do not
/// see each other's rows. Drop it with [`drop_schema`].
pub(crate) async fn fresh_schema(database: &str, prefix: &str) -> (String, String) {
    use sqlx::{Connection, Executor};
    let schema = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut conn = sqlx::PgConnection::connect(database).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let separator = if database.contains('?') { '&' } else { '?' };
    (
        format!("{database}{separator}options[search_path]={schema}"),
        schema,
    )
}

pub(crate) async fn drop_schema(database: &str, schema: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(database).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
}
