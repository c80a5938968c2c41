//! `SqliteStore`: the embedded default. One file in WAL mode; ids as UUID text, times as
//! microseconds since the epoch.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::{EventId, NewEvent};
use sqlx::{
    QueryBuilder, Row, SqlStr, Sqlite, SqliteConnection, SqlitePool,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use uuid::Uuid;

use super::{
    Modified, OutboxEvent, TaskEdit, TaskPage, TaskQuery, TaskStore, TaskWrite, into_page,
    is_foreign_key_violation, is_unique_violation,
};
use crate::{Comment, Error, HistoryEntry, Repository, Result, Task, User};

/// The SQLite [`TaskStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        SqlStr::from_static(include_str!("../../migrations/sqlite/0001_init.sql")),
        false,
    )])
}

const TASK_COLUMNS: &str = "SELECT t.id, t.title, t.description, t.status, t.priority, t.complexity, \
     t.assignee_id, u.email AS assignee, r.name AS repository, t.created_by, t.updated_by, \
     t.created_at, t.updated_at, t.version \
     FROM tasks t JOIN users u ON u.id = t.assignee_id JOIN repositories r ON r.id = t.repository_id";

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database a `sqlite:` URL names.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?;
        Self::open_with(options).await
    }

    /// Opens (creating if missing) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A local file needs no liveness ping before every query; it would double the
            // round trips to SQLite's worker thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    /// Write transactions take the write lock up front (`BEGIN IMMEDIATE`), so concurrent
    /// writers queue on the busy timeout instead of failing on a lock upgrade.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    let value: i64 = row.try_get(column)?;
    DateTime::from_timestamp_micros(value).ok_or_else(|| corrupt(column))
}

fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid> {
    let value: String = row.try_get(column)?;
    Uuid::parse_str(&value).map_err(|_| corrupt(column))
}

fn parsed<T: FromStr>(row: &SqliteRow, column: &str) -> Result<T> {
    let value: String = row.try_get(column)?;
    value.parse().map_err(|_| corrupt(column))
}

fn corrupt(column: &str) -> Error {
    Error::Storage(sqlx::Error::Decode(
        format!("unexpected value in column {column}").into(),
    ))
}

