//! Team login over HTTP. Open (no credential needed, failed attempts limited per address with
//! the hub's other credentials): `GET /api/auth` (whether login is on), `POST /api/auth/login`,
//! `/api/auth/refresh`, `/api/auth/logout`. Behind the gate: `GET /api/auth/me` (any scope) and
//! the users, `GET|POST /api/users`, `GET|PATCH|DELETE /api/users/{username}` (admin).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Extension, Json, Router,
    extract::{ConnectInfo, Path},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use mcp_core::{
    auth::{Gate, Principal},
    http::{ApiError, ApiJson},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Login, Role, User, check_username};
use crate::Error;

/// The open routes; `login` is `None` when the hub has no users (login is then off).
pub(crate) fn open_routes<S: Clone + Send + Sync + 'static>(
    login: Option<Login>,
    gate: Arc<Gate>,
) -> Router<S> {
    Router::new()
        .route("/api/auth", get(status))
        .route("/api/auth/login", post(login_handler))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .layer(Extension(LoginState(login)))
        .layer(Extension(gate))
}

/// The routes behind the gate.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(login: Option<Login>) -> Router<S> {
    Router::new()
        .route("/api/auth/me", get(me))
        .route("/api/users", get(list_users).post(create_user))
        .route(
            "/api/users/{username}",
            get(user).patch(change_user).delete(delete_user),
        )
        .layer(Extension(LoginState(login)))
}

#[derive(Clone)]
struct LoginState(Option<Login>);

impl LoginState {
    fn get(&self) -> Result<&Login, ApiError> {
        self.0.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "login_off",
                "login is off on this hub: it has no users (add one with `mcp-hub user add NAME --role admin`)",
            )
        })
    }
}

async fn status(Extension(state): Extension<LoginState>) -> Json<Value> {
    Json(json!({ "login": state.0.is_some() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

fn client_of(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<std::net::IpAddr> {
    connect.map(|Extension(ConnectInfo(address))| address.ip())
}

async fn login_handler(
    Extension(state): Extension<LoginState>,
    Extension(gate): Extension<Arc<Gate>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, Response> {
    let login = state.get().map_err(IntoResponse::into_response)?;
    let client = client_of(connect);
    // Every login counts against the address before the password is hashed, so parallel
    // guesses cannot all start before the first fails; a success is given back.
    if let Some(refused) = gate.spend_attempt(client) {
        return Err(refused);
    }
    match login.login(&body.username, &body.password).await {
        Ok(tokens) => {
            gate.forgive(client);
            tracing::info!(user = %tokens.user.username, role = tokens.user.role.as_str(), "logged in");
            Ok(Json(tokens).into_response())
        }
        Err(error) => {
            if matches!(error, Error::Unauthorized { .. }) {
                tracing::warn!(user = %body.username.escape_debug(), ?client, "a login was refused");
            }
            Err(ApiError::from(error).into_response())
        }
    }
}

async fn refresh(
    Extension(state): Extension<LoginState>,
    Extension(gate): Extension<Arc<Gate>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response, Response> {
    let login = state.get().map_err(IntoResponse::into_response)?;
    let client = client_of(connect);
    if let Some(refused) = gate.limit_attempt(client) {
        return Err(refused);
    }
    match login.refresh(&body.refresh_token).await {
        Ok(tokens) => Ok(Json(tokens).into_response()),
        Err(error) => {
            if let (Error::Unauthorized { .. }, Some(client)) = (&error, client) {
                gate.failed(client);
            }
            Err(ApiError::from(error).into_response())
        }
    }
}

async fn logout(
    Extension(state): Extension<LoginState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    state.get()?.logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is: a user (name and current role), an API key, or everyone (auth off).
async fn me(
    Extension(state): Extension<LoginState>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<Value>, ApiError> {
    let Some(Extension(principal)) = principal else {
        return Ok(Json(json!({
            "name": "local",
            "kind": "none",
            "scope": "admin",
            "auth": false,
        })));
    };
    let scope = principal.scope.as_str();
    if let (Some(name), Some(login)) = (principal.name.strip_prefix("jwt:"), state.0.as_ref())
        && let Some(stored) = login.store().user(name).await?
    {
        return Ok(Json(json!({
            "name": name,
            "kind": "user",
            "role": stored.user.role,
            "scope": scope,
            "auth": true,
        })));
    }
    let kind = if principal.name.starts_with("key:") {
        "api_key"
    } else {
        "token"
    };
    Ok(Json(json!({
        "name": principal.name,
        "kind": kind,
        "scope": scope,
        "auth": true,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    username: String,
    role: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChangeBody {
    role: Option<String>,
    password: Option<String>,
}

async fn list_users(Extension(state): Extension<LoginState>) -> Result<Json<Value>, ApiError> {
    let users = match &state.0 {
        Some(login) => login.store().users().await?,
        None => Vec::new(),
    };
    Ok(Json(json!({ "users": users })))
}

/// Login is on once the hub has users (the first is added with `mcp-hub user add`), so adding
/// one here needs an admin.
async fn create_user(
    Extension(state): Extension<LoginState>,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, ApiError> {
    let login = state.get()?;
    let role: Role = body.role.parse()?;
    let user = login.add_user(&body.username, role, &body.password).await?;
    tracing::info!(user = %user.username, role = role.as_str(), "user added");
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn user(
    Extension(state): Extension<LoginState>,
    Path(username): Path<String>,
) -> Result<Json<User>, ApiError> {
    let login = state.get()?;
    check_username(&username)?;
    let stored = login
        .store()
        .user(&username)
        .await?
        .ok_or(Error::NotFound {
            what: format!("user {username:?}"),
        })?;
    Ok(Json(stored.user))
}

async fn change_user(
    Extension(state): Extension<LoginState>,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<UserChangeBody>,
) -> Result<Json<User>, ApiError> {
    let login = state.get()?;
    check_username(&username)?;
    let role = body.role.as_deref().map(str::parse::<Role>).transpose()?;
    if role.is_none() && body.password.is_none() {
        return Err(Error::Invalid {
            field: "body",
            message: "give a role, a password or both".into(),
        }
        .into());
    }
    let user = login
        .change_user(&username, role, body.password.as_deref())
        .await?;
    tracing::info!(user = %user.username, role = user.role.as_str(), password = body.password.is_some(), "user changed");
    Ok(Json(user))
}

async fn delete_user(
    Extension(state): Extension<LoginState>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    let login = state.get()?;
    check_username(&username)?;
    if login.store().delete_user(&username).await? {
        tracing::info!(user = %username, "user removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound {
            what: format!("user {username:?}"),
        }
        .into())
    }
}
