//! Tasks, their comments and history: `/api/tasks[/{id}[/status|/comments|/history]]`.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, ApiQuery, ErrorBody, actor, etag, if_match};
use crate::{
    Comment, Complexity, HistoryEntry, Priority, Status, Task, TaskService,
    service::{ListTasks, NewTask, TaskPatch},
    store::StatusFilter,
};
use mcp_core::auth::Principal;

pub(super) fn routes() -> Router<Arc<TaskService>> {
    Router::new()
        .route("/api/tasks", get(list).post(create))
        .route("/api/tasks/{id}", get(read).patch(update).delete(remove))
        .route("/api/tasks/{id}/status", put(set_status))
        .route("/api/tasks/{id}/comments", get(comments).post(comment))
        .route("/api/tasks/{id}/history", get(history))
}

/// A task with its `ETag` (its version).
fn with_etag(status: StatusCode, task: Task) -> Response {
    let tag = HeaderValue::from_str(&etag(task.version)).ok();
    let mut response = (status, Json(task)).into_response();
    if let Some(tag) = tag {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Same as `assignee` (the original API's name).
    user_id: Option<String>,
    assignee: Option<String>,
    repository: Option<String>,
    status: Option<StatusFilter>,
    /// Text in the title or description.
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TaskPage {
    tasks: Vec<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, body = TaskPage), (status = 400, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn list(
    State(service): State<Arc<TaskService>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let assignee = match (query.user_id, query.assignee) {
        (Some(a), Some(b)) if a.trim() != b.trim() => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_argument",
                "user_id and assignee are the same filter; give one",
            ));
        }
        (a, b) => a.or(b),
    };
    let list = service
        .list_tasks(ListTasks {
            assignee,
            repository: query.repository,
            status: query.status,
            text: query.q,
            limit: query.limit,
            cursor: query.cursor,
        })
        .await?;
    Ok(Json(TaskPage {
        tasks: list.tasks,
        next_cursor: list.next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTask {
    title: String,
    #[serde(default)]
    description: String,
    /// The assignee's id, email or GitHub username.
    #[serde(alias = "assignee")]
    assignee_id: String,
    repository: String,
    priority: Option<Priority>,
    complexity: Option<Complexity>,
    created_by: Option<String>,
}

#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTask,
    responses((status = 201, body = Task, headers(("ETag" = String), ("Location" = String))), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn create(
    State(service): State<Arc<TaskService>>,
    principal: Option<Extension<Principal>>,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<Response, ApiError> {
    let actor = actor(principal.as_deref(), body.created_by.as_deref());
    let task = service
        .create_task(
            NewTask {
                title: body.title,
                description: body.description,
                assignee: body.assignee_id,
                repository: body.repository,
                priority: body.priority,
                complexity: body.complexity,
            },
            &actor,
        )
        .await?;
    let location = HeaderValue::from_str(&format!("/api/tasks/{}", task.id)).ok();
    let mut response = with_etag(StatusCode::CREATED, task);
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = Task, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn read(
    State(service): State<Arc<TaskService>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = service.get_task(&id).await?;
    Ok(with_etag(StatusCode::OK, task))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateTask {
    title: Option<String>,
    description: Option<String>,
    status: Option<Status>,
    priority: Option<Priority>,
    complexity: Option<Complexity>,
    #[serde(alias = "assignee")]
    assignee_id: Option<String>,
    updated_by: Option<String>,
    /// Why; kept in the history.
    comment: Option<String>,
}

/// `PATCH` needs `If-Match`: an editor must not overwrite a change it has not seen.
#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", request_body = UpdateTask,
    params(("id" = String, Path), ("If-Match" = String, Header, description = "The ETag read, or *")),
    responses((status = 200, body = Task, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 428, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn update(
    State(service): State<Arc<TaskService>>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateTask>,
) -> Result<Response, ApiError> {
    let expected_version = if_match(&headers)?;
    let actor = actor(principal.as_deref(), body.updated_by.as_deref());
    let patch = TaskPatch {
        title: body.title,
        description: body.description,
        status: body.status,
        priority: body.priority,
        complexity: body.complexity,
        assignee: body.assignee_id,
    };
    let modified = service
        .update_task(
            &id,
            patch,
            &actor,
            expected_version,
            body.comment.as_deref(),
        )
        .await?;
    Ok(with_etag(StatusCode::OK, modified.into_task()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetStatus {
    #[serde(alias = "new_status")]
    status: Status,
    updated_by: Option<String>,
    comment: Option<String>,
}

/// `PUT .../status` moves a task whatever its version (like the MCP tool); `If-Match` is
/// honoured when sent.
#[utoipa::path(put, path = "/api/tasks/{id}/status", tag = "tasks", request_body = SetStatus,
    params(("id" = String, Path)),
    responses((status = 200, body = Task, headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn set_status(
    State(service): State<Arc<TaskService>>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetStatus>,
) -> Result<Response, ApiError> {
    let expected_version = if headers.contains_key(header::IF_MATCH) {
        if_match(&headers)?
    } else {
        None
    };
    let actor = actor(principal.as_deref(), body.updated_by.as_deref());
    let patch = TaskPatch {
        status: Some(body.status),
        ..TaskPatch::default()
    };
    let modified = service
        .update_task(
            &id,
            patch,
            &actor,
            expected_version,
            body.comment.as_deref(),
        )
        .await?;
    Ok(with_etag(StatusCode::OK, modified.into_task()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    deleted_by: Option<String>,
}

/// `DELETE` needs `If-Match` too.
#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path), ("If-Match" = String, Header, description = "The ETag read, or *"), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 428, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn remove(
    State(service): State<Arc<TaskService>>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let expected_version = if_match(&headers)?;
    let actor = actor(principal.as_deref(), query.deleted_by.as_deref());
    service.delete_task(&id, &actor, expected_version).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/tasks/{id}/comments", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Comment>), (status = 404, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn comments(
    State(service): State<Arc<TaskService>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Comment>>, ApiError> {
    Ok(Json(service.get_task_detail(&id).await?.comments))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddComment {
    comment: String,
    author: Option<String>,
}

#[utoipa::path(post, path = "/api/tasks/{id}/comments", tag = "tasks", request_body = AddComment,
    params(("id" = String, Path)),
    responses((status = 201, body = Comment), (status = 404, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn comment(
    State(service): State<Arc<TaskService>>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddComment>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    let author = actor(principal.as_deref(), body.author.as_deref());
    let comment = service.add_comment(&id, &body.comment, &author).await?;
    Ok((StatusCode::CREATED, Json(comment)))
}

#[utoipa::path(get, path = "/api/tasks/{id}/history", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 404, body = ErrorBody), (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(super) async fn history(
    State(service): State<Arc<TaskService>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(service.get_task_detail(&id).await?.history))
}
