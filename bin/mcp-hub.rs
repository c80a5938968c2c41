//! `mcp-hub`: the dashboard backend and its web page. Parses flags, opens the snapshot store and
//! the event bus, installs logging on stderr and serves.

mod cli;
mod lab;
mod users;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mcp_core::{EventBus, MemoryBus, MemoryBusConfig, RedisBus, RedisBusConfig};
use mcp_hub::{
    Hub, HubHttpConfig, TasksFeedConfig,
    gateway::Gateway,
    lab::Lab,
    login::Login,
    snapshot::{SqliteSnapshotStore, Stores},
};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-hub",
    version,
    about = "The Switchboard hub: a live dashboard that agents push to"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the dashboard page at /, the sync API and live updates under /api/dashboard;
    /// with --config, also the MCP gateway at /mcp and its API (/api/servers, /api/tools, …).
    Serve(Box<ServeArgs>),
    /// Serve the MCP gateway over stdin/stdout, for a Claude or Cursor config entry.
    Stdio(StdioArgs),
    /// The reliability lab: run probe and load suites against an MCP server.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Team login: the users of `mcp-hub serve` (login is on once there is one).
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
}

#[derive(Debug, Args)]
struct StdioArgs {
    /// The upstream servers: a hub.toml, or a Claude/Cursor JSON file with `mcpServers`.
    /// Edits apply without a restart.
    #[arg(long, env = "MCP_HUB_CONFIG")]
    config: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on. A non-loopback address needs authentication configured.
    #[arg(long, env = "MCP_HUB_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// sqlite:PATH, postgres://… or memory:; default: a SQLite file in your data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// redis://… to share live updates between several hubs through Redis Streams; default:
    /// in-process.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// A browser origin, besides the hub's own page, allowed to call the API (repeatable).
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// A Host name the hub answers besides localhost (repeatable).
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
    /// How many snapshots (channel × repository) the hub keeps; a push to a new one beyond it
    /// is refused with 409.
    #[arg(long, env = "MCP_HUB_MAX_SNAPSHOTS", default_value_t = mcp_hub::DEFAULT_MAX_SNAPSHOTS)]
    max_snapshots: u64,
    /// The largest push accepted, in bytes.
    #[arg(long, env = "MCP_HUB_MAX_BODY_BYTES", default_value_t = mcp_hub::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// A task service (`mcp-tasks serve`) whose tasks the page shows as a board, e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, env = "MCP_HUB_TASKS_URL")]
    tasks_url: Option<String>,
    /// A read key of that task service, when it requires one.
    #[arg(long, env = "MCP_HUB_TASKS_API_KEY", hide_env_values = true)]
    tasks_api_key: Option<String>,
    /// A dashboard backend (another hub, or anything that takes its sync API) that each
    /// failed lab run's alert is pushed to, channel `lab_alerts`, e.g. http://127.0.0.1:8091.
    #[arg(long, env = "MCP_HUB_LAB_ALERT_URL")]
    lab_alert_url: Option<String>,
    /// The bearer token for that backend.
    #[arg(long, env = "MCP_HUB_LAB_ALERT_TOKEN", hide_env_values = true)]
    lab_alert_token: Option<String>,
    /// Upstream MCP servers to serve as one at /mcp: a hub.toml, or a Claude/Cursor JSON file
    /// with `mcpServers`. Edits apply without a restart.
    #[arg(long, env = "MCP_HUB_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    auth: AuthArgs,
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("listen", &self.listen)
            .field("tasks_url", &self.tasks_url)
            .field("config", &self.config)
            .field("lab_alert_url", &self.lab_alert_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Who may call the API. (Debug is written by hand: these hold secrets.)
#[derive(Args)]
struct AuthArgs {
    /// File of API keys, one per line: `<read|write|admin> <key> [name]`. Pushing needs write,
    /// reading (and the page's live connection) read.
    #[arg(long, env = "MCP_HUB_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// API keys in the same form, separated by commas (prefer the file, or the environment
    /// variable, to keep keys out of process listings).
    #[arg(long, env = "MCP_HUB_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// HS256 secret for JWTs (at least 32 bytes; prefer the environment variable).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Requests per second per credential (bursts of twice as many); 0 for no limit.
    #[arg(long, env = "MCP_HUB_RATE_LIMIT", default_value_t = 50)]
    rate_limit: u32,
    /// How long an access token from /api/auth/login is valid, in seconds, up to a day (team
    /// login is on when the database has users: `mcp-hub user add`).
    #[arg(long, env = "MCP_HUB_ACCESS_TOKEN_TTL", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    access_token_ttl: u64,
    /// How long a refresh token is valid, in seconds, from a minute to a year (each refresh
    /// hands out a new one).
    #[arg(long, env = "MCP_HUB_REFRESH_TOKEN_TTL", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    refresh_token_ttl: u64,
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
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .finish()
    }
}

/// How often the gateway's configuration file is checked for changes.
const CONFIG_RELOAD: Duration = Duration::from_secs(1);
/// How many gateway events (statuses, tool updates, log lines) a reconnecting page can catch
/// up on.
const GATEWAY_REPLAY_EVENTS: usize = 2_048;

/// Announcements carry whole snapshots (hundreds of KB for a big repository). Dashboards resume
/// from the snapshot store, never from the bus's history, so the bus keeps only a few.
const REPLAY_EVENTS: usize = 16;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_logging("MCP_HUB_LOG");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Stdio(args) => runtime.block_on(stdio(args)),
        Command::User { command } => runtime.block_on(users::run(command)),
        Command::Lab { command } => {
            let code = lab::run(command, &runtime)?;
            // The runtime's tasks (a stdio target's reader) end with the process.
            drop(runtime);
            std::process::exit(code)
        }
    }
}

