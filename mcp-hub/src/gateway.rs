//! The hub as an MCP gateway: it keeps a session open to each upstream MCP server of a team
//! (stdio children it supervises, Streamable HTTP servers it reconnects to), watches their
//! health, merges their tools, prompts and resources into one namespaced catalog, and serves
//! that catalog as one MCP server, routing each call to the upstream that owns it.

pub(crate) mod access;
mod audit;
pub mod config;
mod direct;
mod events;
mod fault;
mod http_call;
mod logs;
mod proxy;
mod registry;
pub(crate) mod rest;
mod stats;
mod supervisor;
mod upstream;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use mcp_core::{EventBus, auth::Scope};
use rmcp::{
    Peer, RoleServer,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
        ContentBlock, ServerResult,
    },
    service::PeerRequestOptions,
};
use serde_json::json;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use audit::{AuditEntry, Outcome};
pub use config::{ConfigError, GatewayConfig, PrefixMode, Transport, UpstreamConfig};
pub use events::GATEWAY_TOPIC;
pub use fault::{Fault, FaultStatus};
pub use logs::{LogEntry, LogLevel, LogSource};
pub use proxy::GatewayServer;
pub use registry::{Hidden, SEPARATOR};
pub use stats::{MetricsReport, SeriesReport, ServerMetrics, ToolMetrics};
pub use supervisor::{ServerStatus, State};

use access::{AccessPolicy, Decision, Target};
use audit::{AuditLog, Record};
use events::Events;
use logs::LogBook;
use registry::Catalog;
use stats::CallStats;
use supervisor::Supervised;
use upstream::ProgressRelay;

/// How long `tools/list` waits for upstreams that are still starting, so a client that lists
/// right after connecting (as Claude does) sees their tools.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an answer may wait for the upstream's notifications that came before it.
const NOTIFICATIONS_SETTLE: Duration = Duration::from_millis(50);
/// How long one downstream client may take to accept a `list_changed`; a client that does not
/// read its stream is skipped for that change instead of holding up the others.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// The gateway: start it with a configuration, serve [`Gateway::mcp_server`] over stdio or
/// mount its HTTP routes, and hand it new configurations as they change.
#[derive(Clone)]
pub struct Gateway {
    core: Arc<Core>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field(
                "servers",
                &self
                    .core
                    .servers_snapshot()
                    .iter()
                    .map(|s| s.id.clone())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The settings that apply to every upstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) prefix: PrefixMode,
    pub(crate) restart: config::RestartConfig,
}

pub(crate) struct Core {
    settings: RwLock<Settings>,
    servers: RwLock<BTreeMap<String, Arc<Supervised>>>,
    catalog: RwLock<Arc<Catalog>>,
    /// One rebuild at a time, so announcements follow the order of the catalogs.
    rebuilding: tokio::sync::Mutex<()>,
    events: Arc<Events>,
    logs: Arc<LogBook>,
    relay: Arc<ProgressRelay>,
    access: RwLock<AccessPolicy>,
    audit: AuditLog,
    stats: CallStats,
    /// Connected downstream sessions, told when the catalog changes.
    downstream: Mutex<Vec<(u64, Peer<RoleServer>)>>,
    /// The Streamable HTTP sessions among them, for the short way of a plain `tools/call`.
    direct: direct::DirectSessions,
    next_session: std::sync::atomic::AtomicU64,
    /// Woken on every state change, for [`Core::settle`].
    state_changed: tokio::sync::Notify,
    tasks: TaskTracker,
    cancel: CancellationToken,
    started: Instant,
}

/// Who is calling: the principal's name and scope (`anonymous` with write when auth is off).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// The caller when authentication is off (stdio, or loopback without keys): access rules
    /// naming `anonymous` still apply.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            scope: Scope::Write,
        }
    }

    pub(crate) fn from_principal(principal: Option<&mcp_core::auth::Principal>) -> Self {
        principal.map_or_else(Self::anonymous, |p| Self {
            name: p.name.clone(),
            scope: p.scope,
        })
    }
}

