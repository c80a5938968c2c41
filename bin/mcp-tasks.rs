//! `mcp-tasks`: the task server for MCP clients. Parses flags, opens the store, installs
//! logging on stderr and serves.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_core::MemoryBus;
use mcp_tasks::{Ended, TaskService, TaskStore, store::SqliteStore};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-tasks",
    version,
    about = "Tasks for AI agents and editors, over MCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one MCP client on stdin/stdout (the entry of a Claude, Cursor or Claude Code config).
    Stdio {
        /// sqlite:PATH or postgres://…; default: a SQLite file in your data directory.
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCP_TASKS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Stdio { database_url } => runtime.block_on(stdio(database_url)),
    }
}

async fn stdio(database_url: Option<String>) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let store = open_store(database_url).await?;
    let service = Arc::new(TaskService::new(store, Arc::new(MemoryBus::default())));
    // Events committed by an earlier run that never reached the bus go out now.
    service
        .flush_outbox()
        .await
        .context("publishing pending events")?;
    match mcp_tasks::serve_stdio(service, shutdown).await? {
        Ended::InputClosed => tracing::info!("client closed stdin; exiting"),
        Ended::ShutDown => tracing::info!("signal received; exiting"),
        _ => {}
    }
    Ok(())
}

async fn open_store(database_url: Option<String>) -> anyhow::Result<Arc<dyn TaskStore>> {
    if let Some(url) = database_url {
        tracing::info!(database = %redact(&url), "opening database");
        return mcp_tasks::store::connect(&url)
            .await
            .with_context(|| format!("opening {}", redact(&url)));
    }
    let path = default_database_path()?;
    tracing::info!(database = %path.display(), "opening the default SQLite database");
    let store = SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Arc::new(store))
}

/// `<data dir>/switchboard/tasks.db`: an MCP client starts the server from an unpredictable
/// working directory, so the default must not depend on it.
fn default_database_path() -> anyhow::Result<PathBuf> {
    let dir = dirs::data_dir()
        .context("no data directory for this user; pass --database-url")?
        .join("switchboard");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("tasks.db"))
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives during start-up is not lost (and does
/// not kill the process with the default action).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for signals; stop with end of input");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/tasks"),
            "postgres://app:***@db:5432/tasks"
        );
        assert_eq!(redact("postgres://app@db/tasks"), "postgres://app@db/tasks");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
