//! Users in the hub's SQLite file: times as microseconds since the epoch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{Role, StoredUser, User, UserChange, UserStore, no_user, role_of, user_conflict};
use crate::{Error, Result, snapshot::SqliteSnapshotStore};

const COLUMNS: &str = "SELECT username, role, password_hash, created_at, updated_at FROM hub_users";

fn storage(error: rusqlite::Error) -> Error {
    Error::Storage(Box::new(error))
}

fn time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::Storage(format!("a time out of range: {micros}").into()))
}

type Raw = (String, String, String, i64, i64);

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn stored((username, role, password_hash, created, updated): Raw) -> Result<StoredUser> {
    Ok(StoredUser {
        user: User {
            username,
            role: role_of(&role)?,
            created_at: time(created)?,
            updated_at: time(updated)?,
        },
        password_hash,
    })
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

#[async_trait]
impl UserStore for SqliteSnapshotStore {
    async fn create_user(&self, username: &str, role: Role, password_hash: &str) -> Result<User> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        self.with(move |connection| {
            let now = Utc::now().timestamp_micros();
            connection
                .execute(
                    "INSERT INTO hub_users (username, role, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![username, role.as_str(), hash, now],
                )
                .map_err(|e| if is_unique_violation(&e) { user_conflict(&username) } else { storage(e) })?;
            Ok(User {
                username,
                role,
                created_at: time(now)?,
                updated_at: time(now)?,
            })
        })
        .await
    }

    async fn user(&self, username: &str) -> Result<Option<StoredUser>> {
        let username = username.to_owned();
        self.with(move |connection| {
            connection
                .query_row(&format!("{COLUMNS} WHERE username = ?1"), [&username], raw)
                .optional()
                .map_err(storage)?
                .map(stored)
                .transpose()
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.with(|connection| {
            let mut statement = connection
                .prepare(&format!("{COLUMNS} ORDER BY username"))
                .map_err(storage)?;
            let rows = statement
                .query_map([], raw)
                .map_err(storage)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
            rows.into_iter()
                .map(|row| stored(row).map(|s| s.user))
                .collect()
        })
        .await
    }

    async fn update_user(&self, username: &str, change: UserChange) -> Result<User> {
        let username = username.to_owned();
        self.with(move |connection| {
            let tx = connection.transaction().map_err(storage)?;
            let changed = tx
                .execute(
                    "UPDATE hub_users SET role = COALESCE(?2, role), password_hash = COALESCE(?3, password_hash), updated_at = ?4 WHERE username = ?1",
                    params![
                        username,
                        change.role.map(Role::as_str),
                        change.password_hash,
                        Utc::now().timestamp_micros()
                    ],
                )
                .map_err(storage)?;
            if changed == 0 {
                return Err(no_user(&username));
            }
            if change.password_hash.is_some() {
                tx.execute("DELETE FROM hub_refresh_tokens WHERE username = ?1", [&username])
                    .map_err(storage)?;
            }
            let row = tx
                .query_row(&format!("{COLUMNS} WHERE username = ?1"), [&username], raw)
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            stored(row).map(|s| s.user)
        })
        .await
    }

    async fn delete_user(&self, username: &str) -> Result<bool> {
        let username = username.to_owned();
        self.with(move |connection| {
            let tx = connection.transaction().map_err(storage)?;
            // Foreign keys are not enforced on the hub's connection: remove the tokens here.
            tx.execute(
                "DELETE FROM hub_refresh_tokens WHERE username = ?1",
                [&username],
            )
            .map_err(storage)?;
            let deleted = tx
                .execute("DELETE FROM hub_users WHERE username = ?1", [&username])
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn insert_refresh_token(
        &self,
        digest: &str,
        username: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let (digest, username) = (digest.to_owned(), username.to_owned());
        self.with(move |connection| {
            let tx = connection.transaction().map_err(storage)?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM hub_users WHERE username = ?1",
                    [&username],
                    |_| Ok(()),
                )
                .optional()
                .map_err(storage)?;
            if exists.is_none() {
                return Err(no_user(&username));
            }
            tx.execute(
                "DELETE FROM hub_refresh_tokens WHERE expires_at <= ?1",
                [Utc::now().timestamp_micros()],
            )
            .map_err(storage)?;
            tx.execute(
                "INSERT INTO hub_refresh_tokens (digest, username, expires_at) VALUES (?1, ?2, ?3)",
                params![digest, username, expires_at.timestamp_micros()],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)
        })
        .await
    }

    async fn take_refresh_token(&self, digest: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        let digest = digest.to_owned();
        self.with(move |connection| {
            let row: Option<(String, i64)> = connection
                .query_row(
                    "DELETE FROM hub_refresh_tokens WHERE digest = ?1 RETURNING username, expires_at",
                    [&digest],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(storage)?;
            row.map(|(username, expires)| Ok((username, time(expires)?)))
                .transpose()
        })
        .await
    }
}