/// Why a call did not reach a tool, or did not come back from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("no tool is called {0}")]
    UnknownTool(String),
    #[error("{0}")]
    Denied(String),
    #[error("upstream {server} is {state}: {reason}")]
    Unavailable {
        server: String,
        state: String,
        reason: String,
    },
    #[error("{tool} on upstream {server} did not answer within {} ms", after.as_millis())]
    Timeout {
        server: String,
        tool: String,
        after: Duration,
    },
    #[error("the call was cancelled")]
    Cancelled,
    #[error("upstream {server} failed during the call: {message}")]
    Upstream { server: String, message: String },
    /// The upstream answered with a JSON-RPC error (invalid arguments, say): MCP clients get
    /// it as it is, code and data included.
    #[error("upstream {server} refused the call: {message} (JSON-RPC error {code})")]
    Refused {
        server: String,
        code: i32,
        message: String,
        data: Option<serde_json::Value>,
    },
    /// An operator's fault (`PUT /api/servers/{id}/fault`) failed the call on purpose; the
    /// upstream never saw it.
    #[error(
        "injected fault: upstream {server} was set to fail calls (PUT /api/servers/{server}/fault; DELETE clears it); the upstream did not see this call"
    )]
    Injected { server: String },
}

impl CallError {
    fn outcome(&self) -> Outcome {
        match self {
            Self::UnknownTool(_) => Outcome::UnknownTool,
            Self::Denied(_) => Outcome::Denied,
            Self::Unavailable { .. } => Outcome::Unavailable,
            Self::Timeout { .. } => Outcome::Timeout,
            Self::Cancelled => Outcome::Cancelled,
            Self::Upstream { .. } | Self::Refused { .. } => Outcome::Failed,
            Self::Injected { .. } => Outcome::Injected,
        }
    }

    /// What an MCP client is answered: a protocol error for an unknown tool and for the
    /// upstream's own JSON-RPC error (passed through as it is), otherwise a tool result
    /// naming the upstream, for the agent to read.
    pub(crate) fn into_mcp(self) -> Result<CallToolResult, rmcp::ErrorData> {
        match self {
            Self::UnknownTool(name) => Err(rmcp::ErrorData::invalid_params(
                format!("no tool is called {name}; list the tools to see what there is"),
                None,
            )),
            Self::Refused {
                code,
                message,
                data,
                ..
            } => Err(rmcp::ErrorData::new(
                rmcp::model::ErrorCode(code),
                message,
                data,
            )),
            other => Ok(other.into_result()),
        }
    }

    /// The error as a tool result the calling agent can read (everything but an unknown tool,
    /// which is a protocol error).
    pub(crate) fn into_result(self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(self.to_string())])
    }
}

/// Where a call came from, for progress and log messages.
pub(crate) struct Downstream {
    pub(crate) session: u64,
    pub(crate) peer: Peer<RoleServer>,
    pub(crate) progress: Option<rmcp::model::ProgressToken>,
    /// The call's own stream, when it has one the gateway writes (the short way): the
    /// upstream's log messages during the call go there, ahead of the answer.
    pub(crate) notes: Option<upstream::Notes>,
}

