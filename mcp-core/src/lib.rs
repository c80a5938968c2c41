//! Switchboard's shared building blocks: the event envelope every component speaks; the
//! [`EventBus`] seam that carries events between producers (task service, hub) and consumers
//! (SSE, WebSocket, MCP resource notifications); the [`Sink`] seam that pushes payloads to a
//! dashboard ([`HttpSink`]); and the HTTP plumbing every service shares: authentication
//! ([`auth`]) and JSON errors, extractors and Host/Origin checks ([`http`]).

pub mod auth;
mod bus;
mod event;
pub mod http;
pub mod metrics;
pub mod retry;
pub mod schema;
mod sink;
pub mod stdio;

pub use bus::memory::MemoryBusConfig;
pub use bus::redis::{RedisBus, RedisBusConfig};
pub use bus::{BusError, Delivery, EventBus, EventFilter, Subscription, memory::MemoryBus};
pub use event::{Event, EventId, NewEvent, ParseEventIdError};
pub use sink::{
    HttpSink, HttpSinkConfig, MAX_TITLE_CHARS, Push, Receipt, Sink, SinkError, is_channel_name,
};
