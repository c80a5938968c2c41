//! The task service over HTTP: MCP Streamable HTTP at `/mcp`, the REST API and its event stream
//! under `/api` (both behind authentication and a rate limit when configured), and the open
//! `/healthz`, `/readyz` and `/metrics` (Prometheus).

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
    http::{OriginPolicy, check_origin},
    metrics::{self, HttpMetrics, prometheus, write_series},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result, TaskService, TasksServer, rest, service::ListTasks};

/// What the HTTP front door accepts.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Extra `Host` names for `/mcp` beyond the loopback ones (rmcp refuses others, against DNS
    /// rebinding).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call `/mcp`. Requests with any other `Origin` are refused;
    /// requests without one (non-browser clients) are served.
    pub allowed_origins: Vec<String>,
    /// Credentials and rate limit for `/api` and `/mcp` (health checks are open).
    pub auth: AuthConfig,
}

/// The routes, for serving or for mounting inside another axum app. `shutdown` ends the MCP
/// sessions' streams when cancelled.
pub fn http_router(
    service: Arc<TaskService>,
    config: &HttpConfig,
    shutdown: CancellationToken,
) -> Router {
    // Probes and scrapers call these by the machine's address; they reveal nothing.
    let origin_policy = OriginPolicy::new(
        &config.allowed_hosts,
        &config.allowed_origins,
        &["/healthz", "/readyz", "/metrics"],
    );
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(origin_policy.hosts().to_vec())
        .with_allowed_origins(config.allowed_origins.iter().cloned())
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.clone());
    let shutdown_streams = shutdown;
    let sessions = service.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(TasksServer::new(sessions.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let metrics = Arc::new(HttpMetrics::default());
    let protected = Router::new()
        .merge(rest::routes())
        .layer(DefaultBodyLimit::max(rest::MAX_BODY_BYTES))
        .layer(Extension(rest::stream::StreamShutdown(shutdown_streams)))
        .layer(Extension(metrics.clone()))
        .with_state(service.clone())
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(
            Gate::new(config.auth.clone(), required_scope),
            auth::guard,
        ));
    let scrape = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state((metrics.clone(), service.clone()));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        // The API's description holds no data: readable without a credential, so clients and
        // tools can discover what to authenticate for.
        .route("/openapi.json", get(rest::openapi))
        .with_state(service)
        .merge(scrape)
        .merge(protected)
        .fallback(rest::not_found)
        .method_not_allowed_fallback(rest::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::new(origin_policy),
            check_origin,
        ))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
}

/// The scope a request needs: reading needs `read`; changing anything, and MCP sessions
/// (whose tools write), need `write`; adding users needs `admin`.
fn required_scope(method: &Method, path: &str) -> Scope {
    if path == "/mcp" || path.starts_with("/mcp/") {
        return Scope::Write;
    }
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        // Who may be assigned work is the admin's to decide (MCP's add_user checks the same).
        Method::POST if path == "/api/users" => Scope::Admin,
        _ => Scope::Write,
    }
}

/// `/metrics`: the HTTP series, then the outbox's.
async fn render_metrics(
    State((metrics, service)): State<(Arc<HttpMetrics>, Arc<TaskService>)>,
) -> impl axum::response::IntoResponse {
    let mut out = metrics.render();
    write_series(
        &mut out,
        "switchboard_events_published_total",
        "counter",
        "Events this process moved from the outbox to the bus.",
        &[(String::new(), service.events_published())],
    );
    write_series(
        &mut out,
        "switchboard_bus_failing",
        "gauge",
        "1 while the bus refuses events (they wait in the outbox).",
        &[(String::new(), u64::from(service.bus_failing()))],
    );
    prometheus(out)
}

/// Ready when the store answers a query.
async fn ready(State(service): State<Arc<TaskService>>) -> (StatusCode, &'static str) {
    let probe = ListTasks {
        limit: Some(1),
        ..ListTasks::default()
    };
    match service.list_tasks(probe).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(%error, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// Serves on `listener` until `shutdown` completes: then stops accepting, ends MCP streams,
/// lets in-flight requests finish, and flushes the outbox. Every accepted connection has
/// `TCP_NODELAY` set (rmcp streams its responses; with Nagle on, each call waits on a delayed
/// ACK: 44 ms p50 instead of ~1 ms).
pub async fn serve_http(
    service: Arc<TaskService>,
    listener: tokio::net::TcpListener,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let stop = CancellationToken::new();
    let app = http_router(service.clone(), &config, stop.clone());
    // The relay outlives the server: requests still finishing when the signal comes may commit
    // events, and the relay's final flush must come after them.
    let relay_token = CancellationToken::new();
    let relay_stop = relay_token.clone();
    let relay_service = service.clone();
    let relay = tokio::spawn(async move {
        relay_service
            .relay_until(
                std::time::Duration::from_secs(1),
                relay_stop.cancelled_owned(),
            )
            .await;
    });
    mcp_core::http::serve(listener, app, shutdown, stop)
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    // Every request has finished: the relay's last act is a final flush of the outbox.
    relay_token.cancel();
    let _ = relay.await;
    Ok(())
}