impl Gateway {
    /// Starts a supervisor for each configured upstream. Gateway events (`server_status`,
    /// `tool_update`, `log_entry`, topic [`GATEWAY_TOPIC`]) are published on `bus`.
    pub fn start(config: GatewayConfig, bus: Arc<dyn EventBus>) -> Self {
        let events = Arc::new(Events::new(bus));
        let core = Arc::new(Core {
            settings: RwLock::new(Settings {
                prefix: config.prefix,
                restart: config.restart,
            }),
            servers: RwLock::new(BTreeMap::new()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            rebuilding: tokio::sync::Mutex::new(()),
            logs: Arc::new(LogBook::new(events.clone())),
            events,
            relay: Arc::new(ProgressRelay::default()),
            access: RwLock::new(AccessPolicy::new(config.access.clone())),
            audit: AuditLog::default(),
            stats: CallStats::default(),
            downstream: Mutex::new(Vec::new()),
            direct: direct::DirectSessions::default(),
            next_session: std::sync::atomic::AtomicU64::new(1),
            state_changed: tokio::sync::Notify::new(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            started: Instant::now(),
        });
        {
            let mut servers = core.servers.write().unwrap_or_else(|p| p.into_inner());
            for server in config.servers {
                servers.insert(server.id.clone(), Supervised::spawn(&core, server));
            }
        }
        Self { core }
    }

    /// Applies a new configuration: upstreams that were added start, removed ones stop, and
    /// changed ones restart with their new settings; unchanged ones keep their sessions.
    pub async fn apply(&self, config: GatewayConfig) {
        let core = &self.core;
        *core.settings.write().unwrap_or_else(|p| p.into_inner()) = Settings {
            prefix: config.prefix,
            restart: config.restart,
        };
        *core.access.write().unwrap_or_else(|p| p.into_inner()) =
            AccessPolicy::new(config.access.clone());
        let mut notes = Vec::new();
        let wanted: BTreeMap<String, UpstreamConfig> = config
            .servers
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut ending = Vec::new();
        {
            let mut servers = core.servers.write().unwrap_or_else(|p| p.into_inner());
            servers.retain(|id, server| {
                let keep = wanted.get(id).is_some_and(|c| *c == server.config);
                if !keep {
                    server.remove();
                    ending.push(server.clone());
                    if !wanted.contains_key(id) {
                        notes.push((id.clone(), "removed from the configuration"));
                    }
                }
                keep
            });
        }
        // A changed server's old session ends before its new one starts: never two children
        // at once, and the old one's last status does not land after the new one's.
        let ended = futures_util::future::join_all(ending.iter().map(|s| s.finished()));
        if tokio::time::timeout(REPLACE_WAIT, ended).await.is_err() {
            tracing::warn!(
                "an upstream took longer than {REPLACE_WAIT:?} to stop; starting its replacement anyway"
            );
        }
        {
            let mut servers = core.servers.write().unwrap_or_else(|p| p.into_inner());
            for (id, server) in wanted {
                if let std::collections::btree_map::Entry::Vacant(slot) = servers.entry(id) {
                    notes.push((slot.key().clone(), "configuration applied"));
                    slot.insert(Supervised::spawn(core, server));
                }
            }
        }
        for (id, note) in notes {
            core.logs
                .record(&id, LogLevel::Info, LogSource::Hub, note.to_owned())
                .await;
        }
        core.rebuild().await;
        core.state_changed.notify_waiters();
    }

    /// Loads the configuration file (`hub.toml`, or a Claude/Cursor `mcpServers` JSON file),
    /// starts the gateway with it, and re-reads the file every `reload_every`: a changed file
    /// is applied without a restart; one that no longer parses is reported in the log (server
    /// `hub`) and the last good configuration stays in force.
    pub fn start_from_file(
        path: PathBuf,
        reload_every: Duration,
        bus: Arc<dyn EventBus>,
    ) -> Result<Self, ConfigError> {
        let config = GatewayConfig::from_path(&path)?;
        let gateway = Self::start(config.clone(), bus);
        gateway.watch(path, reload_every, &config);
        Ok(gateway)
    }

    fn watch(&self, path: PathBuf, every: Duration, current: &GatewayConfig) {
        let gateway = self.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        config::ConfigWatcher::spawn(
            path.clone(),
            every,
            current,
            self.core.cancel.child_token(),
            move |change| {
                let _ = tx.send(change);
            },
        );
        self.core.tasks.spawn(async move {
            while let Some(change) = rx.recv().await {
                match change {
                    Ok(config) => {
                        tracing::info!(path = %path.display(), "configuration changed; applying it");
                        gateway.apply(config).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the changed configuration is not valid; keeping the last good one");
                        gateway
                            .core
                            .logs
                            .record(
                                "hub",
                                LogLevel::Error,
                                LogSource::Hub,
                                format!("{error}; keeping the last good configuration"),
                            )
                            .await;
                    }
                }
            }
        });
    }

    /// The MCP server that exposes the catalog, for one downstream session (stdio, or one
    /// Streamable HTTP session).
    pub fn mcp_server(&self) -> GatewayServer {
        GatewayServer::new(self.core.clone())
    }

    /// `/mcp` for the hub's router: rmcp's Streamable HTTP `service`, with the short way for
    /// plain `tools/call` requests in front of it (see `direct`).
    pub(crate) fn mcp_router<S, M>(
        &self,
        service: rmcp::transport::StreamableHttpService<GatewayServer, M>,
    ) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
        M: rmcp::transport::streamable_http_server::SessionManager,
    {
        axum::Router::new()
            .fallback_service(service)
            .layer(axum::middleware::from_fn_with_state(
                self.core.clone(),
                direct::intercept,
            ))
    }

    /// Every upstream's status, by id.
    pub fn servers(&self) -> Vec<ServerStatus> {
        self.core
            .servers_snapshot()
            .iter()
            .map(|s| s.status())
            .collect()
    }

    /// Waits until no upstream is starting any more, or `timeout` passes; true if settled.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.core.settle(timeout).await
    }

    /// Stops every upstream, reaping every child, and waits for the supervisors to end.
    pub async fn shutdown(&self) {
        self.core.cancel.cancel();
        self.core.tasks.close();
        self.core.tasks.wait().await;
    }

    /// Calls a tool by the name clients see, as `caller`: the REST route and embedders use
    /// this; MCP sessions go through [`Gateway::mcp_server`].
    pub async fn call_tool(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<CallToolResult, CallError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = arguments;
        match self
            .core
            .call_detached(caller, params, None, CancellationToken::new(), "rest")
            .await?
        {
            CallToolResponse::Complete(result) => Ok(result),
            _ => Err(CallError::Upstream {
                server: self.core.route_server(name).unwrap_or_default(),
                message: "the tool asked for more input, which a REST call cannot give".to_owned(),
            }),
        }
    }
}

impl Core {
    pub(crate) fn settings(&self) -> Settings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn servers_snapshot(&self) -> Vec<Arc<Supervised>> {
        self.servers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn server(&self, id: &str) -> Option<Arc<Supervised>> {
        self.servers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Sets `fault` on upstream `id` in place of any other, and says so in its log and status;
    /// `None` when there is no such upstream. A fault with a duration ends by itself.
    pub(crate) async fn set_fault(self: &Arc<Self>, id: &str, fault: Fault) -> Option<FaultStatus> {
        let server = self.server(id)?;
        let (status, generation) = server.fault.set(fault);
        self.logs
            .record(
                id,
                LogLevel::Warning,
                LogSource::Hub,
                format!("fault injected by an operator: {}", fault.describe()),
            )
            .await;
        self.announce_status(&server.status()).await;
        if let Some(ms) = fault.duration_ms {
            let core = self.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    () = core.cancel.cancelled() => return,
                }
                if let Some(ended) = server.fault.expire(generation) {
                    core.logs
                        .record(
                            &server.id,
                            LogLevel::Info,
                            LogSource::Hub,
                            format!(
                                "injected fault ended after {ms} ms ({} calls delayed, {} failed)",
                                ended.delayed, ended.failed
                            ),
                        )
                        .await;
                    core.announce_status(&server.status()).await;
                }
            });
        }
        Some(status)
    }

