//! Embedding the task service in your own axum app: your routes and the task REST API, SSE
//! stream and MCP endpoint on one port.
//!
//! `cargo run --example embed_tasks`, then e.g.
//! `curl -s -X POST localhost:3000/api/users -H 'content-type: application/json' -d '{"email":"me@example.com"}'`
//! and `curl -N localhost:3000/api/tasks/stream`. Ctrl-C stops it.

use std::sync::Arc;

use anyhow::Context;
use axum::{Router, routing::get, serve::ListenerExt};
use mcp_core::MemoryBus;
use mcp_tasks::{HttpConfig, TaskService, http_router, store::SqliteStore};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Any TaskStore and any EventBus will do; here, a SQLite file and the in-process bus.
    let path = std::env::temp_dir().join("switchboard-embed-example.db");
    let store = SqliteStore::open(&path)
        .await
        .context("opening the example database")?;
    let service = Arc::new(TaskService::new(
        Arc::new(store),
        Arc::new(MemoryBus::default()),
    ));

    // Cancelling this ends the task routes' long-lived streams (SSE, MCP) at shutdown.
    let shutdown = CancellationToken::new();
    let tasks = http_router(service.clone(), &HttpConfig::default(), shutdown.clone());
    let app = Router::new()
        .route(
            "/",
            get(|| async { "my app; tasks under /api, MCP at /mcp\n" }),
        )
        .merge(tasks);

    // Retry events the bus refused, and flush the outbox when stopping.
    let relay = tokio::spawn({
        let service = service.clone();
        let stopped = shutdown.clone();
        async move {
            service
                .relay_until(std::time::Duration::from_secs(1), stopped.cancelled_owned())
                .await;
        }
    });

    // TCP_NODELAY on every connection: rmcp streams its responses, and with Nagle on each MCP
    // call would wait on a delayed ACK.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    eprintln!(
        "listening on http://127.0.0.1:3000 (database {})",
        path.display()
    );
    // With the peer's address, failed authentication is limited per address; it also keeps
    // axum from rebuilding the route table for every connection.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    })
    .await?;
    relay.await?;
    Ok(())
}
