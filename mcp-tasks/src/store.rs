//! The `TaskStore` seam and what its implementations share: queries, pages, cursors, the outbox.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::{Event, EventId, NewEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::{Comment, Error, HistoryEntry, Repository, Result, Status, Task, User};

/// Persistence for the task domain.
///
/// Every write takes the event that describes it and stores it in the outbox in the same
/// transaction, so a change and its event are committed together or not at all.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Adds a user; [`Error::AlreadyExists`] when the email or GitHub username is taken.
    async fn insert_user(&self, user: &User) -> Result<()>;
    /// A user by id, email (case-insensitive) or GitHub username (case-insensitive).
    async fn find_user(&self, key: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;

    /// A repository by `owner/name`, case-insensitive.
    async fn find_repository(&self, name: &str) -> Result<Option<Repository>>;
    async fn list_repositories(&self) -> Result<Vec<Repository>>;

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>>;
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage>;

    /// Inserts a task, registering its repository (`task.repository`) if it is new.
    async fn insert_task(
        &self,
        task: &Task,
        history: &[HistoryEntry],
        event: &NewEvent,
    ) -> Result<()>;
    /// Reads a task, hands it to `edit`, and writes what `edit` returns, in one transaction
    /// that holds the task (its row, or SQLite's write lock) throughout, so concurrent edits of
    /// one task apply one after another and each sees the one before. An `edit` that returns
    /// an error or `None` leaves everything as it was.
    async fn modify_task(&self, id: Uuid, edit: TaskEdit) -> Result<Modified>;
    /// Reads a task, hands it to `edit`, and deletes it with its comments (keeping its history,
    /// with the rows `edit` returns appended) in one transaction that holds the task, like
    /// [`TaskStore::modify_task`]. Returns the task as it was.
    async fn remove_task(&self, id: Uuid, edit: RemoveEdit) -> Result<Task>;

    /// Adds a comment; [`Error::NotFound`] if the task does not exist.
    async fn insert_comment(&self, comment: &Comment, event: &NewEvent) -> Result<()>;
    async fn comments(&self, task_id: Uuid) -> Result<Vec<Comment>>;
    async fn history(&self, task_id: Uuid) -> Result<Vec<HistoryEntry>>;

    /// Outbox rows written through this store instance and not yet published, oldest first.
    ///
    /// Each store instance (each process) relays only its own rows: with an in-process bus, a
    /// row published by another process would reach that process's subscribers, not the
    /// writer's. A shared bus (Redis) will claim rows across instances instead.
    async fn pending_events(&self, limit: u32) -> Result<Vec<OutboxEvent>>;
    /// Takes over the unpublished outbox rows of other instances that are older than
    /// `older_than` (their writer died, or has not reached the bus for that long), so this
    /// instance's relay publishes them. Returns how many. Delivery is at least once: a writer
    /// that was merely slow may publish such a row too.
    async fn adopt_orphans(&self, older_than: std::time::Duration) -> Result<u64>;
    /// Published events (any instance's) with ids after `cursor`, in id order, at most `limit`:
    /// the store's memory for clients that resume further back than the bus remembers.
    async fn published_after(&self, cursor: EventId, limit: u32) -> Result<Vec<Event>>;
    /// Records the ids the bus gave outbox rows, as `(seq, id)` pairs, in one transaction.
    async fn mark_published(&self, published: &[(i64, EventId)]) -> Result<()>;
}

/// Decides, from the current task, what to write: `Ok(None)` for nothing.
pub type TaskEdit = Box<dyn FnOnce(&Task) -> Result<Option<TaskWrite>> + Send>;

/// Decides, from the task about to be deleted, the history rows and the event that record
/// the deletion, or refuses it (e.g. [`Error::Conflict`]).
pub type RemoveEdit = Box<dyn FnOnce(&Task) -> Result<(Vec<HistoryEntry>, NewEvent)> + Send>;

/// A change to one task: its new state (with the next version), the history rows and the event
/// that describe it.
#[derive(Debug, Clone)]
pub struct TaskWrite {
    pub task: Task,
    pub history: Vec<HistoryEntry>,
    pub event: NewEvent,
}

