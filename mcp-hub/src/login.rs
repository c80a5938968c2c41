//! Team login for the hub: users with a role (viewer, operator, admin) and an argon2id password
//! hash, kept in the hub's store ([`UserStore`]); `POST /api/auth/login` trades a name and
//! password for a short-lived access token (an HS256 JWT the hub's [`Gate`] verifies) and a
//! refresh token; `/api/auth/refresh` trades a refresh token for a new pair (each refresh token
//! works once); `GET /api/auth/me` says who the caller is.
//!
//! Roles are scopes: a viewer reads (`read`), an operator also pushes, calls tools and starts
//! lab runs (`write`), an admin also controls upstreams, changes suites, reads the audit log and
//! manages users (`admin`). Access tokens are not looked up per request: a removed user keeps
//! what their current one grants until it expires (15 minutes by default) while their refresh
//! tokens stop at once; a demoted user's next refresh carries the new role. Live connections
//! (WebSocket, SSE) are checked when they open, so one opened before a removal stays open.
//!
//! [`Gate`]: mcp_core::auth::Gate

mod memory;
mod postgres;
pub(crate) mod rest;
mod sqlite;

use std::{sync::Arc, time::Duration};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use mcp_core::auth::{self, Scope};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub(crate) use memory::UserTables;

/// The `aud` of the access tokens login hands out: services sharing `JWT_SECRET` with the hub
/// (`mcp-tasks`) refuse them.
pub const AUDIENCE: &str = "mcp-hub";

/// Password checks running at once at most (each holds argon2's 19 MiB for tens of ms);
/// more wait, up to [`HASH_WAIT`], then get 503.
const MAX_HASHING: usize = 4;
const HASH_WAIT: Duration = Duration::from_secs(10);

/// How long an access token is valid by default.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a refresh token is valid by default (each refresh hands out a new one).
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest lifetime either token may be given.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

const MIN_PASSWORD_LEN: usize = 8;
/// Longer passwords are refused rather than hashed (argon2 takes any length; a megabyte-long
/// one would only cost the hub time).
const MAX_PASSWORD_LEN: usize = 1024;
const MAX_USERNAME_LEN: usize = 64;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    /// The scope the role's tokens carry.
    pub fn scope(self) -> Scope {
        match self {
            Role::Viewer => Scope::Read,
            Role::Operator => Scope::Write,
            Role::Admin => Scope::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(Error::Invalid {
                field: "role",
                message: format!("{other:?} is not one of viewer, operator, admin"),
            }),
        }
    }
}

/// A user as the API shows one (never with the hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as the store keeps one.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub user: User,
    /// The argon2id PHC string.
    pub password_hash: String,
}

/// A change to a user: `None` leaves that part as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserChange {
    pub role: Option<Role>,
    /// A new PHC string; the user's refresh tokens are revoked with it.
    pub password_hash: Option<String>,
}

/// Where users and refresh tokens live: the hub's three stores implement it (tables
/// `hub_users` and `hub_refresh_tokens`).
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Adds a user; a taken name is a conflict.
    async fn create_user(&self, username: &str, role: Role, password_hash: &str) -> Result<User>;
    async fn user(&self, username: &str) -> Result<Option<StoredUser>>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<User>>;
    /// Changes a user; a new password hash also revokes their refresh tokens.
    async fn update_user(&self, username: &str, change: UserChange) -> Result<User>;
    /// Removes a user and their refresh tokens; false when there was none.
    async fn delete_user(&self, username: &str) -> Result<bool>;
    /// Keeps a refresh token's digest for `username` until `expires_at`.
    async fn insert_refresh_token(
        &self,
        digest: &str,
        username: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Removes a refresh token and returns whom it was for and until when: each works once.
    /// Expired tokens are dropped on the way.
    async fn take_refresh_token(&self, digest: &str) -> Result<Option<(String, DateTime<Utc>)>>;
}

/// An access token, the refresh token to renew it, and whom they are for.
#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds the refresh token is valid.
    pub refresh_expires_in: u64,
    pub user: User,
}

/// Team login: the users' store, the key that signs access tokens, and their lifetimes.
#[derive(Clone)]
pub struct Login {
    store: Arc<dyn UserStore>,
    key: Arc<[u8]>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// A hash of a random password, checked when a name is unknown, so a wrong name takes
    /// as long to refuse as a wrong password.
    decoy: Arc<str>,
    /// Bounds the memory and CPU that logins can take, whoever sends them.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

/// `len` bytes from the operating system's random source.
fn random_bytes(len: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).map_err(|e| Error::Storage(e.to_string().into()))?;
    Ok(bytes)
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn wrong_credentials() -> Error {
    Error::Unauthorized {
        message: "wrong user name or password".into(),
    }
}

/// Hashes on a blocking thread: argon2 is meant to be slow.
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Storage(format!("hashing a password: {e}").into()))
    })
    .await
    .map_err(|e| Error::Storage(Box::new(e)))?
}

async fn password_matches(password: String, hash: Arc<str>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let Ok(hash) = PasswordHash::new(&hash) else {
            tracing::warn!("a stored password hash cannot be read; that user cannot log in");
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
    .await
    .map_err(|e| Error::Storage(Box::new(e)))
}

/// A user name: 1–64 letters, digits or `.` `_` `-` `@`.
pub fn check_username(username: &str) -> Result<()> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_LEN
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "username",
            message: format!(
                "use 1–{MAX_USERNAME_LEN} letters, digits, '.', '_', '-' or '@' (got {username:?})"
            ),
        })
    }
}

