//! The lab's tables in the hub's SQLite file: times as microseconds since the epoch, the
//! report as JSON text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{
    LabStore, MAX_RUNS_LISTED, NewRun, NewSuite, RunQuery, RunSummary, StoredRun, StoredSuite,
    conflict, interval_ms, interval_of, new_id, no_suite, summary_of,
};
use crate::{Error, Result, snapshot::SqliteSnapshotStore};

const SUITE_COLUMNS: &str =
    "SELECT id, name, definition, interval_ms, created_at, updated_at FROM hub_lab_suites";
const RUN_COLUMNS: &str = "SELECT id, suite_id, suite, target, started_at, duration_ms, passed";

fn storage(error: rusqlite::Error) -> Error {
    Error::Storage(Box::new(error))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::Storage(format!("a time out of range: {micros}").into()))
}

fn suite_from(row: &Row<'_>) -> rusqlite::Result<(StoredSuite, i64, i64)> {
    Ok((
        StoredSuite {
            id: row.get(0)?,
            name: row.get(1)?,
            definition: row.get(2)?,
            interval: interval_of(row.get(3)?),
            created_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
        },
        row.get(4)?,
        row.get(5)?,
    ))
}

fn with_times((mut suite, created, updated): (StoredSuite, i64, i64)) -> Result<StoredSuite> {
    suite.created_at = time(created)?;
    suite.updated_at = time(updated)?;
    Ok(suite)
}

