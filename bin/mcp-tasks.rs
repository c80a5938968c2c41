//! `mcp-tasks`: the task server for MCP clients. Parses flags, opens the store, installs
//! logging on stderr and serves.

mod cli;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mcp_core::{EventBus, MemoryBus, RedisBus, RedisBusConfig};
use mcp_tasks::{AuthConfig, Ended, HttpConfig, TaskService, TaskStore, store::SqliteStore};

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
        #[command(flatten)]
        backend: Backend,
    },
    /// Serve MCP over Streamable HTTP at /mcp, with /healthz and /readyz.
    Serve {
        #[command(flatten)]
        backend: Backend,
        /// Address to listen on. Only loopback addresses until authentication lands.
        #[arg(long, env = "MCP_TASKS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A browser origin allowed to call /mcp (repeatable), e.g. http://localhost:3000.
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// A Host name /mcp answers besides localhost (repeatable).
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        #[command(flatten)]
        auth: AuthArgs,
    },
}

/// Who may call the HTTP API. (Debug is written by hand: these hold secrets.)
#[derive(Args)]
struct AuthArgs {
    /// File of API keys, one per line: `<read|write|admin> <key> [name]`.
    #[arg(long, env = "MCP_TASKS_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// API keys in the same form, separated by commas or newlines (prefer the file, or the
    /// environment variable, to keep keys out of process listings).
    #[arg(long, env = "MCP_TASKS_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// HS256 secret for JWTs (at least 32 bytes; prefer the environment variable).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Requests per second per credential (bursts of twice as many); 0 for no limit.
    #[arg(long, env = "MCP_TASKS_RATE_LIMIT", default_value_t = 50)]
    rate_limit: u32,
}

impl AuthArgs {
    fn config(self) -> anyhow::Result<AuthConfig> {
        cli::auth_config(
            self.api_keys_file.as_deref(),
            self.api_keys.as_deref(),
            "MCP_TASKS_API_KEYS",
            self.jwt_secret,
            self.rate_limit,
        )
    }
}

impl std::fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthArgs")
            .field("api_keys_file", &self.api_keys_file)
            .field("api_keys", &self.api_keys.as_ref().map(|_| "<redacted>"))
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// Where tasks are stored and how their events travel.
#[derive(Debug, Args)]
struct Backend {
    /// sqlite:PATH or postgres://…; default: a SQLite file in your data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// redis://… to share events with other instances through Redis Streams; default: in-process.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_logging("MCP_TASKS_LOG");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Stdio { backend } => runtime.block_on(stdio(backend)),
        Command::Serve {
            backend,
            listen,
            allowed_origins,
            allowed_hosts,
            auth,
        } => {
            let config = HttpConfig {
                allowed_hosts,
                allowed_origins,
                auth: auth.config()?,
            };
            runtime.block_on(serve(backend, listen, config))
        }
    }
}

async fn stdio(backend: Backend) -> anyhow::Result<()> {
    let shutdown = cli::shutdown_signal();
    let service = open_service(backend).await?;
    // Retries events the bus refused (say, Redis was down) until the session ends.
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn({
        let service = service.clone();
        async move {
            service
                .relay_until(Duration::from_secs(1), async move {
                    let _ = relay_stopped.await;
                })
                .await;
        }
    });
    let ended = mcp_tasks::serve_stdio(service, shutdown).await;
    let _ = stop_relay.send(());
    let _ = relay.await;
    match ended? {
        Ended::InputClosed => tracing::info!("client closed stdin; exiting"),
        Ended::ShutDown => tracing::info!("signal received; exiting"),
        _ => {}
    }
    Ok(())
}

async fn serve(backend: Backend, listen: SocketAddr, config: HttpConfig) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() && !config.auth.is_enabled() {
        bail!(
            "refusing to listen on {listen} without authentication: pass --api-keys-file or set \
             JWT_SECRET, or listen on 127.0.0.1"
        );
    }
    if config.auth.is_enabled() {
        tracing::info!(
            api_keys = config.auth.api_keys.len(),
            jwt = config.auth.jwt_secret.is_some(),
            rate_limit = ?config.auth.rate_limit,
            "authentication on"
        );
    }
    let shutdown = cli::shutdown_signal();
    let service = open_service(backend).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %bound, "listening; MCP at http://{bound}/mcp");
    mcp_tasks::serve_http(service, listener, config, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn open_service(backend: Backend) -> anyhow::Result<Arc<TaskService>> {
    let store = open_store(backend.database_url).await?;
    let bus: Arc<dyn EventBus> = match backend.redis_url {
        Some(url) => {
            tracing::info!(redis = %cli::redact(&url), "sharing events through Redis Streams");
            let bus = RedisBus::connect(RedisBusConfig::new(url.clone()))
                .await
                .with_context(|| format!("connecting to {}", cli::redact(&url)))?;
            Arc::new(bus)
        }
        None => Arc::new(MemoryBus::default()),
    };
    Ok(Arc::new(TaskService::new(store, bus)))
}

async fn open_store(database_url: Option<String>) -> anyhow::Result<Arc<dyn TaskStore>> {
    if let Some(url) = database_url {
        tracing::info!(database = %cli::redact(&url), "opening database");
        return mcp_tasks::store::connect(&url)
            .await
            .with_context(|| format!("opening {}", cli::redact(&url)));
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