/// The gateway's events stay in this process: its upstreams are this process's children.
fn start_gateway(path: PathBuf) -> anyhow::Result<Gateway> {
    let bus = Arc::new(MemoryBus::new(MemoryBusConfig {
        replay_capacity: GATEWAY_REPLAY_EVENTS,
        ..MemoryBusConfig::default()
    }));
    let gateway = Gateway::start_from_file(path.clone(), CONFIG_RELOAD, bus)
        .with_context(|| format!("loading the gateway configuration {}", path.display()))?;
    let servers = gateway.servers();
    tracing::info!(
        config = %path.display(),
        upstreams = servers.len(),
        "gateway started"
    );
    Ok(gateway)
}

async fn stdio(args: StdioArgs) -> anyhow::Result<()> {
    let gateway = start_gateway(args.config)?;
    let ended = mcp_core::stdio::serve_stdio(gateway.mcp_server(), cli::shutdown_signal()).await;
    // Every child is stopped and reaped before the hub exits.
    gateway.shutdown().await;
    let ended = ended?;
    tracing::info!(?ended, "stopped");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut auth = cli::auth_config(
        args.auth.api_keys_file.as_deref(),
        args.auth.api_keys.as_deref(),
        "MCP_HUB_API_KEYS",
        args.auth.jwt_secret,
        args.auth.rate_limit,
    )?;
    let stores = open_store(args.database_url).await?;
    // Team login is on once the database has users; it signs with JWT_SECRET when given (so
    // tokens outlive a restart), else with a key of this process.
    let login = if stores
        .users
        .users()
        .await
        .context("reading the hub's users")?
        .is_empty()
    {
        None
    } else {
        let key = match &auth.jwt_secret {
            Some(secret) => secret.clone(),
            None => Login::random_key()?,
        };
        let login = Login::new(stores.users.clone(), key).await?.with_lifetimes(
            Duration::from_secs(args.auth.access_token_ttl),
            Duration::from_secs(args.auth.refresh_token_ttl),
        );
        auth.jwt_secret = Some(login.key().to_vec());
        Some(login)
    };
    if !args.listen.ip().is_loopback() && !auth.is_enabled() {
        bail!(
            "refusing to listen on {} without authentication: add a user (`mcp-hub user add`), \
             pass --api-keys-file or set JWT_SECRET, or listen on 127.0.0.1",
            args.listen
        );
    }
    if auth.is_enabled() {
        tracing::info!(
            api_keys = auth.api_keys.len(),
            jwt = auth.jwt_secret.is_some(),
            login = login.is_some(),
            rate_limit = ?auth.rate_limit,
            "authentication on"
        );
    }
    if let Some(url) = &args.tasks_url
        && !url.starts_with("http://")
    {
        bail!(
            "--tasks-url {url:?}: give the task service's http:// address (the hub reads it over \
             plain HTTP; put it on the same host or a private network)"
        );
    }
    let shutdown = cli::shutdown_signal();
    let gateway = args.config.map(start_gateway).transpose()?;
    let Stores {
        snapshots: store,
        lab: lab_store,
        ..
    } = stores;
    let bus: Arc<dyn EventBus> = match args.redis_url {
        Some(url) => {
            tracing::info!(redis = %cli::redact(&url), "sharing live updates through Redis Streams");
            let config = RedisBusConfig::new(url.clone())
                .with_stream("switchboard:dashboard")
                .with_max_len(REPLAY_EVENTS * 4);
            Arc::new(
                RedisBus::connect(config)
                    .await
                    .with_context(|| format!("connecting to {}", cli::redact(&url)))?,
            )
        }
        None => {
            let bus = MemoryBus::new(MemoryBusConfig {
                replay_capacity: REPLAY_EVENTS,
                ..MemoryBusConfig::default()
            });
            // Dashboards hold ids from earlier runs (the store keeps them): new ones must be
            // greater even if the clock stepped back since.
            if let Some(latest) = store
                .latest_event_id()
                .await
                .context("reading the newest event id from the store")?
            {
                bus.ids_after(latest);
            }
            Arc::new(bus)
        }
    };
    let mut lab = Lab::new(lab_store).with_events(bus.clone());
    if let Some(url) = args.lab_alert_url {
        let mut config = mcp_core::HttpSinkConfig::new(url);
        config.token = args.lab_alert_token;
        let sink = mcp_core::HttpSink::new(config).context("--lab-alert-url")?;
        lab = lab.with_alert_sink(Arc::new(sink));
    }
    let hub = Arc::new(Hub::new(store, bus).with_max_snapshots(args.max_snapshots));
    let config = HubHttpConfig {
        allowed_hosts: args.allowed_hosts,
        allowed_origins: args.allowed_origins,
        auth,
        max_body_bytes: args.max_body_bytes,
        tasks_feed: args.tasks_url.map(|url| TasksFeedConfig {
            api_key: args.tasks_api_key,
            ..TasksFeedConfig::new(url)
        }),
        gateway: gateway.clone(),
        lab: Some(lab),
        login,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %bound, "listening; the dashboard is at http://{bound}/");
    let served = mcp_hub::serve_hub(hub, listener, config, shutdown).await;
    if let Some(gateway) = gateway {
        gateway.shutdown().await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// The hub's store, in all its roles.
async fn open_store(database_url: Option<String>) -> anyhow::Result<Stores> {
    if let Some(url) = database_url {
        tracing::info!(database = %cli::redact(&url), "opening database");
        return mcp_hub::snapshot::open(&url)
            .await
            .with_context(|| format!("opening {}", cli::redact(&url)));
    }
    // An MCP client or a service manager starts the hub from an unpredictable working
    // directory, so the default must not depend on it.
    let path = users::default_database()?;
    tracing::info!(database = %path.display(), "opening the default SQLite database");
    let store = SqliteSnapshotStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Stores::of(store))
}
