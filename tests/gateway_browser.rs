//! End to end in headless Chromium: with the MCP gateway on, the page served by the built
//! `mcp-hub` shows the upstream servers (with their live state and the controls), the tool
//! catalog and the merged logs, and follows them live (no reload) over the gateway's event
//! stream. Two `echo_upstream` children are the upstreams; the hub has API keys, so the page's
//! token handling (bearer header, `access_token` on the `EventSource`) is exercised too.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test prints that it skipped,
//! except under `CI=true`, where it fails: `.ci/run` installs both.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use webdriver::{Browser, browser_available, spawn_driver};

/// Bound on any single wait (a restart includes the backoff and the child's start).
const WAIT: Duration = Duration::from_secs(20);
/// A key with read scope: what a dashboard viewer has.
const READ_KEY: &str = "rrrrrrrrrrrrrrrrrrrrrrrr";
/// A key with admin scope: may start, stop and restart upstreams.
const ADMIN_KEY: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";

/// The `echo_upstream` example, built by `cargo test` next to the test binaries.
fn echo_upstream() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // The test runs from <target>/debug/deps/; the examples are in <target>/debug/examples/.
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary has no target directory")?;
    let path = debug.join("examples").join("echo_upstream");
    if !path.exists() {
        bail!(
            "{} is missing: build the examples (`cargo test` does, or `cargo build --example echo_upstream`)",
            path.display()
        );
    }
    Ok(path)
}

fn hub_config(upstream: &Path) -> String {
    let command = upstream.display().to_string();
    format!(
        r#"[gateway]
prefix = "conditional"
health_interval = "1s"
restart_initial = "100ms"

[servers.a]
command = {command:?}
args = ["stdio", "--name", "alpha", "--stderr-line", "hello from a"]

[servers.b]
command = {command:?}
args = ["stdio", "--name", "beta"]
tools = {{ deny = ["fail"] }}
"#
    )
}

/// Calls a gateway tool over REST as a script would, with the admin key.
async fn call(http: &reqwest::Client, hub: &str, tool: &str, arguments: Value) -> Result<Value> {
    let response = http
        .post(format!("http://{hub}/api/tools/{tool}/execute"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "arguments": arguments }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    Ok(json!({ "status": status.as_u16(), "body": body }))
}

/// A server's row as the page shows it.
async fn server_row(browser: &Browser, id: &str) -> Result<Value> {
    browser
        .run(
            r#"const tr = document.querySelector(`#servers tr[data-server="${arguments[0]}"]`);
               if (!tr) return null;
               const text = (sel) => tr.querySelector(sel)?.textContent ?? null;
               const button = (a) => tr.querySelector(`button[data-action="${a}"]`).disabled;
               return {state: tr.dataset.state, restarts: Number(text('.restarts')), pid: text('.pid'),
                       tools: text('.tools'), error: text('td.error'), note: text('.action-note'),
                       noteBad: tr.querySelector('.action-note').classList.contains('bad'),
                       text: tr.textContent,
                       disabled: {restart: button('restart'), stop: button('stop'), start: button('start')}};"#,
            json!([id]),
        )
        .await
}

/// Starts recording the `data-state` values a server's row goes through.
async fn watch_states(browser: &Browser, id: &str) -> Result<()> {
    browser
        .run(
            r#"const id = arguments[0];
               const tr = document.querySelector(`#servers tr[data-server="${id}"]`);
               window.__states = window.__states || {};
               window.__states[id] = [tr.dataset.state];
               new MutationObserver(() => {
                 const list = window.__states[id];
                 if (list[list.length - 1] !== tr.dataset.state) list.push(tr.dataset.state);
               }).observe(tr, {attributes: true, attributeFilter: ['data-state']});"#,
            json!([id]),
        )
        .await?;
    Ok(())
}

async fn states(browser: &Browser, id: &str) -> Result<Vec<String>> {
    let list = browser
        .run("return window.__states[arguments[0]];", json!([id]))
        .await?;
    Ok(serde_json::from_value(list)?)
}

async fn wait_healthy(browser: &Browser, id: &str, restarts: u64) -> Result<()> {
    browser
        .wait_until_with(
            &format!("server {id} healthy with {restarts} restart(s)"),
            r#"const tr = document.querySelector(`#servers tr[data-server="${arguments[0]}"]`);
               return !!tr && tr.dataset.state === 'healthy'
                 && Number(tr.querySelector('.restarts').textContent) === arguments[1];"#,
            json!([id, restarts]),
            WAIT,
        )
        .await
}

/// The messages of the log rows shown, with their level and source.
async fn log_rows(browser: &Browser) -> Result<Vec<Value>> {
    let rows = browser
        .run(
            r#"return [...document.querySelectorAll('#log-rows tr')].map((tr) => ({
                 level: tr.dataset.level, source: tr.querySelector('.src').textContent,
                 message: tr.querySelector('.msg').textContent}));"#,
            json!([]),
        )
        .await?;
    Ok(serde_json::from_value(rows)?)
}

