//! `PostgresStore`: the store for shared deployments.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::{Event, EventId, NewEvent};
use sqlx::{
    Connection, PgConnection, PgPool, Postgres, QueryBuilder, Row, SqlStr,
    migrate::{Migration, MigrationType, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
    types::Json,
};
use uuid::Uuid;

use super::{
    Modified, OutboxEvent, RemoveEdit, TaskEdit, TaskPage, TaskQuery, TaskStore, TaskWrite,
    into_page, is_foreign_key_violation, is_unique_violation,
};
use crate::{Comment, Error, HistoryEntry, Repository, Result, Task, User};

/// The PostgreSQL [`TaskStore`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// This instance's name in the outbox's `origin` column.
    origin: String,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../migrations/postgres/0001_init.sql")),
            false,
        ),
        Migration::new(
            2,
            "event positions".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../migrations/postgres/0002_event_positions.sql"
            )),
            false,
        ),
    ])
}

const TASK_COLUMNS: &str = "SELECT t.id, t.title, t.description, t.status, t.priority, t.complexity, \
     t.assignee_id, u.email AS assignee, r.name AS repository, t.created_by, t.updated_by, \
     t.created_at, t.updated_at, t.version \
     FROM tasks t JOIN users u ON u.id = t.assignee_id JOIN repositories r ON r.id = t.repository_id";

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(parse_url(url)?).await
    }

    /// Like [`PostgresStore::connect`], with the store's tables in `schema` (which must exist):
    /// several stores can share one database, e.g. one per test.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        Self::connect_with(parse_url(url)?.options([("search_path", schema)])).await
    }

    async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        // One direct connection first: a pool would retry until its timeout and then report
        // only that it timed out, hiding why (refused, unknown host, bad password).
        let probe = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        probe.close().await.map_err(storage)?;
        // sqlx pings every connection it hands out by default, a round trip per query; only a
        // connection that sat idle long enough to have been dropped by a proxy or the server is
        // checked here.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(30) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| Error::Migration(Box::new(e)))?;
        Ok(Self {
            pool,
            origin: Uuid::now_v7().to_string(),
        })
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|e| Error::Invalid {
        field: "database url",
        message: e.to_string(),
    })
}

fn storage(error: sqlx::Error) -> Error {
    Error::Storage(Box::new(error))
}

/// `?` for sqlx results inside this store, without making sqlx part of the crate's API.
trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> Result<T> {
        self.map_err(storage)
    }
}

fn corrupt(column: &str) -> Error {
    Error::Storage(format!("unexpected value in column {column}").into())
}

/// An event id as the two signed integers the database stores.
fn id_numbers(id: EventId) -> Result<(i64, i64)> {
    let out_of_range = || Error::Invalid {
        field: "event id",
        message: format!("{id} is out of range"),
    };
    Ok((
        i64::try_from(id.ms()).map_err(|_| out_of_range())?,
        i64::try_from(id.seq()).map_err(|_| out_of_range())?,
    ))
}

fn parsed<T: FromStr>(row: &PgRow, column: &str) -> Result<T> {
    let value: String = row.try_get(column).db()?;
    value
        .parse()
        .map_err(|_| Error::Storage(format!("unexpected value in column {column}").into()))
}

fn task_from_row(row: &PgRow) -> Result<Task> {
    Ok(Task {
        id: row.try_get("id").db()?,
        title: row.try_get("title").db()?,
        description: row.try_get("description").db()?,
        status: parsed(row, "status")?,
        priority: parsed(row, "priority")?,
        complexity: parsed(row, "complexity")?,
        assignee_id: row.try_get("assignee_id").db()?,
        assignee: row.try_get("assignee").db()?,
        repository: row.try_get("repository").db()?,
        created_by: row.try_get("created_by").db()?,
        updated_by: row.try_get("updated_by").db()?,
        created_at: row.try_get("created_at").db()?,
        updated_at: row.try_get("updated_at").db()?,
        version: row.try_get("version").db()?,
    })
}

