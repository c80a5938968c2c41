//! What the HTTP benchmarks share: starting a server process and learning the address it bound.

#![allow(dead_code)] // Each benchmark uses part of this.

use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Where a server announces `address=<host:port>` once it listens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Announces {
    OnStderr,
    OnStdout,
}

/// Spawns `command` and waits for its `address=` line; the rest of that output is drained in
/// the background so the server never blocks on a full pipe. The child dies with its handle.
pub(crate) async fn spawn_listening(
    command: &mut tokio::process::Command,
    announces: Announces,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = match announces {
        Announces::OnStderr => command.stderr(Stdio::piped()).stdout(Stdio::null()),
        Announces::OnStdout => command.stdout(Stdio::piped()).stderr(Stdio::inherit()),
    }
    .kill_on_drop(true)
    .spawn()?;
    let output: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match announces {
        Announces::OnStderr => Box::new(child.stderr.take().context("stderr")?),
        Announces::OnStdout => Box::new(child.stdout.take().context("stdout")?),
    };
    let mut lines = BufReader::new(output).lines();
    loop {
        let line = lines
            .next_line()
            .await?
            .context("the server exited before listening")?;
        if let Some((_, rest)) = line.split_once("address=") {
            let address = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, address));
        }
    }
}

/// `mcp-tasks serve` on a free loopback port with `args`.
pub(crate) async fn spawn_serve(
    bin: &str,
    args: &[&str],
) -> anyhow::Result<(tokio::process::Child, String)> {
    spawn_listening(
        tokio::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("MCP_TASKS_LOG", "info"),
        Announces::OnStderr,
    )
    .await
}
