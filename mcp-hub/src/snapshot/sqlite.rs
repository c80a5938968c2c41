//! `SqliteSnapshotStore`: the embedded default. One file in WAL mode; data as JSON text, times
//! as microseconds since the epoch. Pushes are rare and reads small, so one connection behind a
//! mutex serves both, on tokio's blocking threads (a multi-megabyte payload is written without
//! holding up the runtime).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::EventId;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    IDEMPOTENCY_WINDOW, NewSnapshot, Put, Snapshot, SnapshotQuery, SnapshotStore, repo_key,
};
use crate::{Error, Result};

/// Schema versions, applied in order and recorded in `hub_schema` (not `PRAGMA user_version`,
/// so the hub's tables may live in a file that holds other tables too).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_lab.sql")),
    (3, include_str!("../../migrations/sqlite/0003_users.sql")),
];

const COLUMNS: &str = "SELECT channel, repository, title, data, actor, updated_at, revision, event_id FROM hub_snapshots";

/// The SQLite [`SnapshotStore`].
#[derive(Clone)]
pub struct SqliteSnapshotStore {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteSnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSnapshotStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn storage(error: rusqlite::Error) -> Error {
    Error::Storage(Box::new(error))
}

impl SqliteSnapshotStore {
    /// Opens (creating if missing) and migrates the database a `sqlite:` URL names:
    /// `sqlite:///absolute/path.db`, `sqlite://relative.db` or `sqlite:relative.db`.
    pub async fn connect(url: &str) -> Result<Self> {
        let invalid = |message: &str| Error::Invalid {
            field: "database url",
            message: message.into(),
        };
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| invalid("expected a sqlite: URL"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(invalid(
                "name a database file (use memory: for a hub that keeps nothing)",
            ));
        }
        Self::open(Path::new(path)).await
    }

