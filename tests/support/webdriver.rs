//! Headless Chromium for the browser tests, driven over the W3C WebDriver protocol (JSON over
//! plain HTTP) by Debian's `chromedriver`. Included with `#[path]` by the tests that need it,
//! so the other test binaries do not build it.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` a test skips (prints that it did),
//! except under `CI=true`, where it fails: `.ci/run` installs both.

#![allow(dead_code)] // Each browser test uses part of this.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Bound on starting chromedriver.
const START_WAIT: Duration = Duration::from_secs(20);
/// How often the DOM is polled while waiting for something.
const POLL: Duration = Duration::from_millis(20);
/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser is here; false means skip (and fails under CI, which installs it).
pub(crate) fn browser_available() -> bool {
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

/// `chromedriver` in a process group of its own, so that the browser it starts goes with it
/// even when the test fails half-way (killing chromedriver alone would orphan Chromium).
pub(crate) struct Driver {
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

pub(crate) async fn spawn_driver() -> Result<Driver> {
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
        let line = tokio::time::timeout(START_WAIT, lines.next_line())
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
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Driver,
}

impl Browser {
    pub(crate) async fn start(driver: Driver) -> Result<Self> {
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

    pub(crate) async fn goto(&self, url: &str) -> Result<()> {
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
    pub(crate) async fn run(&self, script: &str, args: Value) -> Result<Value> {
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
    pub(crate) async fn wait_for(
        &self,
        selector: &str,
        since: Instant,
        limit: Duration,
    ) -> Result<Duration> {
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
    pub(crate) async fn wait_until(&self, what: &str, script: &str, limit: Duration) -> Result<()> {
        self.wait_until_with(what, script, json!([]), limit).await
    }

    /// Polls until `script`, given `args`, returns true.
    pub(crate) async fn wait_until_with(
        &self,
        what: &str,
        script: &str,
        args: Value,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.run(script, args.clone()).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let state = self
                    .run(
                        "return ['connection', 'gw-connection']
                           .map((id) => document.getElementById(id))
                           .filter(Boolean)
                           .map((c) => c.id + ': ' + c.getAttribute('data-state') + ' / ' + c.textContent)
                           .join('; ');",
                        json!([]),
                    )
                    .await
                    .unwrap_or(Value::Null);
                bail!("{what} did not happen within {limit:?} ({state})");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The WebDriver reference of the first element `selector` matches.
    async fn element(&self, selector: &str) -> Result<String> {
        let found = command(
            &self.http,
            reqwest::Method::POST,
            &self.url("/element"),
            Some(json!({ "using": "css selector", "value": selector })),
        )
        .await
        .with_context(|| format!("finding {selector}"))?;
        Ok(found[ELEMENT]
            .as_str()
            .with_context(|| format!("{selector}: no element reference in {found}"))?
            .to_owned())
    }

    /// Clicks the element as a user does (it must be visible and enabled).
    pub(crate) async fn click(&self, selector: &str) -> Result<()> {
        let element = self.element(selector).await?;
        command(
            &self.http,
            reqwest::Method::POST,
            &self.url(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await
        .with_context(|| format!("clicking {selector}"))?;
        Ok(())
    }

    /// Types `text` into the element as a user does.
    pub(crate) async fn type_into(&self, selector: &str, text: &str) -> Result<()> {
        let element = self.element(selector).await?;
        command(
            &self.http,
            reqwest::Method::POST,
            &self.url(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await
        .with_context(|| format!("typing into {selector}"))?;
        Ok(())
    }

    pub(crate) async fn screenshot(&self, file: &Path) -> Result<()> {
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

    pub(crate) async fn quit(self) -> Result<()> {
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
