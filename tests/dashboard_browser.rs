//! End to end in headless Chromium: the dashboard page served by the built `mcp-hub` shows
//! pushed snapshots live (within a second, without a reload), driven over the W3C WebDriver
//! protocol by Debian's `chromedriver`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test prints that it skipped,
//! except under `CI=true`, where it fails: `.ci/run` installs both.

use std::{
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

/// Bound on starting a process and on any single wait that is not the measured one.
const WAIT: Duration = Duration::from_secs(20);
/// The issue's promise: a push shows on an open page within this long.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use webdriver::{Browser, browser_available, spawn_driver};

/// `mcp-hub serve` on `listen` with its SQLite file at `database`.
async fn spawn_hub(listen: &str, database: &Path) -> Result<support::Hub> {
    let url = format!("sqlite:{}", database.display());
    Ok(support::spawn_hub_on(listen, &["--database-url", &url], &[]).await)
}

static PUSHES: AtomicUsize = AtomicUsize::new(0);

/// Pushes one snapshot the way a Sink does and checks the hub's receipt.
async fn push(http: &reqwest::Client, hub: &str, channel: &str, body: Value) -> Result<()> {
    let response = http
        .post(format!("http://{hub}/api/dashboard/sync/{channel}"))
        // One key per push: the hub remembers keys (across restarts) and skips a repeat.
        .header(
            "Idempotency-Key",
            format!("browser-test-{}", PUSHES.fetch_add(1, Ordering::Relaxed)),
        )
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let receipt: Value = response.json().await?;
    ensure!(status.is_success(), "push to {channel}: {status} {receipt}");
    ensure!(receipt["channel"] == channel, "receipt: {receipt}");
    Ok(())
}

fn issues_payload() -> Value {
    json!({"repository": "acme/api", "title": "Open issues", "data": {"state": "open", "issues": [
        {"number": 1, "title": "Login fails with SSO", "state": "open", "labels": ["bug", "auth"],
         "assignees": ["alice"], "author": "bob", "comments": 3,
         "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-12-01T09:00:00Z",
         "closed_at": null, "url": "https://github.com/acme/api/issues/1"},
        {"number": 2, "title": "Rate limit headers missing", "state": "open", "labels": ["enhancement"],
         "assignees": [], "author": "carol", "comments": 0,
         "created_at": "2026-11-28T10:00:00Z", "updated_at": "2026-11-30T12:00:00Z",
         "closed_at": null, "url": "https://github.com/acme/api/issues/2"},
        // Hostile data: markup in a title and a script URL must stay inert text.
        {"number": 3, "title": "<img src=x onerror=\"window.__xss=1\">", "state": "open",
         "labels": [], "assignees": [], "author": "mallory", "comments": 1,
         "created_at": "2026-11-29T10:00:00Z", "updated_at": "2026-11-29T10:00:00Z",
         "closed_at": null, "url": "javascript:window.__xss=1"}
    ]}})
}

fn pull_requests_payload() -> Value {
    json!({"repository": "acme/api", "title": "Open PRs", "data": {
    "summary": {"open": 2, "stale": 1, "awaiting_review": 1, "failing_ci": 1},
    "pull_requests": [
        {"number": 7, "title": "Add SSO login", "author": "alice", "url": "https://github.com/acme/api/pull/7",
         "created_at": "2026-11-29T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z", "age_days": 3,
         "draft": false, "additions": 120, "deletions": 20, "changed_files": 6, "size": "M",
         "review_state": "review_required", "ci_state": "failure", "stale": false, "labels": ["auth"]},
        {"number": 5, "title": "Bump dependencies", "author": "dependabot", "url": "https://github.com/acme/api/pull/5",
         "created_at": "2026-11-02T10:00:00Z", "updated_at": "2026-11-10T10:00:00Z", "age_days": 30,
         "draft": false, "additions": 8, "deletions": 8, "changed_files": 1, "size": "XS",
         "review_state": "approved", "ci_state": "success", "stale": true, "labels": []}
    ]}})
}

fn commits_payload() -> Value {
    json!({"repository": "acme/api", "title": "Commits this week", "data": {
        "since": "2026-11-25T00:00:00Z", "until": "2026-12-02T00:00:00Z", "total": 14,
        "days": [
            {"date": "2026-11-25", "total": 3, "authors": [{"author": "alice", "commits": 2}, {"author": "bob", "commits": 1}]},
            {"date": "2026-11-26", "total": 5, "authors": [{"author": "alice", "commits": 1}, {"author": "carol", "commits": 4}]},
            {"date": "2026-11-28", "total": 2, "authors": [{"author": "bob", "commits": 2}]},
            {"date": "2026-12-01", "total": 4, "authors": [{"author": "alice", "commits": 3}, {"author": "carol", "commits": 1}]}
        ],
        "authors": [{"author": "alice", "commits": 6}, {"author": "carol", "commits": 5}, {"author": "bob", "commits": 3}]
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_shows_on_the_open_page_within_a_second_without_a_reload() -> Result<()> {
    if !browser_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let database = dir.path().join("hub.db");
    let hub = spawn_hub("127.0.0.1:0", &database).await?;
    let browser = Browser::start(spawn_driver().await?).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()?;

    browser.goto(&format!("http://{}/", hub.address)).await?;
    browser
        .wait_until(
            "the live connection",
            "return document.getElementById('connection')?.getAttribute('data-state') === 'open';",
            WAIT,
        )
        .await?;
    // The empty page already tells the user what to ask for.
    let hint = browser
        .run(
            "return document.getElementById('issues').textContent;",
            json!([]),
        )
        .await?;
    ensure!(
        hint.as_str().unwrap_or_default().contains("Ask your agent"),
        "empty state: {hint}"
    );
    browser.run("window.__marker = 1;", json!([])).await?;

    // Measured from before the POST: the promise is about what a user sees after an agent pushes.
    let pushed = Instant::now();
    push(&http, &hub.address, "issues", issues_payload()).await?;
    let acknowledged = pushed.elapsed();
    let shown = browser
        .wait_for(
            r#"[data-issue="acme/api#2"]"#,
            pushed,
            Duration::from_secs(10),
        )
        .await?;
    eprintln!("issues: push acknowledged after {acknowledged:?}, shown after {shown:?}");
    ensure!(
        shown <= LIVE_WITHIN,
        "the pushed issues took {shown:?} to show"
    );
    ensure!(
        browser.run("return window.__marker;", json!([])).await? == json!(1),
        "the page reloaded"
    );

    let issue = browser
        .run(
            r#"const li = document.querySelector('[data-issue="acme/api#1"]');
               const a = li.querySelector('a');
               return {text: li.textContent, href: a && a.href,
                       chips: [...li.querySelectorAll('.chip')].map(c => c.textContent)};"#,
            json!([]),
        )
        .await?;
    ensure!(
        issue["href"] == "https://github.com/acme/api/issues/1",
        "issue 1: {issue}"
    );
    ensure!(issue["chips"] == json!(["bug", "auth"]), "issue 1: {issue}");
    let text = issue["text"].as_str().unwrap_or_default();
    for part in ["#1", "Login fails with SSO", "alice", "bob", "3"] {
        ensure!(text.contains(part), "issue 1 lacks {part:?}: {text}");
    }
    let hostile = browser
        .run(
            r#"const li = document.querySelector('[data-issue="acme/api#3"]');
               return {img: li.querySelector('img') !== null, link: li.querySelector('a') !== null,
                       text: li.querySelector('.issue-title').textContent, xss: window.__xss === 1};"#,
            json!([]),
        )
        .await?;
    ensure!(
        hostile["img"] == false && hostile["link"] == false && hostile["xss"] == false,
        "hostile data was not inert: {hostile}"
    );
    ensure!(
        hostile["text"]
            .as_str()
            .unwrap_or_default()
            .contains("<img"),
        "hostile title not shown as text: {hostile}"
    );

    let pushed = Instant::now();
    push(
        &http,
        &hub.address,
        "pull_requests",
        pull_requests_payload(),
    )
    .await?;
    let shown = browser
        .wait_for(r#"[data-pr="acme/api#7"]"#, pushed, Duration::from_secs(10))
        .await?;
    eprintln!("pull requests: shown after {shown:?}");
    ensure!(
        shown <= LIVE_WITHIN,
        "the pushed pull requests took {shown:?} to show"
    );

    let pushed = Instant::now();
    push(&http, &hub.address, "commits", commits_payload()).await?;
    let shown = browser
        .wait_for("#commit-chart svg rect", pushed, Duration::from_secs(10))
        .await?;
    eprintln!("commits: chart drawn after {shown:?}");
    ensure!(
        shown <= LIVE_WITHIN,
        "the commit chart took {shown:?} to show"
    );

    // One custom channel, shown as a table in "other channels".
    let flat = json!({"repository": "acme/api", "title": "Release blockers", "data": [
        {"item": "SSO login", "owner": "alice", "due": "2026-12-05"},
        {"item": "Rate limit headers", "owner": "carol", "due": "2026-12-08"}
    ]});
    push(&http, &hub.address, "release-blockers", flat).await?;
    browser
        .wait_for(
            r#"#other [data-channel="release-blockers"] table"#,
            Instant::now(),
            WAIT,
        )
        .await?;

    let page = browser
        .run(
            r#"return {marker: window.__marker,
                       repos: [...document.querySelectorAll('#repo-filter option')].map(o => o.value),
                       bars: document.querySelectorAll('#commit-chart svg rect').length,
                       state: document.getElementById('connection').getAttribute('data-state')};"#,
            json!([]),
        )
        .await?;
    ensure!(page["marker"] == 1, "the page reloaded: {page}");
    ensure!(
        page["repos"] == json!(["", "acme/api"]),
        "repository filter: {page}"
    );
    // Seven stacked segments: one per (day, author) pair in the commits payload.
    ensure!(page["bars"] == 7, "commit chart: {page}");
    ensure!(page["state"] == "open", "connection: {page}");

    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&file).await?;
    eprintln!("screenshot: {}", file.display());

    // A hub restart: the page notices, says so, reconnects by itself (backoff is capped at
    // 10 s) and goes on receiving pushes, still without a reload.
    let address = hub.address.clone();
    hub.stop().await;
    browser
        .wait_until(
            "the page noticing the hub is gone",
            "const c = document.getElementById('connection');
             return c.getAttribute('data-state') !== 'open' && /reconnect/.test(c.textContent);",
            WAIT,
        )
        .await?;
    let mut hub = spawn_hub(&address, &database).await?;
    browser
        .wait_until(
            "the page reconnecting",
            "return document.getElementById('connection').getAttribute('data-state') === 'open';",
            WAIT,
        )
        .await?;
    ensure!(
        browser
            .run(
                r#"return document.querySelector('[data-issue="acme/api#1"]') !== null;"#,
                json!([])
            )
            .await?
            == true,
        "the issues vanished after the reconnect"
    );
    let mut more = issues_payload();
    more["data"]["issues"][0]["number"] = json!(4);
    push(&http, &hub.address, "issues", more).await?;
    browser
        .wait_for(r#"[data-issue="acme/api#4"]"#, Instant::now(), WAIT)
        .await?;
    ensure!(
        browser.run("return window.__marker;", json!([])).await? == json!(1),
        "the page reloaded across the hub restart"
    );

    browser.quit().await?;
    ensure!(
        hub.child.try_wait()?.is_none(),
        "mcp-hub exited during the test"
    );
    Ok(())
}
