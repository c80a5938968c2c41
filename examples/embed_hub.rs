//! Embedding the hub in your own program: the dashboard page and its API served by your axum
//! app, and your own code pushing to it, here through an `HttpSink` as any other program would
//! (a job in the same process could call `Hub::sync` directly instead).
//!
//! `cargo run --example embed_hub`, open http://127.0.0.1:3001/ and watch the "build queue"
//! channel change every two seconds. Ctrl-C stops it.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use mcp_core::{HttpSink, HttpSinkConfig, MemoryBus, Push, Sink};
use mcp_hub::{Hub, HubHttpConfig, hub_router, snapshot::MemorySnapshotStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Any SnapshotStore and any EventBus will do; here, nothing kept across restarts.
    let hub = Arc::new(Hub::new(
        Arc::new(MemorySnapshotStore::default()),
        Arc::new(MemoryBus::default()),
    ));
    // Cancelling this ends the dashboards' WebSocket and SSE connections at shutdown.
    let shutdown = CancellationToken::new();
    let app = hub_router(hub, &HubHttpConfig::default(), shutdown.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    eprintln!("the dashboard is at http://127.0.0.1:3001/");

    let pusher = tokio::spawn(push_forever(shutdown.clone()));
    // The peer's address lets failed authentication be limited per address, and keeps axum
    // from rebuilding the route table for every connection.
    axum::serve(
        mcp_core::http::nodelay(listener),
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    })
    .await?;
    pusher.await??;
    Ok(())
}

/// A stand-in for your own job: a small build queue, pushed every two seconds.
async fn push_forever(shutdown: CancellationToken) -> anyhow::Result<()> {
    let sink =
        HttpSink::new(HttpSinkConfig::new("http://127.0.0.1:3001")).context("building the sink")?;
    let mut round = 0u32;
    loop {
        let queue: Vec<_> = (0..3)
            .map(|n| json!({"job": format!("build #{}", round * 3 + n), "state": if n == 0 { "running" } else { "queued" }}))
            .collect();
        let push = Push {
            channel: "build-queue".into(),
            repository: Some("acme/api".into()),
            title: "Build queue".into(),
            data: json!(queue),
        };
        match sink.push(push).await {
            Ok(receipt) => eprintln!("pushed round {round}: {}", receipt.body),
            Err(error) => eprintln!("push failed: {error}"),
        }
        round += 1;
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
