//! The lab's tables in the hub's PostgreSQL database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, postgres::PgRow, types::Json};

use super::{
    LabStore, MAX_RUNS_LISTED, NewRun, NewSuite, RunQuery, RunSummary, StoredRun, StoredSuite,
    conflict, interval_ms, interval_of, new_id, no_suite, summary_of,
};
use crate::{Error, Result, lab::RunReport, snapshot::PostgresSnapshotStore};

const SUITE_COLUMNS: &str =
    "SELECT id, name, definition, interval_ms, created_at, updated_at FROM hub_lab_suites";
const RUN_COLUMNS: &str = "SELECT id, suite_id, suite, target, started_at, duration_ms, passed";

fn storage(error: sqlx::Error) -> Error {
    Error::Storage(Box::new(error))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("23505"))
}

fn suite_from(row: &PgRow) -> Result<StoredSuite> {
    Ok(StoredSuite {
        id: row.try_get("id").map_err(storage)?,
        name: row.try_get("name").map_err(storage)?,
        definition: row.try_get("definition").map_err(storage)?,
        interval: interval_of(row.try_get("interval_ms").map_err(storage)?),
        created_at: row.try_get("created_at").map_err(storage)?,
        updated_at: row.try_get("updated_at").map_err(storage)?,
    })
}

fn summary_from(row: &PgRow) -> Result<RunSummary> {
    Ok(RunSummary {
        id: row.try_get("id").map_err(storage)?,
        suite_id: row.try_get("suite_id").map_err(storage)?,
        suite: row.try_get("suite").map_err(storage)?,
        target: row.try_get("target").map_err(storage)?,
        started_at: row.try_get("started_at").map_err(storage)?,
        duration_ms: row.try_get("duration_ms").map_err(storage)?,
        passed: row.try_get("passed").map_err(storage)?,
    })
}

/// As PostgreSQL keeps a time: to the microsecond.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// The report as JSON PostgreSQL's `jsonb` takes: it refuses the NUL character, which a
/// server's answers (quoted in error samples) may hold, so each becomes U+FFFD.
fn storable(report: &RunReport) -> Result<serde_json::Value> {
    fn clean(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) if text.contains('\0') => {
                *text = text.replace('\0', "\u{FFFD}");
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                        .collect();
                }
                map.values_mut().for_each(clean);
            }
            _ => {}
        }
    }
    let mut value = serde_json::to_value(report).map_err(|e| Error::Storage(Box::new(e)))?;
    clean(&mut value);
    Ok(value)
}

#[async_trait]
impl LabStore for PostgresSnapshotStore {
    async fn create_suite(&self, suite: NewSuite) -> Result<StoredSuite> {
        let name = suite.parse()?.name;
        let row = sqlx::query(
            "INSERT INTO hub_lab_suites (id, name, definition, interval_ms, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             RETURNING id, name, definition, interval_ms, created_at, updated_at",
        )
        .bind(new_id())
        .bind(&name)
        .bind(&suite.definition)
        .bind(interval_ms(suite.interval))
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { conflict(&name) } else { storage(e) })?;
        suite_from(&row)
    }

    async fn update_suite(&self, id: &str, suite: NewSuite) -> Result<StoredSuite> {
        let name = suite.parse()?.name;
        let row = sqlx::query(
            "UPDATE hub_lab_suites SET name = $2, definition = $3, interval_ms = $4, updated_at = $5 \
             WHERE id = $1 RETURNING id, name, definition, interval_ms, created_at, updated_at",
        )
        .bind(id)
        .bind(&name)
        .bind(&suite.definition)
        .bind(interval_ms(suite.interval))
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { conflict(&name) } else { storage(e) })?;
        row.as_ref()
            .map(suite_from)
            .transpose()?
            .ok_or_else(|| no_suite(id))
    }

    async fn suite(&self, id: &str) -> Result<Option<StoredSuite>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUITE_COLUMNS} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(suite_from).transpose()
    }

    async fn suites(&self) -> Result<Vec<StoredSuite>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SUITE_COLUMNS} ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(suite_from).collect()
    }

    async fn delete_suite(&self, id: &str) -> Result<bool> {
        // The foreign key unties the suite's runs (ON DELETE SET NULL).
        let deleted = sqlx::query("DELETE FROM hub_lab_suites WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn insert_run(&self, run: NewRun) -> Result<RunSummary> {
        let mut summary = summary_of(new_id(), run.suite_id, &run.report);
        summary.started_at = to_micros(summary.started_at);
        let inserted = sqlx::query(
            "INSERT INTO hub_lab_runs (id, suite_id, suite, target, started_at, duration_ms, passed, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&summary.id)
        .bind(&summary.suite_id)
        .bind(&summary.suite)
        .bind(&summary.target)
        .bind(summary.started_at)
        .bind(summary.duration_ms)
        .bind(summary.passed)
        .bind(Json(storable(&run.report)?))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(summary),
            // 23503: the suite named is not there.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => {
                Err(no_suite(summary.suite_id.as_deref().unwrap_or_default()))
            }
            Err(e) => Err(storage(e)),
        }
    }

    async fn run(&self, id: &str) -> Result<Option<StoredRun>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS}, report FROM hub_lab_runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        let Json(report): Json<RunReport> = row.try_get("report").map_err(storage)?;
        Ok(Some(StoredRun {
            summary: summary_from(&row)?,
            report,
        }))
    }

    async fn runs(&self, query: RunQuery) -> Result<Vec<RunSummary>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} FROM hub_lab_runs WHERE ($1::TEXT IS NULL OR suite_id = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        )))
        .bind(&query.suite_id)
        .bind(i64::from(query.limit.min(MAX_RUNS_LISTED)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(summary_from).collect()
    }
}
