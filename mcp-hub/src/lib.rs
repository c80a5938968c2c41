//! Switchboard's hub: the dashboard backend. Agents' tools push curated data to a channel
//! (`issues`, `pull_requests`, `commits`, or any of their own); the [`Hub`] validates it, keeps
//! the latest snapshot per channel and repository in a [`SnapshotStore`], and announces it on
//! the event bus; dashboards receive it over WebSocket or SSE, and the web page served at `/`
//! draws it live.

mod error;
pub mod gateway;
mod http;
mod hub;
pub mod lab;
mod live;
pub mod login;
mod rest;
pub mod snapshot;
mod tasks_feed;
mod validate;
mod web;

pub use error::{BoxError, Error, Result};
pub use http::{DEFAULT_MAX_BODY_BYTES, HubHttpConfig, hub_router, serve_hub};
pub use hub::{DEFAULT_MAX_SNAPSHOTS, Hub, HubStats, Push, Receipt, TOPIC, update_type};
pub use snapshot::SnapshotStore;
pub use tasks_feed::{TASKS_CHANNEL, TasksFeedConfig, run_tasks_feed};
pub use validate::KNOWN_CHANNELS;
