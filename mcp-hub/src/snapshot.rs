//! The `SnapshotStore` seam: the latest payload pushed to each channel, per repository, so a
//! dashboard that connects (or a hub that restarts) starts from the current state. Stores:
//! [`MemorySnapshotStore`], `SqliteSnapshotStore` (the embedded default) and
//! `PostgresSnapshotStore`.

mod memory;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::EventId;
use serde::Serialize;

pub use memory::MemorySnapshotStore;
pub use postgres::PostgresSnapshotStore;
pub use sqlite::SqliteSnapshotStore;

use crate::{Error, Result, lab::store::LabStore, login::UserStore};

/// How long an idempotency key is remembered: a push retried later than this is applied again.
pub const IDEMPOTENCY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A push about to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSnapshot {
    pub channel: String,
    /// `owner/name`, or `None` for a channel not tied to a repository.
    pub repository: Option<String>,
    pub title: String,
    pub data: serde_json::Value,
    /// Who pushed it: the credential, or `api` without authentication.
    pub actor: String,
    /// The push's `Idempotency-Key`: a second push with the same key is not applied again.
    pub idempotency_key: Option<String>,
}

/// The latest payload of one channel and repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub channel: String,
    pub repository: Option<String>,
    pub title: String,
    pub data: serde_json::Value,
    pub actor: String,
    pub updated_at: DateTime<Utc>,
    /// Counts the pushes to this channel and repository (1 for the first): a client holding a
    /// newer revision ignores an older one that arrives late (from another hub, say).
    pub revision: i64,
    /// The id of the event that announced this revision, once published.
    pub event_id: Option<EventId>,
}

/// What [`SnapshotStore::put`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Put {
    /// The push was stored as a new revision.
    Stored(Snapshot),
    /// A push with the same idempotency key was already applied; nothing changed. Holds the
    /// current snapshot and the revision that push made.
    Duplicate { current: Snapshot, revision: i64 },
}

/// Which snapshots to list. Empty `channels` means every channel; `repository` `None` means
/// every repository (and those of no repository).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotQuery {
    pub channels: Vec<String>,
    pub repository: Option<String>,
}

/// Keeps the latest snapshot per channel and repository. Repositories compare without regard to
/// case and keep the spelling of their latest push.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `snapshot` as the next revision of its channel and repository, unless its
    /// idempotency key was seen in the last [`IDEMPOTENCY_WINDOW`].
    async fn put(&self, snapshot: NewSnapshot) -> Result<Put>;

    /// Records the id of the event that announced `revision` (ignored if a newer revision was
    /// stored meanwhile).
    async fn set_event_id(
        &self,
        channel: &str,
        repository: Option<&str>,
        revision: i64,
        id: EventId,
    ) -> Result<()>;

    async fn get(&self, channel: &str, repository: Option<&str>) -> Result<Option<Snapshot>>;

    /// Matching snapshots, by channel then repository.
    async fn list(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>>;

    /// How many snapshots the store holds.
    async fn count(&self) -> Result<u64>;

    /// The newest event id any snapshot records: a bus that chooses ids by the clock starts
    /// after it, so ids keep growing across restarts even if the clock stepped back.
    async fn latest_event_id(&self) -> Result<Option<EventId>>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}

/// The key a repository is stored under: lower case, `""` for none.
pub(crate) fn repo_key(repository: Option<&str>) -> String {
    repository.map(str::to_ascii_lowercase).unwrap_or_default()
}

/// Opens the store a database URL names: `sqlite:PATH`, `postgres://…`, or `memory:` (nothing
/// kept across restarts).
pub async fn connect(database_url: &str) -> Result<Arc<dyn SnapshotStore>> {
    Ok(connect_with_lab(database_url).await?.0)
}

/// Like [`connect`], and the same store as the lab's (its suites and runs live in the hub's
/// database).
pub async fn connect_with_lab(
    database_url: &str,
) -> Result<(Arc<dyn SnapshotStore>, Arc<dyn LabStore>)> {
    let stores = open(database_url).await?;
    Ok((stores.snapshots, stores.lab))
}

/// The hub's one database in each of its roles: snapshots, the lab's suites and runs, and the
/// users of team login.
#[derive(Clone)]
pub struct Stores {
    pub snapshots: Arc<dyn SnapshotStore>,
    pub lab: Arc<dyn LabStore>,
    pub users: Arc<dyn UserStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// One store in every role.
    pub fn of<T: SnapshotStore + LabStore + UserStore>(store: T) -> Stores {
        let store = Arc::new(store);
        Stores {
            snapshots: store.clone(),
            lab: store.clone(),
            users: store,
        }
    }
}

/// Opens the store a database URL names (as [`connect`]) in all its roles.
pub async fn open(database_url: &str) -> Result<Stores> {
    if database_url == "memory:" {
        Ok(Stores::of(MemorySnapshotStore::default()))
    } else if database_url.starts_with("sqlite:") {
        Ok(Stores::of(
            SqliteSnapshotStore::connect(database_url).await?,
        ))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        Ok(Stores::of(
            PostgresSnapshotStore::connect(database_url).await?,
        ))
    } else {
        Err(Error::Invalid {
            field: "database url",
            message: "expected sqlite:PATH, postgres://…, postgresql://… or memory:".into(),
        })
    }
}

/// `at` truncated to microseconds, the precision every store keeps, so a snapshot reads back
/// exactly as it was returned.
pub(crate) fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}
