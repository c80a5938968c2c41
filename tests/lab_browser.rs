//! The lab's HTML report in headless Chromium: a real run's report, opened from disk with no
//! network, shows its summary and, per step, the three charts with their data drawn.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the test prints that it skipped,
//! except under `CI=true`, where it fails: `.ci/run` installs both.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result, ensure};
use mcp_hub::lab::{Progress, Suite, run_suite};
use serde_json::{Value, json};

#[path = "support/webdriver.rs"]
mod webdriver;

use webdriver::{Browser, browser_available, spawn_driver};

fn echo_upstream() -> Result<String> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary has no target directory")?;
    let path = dir.join("examples").join("echo_upstream");
    ensure!(
        path.exists(),
        "build the examples first: cargo build --examples"
    );
    Ok(path.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_shows_its_charts_in_chromium() -> Result<()> {
    if !browser_available() {
        return Ok(());
    }
    let suite = Suite::parse(
        &format!(
            r#"
            name = "report <check>"
            [target]
            command = "{}"
            args = ["stdio"]

            [[steps]]
            name = "echo at 200/s"
            kind = "call"
            tool = "echo"
            arguments = {{ text = "hi" }}
            rate = 200
            duration = "3s"

            [[steps]]
            name = "always fails"
            kind = "call"
            tool = "fail"
            arguments = {{ message = "on purpose" }}
            calls = 50
            concurrency = 5
            "#,
            echo_upstream()?
        ),
        Path::new("."),
    )?;
    let report = run_suite(&suite, Arc::new(Progress::default())).await;
    ensure!(report.steps.len() == 2, "{report:?}");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("report.html");
    std::fs::write(&file, report.html())?;

    let browser = Browser::start(spawn_driver().await?).await?;
    browser.goto(&format!("file://{}", file.display())).await?;
    let seen = browser
        .run(
            r#"
            const steps = [...document.querySelectorAll('section')].map(s => {
              const charts = [...s.querySelectorAll('svg.chart')].map(svg => {
                const box = svg.getBoundingClientRect();
                return {
                  kind: svg.classList[1],
                  width: box.width,
                  height: box.height,
                  lines: [...svg.querySelectorAll('polyline')].map(p => p.points.numberOfItems),
                  bars: [...svg.querySelectorAll('rect.bar')].filter(r => r.getBBox().height > 0).length,
                };
              });
              return { title: s.querySelector('h2').textContent, charts };
            });
            return {
              title: document.title,
              rows: document.querySelectorAll('table.summary tr').length,
              failed: document.querySelector('.meta strong').textContent,
              steps,
            };
            "#,
            json!([]),
        )
        .await?;
    browser.quit().await?;

    // The name is escaped, not markup.
    ensure!(seen["title"] == "Lab run: report <check>", "{seen}");
    ensure!(seen["rows"] == 3, "a header and a row per step: {seen}");
    ensure!(seen["failed"] == "FAILED", "{seen}");
    let steps = seen["steps"].as_array().context("steps")?;
    ensure!(steps.len() == 2, "{seen}");
    for step in steps {
        let charts = step["charts"].as_array().context("charts")?;
        let kinds: Vec<&str> = charts.iter().filter_map(|c| c["kind"].as_str()).collect();
        ensure!(kinds == ["percentiles", "histogram", "errors"], "{step}");
        for chart in charts {
            ensure!(
                chart["width"].as_f64() > Some(100.0) && chart["height"].as_f64() > Some(50.0),
                "a chart is drawn at its size: {chart}"
            );
        }
    }
    let echo = &steps[0]["charts"];
    // Three seconds at 200/s: p50, p99 and max each have a point per second.
    let lines: Vec<u64> = echo[0]["lines"]
        .as_array()
        .context("lines")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    ensure!(lines.len() == 3 && lines.iter().all(|n| *n >= 3), "{echo}");
    ensure!(
        echo[1]["bars"].as_u64() >= Some(1),
        "histogram bars: {echo}"
    );
    ensure!(echo[2]["bars"] == 0, "no errors, no error bars: {echo}");
    let fails = &steps[1]["charts"];
    ensure!(
        fails[2]["bars"].as_u64() >= Some(1),
        "every call failed: {fails}"
    );
    Ok(())
}