    /// Clears upstream `id`'s fault; `None` when there is no such upstream, else the fault
    /// that was in force, if one was.
    pub(crate) async fn clear_fault(&self, id: &str) -> Option<Option<FaultStatus>> {
        let server = self.server(id)?;
        let cleared = server.fault.clear();
        if let Some(was) = &cleared {
            self.logs
                .record(
                    id,
                    LogLevel::Info,
                    LogSource::Hub,
                    format!(
                        "injected fault cleared by an operator ({} calls delayed, {} failed)",
                        was.delayed, was.failed
                    ),
                )
                .await;
            self.announce_status(&server.status()).await;
        }
        Some(cleared)
    }

    fn route_server(&self, tool: &str) -> Option<String> {
        self.catalog().tools.get(tool).map(|r| r.server.clone())
    }

    pub(crate) fn next_session(&self) -> u64 {
        self.next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A downstream session that finished `initialize`; `http_session` is rmcp's session id
    /// when it came over Streamable HTTP. Sessions that ended since are forgotten.
    pub(crate) fn add_downstream(
        &self,
        session: u64,
        peer: Peer<RoleServer>,
        http_session: Option<String>,
    ) {
        if let Some(http_session) = http_session {
            self.direct.add(http_session, session, peer.clone());
        }
        let mut downstream = self.downstream.lock().unwrap_or_else(|p| p.into_inner());
        downstream.retain(|(_, peer)| !peer.is_transport_closed());
        downstream.push((session, peer));
    }

    pub(crate) async fn announce_status(&self, status: &ServerStatus) {
        self.state_changed.notify_waiters();
        let data = serde_json::to_value(status).unwrap_or_default();
        self.events.publish("server_status", &status.id, data).await;
    }

    async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state_changed.notified();
            let starting = self
                .servers_snapshot()
                .iter()
                .any(|s| s.state() == State::Starting);
            if !starting {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Waits for starting upstreams only while the gateway is young: later, a starting
    /// upstream is a restart, and its tools arrive with `list_changed`.
    pub(crate) async fn settle_at_start(&self) {
        if let Some(left) = SETTLE_TIMEOUT.checked_sub(self.started.elapsed()) {
            self.settle(left).await;
        }
    }

    /// Builds the catalog from every upstream's listing and announces what changed: a
    /// `tool_update` per server whose exposed tools changed, and `list_changed` to every
    /// connected client.
    pub(crate) async fn rebuild(&self) {
        let one_at_a_time = self.rebuilding.lock().await;
        let servers = self.servers_snapshot();
        let listings: Vec<_> = servers.iter().map(|s| s.listing()).collect();
        let contributions: Vec<_> = servers
            .iter()
            .zip(&listings)
            .map(|(server, listing)| registry::Contribution {
                server: &server.id,
                listing,
                filter: &server.config.tools,
            })
            .collect();
        let catalog = Arc::new(registry::build(&contributions, self.settings().prefix));
        let old = std::mem::replace(
            &mut *self.catalog.write().unwrap_or_else(|p| p.into_inner()),
            catalog.clone(),
        );
        let mut changed_servers: Vec<String> = Vec::new();
        for server in &servers {
            let (before, after) = (old.tools_of(&server.id), catalog.tools_of(&server.id));
            server.set_tool_count(after.len());
            if before != after {
                changed_servers.push(server.id.to_string());
                let added: Vec<_> = after.iter().filter(|t| !before.contains(t)).collect();
                let removed: Vec<_> = before.iter().filter(|t| !after.contains(t)).collect();
                let data = json!({
                    "server": &*server.id,
                    "tools": after,
                    "added": added,
                    "removed": removed,
                });
                self.events.publish("tool_update", &server.id, data).await;
            }
        }
        // Servers that left the configuration lose their tools too.
        for route in old.tools.values() {
            if !servers.iter().any(|s| *s.id == *route.server)
                && !changed_servers.contains(&route.server)
            {
                changed_servers.push(route.server.clone());
                let data = json!({
                    "server": route.server,
                    "tools": [],
                    "added": [],
                    "removed": old.tools_of(&route.server),
                });
                self.events
                    .publish("tool_update", &route.server, data)
                    .await;
            }
        }
        let tools_changed = !same_tools(&old, &catalog);
        let prompts_changed = old.prompts.keys().ne(catalog.prompts.keys());
        let resources_changed = old.resources.keys().ne(catalog.resources.keys());
        // The next rebuild need not wait for slow clients to take this one's news.
        drop(one_at_a_time);
        if tools_changed || prompts_changed || resources_changed {
            self.notify_downstream(tools_changed, prompts_changed, resources_changed)
                .await;
        }
    }

    /// Tells every connected client what changed, all at once, each bounded by
    /// [`NOTIFY_TIMEOUT`]; a client whose session has ended is forgotten.
    async fn notify_downstream(&self, tools: bool, prompts: bool, resources: bool) {
        let peers: Vec<(u64, Peer<RoleServer>)> = self
            .downstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let sends = peers.into_iter().map(|(session, peer)| async move {
            if peer.is_transport_closed() {
                return Some(session);
            }
            let send = async {
                let mut ok = true;
                if tools {
                    ok &= peer.notify_tool_list_changed().await.is_ok();
                }
                if prompts {
                    ok &= peer.notify_prompt_list_changed().await.is_ok();
                }
                if resources {
                    ok &= peer.notify_resource_list_changed().await.is_ok();
                }
                ok
            };
            match tokio::time::timeout(NOTIFY_TIMEOUT, send).await {
                Ok(false) => Some(session),
                // A slow client keeps its session; it misses this change only.
                Ok(true) | Err(_) => None,
            }
        });
        let gone: Vec<u64> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !gone.is_empty() {
            self.downstream
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(session, _)| !gone.contains(session));
            self.direct.forget(&gone);
        }
    }

    /// Decides a `tools/call` of `tool`, the exposed name the call was routed by: the rules
    /// see it and the tool's canonical `server__tool`, from the current catalog. A name the
    /// catalog lost since the call was routed (a rebuild renamed or removed it in between) is
    /// denied rather than judged by its exposed name alone, which a rule for the canonical
    /// name would miss.
    fn decide(&self, caller: &Caller, tool: &str) -> Decision {
        let catalog = self.catalog();
        let Some(route) = catalog.tools.get(tool) else {
            return Decision::Denied {
                reason: format!(
                    "`{tool}` left the catalog while the call was routed; list the tools again"
                ),
            };
        };
        self.check(caller, Target::tool(&route.server, tool, &route.name))
    }

    /// Decides whether `caller` may use a tool, prompt or resource.
    pub(crate) fn check(&self, caller: &Caller, target: Target<'_>) -> Decision {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .decide(&caller.name, caller.scope, target)
    }

    /// Whether listings show `target` to `caller`: exactly what it may use.
    pub(crate) fn may_see(&self, caller: &Caller, target: Target<'_>) -> bool {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .may_see(&caller.name, caller.scope, target)
    }

    /// Whether `caller` may use anything of upstream `server` the catalog lists: one of its
    /// tools, prompts, resources or resource templates. Admin may use every upstream.
    pub(crate) fn may_use_server(&self, caller: &Caller, server: &str) -> bool {
        if caller.scope >= Scope::Admin {
            return true;
        }
        let catalog = self.catalog();
        let access = self.access.read().unwrap_or_else(|p| p.into_inner());
        let may = |target| access.may_see(&caller.name, caller.scope, target);
        catalog.tools.iter().any(|(name, route)| {
            route.server == server && may(Target::tool(server, name, &route.name))
        }) || catalog.prompts.iter().any(|(name, route)| {
            route.server == server && may(Target::prompt(server, name, &route.name))
        }) || catalog
            .resources
            .values()
            .map(|route| (&route.server, &route.name))
            .chain(catalog.templates.iter().map(|r| (&r.server, &r.name)))
            .any(|(owner, uri)| owner == server && may(Target::resource(server, uri)))
    }

    /// [`Core::call`] in a task of its own, cancelled when this future is dropped: a caller
    /// that goes away (an HTTP client hanging up) cancels the call upstream, and the audit
    /// records it, instead of leaving it half done and unrecorded.
    pub(crate) async fn call_detached(
        self: &Arc<Self>,
        caller: &Caller,
        params: CallToolRequestParams,
        downstream: Option<Downstream>,
        cancel: CancellationToken,
        via: &'static str,
    ) -> Result<CallToolResponse, CallError> {
        let _cancel_when_dropped = cancel.clone().drop_guard();
        let core = self.clone();
        let caller = caller.clone();
        let call =
            tokio::spawn(async move { core.call(&caller, params, downstream, cancel, via).await });
        call.await.unwrap_or_else(|_| {
            Err(CallError::Upstream {
                server: String::new(),
                message: "the gateway failed while routing the call".to_owned(),
            })
        })
    }

    /// Routes one `tools/call`: access check, upstream lookup, per-call timeout, progress
    /// relay, cancellation; every outcome is audited and counted.
    pub(crate) async fn call(
        &self,
        caller: &Caller,
        params: CallToolRequestParams,
        downstream: Option<Downstream>,
        cancel: CancellationToken,
        via: &'static str,
    ) -> Result<CallToolResponse, CallError> {
        let started = Instant::now();
        let route = self.catalog().tools.get(params.name.as_ref()).cloned();
        // A name the catalog does not hold is the client's text: it is cut before it is
        // recorded or quoted back, so a huge one cannot fill the audit log.
        let name = match &route {
            Some(_) => params.name.to_string(),
            None => shorten(&params.name, MAX_UNKNOWN_NAME),
        };
        let server = route.as_ref().map(|r| r.server.clone());
        let outcome = self
            .call_routed(caller, params, route, downstream, cancel)
            .await;
        let elapsed = started.elapsed();
        let (audit_outcome, error) = match &outcome {
            Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => {
                (Outcome::ToolError, None)
            }
            Ok(_) => (Outcome::Ok, None),
            Err(error) => (error.outcome(), Some(error.to_string())),
        };
        if let Some(server) = &server {
            let failed = !matches!(audit_outcome, Outcome::Ok | Outcome::Denied);
            if audit_outcome != Outcome::Denied {
                self.stats.record(server, &name, elapsed, failed);
            }
        }
        self.audit.record(Record {
            principal: &caller.name,
            tool: &name,
            server: server.as_deref(),
            outcome: audit_outcome,
            elapsed,
            via,
            error: error.as_deref(),
        });
        outcome
    }

    async fn call_routed(
        &self,
        caller: &Caller,
        mut params: CallToolRequestParams,
        route: Option<registry::Route<rmcp::model::Tool>>,
        downstream: Option<Downstream>,
        cancel: CancellationToken,
    ) -> Result<CallToolResponse, CallError> {
        let Some(route) = route else {
            return Err(CallError::UnknownTool(shorten(
                &params.name,
                MAX_UNKNOWN_NAME,
            )));
        };
        let name = params.name.to_string();
        if let Decision::Denied { reason } = self.decide(caller, &name) {
            return Err(CallError::Denied(reason));
        }
        let Some(server) = self.server(&route.server) else {
            return Err(CallError::UnknownTool(name));
        };
        let timeout = server.config.call_timeout;
        // An injected fault acts before a session is picked, so a delayed call goes out on
        // whatever session is open when its wait is over.
        if let Some(injection) = server.fault.draw() {
            injection
                .apply(&route.server, &name, timeout, &cancel)
                .await?;
        }
        let Some(lane) = server.call_peer() else {
            let status = server.status();
            return Err(CallError::Unavailable {
                server: route.server,
                state: format!("{:?}", status.state).to_lowercase(),
                reason: status
                    .last_error
                    .unwrap_or_else(|| "it is not connected".to_owned()),
            });
        };
        params.name = route.name.clone().into();
        let progress = downstream.as_ref().and_then(|d| d.progress.clone());
        let caller_of = downstream.as_ref().map(|d| http_call::CallerOf {
            peer: d.peer.clone(),
            notes: d.notes.clone(),
        });
        let mut route_guard = downstream.map(|d| self.relay.open(&server.id, d));
        // A call without progress goes straight to an HTTP upstream's session, unless a
        // client awaits the log messages of an upstream that may log: rmcp servers send them
        // on the session's own stream, which the protocol does not order with the call's
        // answer, and only rmcp's way (both read by one worker, in the order they came) keeps
        // them ahead of it. Measured through the conformance suite's logging check: a quarter
        // of the short-way calls lost that race, none of rmcp's.
        let relayed = route_guard.is_some();
        let logs_awaited = relayed
            && lane
                .peer
                .peer_info()
                .is_some_and(|info| info.capabilities.logging.is_some());
        let params = match (&lane.http, &progress) {
            (Some(http), None) if !logs_awaited => match http.session() {
                Some(session) => {
                    let call = Plain {
                        server: &server,
                        name: &name,
                        timeout,
                        cancel: &cancel,
                        caller: caller_of,
                    };
                    match call.send(http, session, params).await {
                        Ok(outcome) => return outcome,
                        Err(params) => *params,
                    }
                }
                None => params,
            },
            _ => params,
        };
        // The client's own `_meta` goes upstream; rmcp replaces the progress token with one of
        // its own, and the relay maps it back.
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let mut handle = match lane
            .peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
        {
            Ok(handle) => handle,
            Err(error) => {
                server.suspect();
                return Err(self.upstream_failure(&server, &route.server, &error).await);
            }
        };
        if let Some(guard) = &mut route_guard {
            guard.progress_token(lane.id, &handle.progress_token).await;
        }
        let answered = tokio::select! {
            answered = tokio::time::timeout(timeout, &mut handle.rx) => answered,
            () = cancel.cancelled() => {
                let _ = handle.cancel(Some("the client cancelled the call".to_owned())).await;
                return Err(CallError::Cancelled);
            }
        };
        if route_guard.is_some() {
            server.handling.settle(NOTIFICATIONS_SETTLE).await;
        }
        match answered {
            Ok(Ok(Ok(result))) => tool_response(&route.server, result),
            Ok(Ok(Err(rmcp::ServiceError::McpError(error)))) => Err(CallError::Refused {
                server: route.server,
                code: error.code.0,
                message: error.message.to_string(),
                data: error.data,
            }),
            Ok(Ok(Err(error))) => {
                server.suspect();
                Err(self.upstream_failure(&server, &route.server, &error).await)
            }
            Ok(Err(_closed)) => {
                server.suspect();
                let error = rmcp::ServiceError::TransportClosed;
                Err(self.upstream_failure(&server, &route.server, &error).await)
            }
            Err(_) => {
                let _ = handle
                    .cancel(Some(format!("no answer within {} ms", timeout.as_millis())))
                    .await;
                Err(CallError::Timeout {
                    server: route.server,
                    tool: name,
                    after: timeout,
                })
            }
        }
    }

    async fn upstream_failure(
        &self,
        server: &Supervised,
        id: &str,
        error: &rmcp::ServiceError,
    ) -> CallError {
        let message = match error {
            // The upstream went away mid-call: say how, once the supervisor knows.
            rmcp::ServiceError::TransportClosed => server
                .wait_for_failure(Duration::from_secs(1))
                .await
                .unwrap_or_else(|| "it closed the connection".to_owned()),
            rmcp::ServiceError::McpError(error) => error.message.to_string(),
            other => other.to_string(),
        };
        CallError::Upstream {
            server: id.to_owned(),
            message,
        }
    }
}

/// A plain call (no progress) on the short way to an HTTP upstream (see [`http_call`]).
struct Plain<'a> {
    server: &'a Supervised,
    name: &'a str,
    timeout: Duration,
    cancel: &'a CancellationToken,
    /// The client the call came from, if any.
    caller: Option<http_call::CallerOf>,
}

