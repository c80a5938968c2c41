//! Users in the hub's PostgreSQL database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, postgres::PgRow};

use super::{Role, StoredUser, User, UserChange, UserStore, no_user, role_of, user_conflict};
use crate::{Error, Result, snapshot::PostgresSnapshotStore};

fn storage(error: sqlx::Error) -> Error {
    Error::Storage(Box::new(error))
}

fn stored(row: &PgRow) -> Result<StoredUser> {
    let role: String = row.try_get("role").map_err(storage)?;
    Ok(StoredUser {
        user: User {
            username: row.try_get("username").map_err(storage)?,
            role: role_of(&role)?,
            created_at: row.try_get("created_at").map_err(storage)?,
            updated_at: row.try_get("updated_at").map_err(storage)?,
        },
        password_hash: row.try_get("password_hash").map_err(storage)?,
    })
}

#[async_trait]
impl UserStore for PostgresSnapshotStore {
    async fn create_user(&self, username: &str, role: Role, password_hash: &str) -> Result<User> {
        let row = sqlx::query(
            "INSERT INTO hub_users (username, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING username, role, password_hash, created_at, updated_at",
        )
        .bind(username)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
                user_conflict(username)
            }
            _ => storage(e),
        })?;
        stored(&row).map(|s| s.user)
    }

    async fn user(&self, username: &str) -> Result<Option<StoredUser>> {
        sqlx::query("SELECT username, role, password_hash, created_at, updated_at FROM hub_users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?
            .as_ref()
            .map(stored)
            .transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        sqlx::query("SELECT username, role, password_hash, created_at, updated_at FROM hub_users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?
            .iter()
            .map(|row| stored(row).map(|s| s.user))
            .collect()
    }

    async fn update_user(&self, username: &str, change: UserChange) -> Result<User> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let row = sqlx::query(
            "UPDATE hub_users SET role = COALESCE($2, role), password_hash = COALESCE($3, password_hash), \
             updated_at = $4 WHERE username = $1 RETURNING username, role, password_hash, created_at, updated_at",
        )
        .bind(username)
        .bind(change.role.map(Role::as_str))
        .bind(change.password_hash.as_deref())
        .bind(Utc::now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?
        .ok_or_else(|| no_user(username))?;
        if change.password_hash.is_some() {
            sqlx::query("DELETE FROM hub_refresh_tokens WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)?;
        stored(&row).map(|s| s.user)
    }

    async fn delete_user(&self, username: &str) -> Result<bool> {
        // Its refresh tokens go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM hub_users WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn insert_refresh_token(
        &self,
        digest: &str,
        username: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM hub_refresh_tokens WHERE expires_at <= $1")
            .bind(Utc::now())
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        sqlx::query(
            "INSERT INTO hub_refresh_tokens (digest, username, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(digest)
        .bind(username)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            // The user is gone (foreign key).
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23503") => no_user(username),
            _ => storage(e),
        })?;
        Ok(())
    }

    async fn take_refresh_token(&self, digest: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = sqlx::query(
            "DELETE FROM hub_refresh_tokens WHERE digest = $1 RETURNING username, expires_at",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.map(|row| {
            Ok((
                row.try_get("username").map_err(storage)?,
                row.try_get("expires_at").map_err(storage)?,
            ))
        })
        .transpose()
    }
}