fn check_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::Invalid {
            field: "password",
            message: format!(
                "must be at least {MIN_PASSWORD_LEN} characters and at most {MAX_PASSWORD_LEN} bytes"
            ),
        });
    }
    Ok(())
}

impl Login {
    /// Login over `store`, signing access tokens with `key` (at least 32 bytes; the same key
    /// the hub's `AuthConfig::jwt_secret` verifies with).
    pub async fn new(store: Arc<dyn UserStore>, key: Vec<u8>) -> Result<Login> {
        if key.len() < 32 {
            return Err(Error::Invalid {
                field: "signing key",
                message: "must be at least 32 bytes".into(),
            });
        }
        let decoy = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(18)?);
        Ok(Login {
            store,
            key: key.into(),
            access_ttl: DEFAULT_ACCESS_TTL,
            refresh_ttl: DEFAULT_REFRESH_TTL,
            decoy: hash_password(decoy).await?.into(),
            hashing: Arc::new(tokio::sync::Semaphore::new(MAX_HASHING)),
        })
    }

    /// A signing key for one process: tokens it signs end with it (refresh tokens, kept in
    /// the store, still work after a restart).
    pub fn random_key() -> Result<Vec<u8>> {
        random_bytes(32)
    }

    /// How long access and refresh tokens are valid (each kept within one second and a year).
    pub fn with_lifetimes(mut self, access: Duration, refresh: Duration) -> Login {
        let bound = |d: Duration| d.clamp(Duration::from_secs(1), MAX_TTL);
        self.access_ttl = bound(access);
        self.refresh_ttl = bound(refresh);
        self
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.store
    }

    /// Adds a user with a checked name and password (hashed with argon2id).
    pub async fn add_user(&self, username: &str, role: Role, password: &str) -> Result<User> {
        check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password.to_owned()).await?;
        self.store.create_user(username, role, &hash).await
    }

    /// Changes a user's role and/or password.
    pub async fn change_user(
        &self,
        username: &str,
        role: Option<Role>,
        password: Option<&str>,
    ) -> Result<User> {
        if let Some(password) = password {
            check_password(password)?;
        }
        let password_hash = match password {
            Some(password) => Some(hash_password(password.to_owned()).await?),
            None => None,
        };
        self.store
            .update_user(
                username,
                UserChange {
                    role,
                    password_hash,
                },
            )
            .await
    }

    /// Tokens for a user whose password is right; the same error for a wrong name and a
    /// wrong password.
    pub async fn login(&self, username: &str, password: &str) -> Result<Tokens> {
        let stored = if check_username(username).is_ok() && password.len() <= MAX_PASSWORD_LEN {
            self.store.user(username).await?
        } else {
            None
        };
        let (hash, user) = match stored {
            Some(stored) => (Arc::<str>::from(stored.password_hash), Some(stored.user)),
            None => (self.decoy.clone(), None),
        };
        let matches = {
            let _turn = tokio::time::timeout(HASH_WAIT, self.hashing.acquire())
                .await
                .map_err(|_| Error::LoginsBusy)?
                .map_err(|_| Error::LoginsBusy)?;
            password_matches(password.to_owned(), hash).await?
        };
        match user {
            Some(user) if matches => self.tokens_for(user).await,
            _ => Err(wrong_credentials()),
        }
    }

    /// A new pair for a refresh token that is known and not expired; the old one stops
    /// working.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let refused = || Error::Unauthorized {
            message:
                "the refresh token is not valid (used already, expired or revoked); log in again"
                    .into(),
        };
        let Some((username, expires_at)) = self
            .store
            .take_refresh_token(&digest(refresh_token))
            .await?
        else {
            return Err(refused());
        };
        if expires_at <= Utc::now() {
            return Err(refused());
        }
        let user = self.store.user(&username).await?.ok_or_else(refused)?;
        // Removed meanwhile: as if its token had been revoked with it.
        self.tokens_for(user.user).await.map_err(|e| match e {
            Error::NotFound { .. } => refused(),
            other => other,
        })
    }

    /// Ends a refresh token (logging out); unknown tokens are ignored.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        self.store
            .take_refresh_token(&digest(refresh_token))
            .await
            .map(|_| ())
    }

    async fn tokens_for(&self, user: User) -> Result<Tokens> {
        let mut extra = serde_json::Map::new();
        extra.insert("role".into(), user.role.as_str().into());
        extra.insert("aud".into(), AUDIENCE.into());
        let access_token = auth::issue_jwt(
            &self.key,
            &user.username,
            user.role.scope(),
            self.access_ttl,
            extra,
        );
        let refresh_token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32)?);
        let expires_at = Utc::now()
            + chrono::Duration::from_std(self.refresh_ttl).unwrap_or(chrono::Duration::MAX);
        self.store
            .insert_refresh_token(&digest(&refresh_token), &user.username, expires_at)
            .await?;
        Ok(Tokens {
            access_token,
            token_type: "Bearer",
            expires_in: self.access_ttl.as_secs(),
            refresh_token,
            refresh_expires_in: self.refresh_ttl.as_secs(),
            user,
        })
    }
}

fn user_conflict(username: &str) -> Error {
    Error::Conflict {
        message: format!("a user named {username:?} exists already"),
    }
}

fn no_user(username: &str) -> Error {
    Error::NotFound {
        what: format!("user {username:?}"),
    }
}

fn role_of(text: &str) -> Result<Role> {
    text.parse()
        .map_err(|_| Error::Storage(format!("a stored role is not known: {text:?}").into()))
}
