//! Switchboard's shared building blocks: the event envelope every component speaks, and the
//! [`EventBus`] seam that carries events between producers (task service, hub) and consumers
//! (SSE, WebSocket, MCP resource notifications).

mod bus;
mod event;

pub use bus::memory::MemoryBusConfig;
pub use bus::redis::{RedisBus, RedisBusConfig};
pub use bus::{BusError, Delivery, EventBus, EventFilter, Subscription, memory::MemoryBus};
pub use event::{Event, EventId, NewEvent, ParseEventIdError};