impl Plain<'_> {
    /// The call's outcome, or its parameters back when it must go rmcp's way (the upstream
    /// no longer knew the session: rmcp recovers it).
    async fn send(
        self,
        http: &Arc<http_call::HttpLane>,
        session: http_call::Session,
        params: CallToolRequestParams,
    ) -> Result<Result<CallToolResponse, CallError>, Box<CallToolRequestParams>> {
        let server = self.server;
        let id = http.next_id();
        let answered = tokio::select! {
            answered = tokio::time::timeout(self.timeout, http.call(&session, &id, params, self.caller.as_ref())) => answered,
            () = self.cancel.cancelled() => {
                http.cancel(session, id, "the client cancelled the call".to_owned());
                return Ok(Err(CallError::Cancelled));
            }
        };
        // What the upstream sent on the session's own stream and rmcp has read goes to the
        // client first (an upstream that declares no logging may still send some).
        if self.caller.is_some() {
            server.handling.settle(NOTIFICATIONS_SETTLE).await;
        }
        let id_of = || server.id.to_string();
        Ok(match answered {
            Ok(Ok(result)) => tool_response(&server.id, result),
            Ok(Err(http_call::Failure::Refused(error))) => Err(CallError::Refused {
                server: id_of(),
                code: error.code.0,
                message: error.message.to_string(),
                data: error.data,
            }),
            Ok(Err(http_call::Failure::Expired(params))) => return Err(params),
            Ok(Err(http_call::Failure::Rejected(message))) => Err(CallError::Upstream {
                server: id_of(),
                message,
            }),
            Ok(Err(http_call::Failure::Broken(message))) => {
                server.suspect();
                Err(CallError::Upstream {
                    server: id_of(),
                    message,
                })
            }
            Err(_) => {
                http.cancel(
                    session,
                    id,
                    format!("no answer within {} ms", self.timeout.as_millis()),
                );
                Err(CallError::Timeout {
                    server: id_of(),
                    tool: self.name.to_owned(),
                    after: self.timeout,
                })
            }
        })
    }
}

/// An upstream's answer to `tools/call`, as the gateway passes it on.
fn tool_response(server: &str, result: ServerResult) -> Result<CallToolResponse, CallError> {
    match result {
        ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
        ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
        ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
        _ => Err(CallError::Upstream {
            server: server.to_owned(),
            message: "it answered tools/call with something else than a tool result".to_owned(),
        }),
    }
}

/// How long `apply` waits for the servers it stops before starting their replacements: the
/// longest a session takes to wind down (the child's grace, then the transport's).
const REPLACE_WAIT: Duration = Duration::from_secs(10);

/// How much of an unknown tool name is recorded and quoted in errors.
const MAX_UNKNOWN_NAME: usize = 128;

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn same_tools(a: &Catalog, b: &Catalog) -> bool {
    a.tools.len() == b.tools.len()
        && a.tools
            .iter()
            .zip(&b.tools)
            .all(|((na, ra), (nb, rb))| na == nb && ra.server == rb.server && ra.item == rb.item)
}