fn user_from_row(row: &PgRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id").db()?,
        email: row.try_get("email").db()?,
        name: row.try_get("name").db()?,
        github_username: row.try_get("github_username").db()?,
        created_at: row.try_get("created_at").db()?,
    })
}

fn repository_from_row(row: &PgRow) -> Result<Repository> {
    Ok(Repository {
        id: row.try_get("id").db()?,
        name: row.try_get("name").db()?,
        url: row.try_get("url").db()?,
        created_at: row.try_get("created_at").db()?,
    })
}

async fn insert_history(
    conn: &mut PgConnection,
    task_id: Uuid,
    history: &[HistoryEntry],
) -> Result<()> {
    for entry in history {
        sqlx::query(
            "INSERT INTO task_history (task_id, field, old_value, new_value, actor, comment, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(task_id)
        .bind(&entry.field)
        .bind(&entry.old_value)
        .bind(&entry.new_value)
        .bind(&entry.actor)
        .bind(&entry.comment)
        .bind(entry.at)
        .execute(&mut *conn)
        .await
        .db()?;
    }
    Ok(())
}

async fn insert_event(conn: &mut PgConnection, origin: &str, event: &NewEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (topic, type, actor, subject, data, at, origin) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&event.topic)
    .bind(&event.kind)
    .bind(&event.actor)
    .bind(Json(&event.subject))
    .bind(Json(&event.data))
    .bind(event.at)
    .bind(origin)
    .execute(conn)
    .await.db()?;
    Ok(())
}

/// Reads a task and locks its row until the transaction ends; [`Error::NotFound`] if missing.
async fn lock_task(conn: &mut PgConnection, id: Uuid) -> Result<Task> {
    let mut query = QueryBuilder::<Postgres>::new(TASK_COLUMNS);
    query
        .push(" WHERE t.id = ")
        .push_bind(id)
        .push(" FOR UPDATE OF t");
    let row = query.build().fetch_optional(conn).await.db()?;
    row.as_ref()
        .map(task_from_row)
        .transpose()?
        .ok_or_else(|| Error::NotFound {
            kind: "task",
            id: id.to_string(),
        })
}

