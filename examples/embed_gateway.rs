//! Embedding the gateway in your own program: start it from a configuration your code builds,
//! call a tool of an upstream from Rust, and watch what the gateway announces.
//!
//! `cargo build --example echo_upstream && cargo run --example embed_gateway` starts two
//! `echo_upstream` children behind one gateway, calls `a__echo` and `b__add`, prints the events
//! it saw, and stops (every child is reaped before it returns). To serve the same gateway to
//! an MCP client instead, hand `gateway.mcp_server()` to `mcp_core::stdio::serve_stdio`, or
//! pass it as `HubHttpConfig::gateway` to the hub's router for `/mcp`.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use mcp_core::{Delivery, EventBus, EventFilter, MemoryBus};
use mcp_hub::gateway::{Caller, Gateway, GatewayConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let upstream = exe
        .parent()
        .context("the examples directory")?
        .join("echo_upstream");
    if !upstream.exists() {
        bail!("build the upstream first: cargo build --example echo_upstream");
    }
    let command = upstream.display().to_string();
    // The same text a hub.toml holds; `GatewayConfig::from_path` reads one from a file.
    let config = GatewayConfig::parse_toml(
        &format!(
            "[servers]\n\
             a = {{ command = {command:?}, args = [\"stdio\", \"--name\", \"alpha\"] }}\n\
             b = {{ command = {command:?}, args = [\"stdio\", \"--name\", \"beta\"] }}\n"
        ),
        Path::new("."),
    )?;

    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::default());
    let mut events = bus.subscribe(EventFilter::all(), None).await?;
    let gateway = Gateway::start(config, bus);
    if !gateway.settle(Duration::from_secs(10)).await {
        bail!("the upstreams did not start");
    }
    for server in gateway.servers() {
        eprintln!("{}: {:?}, {} tools", server.id, server.state, server.tools);
    }

    // Both upstreams have `echo` and `add`, so their names carry the server's id.
    let caller = Caller::anonymous();
    let echoed = gateway
        .call_tool(
            &caller,
            "a__echo",
            json!({ "text": "hello" }).as_object().cloned(),
        )
        .await?;
    eprintln!("a__echo -> {}", json!(echoed.structured_content));
    let sum = gateway
        .call_tool(
            &caller,
            "b__add",
            json!({ "a": 2, "b": 3 }).as_object().cloned(),
        )
        .await?;
    eprintln!("b__add -> {}", json!(sum.structured_content));

    gateway.shutdown().await;
    while let Ok(Some(Delivery::Event(event))) =
        tokio::time::timeout(Duration::from_millis(50), events.recv()).await
    {
        eprintln!(
            "event {} about {:?}",
            event.kind,
            event.subject.get("server")
        );
    }
    Ok(())
}
