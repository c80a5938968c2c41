//! Users and repositories: `GET|POST /api/users`, `GET /api/repositories`.

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Deserialize;

use super::{ApiError, ApiJson};
use crate::{Repository, TaskService, User, service::NewUser};

pub(super) fn routes() -> Router<Arc<TaskService>> {
    Router::new()
        .route("/api/users", get(list_users).post(add_user))
        .route("/api/repositories", get(list_repositories))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUser {
    email: String,
    name: Option<String>,
    github_username: Option<String>,
}

async fn list_users(State(service): State<Arc<TaskService>>) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(service.list_users().await?))
}

async fn add_user(
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

async fn list_repositories(
    State(service): State<Arc<TaskService>>,
) -> Result<Json<Vec<Repository>>, ApiError> {
    Ok(Json(service.list_repositories().await?))
}