async fn wait_log(browser: &Browser, what: &str, message: &str) -> Result<()> {
    browser
        .wait_until_with(
            what,
            "return [...document.querySelectorAll('#log-rows .msg')].some((m) => m.textContent === arguments[0]);",
            json!([message]),
            WAIT,
        )
        .await
}

async fn choose(browser: &Browser, select: &str, value: &str) -> Result<()> {
    browser
        .click(&format!(r#"{select} option[value="{value}"]"#))
        .await
}

async fn ensure_not_reloaded(browser: &Browser) -> Result<()> {
    ensure!(
        browser.run("return window.__marker;", json!([])).await? == json!(1),
        "the page reloaded"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_the_gateways_servers_tools_and_logs_live() -> Result<()> {
    if !browser_available() {
        return Ok(());
    }
    let upstream = echo_upstream()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hub.toml");
    std::fs::write(&config, hub_config(&upstream))?;
    let keys = format!("read {READ_KEY} viewer,admin {ADMIN_KEY} operator");
    let mut hub = support::spawn_hub(
        &[
            "--database-url",
            "memory:",
            "--config",
            config.to_str().context("temporary path")?,
        ],
        &[("MCP_HUB_API_KEYS", &keys)],
    )
    .await;
    let address = hub.address.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()?;
    let browser = Browser::start(spawn_driver().await?).await?;

    // ---- a viewer (read scope) ----
    browser
        .goto(&format!("http://{address}/#token={READ_KEY}"))
        .await?;
    browser
        .wait_until(
            "the gateway's event stream",
            "return document.getElementById('gw-connection')?.getAttribute('data-state') === 'open';",
            WAIT,
        )
        .await?;
    browser.run("window.__marker = 1;", json!([])).await?;
    ensure!(
        browser
            .run("return !document.getElementById('servers').hidden && !document.getElementById('tools').hidden && !document.getElementById('logs').hidden;", json!([]))
            .await?
            == true,
        "the gateway sections are hidden"
    );
    browser
        .wait_until(
            "both servers healthy",
            "const rows = [...document.querySelectorAll('#servers tr[data-server]')];
             return rows.map((r) => r.dataset.server).join() === 'a,b' && rows.every((r) => r.dataset.state === 'healthy');",
            WAIT,
        )
        .await?;
    let a = server_row(&browser, "a").await?;
    let text = a["text"].as_str().unwrap_or_default();
    for part in ["alpha 0.1.0", "stdio", "echo_upstream stdio --name alpha"] {
        ensure!(text.contains(part), "server a lacks {part:?}: {a}");
    }
    ensure!(a["restarts"] == 0, "server a: {a}");
    ensure!(
        a["pid"]
            .as_str()
            .is_some_and(|pid| pid.parse::<u32>().is_ok()),
        "server a has no pid: {a}"
    );
    ensure!(
        a["disabled"] == json!({"restart": false, "stop": false, "start": true}),
        "the buttons of a healthy server: {a}"
    );
    browser
        .wait_until(
            "the status summary",
            "const sub = document.getElementById('servers-sub');
             return sub.querySelector('.badge')?.textContent === 'ok'
                 && sub.textContent.includes('2 of 2 healthy');",
            WAIT,
        )
        .await?;

    // /api/tools lists the whole catalog: a read key without access rules sees every tool,
    // each marked as not callable with it, and the subtitle counts them.
    browser
        .wait_until(
            "the viewer's tools, as many as the servers count",
            "const rows = document.querySelectorAll('#tools tr[data-tool]').length;
             const counted = [...document.querySelectorAll('#servers tr[data-server] .tools')]
               .reduce((n, c) => n + Number(c.textContent), 0);
             return rows > 2 && rows === counted
               && document.getElementById('tools-sub').textContent.startsWith(rows + ' tools from 2 servers');",
            WAIT,
        )
        .await?;
    let viewer_tools = browser
        .run(
            r#"const rows = [...document.querySelectorAll('#tools tr[data-tool]')];
               return {rows: rows.length,
                       denied: rows.filter((r) => r.dataset.callable === 'false'
                         && r.querySelector('.badge.not-callable')?.textContent === 'not callable with this token'
                         && r.querySelector('.badge.not-callable').title.includes('[[access]]')).length,
                       sub: document.getElementById('tools-sub').textContent,
                       body: document.getElementById('tools-body').textContent};"#,
            json!([]),
        )
        .await?;
    let listed = viewer_tools["rows"].as_u64().unwrap_or_default();
    ensure!(
        listed > 2 && viewer_tools["denied"] == listed,
        "the viewer's tools, each not callable: {viewer_tools}"
    );
    ensure!(
        viewer_tools["sub"]
            == format!("{listed} tools from 2 servers · {listed} not callable with this token"),
        "the viewer's tools subtitle: {viewer_tools}"
    );
    ensure!(
        !viewer_tools["body"]
            .as_str()
            .unwrap_or_default()
            .contains("may be called with this token"),
        "the old empty state: {viewer_tools}"
    );

    // Controls need admin scope: the hub's refusal shows next to the server.
    browser
        .click(r#"#servers tr[data-server="b"] button[data-action="restart"]"#)
        .await?;
    browser
        .wait_until(
            "the refusal next to server b",
            r#"const note = document.querySelector('#servers tr[data-server="b"] .action-note');
               return note.classList.contains('bad') && note.textContent.includes('admin scope');"#,
            WAIT,
        )
        .await?;
    let b = server_row(&browser, "b").await?;
    ensure!(
        b["state"] == "healthy" && b["restarts"] == 0,
        "a refused restart changed b: {b}"
    );

    // A log line, hostile markup included, shows up live as text.
    let message = r#"browser test <img src=x onerror="window.__xss=1"> one"#;
    let logged = call(
        &http,
        &address,
        "a__log",
        json!({"level": "warning", "message": message}),
    )
    .await?;
    ensure!(logged["status"] == 200, "a__log: {logged}");
    wait_log(&browser, "the warning in the logs", message).await?;
    let rows = log_rows(&browser).await?;
    ensure!(
        rows.iter()
            .any(|r| r["message"] == message && r["level"] == "warning" && r["source"] == "mcp"),
        "log rows: {rows:?}"
    );
    ensure!(
        rows.iter().any(|r| r["message"] == "hello from a"),
        "the startup stderr line is missing: {rows:?}"
    );
    ensure!(
        browser
            .run(
                "return document.querySelector('#logs img') === null && window.__xss !== 1;",
                json!([])
            )
            .await?
            == true,
        "hostile log text was not inert"
    );

    ensure_not_reloaded(&browser).await?;

    // ---- an operator (admin scope), in a freshly loaded page ----
    browser.goto("about:blank").await?;
    browser
        .goto(&format!("http://{address}/#token={ADMIN_KEY}"))
        .await?;
    browser
        .wait_until(
            "the gateway's event stream",
            "return document.getElementById('gw-connection')?.getAttribute('data-state') === 'open';",
            WAIT,
        )
        .await?;
    browser.run("window.__marker = 1;", json!([])).await?;

    // The catalog, with what it leaves out.
    browser
        .wait_for(r#"#tools tr[data-tool="a__echo"]"#, Instant::now(), WAIT)
        .await?;
    let echo = browser
        .run(
            r#"const tr = document.querySelector('#tools tr[data-tool="a__echo"]');
               return tr.textContent;"#,
            json!([]),
        )
        .await?;
    ensure!(
        echo.as_str()
            .is_some_and(|t| t.contains("Return the text unchanged.") && t.contains("text")),
        "tool a__echo: {echo}"
    );
    ensure!(
        browser
            .run(
                "return document.querySelector('#tools .badge.not-callable') === null
                    && !document.getElementById('tools-sub').textContent.includes('not callable');",
                json!([])
            )
            .await?
            == true,
        "a tool marked not callable for the admin key"
    );
    let hidden = browser
        .run(
            "const d = document.getElementById('tools-hidden'); return {hidden: d.hidden, text: d.textContent};",
            json!([]),
        )
        .await?;
    let hidden_text = hidden["text"].as_str().unwrap_or_default();
    ensure!(
        hidden["hidden"] == false
            && hidden_text.contains("fail")
            && hidden_text.contains("allow/deny")
            && hidden_text.contains("echo://info"),
        "the hidden list: {hidden}"
    );
    browser.type_into("#tool-filter", "ECHO").await?;
    browser
        .wait_until(
            "the filter to keep the echo tools",
            "return [...document.querySelectorAll('#tools tr[data-tool]')].map((r) => r.dataset.tool).join() === 'a__echo,b__echo';",
            WAIT,
        )
        .await?;
    browser
        .run(
            "const f = document.getElementById('tool-filter'); f.value = ''; f.dispatchEvent(new Event('input'));",
            json!([]),
        )
        .await?;

    // The minimum level filters what is shown, and what arrives live.
    choose(&browser, "#log-level", "error").await?;
    browser
        .wait_until(
            "only errors",
            "const rows = [...document.querySelectorAll('#log-rows tr')];
             return rows.every((r) => r.dataset.level === 'error');",
            WAIT,
        )
        .await?;
    call(
        &http,
        &address,
        "a__log",
        json!({"level": "warning", "message": "filtered out"}),
    )
    .await?;
    call(
        &http,
        &address,
        "a__log",
        json!({"level": "error", "message": "browser test two"}),
    )
    .await?;
    wait_log(
        &browser,
        "the error in the filtered logs",
        "browser test two",
    )
    .await?;
    let rows = log_rows(&browser).await?;
    ensure!(
        rows.iter().all(|r| r["level"] == "error"),
        "a warning passed the error filter: {rows:?}"
    );
    choose(&browser, "#log-level", "").await?;
    wait_log(
        &browser,
        "the warnings back without the filter",
        "filtered out",
    )
    .await?;

    // Paused, new lines are held (and counted) until resumed.
    browser.click("#log-pause").await?;
    call(
        &http,
        &address,
        "a__log",
        json!({"level": "info", "message": "browser test three"}),
    )
    .await?;
    browser
        .wait_until(
            "the held lines counted",
            "return /Resume \\(\\d+ new\\)/.test(document.getElementById('log-pause').textContent);",
            WAIT,
        )
        .await?;
    ensure!(
        !log_rows(&browser)
            .await?
            .iter()
            .any(|r| r["message"] == "browser test three"),
        "a line showed while paused"
    );
    browser.click("#log-pause").await?;
    wait_log(
        &browser,
        "the held line after resuming",
        "browser test three",
    )
    .await?;

    // tool_update: a new tool, and the server's count one more, without a reload.
    let before: u32 = server_row(&browser, "a").await?["tools"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .context("server a's tool count before the toggle")?;
    let toggled = call(&http, &address, "a__toggle_extra", json!({})).await?;
    ensure!(toggled["status"] == 200, "toggle_extra: {toggled}");
    browser
        .wait_for(r#"#tools tr[data-tool="extra"]"#, Instant::now(), WAIT)
        .await?;
    browser
        .wait_until(
            &format!("server a counting {} tools", before + 1),
            &format!(
                r#"return document.querySelector('#servers tr[data-server="a"] .tools').textContent === '{}';"#,
                before + 1
            ),
            WAIT,
        )
        .await?;

    // A crash: the row goes through down (or starting) and back to healthy, one restart more.
    watch_states(&browser, "a").await?;
    let crashed = call(&http, &address, "a__crash", json!({})).await?;
    ensure!(
        crashed["status"] != 200,
        "a__crash answered as if it had not crashed: {crashed}"
    );
    wait_healthy(&browser, "a", 1).await?;
    let seen = states(&browser, "a").await?;
    ensure!(
        seen.first().map(String::as_str) == Some("healthy")
            && seen.last().map(String::as_str) == Some("healthy")
            && seen.iter().any(|s| s == "down" || s == "starting"),
        "server a's states: {seen:?}"
    );
    let a = server_row(&browser, "a").await?;
    ensure!(
        a["error"]
            .as_str()
            .is_some_and(|e| e.contains("exited with code 1")),
        "server a's last error: {a}"
    );

    // The page's own buttons: restart, stop and start b.
    wait_healthy(&browser, "b", 0).await?;
    watch_states(&browser, "b").await?;
    browser
        .click(r#"#servers tr[data-server="b"] button[data-action="restart"]"#)
        .await?;
    wait_healthy(&browser, "b", 1).await?;
    let seen = states(&browser, "b").await?;
    ensure!(
        seen.len() >= 3 && seen.iter().any(|s| s == "starting" || s == "down"),
        "server b's states across the restart: {seen:?}"
    );
    let b = server_row(&browser, "b").await?;
    ensure!(b["noteBad"] == false, "the restart was refused: {b}");

    browser
        .click(r#"#servers tr[data-server="b"] button[data-action="stop"]"#)
        .await?;
    browser
        .wait_until(
            "server b stopped",
            r#"const tr = document.querySelector('#servers tr[data-server="b"]');
               return tr.dataset.state === 'stopped' && !tr.querySelector('button[data-action="start"]').disabled;"#,
            WAIT,
        )
        .await?;
    let b = server_row(&browser, "b").await?;
    ensure!(
        b["disabled"] == json!({"restart": true, "stop": true, "start": false}),
        "the buttons of a stopped server: {b}"
    );
    browser
        .wait_until(
            "the summary counting the stopped server",
            "return document.getElementById('servers-sub').textContent.includes('1 stopped');",
            WAIT,
        )
        .await?;
    browser
        .click(r#"#servers tr[data-server="b"] button[data-action="start"]"#)
        .await?;
    wait_healthy(&browser, "b", 2).await?;
    // The new session's lines reach the log too.
    browser
        .wait_until(
            "b's reconnection in the logs",
            "return [...document.querySelectorAll('#log-rows .msg')].filter((m) => m.textContent.startsWith('connected to beta')).length >= 3;",
            WAIT,
        )
        .await?;
    ensure_not_reloaded(&browser).await?;

    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway.png");
    browser.screenshot(&file).await?;
    eprintln!("screenshot: {}", file.display());

    browser.quit().await?;
    ensure!(
        hub.child.try_wait()?.is_none(),
        "mcp-hub exited during the test"
    );
    hub.stop().await;
    Ok(())
}