fn summary_from(row: &Row<'_>) -> rusqlite::Result<(RunSummary, i64)> {
    Ok((
        RunSummary {
            id: row.get(0)?,
            suite_id: row.get(1)?,
            suite: row.get(2)?,
            target: row.get(3)?,
            started_at: DateTime::<Utc>::MIN_UTC,
            duration_ms: row.get(5)?,
            passed: row.get(6)?,
        },
        row.get(4)?,
    ))
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

#[async_trait]
impl LabStore for SqliteSnapshotStore {
    async fn create_suite(&self, suite: NewSuite) -> Result<StoredSuite> {
        let name = suite.parse()?.name;
        self.with(move |connection| {
            let now = Utc::now();
            let stored = StoredSuite {
                id: new_id(),
                name,
                definition: suite.definition,
                interval: suite.interval,
                created_at: now,
                updated_at: now,
            };
            connection
                .execute(
                    "INSERT INTO hub_lab_suites (id, name, definition, interval_ms, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![
                        stored.id,
                        stored.name,
                        stored.definition,
                        interval_ms(stored.interval),
                        micros(now)
                    ],
                )
                .map_err(|e| if is_unique_violation(&e) { conflict(&stored.name) } else { storage(e) })?;
            // Read back, so the times are what a later read returns (microseconds).
            let row = connection
                .query_row(&format!("{SUITE_COLUMNS} WHERE id = ?1"), [&stored.id], suite_from)
                .map_err(storage)?;
            with_times(row)
        })
        .await
    }

    async fn update_suite(&self, id: &str, suite: NewSuite) -> Result<StoredSuite> {
        let name = suite.parse()?.name;
        let id = id.to_owned();
        self.with(move |connection| {
            let changed = connection
                .execute(
                    "UPDATE hub_lab_suites SET name = ?2, definition = ?3, interval_ms = ?4, updated_at = ?5 WHERE id = ?1",
                    params![id, name, suite.definition, interval_ms(suite.interval), micros(Utc::now())],
                )
                .map_err(|e| if is_unique_violation(&e) { conflict(&name) } else { storage(e) })?;
            if changed == 0 {
                return Err(no_suite(&id));
            }
            let row = connection
                .query_row(&format!("{SUITE_COLUMNS} WHERE id = ?1"), [&id], suite_from)
                .map_err(storage)?;
            with_times(row)
        })
        .await
    }

    async fn suite(&self, id: &str) -> Result<Option<StoredSuite>> {
        let id = id.to_owned();
        self.with(move |connection| {
            connection
                .query_row(&format!("{SUITE_COLUMNS} WHERE id = ?1"), [&id], suite_from)
                .optional()
                .map_err(storage)?
                .map(with_times)
                .transpose()
        })
        .await
    }

    async fn suites(&self) -> Result<Vec<StoredSuite>> {
        self.with(|connection| {
            let mut statement = connection
                .prepare(&format!("{SUITE_COLUMNS} ORDER BY name"))
                .map_err(storage)?;
            let rows = statement
                .query_map([], suite_from)
                .map_err(storage)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
            rows.into_iter().map(with_times).collect()
        })
        .await
    }

    async fn delete_suite(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.with(move |connection| {
            let tx = connection.transaction().map_err(storage)?;
            // Foreign keys are not enforced on the hub's connection: untie the runs here.
            tx.execute(
                "UPDATE hub_lab_runs SET suite_id = NULL WHERE suite_id = ?1",
                [&id],
            )
            .map_err(storage)?;
            let deleted = tx
                .execute("DELETE FROM hub_lab_suites WHERE id = ?1", [&id])
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn insert_run(&self, run: NewRun) -> Result<RunSummary> {
        let report = serde_json::to_string(&run.report).map_err(|e| Error::Storage(Box::new(e)))?;
        let summary = summary_of(new_id(), run.suite_id, &run.report);
        self.with(move |connection| {
            let tx = connection.transaction().map_err(storage)?;
            if let Some(suite_id) = &summary.suite_id {
                let exists = tx
                    .query_row("SELECT 1 FROM hub_lab_suites WHERE id = ?1", [suite_id], |_| Ok(()))
                    .optional()
                    .map_err(storage)?;
                if exists.is_none() {
                    return Err(no_suite(suite_id));
                }
            }
            tx.execute(
                "INSERT INTO hub_lab_runs (id, suite_id, suite, target, started_at, duration_ms, passed, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    summary.id,
                    summary.suite_id,
                    summary.suite,
                    summary.target,
                    micros(summary.started_at),
                    summary.duration_ms,
                    summary.passed,
                    report
                ],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)?;
            let mut summary = summary;
            // As a later read returns it: microseconds.
            summary.started_at = time(micros(summary.started_at))?;
            Ok(summary)
        })
        .await
    }

    async fn run(&self, id: &str) -> Result<Option<StoredRun>> {
        let id = id.to_owned();
        self.with(move |connection| {
            let row = connection
                .query_row(
                    &format!("{RUN_COLUMNS}, report FROM hub_lab_runs WHERE id = ?1"),
                    [&id],
                    |row| Ok((summary_from(row)?, row.get::<_, String>(7)?)),
                )
                .optional()
                .map_err(storage)?;
            let Some(((mut summary, started), report)) = row else {
                return Ok(None);
            };
            summary.started_at = time(started)?;
            let report = serde_json::from_str(&report).map_err(|e| Error::Storage(Box::new(e)))?;
            Ok(Some(StoredRun { summary, report }))
        })
        .await
    }

    async fn runs(&self, query: RunQuery) -> Result<Vec<RunSummary>> {
        let limit = i64::from(query.limit.min(MAX_RUNS_LISTED));
        self.with(move |connection| {
            let mut statement = connection
                .prepare(&format!(
                    "{RUN_COLUMNS} FROM hub_lab_runs WHERE (?1 IS NULL OR suite_id = ?1) ORDER BY started_at DESC, rowid DESC LIMIT ?2"
                ))
                .map_err(storage)?;
            let rows = statement
                .query_map(params![query.suite_id, limit], summary_from)
                .map_err(storage)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
            rows.into_iter()
                .map(|(mut summary, started)| {
                    summary.started_at = time(started)?;
                    Ok(summary)
                })
                .collect()
        })
        .await
    }
}
