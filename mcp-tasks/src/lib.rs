//! Switchboard's task domain: users, repositories, tasks, comments and history; the
//! [`TaskStore`] seam with its SQLite and PostgreSQL stores; the [`TaskService`] that validates,
//! versions and records every change and publishes its event; and the MCP server agents use.

mod domain;
mod error;
mod http;
mod rest;
mod server;
pub mod store;
mod tools;

pub use domain::{
    Comment, Complexity, HistoryEntry, Priority, Repository, Status, Task, TaskDetail, User,
};
pub use error::{BoxError, Error, Result};
pub use store::TaskStore;
pub mod service;
pub use http::{HttpConfig, http_router, serve_http};
pub use mcp_core::auth::{ApiKey, AuthConfig, Scope};
pub use mcp_core::stdio::Ended;
pub use server::TasksServer;
pub use server::serve_stdio;
pub use service::TaskService;
