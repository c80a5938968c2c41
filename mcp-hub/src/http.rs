//! The hub over HTTP: the dashboard page at `/`, the sync and read API and the live endpoints
//! under `/api/dashboard` (behind authentication and a rate limit when configured), and the
//! open `/healthz`, `/readyz` and `/metrics` (Prometheus).

use std::{future::Future, sync::Arc};

use axum::{
    Extension, Router,
    extract::{DefaultBodyLimit, State},
    http::{Method, StatusCode},
    middleware,
    routing::get,
};
use mcp_core::{
    auth::{self, AuthConfig, Gate, Scope},
    http::{OriginPolicy, check_origin, method_not_allowed, not_found},
    metrics::{self, HttpMetrics, prometheus, write_series},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Result,
    gateway::{self, Gateway},
    hub::Hub,
    live::{self, LiveShutdown},
    rest::{self, PageConfig},
    tasks_feed::{TasksFeedConfig, run_tasks_feed},
    web,
};

/// The largest push accepted by default: 1,000 issues with their labels take about 400 KB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the hub's HTTP front door accepts.
#[derive(Debug, Clone)]
pub struct HubHttpConfig {
    /// Extra `Host` names beyond the loopback ones (against DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Browser origins besides the hub's own page that may call the API.
    pub allowed_origins: Vec<String>,
    /// Credentials and rate limit for `/api` (the page, health checks are open).
    pub auth: AuthConfig,
    /// The largest push body; a larger one is refused with 413.
    pub max_body_bytes: usize,
    /// The task service whose tasks the page's board shows (`serve_hub` follows it; an
    /// embedder calling [`hub_router`] runs [`crate::run_tasks_feed`] itself).
    pub tasks_feed: Option<TasksFeedConfig>,
    /// The MCP gateway: with it, the hub serves the aggregated MCP server at `/mcp` and the
    /// gateway's REST API (`/api/servers`, `/api/tools`, `/api/logs`, …).
    pub gateway: Option<Gateway>,
    /// The reliability lab: with it, the hub serves `/api/lab` (suites, runs, reports), and
    /// `serve_hub` runs suites on their interval.
    pub lab: Option<crate::lab::Lab>,
    /// Team login: with it, `/api/auth/login` hands out access tokens signed with its key,
    /// which the gate then accepts (it replaces `auth.jwt_secret`, so give the same key to
    /// keep accepting tokens signed elsewhere).
    pub login: Option<crate::login::Login>,
}

impl Default for HubHttpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            auth: AuthConfig::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            tasks_feed: None,
            gateway: None,
            lab: None,
            login: None,
        }
    }
}

/// Reading needs `read`; pushing and starting a lab run need `write`; starting, stopping and
/// restarting upstreams, changing lab suites, managing users and reading the audit log need
/// `admin`. Tool calls (MCP at `/mcp`, REST at
/// `/api/tools/{name}/execute`) need `read` here: the gateway's access rules decide each call
/// (without a rule, calling needs `write`).
fn required_scope(method: &Method, path: &str) -> Scope {
    let is_control = path.starts_with("/api/servers/")
        && ["/start", "/stop", "/restart", "/kill", "/fault"]
            .iter()
            .any(|a| path.ends_with(a));
    // A lab suite may start a command: changing suites is the admin's; running a suite an
    // admin defined is an operator's.
    let is_lab_change = path.starts_with("/api/lab/")
        && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && path != "/api/lab/runs";
    let is_users = path == "/api/users" || path.starts_with("/api/users/");
    if path == "/api/audit"
        || (is_control && matches!(*method, Method::POST | Method::PUT | Method::DELETE))
        || is_lab_change
        || is_users
    {
        return Scope::Admin;
    }
    if path == "/mcp"
        || path.starts_with("/mcp/")
        || (path.starts_with("/api/tools/") && path.ends_with("/execute"))
    {
        return Scope::Read;
    }
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        _ => Scope::Write,
    }
}

