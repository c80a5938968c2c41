//! `PostgresSnapshotStore`: snapshots in PostgreSQL, for hubs that share one database (with each
//! other, or with the task service: the hub's tables and its migrations table are prefixed
//! `hub_`).

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::EventId;
use sqlx::{
    Connection, PgPool, Row, SqlStr,
    migrate::{Migration, MigrationType, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
    types::Json,
};

use super::{
    IDEMPOTENCY_WINDOW, NewSnapshot, Put, Snapshot, SnapshotQuery, SnapshotStore, repo_key,
};
use crate::{Error, Result};

const COLUMNS: &str = "SELECT channel, repository, title, data, actor, updated_at, revision, event_id \
     FROM hub_snapshots";

/// The PostgreSQL [`SnapshotStore`].
#[derive(Debug, Clone)]
pub struct PostgresSnapshotStore {
    pub(crate) pool: PgPool,
}

fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "hub init".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/postgres/0001_init.sql")),
            false,
        ),
        Migration::new(
            2,
            "lab".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/postgres/0002_lab.sql")),
            false,
        ),
        Migration::new(
            3,
            "users".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/postgres/0003_users.sql")),
            false,
        ),
    ]);
    // The task service keeps its migrations in `_sqlx_migrations`; with their own table, both
    // can share a database without mistaking each other's versions.
    migrator.dangerous_set_table_name("_hub_migrations");
    migrator
}

fn storage(error: sqlx::Error) -> Error {
    Error::Storage(Box::new(error))
}

impl PostgresSnapshotStore {
    /// Connects to the database a `postgres://` URL names and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(parse_url(url)?).await
    }

    /// Like [`PostgresSnapshotStore::connect`], with the tables in `schema` (which must exist):
    /// several stores can share one database, e.g. one per test.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        Self::connect_with(parse_url(url)?.options([("search_path", schema)])).await
    }

    async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        // One direct connection first: a pool would retry until its timeout and then report
        // only that it timed out, hiding why (refused, unknown host, bad password).
        let probe = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        probe.close().await.map_err(storage)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| Error::Migration(Box::new(e)))?;
        Ok(Self { pool })
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|e| Error::Invalid {
        field: "database url",
        message: e.to_string(),
    })
}

fn from_row(row: &PgRow) -> Result<Snapshot> {
    let corrupt = |what: &str| Error::Storage(format!("unexpected value in column {what}").into());
    let event_id: Option<String> = row.try_get("event_id").map_err(storage)?;
    let Json(data): Json<serde_json::Value> = row.try_get("data").map_err(storage)?;
    Ok(Snapshot {
        channel: row.try_get("channel").map_err(storage)?,
        repository: row.try_get("repository").map_err(storage)?,
        title: row.try_get("title").map_err(storage)?,
        data,
        actor: row.try_get("actor").map_err(storage)?,
        updated_at: row
            .try_get::<DateTime<Utc>, _>("updated_at")
            .map_err(storage)?,
        revision: row.try_get("revision").map_err(storage)?,
        event_id: event_id
            .map(|id| id.parse().map_err(|_| corrupt("event_id")))
            .transpose()?,
    })
}

#[async_trait]
impl SnapshotStore for PostgresSnapshotStore {
    async fn put(&self, new: NewSnapshot) -> Result<Put> {
        let now = Utc::now();
        let key = repo_key(new.repository.as_deref());
        let mut tx = self.pool.begin().await.map_err(storage)?;
        if let Some(idempotency_key) = &new.idempotency_key {
            // Holds the key against a concurrent retry of the same push until this commits.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(idempotency_key)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            let seen = sqlx::query(
                "SELECT channel, repo_key, revision FROM hub_sync_receipts \
                 WHERE idempotency_key = $1 AND received_at > $2",
            )
            .bind(idempotency_key)
            .bind(now - IDEMPOTENCY_WINDOW)
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage)?;
            if let Some(seen) = seen {
                let channel: String = seen.try_get("channel").map_err(storage)?;
                let repo: String = seen.try_get("repo_key").map_err(storage)?;
                let revision: i64 = seen.try_get("revision").map_err(storage)?;
                let current = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE channel = $1 AND repo_key = $2"
                )))
                .bind(&channel)
                .bind(&repo)
                .fetch_optional(&mut *tx)
                .await
                .map_err(storage)?;
                if let Some(current) = current {
                    return Ok(Put::Duplicate {
                        current: from_row(&current)?,
                        revision,
                    });
                }
            }
        }
        // Never earlier than the revision it replaces: hubs sharing a database may disagree on
        // the time, and clients order updates by revision and time.
        let (revision, updated_at): (i64, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO hub_snapshots \
             (channel, repo_key, repository, title, data, actor, updated_at, revision, event_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, NULL) \
             ON CONFLICT (channel, repo_key) DO UPDATE SET repository = excluded.repository, \
             title = excluded.title, data = excluded.data, actor = excluded.actor, \
             updated_at = GREATEST(excluded.updated_at, hub_snapshots.updated_at + interval '1 microsecond'), \
             revision = hub_snapshots.revision + 1, event_id = NULL \
             RETURNING revision, updated_at",
        )
        .bind(&new.channel)
        .bind(&key)
        .bind(&new.repository)
        .bind(&new.title)
        .bind(Json(&new.data))
        .bind(&new.actor)
        .bind(super::micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        if let Some(idempotency_key) = &new.idempotency_key {
            sqlx::query("DELETE FROM hub_sync_receipts WHERE received_at <= $1")
                .bind(now - IDEMPOTENCY_WINDOW)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            sqlx::query(
                "INSERT INTO hub_sync_receipts \
                 (idempotency_key, channel, repo_key, revision, received_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (idempotency_key) DO UPDATE SET channel = excluded.channel, \
                 repo_key = excluded.repo_key, revision = excluded.revision, \
                 received_at = excluded.received_at",
            )
            .bind(idempotency_key)
            .bind(&new.channel)
            .bind(&key)
            .bind(revision)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)?;
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
    }

    async fn set_event_id(
        &self,
        channel: &str,
        repository: Option<&str>,
        revision: i64,
        id: EventId,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE hub_snapshots SET event_id = $1 \
             WHERE channel = $2 AND repo_key = $3 AND revision = $4",
        )
        .bind(id.to_string())
        .bind(channel)
        .bind(repo_key(repository))
        .bind(revision)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn get(&self, channel: &str, repository: Option<&str>) -> Result<Option<Snapshot>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLUMNS} WHERE channel = $1 AND repo_key = $2"
        )))
        .bind(channel)
        .bind(repo_key(repository))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLUMNS} WHERE (cardinality($1::text[]) = 0 OR channel = ANY($1)) \
             AND ($2::text IS NULL OR repo_key = $2) ORDER BY channel, repo_key"
        )))
        .bind(&query.channels)
        .bind(query.repository.as_deref().map(str::to_ascii_lowercase))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(from_row).collect()
    }

    async fn latest_event_id(&self) -> Result<Option<EventId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT event_id FROM hub_snapshots WHERE event_id IS NOT NULL")
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        // Ids order as numbers, not as text, so each is parsed.
        Ok(ids.iter().filter_map(|id| id.parse::<EventId>().ok()).max())
    }

    async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hub_snapshots")
            .fetch_one(&self.pool)
            .await
            .map_err(storage)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        Ok(())
    }
}
