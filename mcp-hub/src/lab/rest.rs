//! The lab's REST API under `/api/lab`: suites (CRUD), runs (start, list, detail), each run's
//! report as JSON or HTML, and the overview the dashboard page draws (recent runs, a
//! reliability score per server, alerts). Reading needs `read` (suite definitions, which may
//! hold tokens and environment, are shown to admins only); starting a run needs `write`;
//! changing suites needs `admin`, since a suite may start a command.

use std::time::Duration;

use axum::{
    Extension, Json, Router,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use mcp_core::{
    auth::{Principal, Scope},
    http::{ApiError, ApiJson, ApiQuery},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Lab, Suite,
    store::{MAX_RUNS_LISTED, NewSuite, RunQuery, RunSummary, StoredSuite},
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
        .route("/api/lab/overview", get(overview))
        .route("/api/lab/stream", get(stream))
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

/// Whether the caller may see suite definitions: an admin, or anyone when auth is off.
fn sees_definitions(principal: Option<&Extension<Principal>>) -> bool {
    principal.is_none_or(|Extension(p)| p.scope >= Scope::Admin)
}

/// A stored suite as the API shows it: with whether it runs now, its target (without
/// secrets), and its definition for admins only.
fn suite_json(lab: &Lab, suite: &StoredSuite, full: bool) -> Value {
    let mut value = json!(suite);
    value["running"] = json!(lab.is_running(&suite.id));
    value["target"] = match Suite::parse(&suite.definition, std::path::Path::new(".")) {
        Ok(parsed) => json!(parsed.target.describe()),
        Err(_) => Value::Null,
    };
    if !full {
        value["definition"] = Value::Null;
        value["definition_hidden"] = json!(true);
    }
    value
}

async fn list_suites(
    Extension(lab): Extension<Lab>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<Value>, ApiError> {
    let full = sees_definitions(principal.as_ref());
    let suites = lab.store().suites().await.map_err(ApiError::from)?;
    let suites: Vec<Value> = suites.iter().map(|s| suite_json(&lab, s, full)).collect();
    Ok(Json(json!({ "suites": suites })))
}

/// The lab's events as Server-Sent Events: `probe_result` after every run, `system_alert`
/// after every failed one (the page reloads its overview on each).
async fn stream(
    Extension(lab): Extension<Lab>,
    shutdown: Option<Extension<crate::gateway::rest::StreamShutdown>>,
) -> Result<Response, ApiError> {
    let Some(bus) = lab.events() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_events",
            "this hub's lab announces no events",
        ));
    };
    let subscription = bus
        .subscribe(mcp_core::EventFilter::all().topic(super::LAB_TOPIC), None)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    Ok(crate::gateway::rest::stream_events(
        subscription,
        Vec::new(),
        shutdown,
        |_| true,
    ))
}

/// Runs of one target the reliability score looks back on.
const SCORE_WINDOW: usize = 20;
/// Runs the overview reads; alerts shown at most.
const OVERVIEW_RUNS: u32 = 200;
const OVERVIEW_ALERTS: usize = 10;
const OVERVIEW_RECENT: usize = 20;

/// What the dashboard page shows of the lab: each suite with its last run, a reliability score
/// per server (the share of its last 20 runs that passed, in percent), the recent runs, and the
/// alerts (recent failed runs, newest first, each with what failed).
async fn overview(
    Extension(lab): Extension<Lab>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<Value>, ApiError> {
    let full = sees_definitions(principal.as_ref());
    let store = lab.store();
    let runs = store
        .runs(RunQuery {
            suite_id: None,
            limit: OVERVIEW_RUNS,
        })
        .await?;
    let suites: Vec<Value> = store
        .suites()
        .await?
        .iter()
        .map(|suite| {
            let mut value = suite_json(&lab, suite, full);
            value["last_run"] = json!(
                runs.iter()
                    .find(|r| r.suite_id.as_deref() == Some(&suite.id))
            );
            value
        })
        .collect();
    // Newest first, so each target's first entries are its latest runs.
    let mut servers: Vec<(String, Vec<&RunSummary>)> = Vec::new();
    for run in &runs {
        match servers.iter_mut().find(|(target, _)| *target == run.target) {
            Some((_, list)) if list.len() < SCORE_WINDOW => list.push(run),
            Some(_) => {}
            None => servers.push((run.target.clone(), vec![run])),
        }
    }
    let servers: Vec<Value> = servers
        .iter()
        .map(|(target, list)| {
            let passed = list.iter().filter(|r| r.passed).count();
            #[allow(clippy::cast_precision_loss)] // at most SCORE_WINDOW runs
            let score = (passed as f64 * 1000.0 / list.len() as f64).round() / 10.0;
            json!({
                "target": target,
                "runs": list.len(),
                "passed": passed,
                "score": score,
                "last_run_at": list.first().map(|r| r.started_at),
                "last_passed": list.first().map(|r| r.passed),
                "suites": list.iter().map(|r| r.suite.as_str()).collect::<std::collections::BTreeSet<_>>(),
            })
        })
        .collect();
    let mut alerts = Vec::new();
    for run in runs.iter().filter(|r| !r.passed).take(OVERVIEW_ALERTS) {
        let message = match store.run(&run.id).await? {
            Some(stored) => super::service::failure_text(&stored.report),
            None => format!("suite {} failed", run.suite),
        };
        alerts.push(json!({
            "run_id": run.id,
            "suite": run.suite,
            "suite_id": run.suite_id,
            "target": run.target,
            "started_at": run.started_at,
            "message": message,
        }));
    }
    let recent: Vec<&RunSummary> = runs.iter().take(OVERVIEW_RECENT).collect();
    Ok(Json(json!({
        "suites": suites,
        "servers": servers,
        "recent_runs": recent,
        "alerts": alerts,
        "score_window": SCORE_WINDOW,
    })))
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
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = lab
        .store()
        .suite(&id)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("suite {id}"),
        })?;
    Ok(Json(suite_json(
        &lab,
        &stored,
        sees_definitions(principal.as_ref()),
    )))
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