    /// Opens (creating if missing) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        let opened = path.clone();
        let connection = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut connection =
                Connection::open(&opened).map_err(|e| Error::Unavailable(Box::new(e)))?;
            connection
                .busy_timeout(Duration::from_secs(10))
                .map_err(storage)?;
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(storage)?;
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(storage)?;
            migrate(&mut connection)?;
            Ok(connection)
        })
        .await
        .map_err(|e| Error::Storage(Box::new(e)))??;
        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` with the connection on a blocking thread.
    pub(crate) async fn with<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|e| Error::Storage(Box::new(e)))?
    }
}

fn migrate(connection: &mut Connection) -> Result<()> {
    let migration = |e| Error::Migration(Box::new(e));
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(migration)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS hub_schema (version INTEGER NOT NULL)")
        .map_err(migration)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM hub_schema",
            [],
            |row| row.get(0),
        )
        .map_err(migration)?;
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.execute_batch(sql).map_err(migration)?;
            tx.execute("INSERT INTO hub_schema (version) VALUES (?1)", [version])
                .map_err(migration)?;
        }
    }
    tx.commit().map_err(migration)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<Snapshot>> {
    let data: String = row.get(3)?;
    let updated_at: i64 = row.get(5)?;
    let event_id: Option<String> = row.get(7)?;
    let corrupt = |what: &str| Error::Storage(format!("unexpected value in column {what}").into());
    let parsed = (|| {
        Ok(Snapshot {
            channel: row.get(0).map_err(storage)?,
            repository: row.get(1).map_err(storage)?,
            title: row.get(2).map_err(storage)?,
            data: serde_json::from_str(&data).map_err(|_| corrupt("data"))?,
            actor: row.get(4).map_err(storage)?,
            updated_at: DateTime::from_timestamp_micros(updated_at)
                .ok_or_else(|| corrupt("updated_at"))?,
            revision: row.get(6).map_err(storage)?,
            event_id: event_id
                .map(|id| id.parse().map_err(|_| corrupt("event_id")))
                .transpose()?,
        })
    })();
    Ok(parsed)
}

#[async_trait]
impl SnapshotStore for SqliteSnapshotStore {
    async fn put(&self, new: NewSnapshot) -> Result<Put> {
        self.with(move |connection| {
            let now = Utc::now();
            let key = repo_key(new.repository.as_deref());
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage)?;
            if let Some(idempotency_key) = &new.idempotency_key {
                let seen: Option<(String, String, i64)> = tx
                    .query_row(
                        "SELECT channel, repo_key, revision FROM hub_sync_receipts \
                         WHERE idempotency_key = ?1 AND received_at > ?2",
                        params![idempotency_key, (now - IDEMPOTENCY_WINDOW).timestamp_micros()],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()
                    .map_err(storage)?;
                if let Some((channel, repo, revision)) = seen {
                    let current = tx
                        .query_row(
                            &format!("{COLUMNS} WHERE channel = ?1 AND repo_key = ?2"),
                            params![channel, repo],
                            from_row,
                        )
                        .optional()
                        .map_err(storage)?
                        .transpose()?;
                    if let Some(current) = current {
                        return Ok(Put::Duplicate { current, revision });
                    }
                }
            }
            let data = serde_json::to_string(&new.data)
                .map_err(|e| Error::Storage(Box::new(e)))?;
            // Never earlier than the revision it replaces: hubs sharing a database may disagree
            // on the time, and clients order updates by revision and time.
            let (revision, updated_at): (i64, i64) = tx
                .query_row(
                    "INSERT INTO hub_snapshots \
                     (channel, repo_key, repository, title, data, actor, updated_at, revision, event_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, NULL) \
                     ON CONFLICT (channel, repo_key) DO UPDATE SET repository = excluded.repository, \
                     title = excluded.title, data = excluded.data, actor = excluded.actor, \
                     updated_at = MAX(excluded.updated_at, hub_snapshots.updated_at + 1), \
                     revision = hub_snapshots.revision + 1, event_id = NULL \
                     RETURNING revision, updated_at",
                    params![
                        new.channel,
                        key,
                        new.repository,
                        new.title,
                        data,
                        new.actor,
                        super::micros(now).timestamp_micros()
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(storage)?;
            let updated_at = DateTime::from_timestamp_micros(updated_at)
                .ok_or_else(|| Error::Storage("unexpected value in column updated_at".into()))?;
            if let Some(idempotency_key) = &new.idempotency_key {
                tx.execute(
                    "DELETE FROM hub_sync_receipts WHERE received_at <= ?1",
                    [(now - IDEMPOTENCY_WINDOW).timestamp_micros()],
                )
                .map_err(storage)?;
                tx.execute(
                    "INSERT OR REPLACE INTO hub_sync_receipts \
                     (idempotency_key, channel, repo_key, revision, received_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![idempotency_key, new.channel, key, revision, now.timestamp_micros()],
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
            Ok(Put::Stored(Snapshot {
                channel: new.channel,
                repository: new.repository,
                title: new.title,
                data: new.data,
                actor: new.actor,
                updated_at,
                revision,
                event_id: None,
            }))
        })
        .await
    }

    async fn set_event_id(
        &self,
        channel: &str,
        repository: Option<&str>,
        revision: i64,
        id: EventId,
    ) -> Result<()> {
        let (channel, key) = (channel.to_owned(), repo_key(repository));
        self.with(move |connection| {
            connection
                .execute(
                    "UPDATE hub_snapshots SET event_id = ?1 \
                     WHERE channel = ?2 AND repo_key = ?3 AND revision = ?4",
                    params![id.to_string(), channel, key, revision],
                )
                .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn get(&self, channel: &str, repository: Option<&str>) -> Result<Option<Snapshot>> {
        let (channel, key) = (channel.to_owned(), repo_key(repository));
        self.with(move |connection| {
            connection
                .query_row(
                    &format!("{COLUMNS} WHERE channel = ?1 AND repo_key = ?2"),
                    params![channel, key],
                    from_row,
                )
                .optional()
                .map_err(storage)?
                .transpose()
        })
        .await
    }

    async fn list(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>> {
        let query = query.clone();
        self.with(move |connection| {
            let channels =
                serde_json::to_string(&query.channels).map_err(|e| Error::Storage(Box::new(e)))?;
            let repository = query.repository.as_deref().map(str::to_ascii_lowercase);
            let mut statement = connection
                .prepare_cached(&format!(
                    "{COLUMNS} WHERE (?1 = '[]' OR channel IN (SELECT value FROM json_each(?1))) \
                     AND (?2 IS NULL OR repo_key = ?2) ORDER BY channel, repo_key"
                ))
                .map_err(storage)?;
            let rows = statement
                .query_map(params![channels, repository], from_row)
                .map_err(storage)?;
            let mut snapshots = Vec::new();
            for row in rows {
                snapshots.push(row.map_err(storage)??);
            }
            Ok(snapshots)
        })
        .await
    }

    async fn latest_event_id(&self) -> Result<Option<EventId>> {
        self.with(|connection| {
            let mut statement = connection
                .prepare("SELECT event_id FROM hub_snapshots WHERE event_id IS NOT NULL")
                .map_err(storage)?;
            let ids = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(storage)?;
            let mut latest = None;
            for id in ids {
                // Ids order as numbers, not as text, so each is parsed.
                latest = latest.max(id.map_err(storage)?.parse::<EventId>().ok());
            }
            Ok(latest)
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        self.with(|connection| {
            connection
                .query_row("SELECT COUNT(*) FROM hub_snapshots", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| u64::try_from(n).unwrap_or_default())
                .map_err(storage)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.with(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(storage)
        })
        .await
    }
}
