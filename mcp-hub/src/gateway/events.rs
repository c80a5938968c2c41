//! The gateway's events (`server_status`, `tool_update`, `log_entry`) on its own topic, so the
//! dashboard page and `/api/gateway/stream` follow the upstreams live.

use std::sync::Arc;

use mcp_core::{EventBus, NewEvent};
use serde_json::Value;

/// The topic of every gateway event.
pub const GATEWAY_TOPIC: &str = "gateway";

pub(crate) struct Events {
    bus: Arc<dyn EventBus>,
}

impl Events {
    pub(crate) fn new(bus: Arc<dyn EventBus>) -> Self {
        Self { bus }
    }

    pub(crate) fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// Announces `kind` about `server`. The gateway goes on if the bus refuses: its REST
    /// answers stay true, and a reconnecting page reads them afresh.
    pub(crate) async fn publish(&self, kind: &str, server: &str, data: Value) {
        let event = NewEvent::new(GATEWAY_TOPIC, kind, "hub:gateway")
            .with_subject("server", server)
            .with_data(data);
        if let Err(error) = self.bus.publish(event).await {
            tracing::warn!(%error, kind, server, "could not announce a gateway event");
        }
    }
}