/// What [`TaskStore::modify_task`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modified {
    /// The edit asked for no change; the task as it is.
    Unchanged(Task),
    /// The task as written.
    Updated(Task),
}

impl Modified {
    /// The task, changed or not.
    pub fn task(&self) -> &Task {
        match self {
            Modified::Unchanged(task) | Modified::Updated(task) => task,
        }
    }

    pub fn into_task(self) -> Task {
        match self {
            Modified::Unchanged(task) | Modified::Updated(task) => task,
        }
    }
}

/// Opens the store a database URL names: `sqlite:` (file created and migrated if missing) or
/// `postgres:` / `postgresql:` (migrated).
pub async fn connect(database_url: &str) -> Result<Arc<dyn TaskStore>> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(database_url).await?))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::connect(database_url).await?))
    } else {
        Err(Error::Invalid {
            field: "database url",
            message: "expected sqlite:PATH, postgres://… or postgresql://…".into(),
        })
    }
}

/// A status filter: one status, or `open` for every status that is not finished
/// (not_started, in_progress, blocked or in_review).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Open,
    NotStarted,
    InProgress,
    Blocked,
    InReview,
    Completed,
    Cancelled,
}

impl StatusFilter {
    /// The statuses this filter admits.
    pub fn statuses(self) -> &'static [Status] {
        match self {
            StatusFilter::Open => &[
                Status::NotStarted,
                Status::InProgress,
                Status::Blocked,
                Status::InReview,
            ],
            StatusFilter::NotStarted => &[Status::NotStarted],
            StatusFilter::InProgress => &[Status::InProgress],
            StatusFilter::Blocked => &[Status::Blocked],
            StatusFilter::InReview => &[Status::InReview],
            StatusFilter::Completed => &[Status::Completed],
            StatusFilter::Cancelled => &[Status::Cancelled],
        }
    }
}

/// A listing of tasks, most recently updated first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub assignee_id: Option<Uuid>,
    pub repository_id: Option<Uuid>,
    pub status: Option<StatusFilter>,
    /// Case-insensitive substring of the title or description.
    pub text: Option<String>,
    /// At most this many tasks (the service keeps it between 1 and [`TaskQuery::MAX_LIMIT`]).
    pub limit: u32,
    /// Continue after this position (from [`TaskPage::next_cursor`]).
    pub after: Option<Cursor>,
}

impl TaskQuery {
    /// Small enough that a first page does not flood an agent's context.
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 200;
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Present when more tasks follow.
    pub next_cursor: Option<Cursor>,
}

/// A position in the `(updated_at, id)` order. Its text form is opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) id: Uuid,
}

impl Cursor {
    pub(crate) fn after(task: &Task) -> Self {
        Self {
            updated_at: task.updated_at,
            id: task.id,
        }
    }

    /// The opaque text form handed to clients.
    pub fn encode(&self) -> String {
        let raw = format!(
            "{}.{}",
            self.updated_at.timestamp_micros(),
            self.id.simple()
        );
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(raw.len() * 2);
        for byte in raw.bytes() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        text
    }

    pub fn decode(text: &str) -> Result<Self> {
        let invalid = || Error::Invalid {
            field: "cursor",
            message: "not a cursor returned by a previous listing".into(),
        };
        if text.len() > 128 || !text.len().is_multiple_of(2) {
            return Err(invalid());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, id) = raw.split_once('.').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(Self {
            updated_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }
}

/// An outbox row waiting to be published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub seq: i64,
    pub event: NewEvent,
}

/// Fetches one more row than asked so a page knows whether another follows.
pub(crate) fn into_page(mut tasks: Vec<Task>, limit: u32) -> TaskPage {
    let limit = limit as usize;
    let next_cursor = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(Cursor::after)
    } else {
        None
    };
    TaskPage { tasks, next_cursor }
}

/// Whether a unique index rejected a write (sqlx stores).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a foreign key rejected a write.
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            updated_at: DateTime::from_timestamp_micros(1_763_773_200_123_456).expect("valid"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).expect("decodes"), cursor);
        for bad in ["", "zz", "abc", "00", &"ab".repeat(100), "2e2e"] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
    }
}