/// Why a conditional write touched no row: the task is gone, or its version moved on.
async fn conflict_or_missing(conn: &mut PgConnection, id: Uuid, expected: i64) -> Error {
    let current = sqlx::query("SELECT version FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await;
    match current {
        Ok(Some(row)) => match row.try_get::<i64, _>("version") {
            Ok(current) => Error::Conflict {
                task_id: id.to_string(),
                expected,
                current,
            },
            Err(e) => storage(e),
        },
        Ok(None) => Error::NotFound {
            kind: "task",
            id: id.to_string(),
        },
        Err(e) => storage(e),
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, name, github_username, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.github_username)
        .bind(user.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists {
                what: "a user with this email or GitHub username".into(),
            }),
            Err(e) => Err(storage(e)),
        }
    }

    async fn find_user(&self, key: &str) -> Result<Option<User>> {
        let id = Uuid::parse_str(key).ok();
        let row = sqlx::query(
            "SELECT * FROM users WHERE id = $1 OR email = lower($2) OR lower(github_username) = lower($2) \
             ORDER BY id = $1 DESC NULLS LAST, email = lower($2) DESC LIMIT 1",
        )
        .bind(id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await.db()?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY email")
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(user_from_row).collect()
    }

    async fn find_repository(&self, name: &str) -> Result<Option<Repository>> {
        let row = sqlx::query("SELECT * FROM repositories WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(repository_from_row).transpose()
    }

    async fn list_repositories(&self) -> Result<Vec<Repository>> {
        let rows = sqlx::query("SELECT * FROM repositories ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(repository_from_row).collect()
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>> {
        let mut query = QueryBuilder::<Postgres>::new(TASK_COLUMNS);
        query.push(" WHERE t.id = ").push_bind(id);
        let row = query.build().fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let mut query = QueryBuilder::<Postgres>::new(TASK_COLUMNS);
        query.push(" WHERE TRUE");
        if let Some(assignee) = q.assignee_id {
            query.push(" AND t.assignee_id = ").push_bind(assignee);
        }
        if let Some(repository) = q.repository_id {
            query.push(" AND t.repository_id = ").push_bind(repository);
        }
        if let Some(status) = q.status {
            let statuses: Vec<&str> = status.statuses().iter().map(|s| s.as_str()).collect();
            query
                .push(" AND t.status = ANY(")
                .push_bind(statuses)
                .push(")");
        }
        if let Some(text) = &q.text {
            let pattern = format!(
                "%{}%",
                text.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            query
                .push(" AND (t.title ILIKE ")
                .push_bind(pattern.clone())
                .push(" OR t.description ILIKE ")
                .push_bind(pattern)
                .push(")");
        }
        if let Some(after) = q.after {
            query
                .push(" AND (t.updated_at, t.id) < (")
                .push_bind(after.updated_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        query
            .push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ")
            .push_bind(i64::from(q.limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await.db()?;
        let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(tasks, q.limit))
    }

    async fn insert_task(
        &self,
        task: &Task,
        history: &[HistoryEntry],
        event: &NewEvent,
    ) -> Result<()> {
        // One statement, so one round trip and one implicit transaction: the repository (when
        // new), the task, its history and its outbox row. Foreign keys are checked at the end
        // of the statement, after every part has been inserted.
        let mut fields = Vec::with_capacity(history.len());
        let mut old_values = Vec::with_capacity(history.len());
        let mut new_values = Vec::with_capacity(history.len());
        let mut actors = Vec::with_capacity(history.len());
        let mut comments = Vec::with_capacity(history.len());
        let mut ats = Vec::with_capacity(history.len());
        for entry in history {
            fields.push(entry.field.as_str());
            old_values.push(entry.old_value.as_deref());
            new_values.push(entry.new_value.as_deref());
            actors.push(entry.actor.as_str());
            comments.push(entry.comment.as_deref());
            ats.push(entry.at);
        }
        // A repository another writer is registering at the same moment is invisible to this
        // statement's snapshot (its insert waits, then does nothing, and the lookup misses):
        // no task is inserted then, and a second attempt, with a new snapshot, finds it.
        for _attempt in 0..2 {
            let result = sqlx::query_scalar::<_, i64>(
                "WITH new_repository AS ( \
                   INSERT INTO repositories (id, name, url, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT DO NOTHING RETURNING id), \
                 repository AS ( \
                   SELECT id FROM new_repository \
                   UNION ALL SELECT id FROM repositories WHERE lower(name) = lower($2) LIMIT 1), \
                 task AS ( \
                   INSERT INTO tasks (id, title, description, status, priority, complexity, \
                     assignee_id, repository_id, created_by, updated_by, created_at, updated_at, version) \
                   SELECT $5, $6, $7, $8, $9, $10, $11, repository.id, $12, $13, $14, $15, $16 \
                   FROM repository RETURNING id), \
                 history AS ( \
                   INSERT INTO task_history (task_id, field, old_value, new_value, actor, comment, at) \
                   SELECT task.id, h.field, h.old_value, h.new_value, h.actor, h.comment, h.at \
                   FROM task, UNNEST($17::TEXT[], $18::TEXT[], $19::TEXT[], $20::TEXT[], $21::TEXT[], \
                     $22::TIMESTAMPTZ[]) AS h(field, old_value, new_value, actor, comment, at)), \
                 event AS ( \
                   INSERT INTO events (topic, type, actor, subject, data, at, origin) \
                   SELECT $23, $24, $25, $26, $27, $28, $29 FROM task) \
                 SELECT count(*) FROM task",
            )
            .bind(Uuid::now_v7())
            .bind(&task.repository)
            .bind(format!("https://github.com/{}", task.repository))
            .bind(task.created_at)
            .bind(task.id)
            .bind(&task.title)
            .bind(&task.description)
            .bind(task.status.as_str())
            .bind(task.priority.as_str())
            .bind(task.complexity.as_str())
            .bind(task.assignee_id)
            .bind(&task.created_by)
            .bind(&task.updated_by)
            .bind(task.created_at)
            .bind(task.updated_at)
            .bind(task.version)
            .bind(&fields)
            .bind(&old_values)
            .bind(&new_values)
            .bind(&actors)
            .bind(&comments)
            .bind(&ats)
            .bind(&event.topic)
            .bind(&event.kind)
            .bind(&event.actor)
            .bind(Json(&event.subject))
            .bind(Json(&event.data))
            .bind(event.at)
            .bind(&self.origin)
            .fetch_one(&self.pool)
            .await;
            match result {
                Ok(0) => {}
                Ok(_) => return Ok(()),
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
                Err(e) => return Err(storage(e)),
            }
        }
        Err(Error::Storage(
            format!("repository {} could not be registered", task.repository).into(),
        ))
    }

    async fn modify_task(&self, id: Uuid, edit: TaskEdit) -> Result<Modified> {
        let mut tx = self.pool.begin().await.db()?;
        let current = lock_task(&mut tx, id).await?;
        let Some(TaskWrite {
            task,
            history,
            event,
        }) = edit(&current)?
        else {
            return Ok(Modified::Unchanged(current));
        };
        let result = sqlx::query(
            "UPDATE tasks SET title = $1, description = $2, status = $3, priority = $4, complexity = $5, \
             assignee_id = $6, updated_by = $7, updated_at = $8, version = $9 WHERE id = $10 AND version = $11",
        )
        .bind(&task.title)
        .bind(&task.description)
        .bind(task.status.as_str())
        .bind(task.priority.as_str())
        .bind(task.complexity.as_str())
        .bind(task.assignee_id)
        .bind(&task.updated_by)
        .bind(task.updated_at)
        .bind(task.version)
        .bind(task.id)
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
            Err(e) => return Err(storage(e)),
        }
        insert_history(&mut tx, task.id, &history).await?;
        insert_event(&mut tx, &self.origin, &event).await?;
        tx.commit().await.db()?;
        Ok(Modified::Updated(task))
    }

    async fn remove_task(&self, id: Uuid, edit: RemoveEdit) -> Result<Task> {
        let mut tx = self.pool.begin().await.db()?;
        let current = lock_task(&mut tx, id).await?;
        let (history, event) = edit(&current)?;
        sqlx::query("DELETE FROM tasks WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(current.version)
            .execute(&mut *tx)
            .await
            .db()?;
        insert_history(&mut tx, id, &history).await?;
        insert_event(&mut tx, &self.origin, &event).await?;
        tx.commit().await.db()?;
        Ok(current)
    }

    async fn insert_comment(&self, comment: &Comment, event: &NewEvent) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        let result = sqlx::query(
            "INSERT INTO task_comments (id, task_id, comment, author, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(comment.id)
        .bind(comment.task_id)
        .bind(&comment.comment)
        .bind(&comment.author)
        .bind(comment.created_at)
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
            Err(e) => return Err(storage(e)),
        }
        insert_event(&mut tx, &self.origin, event).await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn comments(&self, task_id: Uuid) -> Result<Vec<Comment>> {
        let rows =
            sqlx::query("SELECT * FROM task_comments WHERE task_id = $1 ORDER BY created_at, id")
                .bind(task_id)
                .fetch_all(&self.pool)
                .await
                .db()?;
        rows.iter()
            .map(|row| {
                Ok(Comment {
                    id: row.try_get("id").db()?,
                    task_id: row.try_get("task_id").db()?,
                    comment: row.try_get("comment").db()?,
                    author: row.try_get("author").db()?,
                    created_at: row.try_get("created_at").db()?,
                })
            })
            .collect()
    }

    async fn history(&self, task_id: Uuid) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query("SELECT * FROM task_history WHERE task_id = $1 ORDER BY id")
            .bind(task_id)
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    field: row.try_get("field").db()?,
                    old_value: row.try_get("old_value").db()?,
                    new_value: row.try_get("new_value").db()?,
                    actor: row.try_get("actor").db()?,
                    comment: row.try_get("comment").db()?,
                    at: row.try_get("at").db()?,
                })
            })
            .collect()
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE origin = $2 AND published_id IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(&self.origin)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|row| {
                let subject: Json<_> = row.try_get("subject").db()?;
                let data: Json<_> = row.try_get("data").db()?;
                let at: DateTime<Utc> = row.try_get("at").db()?;
                Ok(OutboxEvent {
                    seq: row.try_get("seq").db()?,
                    event: NewEvent {
                        topic: row.try_get("topic").db()?,
                        kind: row.try_get("type").db()?,
                        actor: row.try_get("actor").db()?,
                        subject: subject.0,
                        data: data.0,
                        at,
                    },
                })
            })
            .collect()
    }

    async fn adopt_orphans(&self, older_than: Duration) -> Result<u64> {
        let older_than = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now() - older_than;
        let done = sqlx::query(
            "UPDATE events SET origin = $1 WHERE published_id IS NULL AND origin <> $1 AND at < $2",
        )
        .bind(&self.origin)
        .bind(cutoff)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }

    async fn published_after(&self, cursor: EventId, limit: u32) -> Result<Vec<Event>> {
        let (ms, seq) = id_numbers(cursor)?;
        let rows = sqlx::query(
            "SELECT published_ms, published_seq, topic, type, actor, subject, data, at FROM events \
             WHERE published_ms IS NOT NULL AND (published_ms, published_seq) > ($1, $2) \
             ORDER BY published_ms, published_seq LIMIT $3",
        )
        .bind(ms)
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|row| {
                let ms: i64 = row.try_get("published_ms").db()?;
                let seq: i64 = row.try_get("published_seq").db()?;
                let subject: Json<_> = row.try_get("subject").db()?;
                let data: Json<_> = row.try_get("data").db()?;
                let id = EventId::new(
                    u64::try_from(ms).map_err(|_| corrupt("published_ms"))?,
                    u64::try_from(seq).map_err(|_| corrupt("published_seq"))?,
                );
                Ok(NewEvent {
                    topic: row.try_get("topic").db()?,
                    kind: row.try_get("type").db()?,
                    actor: row.try_get("actor").db()?,
                    subject: subject.0,
                    data: data.0,
                    at: row.try_get("at").db()?,
                }
                .into_event(id))
            })
            .collect()
    }

    async fn mark_published(&self, published: &[(i64, EventId)]) -> Result<()> {
        let mut seqs = Vec::with_capacity(published.len());
        let mut ids = Vec::with_capacity(published.len());
        let mut id_ms = Vec::with_capacity(published.len());
        let mut id_seqs = Vec::with_capacity(published.len());
        for (seq, id) in published {
            let (ms, id_seq) = id_numbers(*id)?;
            seqs.push(*seq);
            ids.push(id.to_string());
            id_ms.push(ms);
            id_seqs.push(id_seq);
        }
        // This commit does not wait for the WAL flush (`synchronous_commit` off for this
        // statement's own transaction only): a mark lost in a crash means the event is published
        // again, which at-least-once delivery allows, and the write path is spared an fsync per
        // flush. `set_config(.., true)` inside the statement is how a single-statement
        // transaction sets it without a BEGIN/SET LOCAL/COMMIT round trip each.
        sqlx::query(
            "UPDATE events SET published_id = p.id, published_ms = p.ms, published_seq = p.id_seq \
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) AS p(seq, id, ms, id_seq) \
             WHERE events.seq = p.seq AND set_config('synchronous_commit', 'off', true) = 'off'",
        )
        .bind(seqs)
        .bind(ids)
        .bind(id_ms)
        .bind(id_seqs)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }
}
