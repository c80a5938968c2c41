//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, run by
//! `scripts/conformance.sh` on Node 22) against our conformance server, once directly and once
//! through the gateway (`mcp-hub serve --config` with that server as a stdio upstream, and
//! again as a Streamable HTTP upstream): the gateway must pass exactly what the server passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, BufReader};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let path = debug.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples (`cargo test` does)",
        path.display()
    );
    path
}

#[derive(Debug, PartialEq, Eq)]
struct Counts {
    passed: u32,
    failed: u32,
    total: u32,
}

/// Runs the suite against `url`; its one stdout line is `conformance: P passed, F failed, T total`.
async fn suite(url: &str) -> Counts {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/conformance.sh");
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new("bash")
            .arg(script)
            .arg(url)
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("the suite finishes within 10 minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("conformance: "))
        .unwrap_or_else(|| {
            panic!(
                "the suite did not run against {url} ({}): {stdout}",
                output.status
            )
        });
    let numbers: Vec<u32> = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    let [passed, failed, total] = numbers[..] else {
        panic!("unexpected summary {line:?}")
    };
    Counts {
        passed,
        failed,
        total,
    }
}

#[tokio::test]
async fn the_gateway_passes_exactly_what_the_server_passes() {
    let npm = std::process::Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !npm.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "npm is missing; CI must run the conformance suite"
        );
        eprintln!("skipped: npm is not installed, so the conformance suite cannot run");
        return;
    }
    let server = example("conformance_server");

    let mut direct = tokio::process::Command::new(&server)
        .args(["http", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(direct.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the server prints its address");
    let url = line.strip_prefix("listening on ").unwrap().to_owned();
    let alone = suite(&url).await;

    // `never`: the suite calls its tools by their own names.
    let stdio = format!(
        "[gateway]\nprefix = \"never\"\n\n[servers.conformance]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        server.display().to_string()
    );
    let through_stdio = through_gateway(&stdio).await;
    let http = format!("[gateway]\nprefix = \"never\"\n\n[servers.conformance]\nurl = {url:?}\n");
    let through_http = through_gateway(&http).await;
    direct.kill().await.unwrap();

    eprintln!(
        "conformance directly: {alone:?}; through the gateway, stdio upstream: {through_stdio:?}, HTTP upstream: {through_http:?}"
    );
    assert!(
        alone.total > 0 && alone.failed == 0,
        "the server itself: {alone:?}"
    );
    assert_eq!(
        through_stdio, alone,
        "the gateway passes what the server passes (stdio upstream)"
    );
    assert_eq!(
        through_http, alone,
        "the gateway passes what the server passes (HTTP upstream)"
    );
}

/// The suite against a hub serving `hub_toml`.
async fn through_gateway(hub_toml: &str) -> Counts {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(&config, hub_toml).unwrap();
    let hub = support::spawn_hub(
        &[
            "--database-url",
            "memory:",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let counts = suite(&format!("http://{}/mcp", hub.address)).await;
    hub.stop().await;
    counts
}
