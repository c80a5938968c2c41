//! The lab's REST API under `/api/lab`: suites (CRUD), runs (start, list, detail) and each
//! run's report as JSON or HTML. Reading needs `read`; anything that changes suites or starts
//! runs needs `admin`, since a suite may start a command.

use std::time::Duration;

use axum::{
    Extension, Json, Router,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use mcp_core::http::{ApiError, ApiJson, ApiQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Lab,
    store::{MAX_RUNS_LISTED, NewSuite, RunQuery},
};
use crate::Error;

/// The routes, generic over the state of the router they are merged into (they take the lab
/// from an extension).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/api/lab/suites", get(list_suites).post(create_suite))
        .route(
            "/api/lab/suites/{id}",
            get(suite).put(update_suite).delete(delete_suite),
        )
        .route("/api/lab/runs", get(list_runs).post(start_run))
        .route("/api/lab/runs/{id}", get(run))
        .route("/api/lab/runs/{id}/{file}", get(report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteBody {
    /// The suite.toml text.
    definition: String,
    /// Run it every this many milliseconds in `mcp-hub serve`.
    interval_ms: Option<u64>,
}

impl From<SuiteBody> for NewSuite {
    fn from(body: SuiteBody) -> Self {
        NewSuite {
            definition: body.definition,
            interval: body.interval_ms.map(Duration::from_millis),
        }
    }
}

async fn list_suites(Extension(lab): Extension<Lab>) -> Result<Json<Value>, ApiError> {
    let suites = lab.store().suites().await.map_err(ApiError::from)?;
    let suites: Vec<Value> = suites
        .into_iter()
        .map(|s| {
            let running = lab.is_running(&s.id);
            let mut value = json!(s);
            value["running"] = json!(running);
            value
        })
        .collect();
    Ok(Json(json!({ "suites": suites })))
}

async fn create_suite(
    Extension(lab): Extension<Lab>,
    ApiJson(body): ApiJson<SuiteBody>,
) -> Result<Response, ApiError> {
    let stored = lab.store().create_suite(body.into()).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

async fn suite(
    Extension(lab): Extension<Lab>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = lab
        .store()
        .suite(&id)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("suite {id}"),
        })?;
    let mut value = json!(stored);
    value["running"] = json!(lab.is_running(&id));
    Ok(Json(value))
}

async fn update_suite(
    Extension(lab): Extension<Lab>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SuiteBody>,
) -> Result<Json<Value>, ApiError> {
    let stored = lab.store().update_suite(&id, body.into()).await?;
    Ok(Json(json!(stored)))
}

async fn delete_suite(
    Extension(lab): Extension<Lab>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if lab.store().delete_suite(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound {
            what: format!("suite {id}"),
        }
        .into())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    suite_id: Option<String>,
    limit: Option<u32>,
}

async fn list_runs(
    Extension(lab): Extension<Lab>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_RUNS_LISTED {
        return Err(Error::Invalid {
            field: "limit",
            message: format!("must be 1 to {MAX_RUNS_LISTED}"),
        }
        .into());
    }
    let runs = lab
        .store()
        .runs(RunQuery {
            suite_id: query.suite_id,
            limit,
        })
        .await?;
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    suite_id: String,
    /// Answer when the run has ended, with its summary (else at once, 202).
    #[serde(default)]
    wait: bool,
}

async fn start_run(
    Extension(lab): Extension<Lab>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<Response, ApiError> {
    if body.wait {
        let summary = lab.run(&body.suite_id).await?;
        return Ok((StatusCode::CREATED, Json(summary)).into_response());
    }
    lab.start(&body.suite_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "suite_id": body.suite_id, "running": true })),
    )
        .into_response())
}

async fn run(
    Extension(lab): Extension<Lab>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = lab.store().run(&id).await?.ok_or_else(|| Error::NotFound {
        what: format!("run {id}"),
    })?;
    Ok(Json(json!(stored)))
}

async fn report(
    Extension(lab): Extension<Lab>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if file != "report.json" && file != "report.html" {
        return Err(Error::NotFound {
            what: format!("{file} (there are report.json and report.html)"),
        }
        .into());
    }
    let stored = lab.store().run(&id).await?.ok_or_else(|| Error::NotFound {
        what: format!("run {id}"),
    })?;
    if file == "report.json" {
        return Ok(Json(stored.report).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        stored.report.html(),
    )
        .into_response())
}
