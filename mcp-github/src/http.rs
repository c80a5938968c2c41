//! The GitHub tools over Streamable HTTP at `/mcp`, plus `/healthz`. Loopback only: this server
//! has no authentication of its own, so [`serve_http`] refuses any other listening address.
//! rmcp's Host check (loopback names) stays on, and browsers are refused by the Origin check.

use std::future::Future;

use axum::{Router, routing::get};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{Error, GitHubServer, Result};

/// The routes, for serving or for mounting in another axum app. `shutdown` ends the MCP
/// sessions' streams when cancelled.
pub fn http_router(server: GitHubServer, shutdown: CancellationToken) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"].map(String::from))
        // No browser origin is allowed: only non-browser clients (which send none) get in.
        .with_allowed_origins(Vec::<String>::new())
        .enforce_origin_validation()
        .with_cancellation_token(shutdown);
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        std::sync::Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest_service("/mcp", mcp)
}

/// Serves on `listener` (which must be a loopback address) until `shutdown` completes. Every
/// accepted connection has `TCP_NODELAY` set: rmcp streams its answers, and with Nagle on each
/// call waits on a delayed ACK.
pub async fn serve_http(
    server: GitHubServer,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener
        .local_addr()
        .map_err(|e| Error::Transport(e.to_string()))?;
    if !address.ip().is_loopback() {
        return Err(Error::Config(format!(
            "refusing to listen on {address}: mcp-github has no authentication of its own; \
             listen on 127.0.0.1 (put a gateway in front to serve others)"
        )));
    }
    let stop = CancellationToken::new();
    let app = http_router(server, stop.clone());
    mcp_core::http::serve(listener, app, shutdown, stop)
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    Ok(())
}
