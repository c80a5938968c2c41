//! The dashboard's REST endpoints: pushes (`POST /api/dashboard/sync/{channel}` and the
//! original `POST /api/dashboard/sync-issues`) and reads (`GET /api/dashboard`,
//! `GET /api/dashboard/{channel}`, the original `GET /api/dashboard/issues`).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use mcp_core::{
    auth::Principal,
    http::{ApiError, ApiJson, ApiQuery},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Error,
    hub::{Hub, Push},
    snapshot::SnapshotQuery,
};

/// The actor recorded for a push when authentication is off.
const DEFAULT_ACTOR: &str = "api";

/// What the page needs to know about this hub.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PageConfig {
    /// Whether a task service feeds the `tasks` channel.
    pub(crate) tasks: bool,
    /// Whether the MCP gateway runs (the page then shows its servers, tools and logs).
    pub(crate) gateway: bool,
    /// Whether the reliability lab runs (the page then shows its runs, scores and alerts).
    pub(crate) lab: bool,
}

pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/dashboard", get(overview))
        .route("/api/dashboard/sync/{channel}", post(sync))
        .route("/api/dashboard/sync-issues", post(sync_issues))
        .route("/api/dashboard/issues", get(issues))
        .route("/api/dashboard/{channel}", get(channel))
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Invalid { field, .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_argument",
                message,
            )
            .with_details(json!({ "field": field })),
            Error::Schema { channel, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_data", message)
                    .with_details(json!({ "channel": channel }))
            }
            Error::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            Error::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            Error::Unauthorized { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            Error::Busy | Error::LoginsBusy => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            }
            Error::TooManySnapshots { limit } => {
                ApiError::new(StatusCode::CONFLICT, "snapshot_limit", message)
                    .with_details(json!({ "limit": limit }))
            }
            Error::Unavailable(_) | Error::Bus(_) => ApiError::unavailable(&error),
            other => ApiError::internal(&other),
        }
    }
}

/// The body of `POST /api/dashboard/sync/{channel}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    repository: Option<String>,
    title: Option<String>,
    data: Value,
}

/// The body of the original `POST /api/dashboard/sync-issues`.
#[derive(Debug, Deserialize)]
struct SyncIssuesBody {
    repository: String,
    issues: Vec<Value>,
    title: Option<String>,
}

fn actor(principal: Option<&Extension<Principal>>) -> String {
    principal.map_or_else(|| DEFAULT_ACTOR.to_owned(), |p| p.actor(None))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|key| Some(key.trim().to_owned()))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Idempotency-Key must be visible ASCII",
                )
            }),
    }
}

async fn sync(
    State(hub): State<Arc<Hub>>,
    Path(channel): Path<String>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SyncBody>,
) -> Result<Response, ApiError> {
    let push = Push {
        channel,
        repository: body.repository,
        title: body.title,
        data: body.data,
        idempotency_key: idempotency_key(&headers)?,
    };
    let receipt = hub.sync(push, &actor(principal.as_ref())).await?;
    Ok(Json(receipt).into_response())
}

async fn sync_issues(
    State(hub): State<Arc<Hub>>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SyncIssuesBody>,
) -> Result<Response, ApiError> {
    let push = Push {
        channel: "issues".into(),
        title: Some(
            body.title
                .unwrap_or_else(|| format!("Issues of {}", body.repository)),
        ),
        repository: Some(body.repository),
        data: json!({ "issues": body.issues }),
        idempotency_key: idempotency_key(&headers)?,
    };
    let receipt = hub.sync(push, &actor(principal.as_ref())).await?;
    Ok(Json(receipt).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryQuery {
    repository: Option<String>,
    /// Accepted (and ignored) so the page's `access_token` does not fail the query.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Every snapshot, and what the page should show.
async fn overview(
    State(hub): State<Arc<Hub>>,
    config: Option<Extension<PageConfig>>,
    ApiQuery(query): ApiQuery<RepositoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let snapshots = hub
        .snapshots(&SnapshotQuery {
            channels: Vec::new(),
            repository: query.repository,
        })
        .await?;
    let config = config.map(|Extension(config)| config).unwrap_or_default();
    Ok(Json(json!({
        "snapshots": snapshots,
        "config": { "tasks": config.tasks, "gateway": config.gateway, "lab": config.lab },
    })))
}

/// One channel: the snapshot of `?repository=`, or all of the channel's snapshots.
async fn channel(
    State(hub): State<Arc<Hub>>,
    Path(channel): Path<String>,
    ApiQuery(query): ApiQuery<RepositoryQuery>,
) -> Result<Json<Value>, ApiError> {
    match query.repository {
        Some(repository) => {
            let snapshot = hub
                .snapshot(&channel, Some(&repository))
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("snapshot of channel {channel} for {repository}"),
                })?;
            Ok(Json(serde_json::to_value(snapshot).unwrap_or_default()))
        }
        None => {
            let snapshots = hub
                .snapshots(&SnapshotQuery {
                    channels: vec![channel],
                    repository: None,
                })
                .await?;
            Ok(Json(json!({ "snapshots": snapshots })))
        }
    }
}

/// The original endpoint: `{"issues","repository","last_updated"}` for one repository, or the
/// issues of every repository (each issue naming its repository).
async fn issues(
    State(hub): State<Arc<Hub>>,
    ApiQuery(query): ApiQuery<RepositoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let snapshots = hub
        .snapshots(&SnapshotQuery {
            channels: vec!["issues".into()],
            repository: query.repository.clone(),
        })
        .await?;
    if let Some(repository) = query.repository {
        let Some(snapshot) = snapshots.into_iter().next() else {
            return Err(Error::NotFound {
                what: format!("issues for {repository}"),
            }
            .into());
        };
        return Ok(Json(json!({
            "issues": snapshot.data.get("issues").cloned().unwrap_or_else(|| json!([])),
            "repository": snapshot.repository,
            "last_updated": snapshot.updated_at,
        })));
    }
    let mut issues = Vec::new();
    let mut repositories = Vec::new();
    let mut last_updated = None;
    for snapshot in snapshots {
        let repository = snapshot.repository.clone().unwrap_or_default();
        if let Some(list) = snapshot.data.get("issues").and_then(Value::as_array) {
            for issue in list {
                let mut issue = issue.clone();
                if let Some(fields) = issue.as_object_mut() {
                    fields.insert("repository".into(), Value::String(repository.clone()));
                }
                issues.push(issue);
            }
        }
        last_updated = last_updated.max(Some(snapshot.updated_at));
        repositories.push(repository);
    }
    Ok(Json(json!({
        "issues": issues,
        "repositories": repositories,
        "last_updated": last_updated,
    })))
}