fn task_from_row(row: &SqliteRow) -> Result<Task> {
    Ok(Task {
        id: uuid(row, "id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        status: parsed(row, "status")?,
        priority: parsed(row, "priority")?,
        complexity: parsed(row, "complexity")?,
        assignee_id: uuid(row, "assignee_id")?,
        assignee: row.try_get("assignee")?,
        repository: row.try_get("repository")?,
        created_by: row.try_get("created_by")?,
        updated_by: row.try_get("updated_by")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        version: row.try_get("version")?,
    })
}

fn user_from_row(row: &SqliteRow) -> Result<User> {
    Ok(User {
        id: uuid(row, "id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        github_username: row.try_get("github_username")?,
        created_at: time(row, "created_at")?,
    })
}

fn repository_from_row(row: &SqliteRow) -> Result<Repository> {
    Ok(Repository {
        id: uuid(row, "id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        created_at: time(row, "created_at")?,
    })
}

async fn insert_history(
    conn: &mut SqliteConnection,
    task_id: Uuid,
    history: &[HistoryEntry],
) -> Result<()> {
    for entry in history {
        sqlx::query(
            "INSERT INTO task_history (task_id, field, old_value, new_value, actor, comment, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(task_id.to_string())
        .bind(&entry.field)
        .bind(&entry.old_value)
        .bind(&entry.new_value)
        .bind(&entry.actor)
        .bind(&entry.comment)
        .bind(micros(entry.at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_event(conn: &mut SqliteConnection, event: &NewEvent) -> Result<()> {
    let subject = serde_json::to_string(&event.subject)
        .map_err(|e| Error::Storage(sqlx::Error::Encode(e.into())))?;
    let data = serde_json::to_string(&event.data)
        .map_err(|e| Error::Storage(sqlx::Error::Encode(e.into())))?;
    sqlx::query(
        "INSERT INTO events (topic, type, actor, subject, data, at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&event.topic)
    .bind(&event.kind)
    .bind(&event.actor)
    .bind(subject)
    .bind(data)
    .bind(micros(event.at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Why a conditional write touched no row: the task is gone, or its version moved on.
async fn conflict_or_missing(conn: &mut SqliteConnection, id: Uuid, expected: i64) -> Error {
    let current = sqlx::query("SELECT version FROM tasks WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await;
    match current {
        Ok(Some(row)) => match row.try_get::<i64, _>("version") {
            Ok(current) => Error::Conflict {
                task_id: id.to_string(),
                expected,
                current,
            },
            Err(e) => e.into(),
        },
        Ok(None) => Error::NotFound {
            kind: "task",
            id: id.to_string(),
        },
        Err(e) => e.into(),
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, name, github_username, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.github_username)
        .bind(micros(user.created_at))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists {
                what: "a user with this email or GitHub username".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn find_user(&self, key: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT * FROM users WHERE id = ?1 OR email = lower(?1) OR lower(github_username) = lower(?1) \
             ORDER BY id = ?1 DESC, email = lower(?1) DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY email")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn find_repository(&self, name: &str) -> Result<Option<Repository>> {
        let row = sqlx::query("SELECT * FROM repositories WHERE lower(name) = lower(?)")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(repository_from_row).transpose()
    }

    async fn list_repositories(&self) -> Result<Vec<Repository>> {
        let rows = sqlx::query("SELECT * FROM repositories ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(repository_from_row).collect()
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>> {
        let mut query = QueryBuilder::<Sqlite>::new(TASK_COLUMNS);
        query.push(" WHERE t.id = ").push_bind(id.to_string());
        let row = query.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let mut query = QueryBuilder::<Sqlite>::new(TASK_COLUMNS);
        query.push(" WHERE 1 = 1");
        if let Some(assignee) = q.assignee_id {
            query
                .push(" AND t.assignee_id = ")
                .push_bind(assignee.to_string());
        }
        if let Some(repository) = q.repository_id {
            query
                .push(" AND t.repository_id = ")
                .push_bind(repository.to_string());
        }
        if let Some(status) = q.status {
            query.push(" AND t.status IN (");
            let mut list = query.separated(", ");
            for status in status.statuses() {
                list.push_bind(status.as_str());
            }
            query.push(")");
        }
        if let Some(text) = &q.text {
            let pattern = format!(
                "%{}%",
                text.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            query
                .push(" AND (t.title LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR t.description LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
        if let Some(after) = q.after {
            query
                .push(" AND (t.updated_at, t.id) < (")
                .push_bind(micros(after.updated_at))
                .push(", ")
                .push_bind(after.id.to_string())
                .push(")");
        }
        query
            .push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ")
            .push_bind(i64::from(q.limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(tasks, q.limit))
    }

    async fn insert_task(
        &self,
        task: &Task,
        history: &[HistoryEntry],
        event: &NewEvent,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO repositories (id, name, url, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(&task.repository)
        .bind(format!("https://github.com/{}", task.repository))
        .bind(micros(task.created_at))
        .execute(&mut *tx)
        .await?;
        let result = sqlx::query(
            "INSERT INTO tasks (id, title, description, status, priority, complexity, assignee_id, \
             repository_id, created_by, updated_by, created_at, updated_at, version) \
             SELECT ?, ?, ?, ?, ?, ?, ?, r.id, ?, ?, ?, ?, ? FROM repositories r WHERE lower(r.name) = lower(?)",
        )
        .bind(task.id.to_string())
        .bind(&task.title)
        .bind(&task.description)
        .bind(task.status.as_str())
        .bind(task.priority.as_str())
        .bind(task.complexity.as_str())
        .bind(task.assignee_id.to_string())
        .bind(&task.created_by)
        .bind(&task.updated_by)
        .bind(micros(task.created_at))
        .bind(micros(task.updated_at))
        .bind(task.version)
        .bind(&task.repository)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(Error::NotFound {
                    kind: "user",
                    id: task.assignee_id.to_string(),
                });
            }
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists {
                    what: format!("task {}", task.id),
                });
            }
            Err(e) => return Err(e.into()),
        }
        insert_history(&mut tx, task.id, history).await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn modify_task(&self, id: Uuid, edit: TaskEdit) -> Result<Modified> {
        let mut tx = self.begin_write().await?;
        let mut query = QueryBuilder::<Sqlite>::new(TASK_COLUMNS);
        query.push(" WHERE t.id = ").push_bind(id.to_string());
        let row = query.build().fetch_optional(&mut *tx).await?;
        let current = row
            .as_ref()
            .map(task_from_row)
            .transpose()?
            .ok_or_else(|| Error::NotFound {
                kind: "task",
                id: id.to_string(),
            })?;
        let Some(TaskWrite {
            task,
            history,
            event,
        }) = edit(&current)?
        else {
            return Ok(Modified::Unchanged(current));
        };
        let result = sqlx::query(
            "UPDATE tasks SET title = ?, description = ?, status = ?, priority = ?, complexity = ?, \
             assignee_id = ?, updated_by = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?",
        )
        .bind(&task.title)
        .bind(&task.description)
        .bind(task.status.as_str())
        .bind(task.priority.as_str())
        .bind(task.complexity.as_str())
        .bind(task.assignee_id.to_string())
        .bind(&task.updated_by)
        .bind(micros(task.updated_at))
        .bind(task.version)
        .bind(task.id.to_string())
        .bind(current.version)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => return Err(conflict_or_missing(&mut tx, id, current.version).await),
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(Error::NotFound {
                    kind: "user",
                    id: task.assignee_id.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        insert_history(&mut tx, task.id, &history).await?;
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Modified::Updated(task))
    }

    async fn delete_task(
        &self,
        id: Uuid,
        expected_version: i64,
        history: &[HistoryEntry],
        event: &NewEvent,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM tasks WHERE id = ? AND version = ?")
            .bind(id.to_string())
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(conflict_or_missing(&mut tx, id, expected_version).await);
        }
        insert_history(&mut tx, id, history).await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_comment(&self, comment: &Comment, event: &NewEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO task_comments (id, task_id, comment, author, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(comment.id.to_string())
        .bind(comment.task_id.to_string())
        .bind(&comment.comment)
        .bind(&comment.author)
        .bind(micros(comment.created_at))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(Error::NotFound {
                    kind: "task",
                    id: comment.task_id.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn comments(&self, task_id: Uuid) -> Result<Vec<Comment>> {
        let rows =
            sqlx::query("SELECT * FROM task_comments WHERE task_id = ? ORDER BY created_at, id")
                .bind(task_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Comment {
                    id: uuid(row, "id")?,
                    task_id: uuid(row, "task_id")?,
                    comment: row.try_get("comment")?,
                    author: row.try_get("author")?,
                    created_at: time(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn history(&self, task_id: Uuid) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query("SELECT * FROM task_history WHERE task_id = ? ORDER BY id")
            .bind(task_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    field: row.try_get("field")?,
                    old_value: row.try_get("old_value")?,
                    new_value: row.try_get("new_value")?,
                    actor: row.try_get("actor")?,
                    comment: row.try_get("comment")?,
                    at: time(row, "at")?,
                })
            })
            .collect()
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows =
            sqlx::query("SELECT * FROM events WHERE published_id IS NULL ORDER BY seq LIMIT ?")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let subject: String = row.try_get("subject")?;
                let data: String = row.try_get("data")?;
                Ok(OutboxEvent {
                    seq: row.try_get("seq")?,
                    event: NewEvent {
                        topic: row.try_get("topic")?,
                        kind: row.try_get("type")?,
                        actor: row.try_get("actor")?,
                        subject: serde_json::from_str(&subject).map_err(|_| corrupt("subject"))?,
                        data: serde_json::from_str(&data).map_err(|_| corrupt("data"))?,
                        at: time(row, "at")?,
                    },
                })
            })
            .collect()
    }

    async fn mark_published(&self, seq: i64, id: EventId) -> Result<()> {
        sqlx::query("UPDATE events SET published_id = ? WHERE seq = ?")
            .bind(id.to_string())
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
