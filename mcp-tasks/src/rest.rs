//! The REST API editors use (`/api/...`): JSON in and out, errors as
//! `{"error":{"code","message","details"}}` with the status that fits, `ETag` / `If-Match` on
//! tasks. One resource family per file under `rest/`, registered here.

pub(crate) mod stream;
mod tasks;
mod users;

use std::sync::Arc;

use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode, header},
};
use serde_json::{Value, json};

use crate::{Error, TaskService};

/// The largest request body accepted (a task's longest description is 20,000 characters).
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

/// The actor recorded when a REST call names none and authentication is off.
const DEFAULT_ACTOR: &str = "api";

/// The actor to record: with authentication on, the credential (and whom it says it acts for);
/// without, whom the request names, or [`DEFAULT_ACTOR`].
pub(crate) fn actor(
    principal: Option<&mcp_core::auth::Principal>,
    claimed: Option<&str>,
) -> String {
    match principal {
        Some(principal) => principal.actor(claimed),
        None => claimed
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or(DEFAULT_ACTOR)
            .to_owned(),
    }
}

pub(crate) fn routes() -> Router<Arc<TaskService>> {
    // The stream's fixed path is matched before the task-id route.
    stream::routes()
        .merge(tasks::routes())
        .merge(users::routes())
}

pub(crate) use mcp_core::http::{ApiError, ApiJson, ApiQuery, method_not_allowed, not_found};

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// Stable, machine-readable: `invalid_argument`, `not_found`, `version_conflict`, …
    code: &'static str,
    /// For people: what was wrong and what is valid.
    message: String,
    /// Structured specifics (the field, the current version, suggestions), or null.
    #[schema(value_type = Object)]
    details: Value,
}

/// The OpenAPI document of the REST API, generated from the handlers and types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchboard tasks API",
        description = "Tasks for agents and editors: REST, and Server-Sent Events for live updates."
    ),
    paths(
        tasks::list,
        tasks::create,
        tasks::read,
        tasks::update,
        tasks::set_status,
        tasks::remove,
        tasks::comments,
        tasks::comment,
        tasks::history,
        stream::stream_tasks,
        users::list_users,
        users::add_user,
        users::list_repositories
    ),
    components(schemas(
        ErrorBody,
        crate::Task,
        crate::User,
        crate::Repository,
        crate::Comment,
        crate::HistoryEntry
    ))
)]
pub(crate) struct ApiDoc;

pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
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
            Error::NotFound { kind, id } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
                    .with_details(json!({ "kind": kind, "id": id }))
            }
            Error::UnknownUser { suggestions, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_user", message)
                    .with_details(json!({ "suggestions": suggestions }))
            }
            Error::UnknownRepository { suggestions, .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_repository",
                message,
            )
            .with_details(json!({ "suggestions": suggestions })),
            Error::Conflict {
                current, expected, ..
            } => ApiError::new(StatusCode::PRECONDITION_FAILED, "version_conflict", message)
                .with_details(json!({ "expected_version": expected, "current_version": current })),
            Error::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            Error::Unavailable(_) | Error::Bus(_) => ApiError::unavailable(&error),
            other => ApiError::internal(&other),
        }
    }
}

/// A task's entity tag: its version.
pub(crate) fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The version an `If-Match` header demands: `Ok(None)` for `*`, an error when the header is
/// missing (428) or is not one of our entity tags (400).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send If-Match with the task's ETag (from GET), or * to change it whatever its version",
        ));
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    // If-Match compares strongly: a weak tag never matches (RFC 9110, 13.1.1).
    if text.starts_with("W/") {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            "If-Match needs a strong ETag, like \"3\"; weak tags never match",
        ));
    }
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "If-Match must be an ETag this server sent, like \"3\", or *",
            )
        })
}
