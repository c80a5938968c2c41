//! Users and repositories: `GET|POST /api/users`, `GET /api/repositories`.

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Deserialize;

use super::{ApiError, ApiJson, ErrorBody};
use crate::{Repository, TaskService, User, service::NewUser};

pub(super) fn routes() -> Router<Arc<TaskService>> {
    Router::new()
        .route("/api/users", get(list_users).post(add_user))
        .route("/api/repositories", get(list_repositories))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddUser {
    email: String,
    name: Option<String>,
    github_username: Option<String>,
}

#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = Vec<User>)))]
pub(super) async fn list_users(
    State(service): State<Arc<TaskService>>,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(service.list_users().await?))
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = AddUser,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn add_user(
    State(service): State<Arc<TaskService>>,
    ApiJson(body): ApiJson<AddUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = service
        .add_user(NewUser {
            email: body.email,
            name: body.name,
            github_username: body.github_username,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/api/repositories", tag = "users", responses((status = 200, body = Vec<Repository>)))]
pub(super) async fn list_repositories(
    State(service): State<Arc<TaskService>>,
) -> Result<Json<Vec<Repository>>, ApiError> {
    Ok(Json(service.list_repositories().await?))
}