/// The routes, for serving or for mounting inside another axum app. `shutdown` ends the live
/// connections when cancelled.
pub fn hub_router(hub: Arc<Hub>, config: &HubHttpConfig, shutdown: CancellationToken) -> Router {
    let origin_policy = OriginPolicy::new(
        &config.allowed_hosts,
        &config.allowed_origins,
        &["/healthz", "/readyz", "/metrics"],
    );
    let metrics = Arc::new(HttpMetrics::default());
    let mut auth = config.auth.clone();
    if let Some(login) = &config.login {
        auth.jwt_secret = Some(login.key().to_vec());
        auth.audience = Some(crate::login::AUDIENCE.to_owned());
    }
    let gate = Gate::new(auth, required_scope);
    let mut protected = Router::new()
        .merge(rest::routes())
        .merge(live::routes())
        .merge(crate::login::rest::routes(config.login.clone()));
    if let Some(gateway) = &config.gateway {
        // rmcp keeps its Host check. Origin is checked in front of it by `check_origin`, with
        // the rules of the rest of the API, which admit the hub's own page: rmcp cannot know
        // the hub's origin, and would refuse it.
        let mcp_config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(origin_policy.hosts().to_vec())
            .with_cancellation_token(shutdown.clone());
        let sessions = gateway.clone();
        let mcp = StreamableHttpService::new(
            move || Ok(sessions.mcp_server()),
            Arc::new(LocalSessionManager::default()),
            mcp_config,
        );
        protected = protected
            .merge(gateway::rest::routes())
            .layer(Extension(gateway.clone()))
            .layer(Extension(gateway::rest::StreamShutdown(shutdown.clone())))
            .nest("/mcp", gateway.mcp_router(mcp));
    }
    if let Some(lab) = &config.lab {
        protected = protected
            .merge(crate::lab::rest::routes())
            .layer(Extension(lab.clone()))
            .layer(Extension(gateway::rest::StreamShutdown(shutdown.clone())));
    }
    let protected = protected
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(Extension(LiveShutdown(shutdown)))
        .layer(Extension(metrics.clone()))
        .layer(Extension(PageConfig {
            tasks: config.tasks_feed.is_some(),
            gateway: config.gateway.is_some(),
            lab: config.lab.is_some(),
        }))
        .layer(middleware::from_fn_with_state(gate.clone(), auth::guard));
    let scrape = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state((metrics.clone(), hub.clone()));
    Router::new()
        .route("/", get(web::page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(crate::login::rest::open_routes(config.login.clone(), gate))
        .merge(protected)
        .with_state(hub)
        .merge(scrape)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::new(origin_policy),
            check_origin,
        ))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
}

/// `/metrics`: the HTTP series (with the open WebSocket and SSE connections), then the hub's.
async fn render_metrics(
    State((metrics, hub)): State<(Arc<HttpMetrics>, Arc<Hub>)>,
) -> impl axum::response::IntoResponse {
    let mut out = metrics.render();
    let stats = hub.stats();
    write_series(
        &mut out,
        "switchboard_hub_pushes_total",
        "counter",
        "Pushes stored as a new snapshot, and retries answered as duplicates.",
        &[
            ("{outcome=\"stored\"}".into(), stats.stored),
            ("{outcome=\"duplicate\"}".into(), stats.duplicates),
        ],
    );
    write_series(
        &mut out,
        "switchboard_hub_announce_failures_total",
        "counter",
        "Announcements the bus refused or did not take in time (the push stayed stored).",
        &[(String::new(), stats.announce_failures)],
    );
    match hub.snapshot_count().await {
        Ok(count) => write_series(
            &mut out,
            "switchboard_hub_snapshots",
            "gauge",
            "Snapshots the store holds.",
            &[(String::new(), count)],
        ),
        Err(error) => tracing::warn!(%error, "cannot count snapshots for /metrics"),
    }
    prometheus(out)
}

/// Ready when the snapshot store answers.
async fn ready(State(hub): State<Arc<Hub>>) -> (StatusCode, &'static str) {
    match hub.ready().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(%error, "not ready: the snapshot store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// Serves on `listener` until `shutdown` completes: then stops accepting, ends live
/// connections and the tasks feed, lets in-flight requests finish and waits for the pushes
/// they started. Every accepted connection has `TCP_NODELAY`.
pub async fn serve_hub(
    hub: Arc<Hub>,
    listener: tokio::net::TcpListener,
    config: HubHttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let stop = CancellationToken::new();
    let app = hub_router(hub.clone(), &config, stop.clone());
    let feed = config
        .tasks_feed
        .map(|feed| tokio::spawn(run_tasks_feed(hub.clone(), feed, stop.clone())));
    let scheduler = config.lab.as_ref().map(|lab| lab.schedule(stop.clone()));
    mcp_core::http::serve(listener, app, shutdown, stop)
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    if let Some(feed) = feed {
        let _ = feed.await;
    }
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    hub.finish_pushes(std::time::Duration::from_secs(10)).await;
    Ok(())
}
