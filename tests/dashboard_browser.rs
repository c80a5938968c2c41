//! End to end in headless Chromium: the dashboard page served by the built `mcp-hub` shows
//! pushed snapshots live (within a second, without a reload), driven over the W3C WebDriver
//! protocol by Debian's `chromedriver`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test prints that it skipped,
//! except under `CI=true`, where it fails: `.ci/run` installs both.

use std::{
    path::Path,
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Bound on starting a process and on any single wait that is not the measured one.
const WAIT: Duration = Duration::from_secs(20);
/// The issue's promise: a push shows on an open page within this long.
const LIVE_WITHIN: Duration = Duration::from_secs(1);
/// How often the DOM is polled while waiting for an element.
const POLL: Duration = Duration::from_millis(20);

mod support;

/// `mcp-hub serve` on `listen` with its SQLite file at `database`.
async fn spawn_hub(listen: &str, database: &Path) -> Result<support::Hub> {
    let url = format!("sqlite:{}", database.display());
    Ok(support::spawn_hub_on(listen, &["--database-url", &url], &[]).await)
}

/// `chromedriver` in a process group of its own, so that the browser it starts goes with it
/// even when the test fails half-way (killing chromedriver alone would orphan Chromium).
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                // `--` so that kill reads `-PID` as a process group, not an option.
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn spawn_driver() -> Result<Driver> {
    // chromedriver cannot report a port it picked itself, so take a free one from the kernel.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("spawning chromedriver")?;
    let mut lines = BufReader::new(child.stdout.take().context("chromedriver stdout")?).lines();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .context("chromedriver did not start in time")??
            .context("chromedriver exited before it was ready")?;
        if line.contains("started successfully") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

/// One WebDriver session (one headless Chromium).
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Driver,
}

impl Browser {
    async fn start(driver: Driver) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-crash-reporter", "--window-size=1440,1400"],
            },
        }}});
        let reply = command(
            &http,
            reqwest::Method::POST,
            &format!("{}/session", driver.base),
            Some(capabilities),
        )
        .await
        .context("creating a Chromium session")?;
        let session = reply["sessionId"]
            .as_str()
            .context("no sessionId in the new-session reply")?
            .to_owned();
        Ok(Self {
            http,
            session,
            driver,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver.base, self.session)
    }

    async fn goto(&self, url: &str) -> Result<()> {
        let url_path = self.url("/url");
        command(
            &self.http,
            reqwest::Method::POST,
            &url_path,
            Some(json!({ "url": url })),
        )
        .await?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    async fn run(&self, script: &str, args: Value) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        command(
            &self.http,
            reqwest::Method::POST,
            &self.url("/execute/sync"),
            Some(body),
        )
        .await
    }

    /// Polls the DOM until `selector` matches; returns how long that took from `since`.
    async fn wait_for(&self, selector: &str, since: Instant, limit: Duration) -> Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .run(
                    "return document.querySelector(arguments[0]) !== null;",
                    json!([selector]),
                )
                .await?;
            if found == Value::Bool(true) {
                return Ok(since.elapsed());
            }
            if Instant::now() > deadline {
                bail!("{selector} did not appear within {limit:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `script` returns true.
    async fn wait_until(&self, what: &str, script: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.run(script, json!([])).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let state = self
                    .run("const c = document.getElementById('connection'); return c && c.getAttribute('data-state') + ' / ' + c.textContent;", json!([]))
                    .await
                    .unwrap_or(Value::Null);
                bail!("{what} did not happen within {limit:?} (connection: {state})");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn screenshot(&self, file: &Path) -> Result<()> {
        let png = command(
            &self.http,
            reqwest::Method::GET,
            &self.url("/screenshot"),
            None,
        )
        .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("screenshot is not a string")?)?;
        std::fs::write(file, png)?;
        Ok(())
    }

    async fn quit(self) -> Result<()> {
        command(&self.http, reqwest::Method::DELETE, &self.url(""), None).await?;
        Ok(())
    }
}

/// One WebDriver command; returns its `value`, or the driver's error as an error.
async fn command(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status();
    let mut reply: Value = response
        .json()
        .await
        .with_context(|| format!("{method} {url}: reply"))?;
    let value = reply["value"].take();
    if !status.is_success() {
        bail!(
            "{method} {url}: {status}: {} — {}",
            value["error"],
            value["message"]
        );
    }
    Ok(value)
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

/// Whether the browser is here; false means skip (and fails under CI, which installs it).
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} missing; CI must install Debian's chromium and chromium-driver",
        missing.join(" and ")
    );
    eprintln!("skipped: {} not installed", missing.join(" and "));
    false
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
