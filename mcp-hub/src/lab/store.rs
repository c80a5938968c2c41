//! The `LabStore` seam: suites (their `suite.toml` text and schedule) and the runs made of
//! them, kept in the hub's database. The hub's stores implement it: [`MemorySnapshotStore`]
//! (nothing survives a restart), `SqliteSnapshotStore` and `PostgresSnapshotStore` (tables
//! `hub_lab_suites` and `hub_lab_runs`, in the hub's migrations).
//!
//! [`MemorySnapshotStore`]: crate::snapshot::MemorySnapshotStore

mod memory;
mod postgres;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunReport, Suite};
use crate::{Error, Result};

pub(crate) use memory::LabTables;

/// The most runs one listing returns.
pub const MAX_RUNS_LISTED: u32 = 500;

/// A suite to store: its `suite.toml` text (checked by parsing it) and how often the hub
/// runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSuite {
    /// The suite text; its `name` is the suite's name, unique in the store.
    pub definition: String,
    /// Run it every this long in `mcp-hub serve`; `None` runs it only when asked.
    pub interval: Option<Duration>,
}

impl NewSuite {
    /// The parsed suite, or why the text is not one; relative paths resolve against the
    /// hub's working directory.
    pub fn parse(&self) -> Result<Suite> {
        let suite = Suite::parse(&self.definition, std::path::Path::new(".")).map_err(|e| {
            Error::Invalid {
                field: "definition",
                message: e.to_string(),
            }
        })?;
        if let Some(interval) = self.interval
            && !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&interval)
        {
            return Err(Error::Invalid {
                field: "interval",
                message: "must be at least one second and at most seven days".to_owned(),
            });
        }
        Ok(suite)
    }
}

/// A stored suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSuite {
    pub id: String,
    pub name: String,
    pub definition: String,
    /// In milliseconds, as JSON.
    #[serde(serialize_with = "millis")]
    pub interval: Option<Duration>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn millis<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// A run to keep: its report, and the stored suite it ran (none for one run from a file).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub suite_id: Option<String>,
    pub report: RunReport,
}

/// A stored run, without its report: what listings show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub suite_id: Option<String>,
    pub suite: String,
    pub target: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub passed: bool,
}

/// A stored run with its report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRun {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub report: RunReport,
}

/// Which runs to list: newest first, of one suite or of all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    pub suite_id: Option<String>,
    /// At most this many (capped at [`MAX_RUNS_LISTED`]).
    pub limit: u32,
}

/// Keeps suites and runs.
#[async_trait]
pub trait LabStore: Send + Sync + 'static {
    /// Stores a new suite; a suite of the same name is a conflict.
    async fn create_suite(&self, suite: NewSuite) -> Result<StoredSuite>;
    /// Replaces a suite's definition and interval; renaming onto another suite's name is a
    /// conflict.
    async fn update_suite(&self, id: &str, suite: NewSuite) -> Result<StoredSuite>;
    async fn suite(&self, id: &str) -> Result<Option<StoredSuite>>;
    /// Every suite, by name.
    async fn suites(&self) -> Result<Vec<StoredSuite>>;
    /// Deletes a suite (its runs stay, no longer tied to it); false when there was none.
    async fn delete_suite(&self, id: &str) -> Result<bool>;
    /// Keeps a run; a `suite_id` that names no suite is an error.
    async fn insert_run(&self, run: NewRun) -> Result<RunSummary>;
    async fn run(&self, id: &str) -> Result<Option<StoredRun>>;
    /// Runs, newest first.
    async fn runs(&self, query: RunQuery) -> Result<Vec<RunSummary>>;
}

/// A new id: a UUIDv7, so ids sort by creation time.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn summary_of(id: String, suite_id: Option<String>, report: &RunReport) -> RunSummary {
    RunSummary {
        id,
        suite_id,
        suite: report.suite.clone(),
        target: report.target.clone(),
        started_at: report.started_at,
        duration_ms: report.duration_ms,
        passed: report.passed,
    }
}

fn conflict(name: &str) -> Error {
    Error::Conflict {
        message: format!("a suite named {name:?} exists already; give this one another name"),
    }
}

fn no_suite(id: &str) -> Error {
    Error::NotFound {
        what: format!("suite {id}"),
    }
}

fn interval_ms(interval: Option<Duration>) -> Option<i64> {
    interval.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn interval_of(ms: Option<i64>) -> Option<Duration> {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
}
