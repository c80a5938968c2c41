//! `TaskService`: the one place task rules live. It validates input, resolves users and
//! repositories, enforces versions, records history with the actor, writes each change with its
//! outbox event in one transaction, and publishes committed events to the bus.

mod validate;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mcp_core::{EventBus, NewEvent};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Comment, Complexity, Error, HistoryEntry, Priority, Repository, Result, Status, Task,
    TaskDetail, User,
    domain::now,
    store::{Cursor, Modified, StatusFilter, TaskPage, TaskQuery, TaskStore, TaskWrite},
};

/// How long an unpublished outbox row of another instance waits before this one takes it over.
const ORPHAN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Outbox rows published per store read.
const OUTBOX_BATCH: u32 = 256;

/// The topic every task event is published on.
pub const TOPIC: &str = "tasks";

/// A task to create. Users may be named by id, email or GitHub username.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub assignee: String,
    /// `owner/name`; registered with the task if it is new.
    pub repository: String,
    pub priority: Option<Priority>,
    pub complexity: Option<Complexity>,
}

/// The editable fields of a task; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub complexity: Option<Complexity>,
    /// A user's id, email or GitHub username.
    pub assignee: Option<String>,
}

/// A user to register.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub github_username: Option<String>,
}

/// Filters of a task listing; users by id, email or GitHub username.
#[derive(Debug, Clone, Default)]
pub struct ListTasks {
    pub assignee: Option<String>,
    pub repository: Option<String>,
    pub status: Option<StatusFilter>,
    pub text: Option<String>,
    pub limit: Option<u32>,
    /// The opaque `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of tasks, most recently updated first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct Change {
    field: &'static str,
    old_value: String,
    new_value: String,
}

/// Task operations for agents (MCP), editors (REST) and embedding programs alike.
pub struct TaskService {
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn EventBus>,
    /// Serialises outbox publishing so events reach the bus in commit order.
    relay: tokio::sync::Mutex<()>,
    /// Set when the bus refused an event: writes then leave publishing to the relay loop
    /// instead of each waiting on a bus that is down; the loop clears it when the bus is back.
    bus_failing: std::sync::atomic::AtomicBool,
    /// How many [`TaskService::relay_until`] loops run; writes wake one through `relay_wanted`.
    relay_running: std::sync::atomic::AtomicUsize,
    relay_wanted: tokio::sync::Notify,
    /// Set by a write whose events are waiting; cleared by the flush that takes them.
    flush_wanted: std::sync::atomic::AtomicBool,
    /// Events this service moved from the outbox to the bus.
    published: std::sync::atomic::AtomicU64,
    /// When a write last tried to publish (ms since the epoch), to pace retries while the bus
    /// is failing.
    last_attempt_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService").finish_non_exhaustive()
    }
}

impl TaskService {
    pub fn new(store: Arc<dyn TaskStore>, bus: Arc<dyn EventBus>) -> Self {
        Self {
            store,
            bus,
            relay: tokio::sync::Mutex::new(()),
            bus_failing: std::sync::atomic::AtomicBool::new(false),
            flush_wanted: std::sync::atomic::AtomicBool::new(false),
            relay_running: std::sync::atomic::AtomicUsize::new(0),
            relay_wanted: tokio::sync::Notify::new(),
            published: std::sync::atomic::AtomicU64::new(0),
            last_attempt_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Published events after `cursor`, in id order, from the store (which remembers further
    /// back than a bus): `None` when more than `limit` would have to be replayed.
    pub async fn events_after(
        &self,
        cursor: mcp_core::EventId,
        limit: u32,
    ) -> Result<Option<Vec<mcp_core::Event>>> {
        let events = self
            .store
            .published_after(cursor, limit.saturating_add(1))
            .await?;
        Ok((events.len() <= limit as usize).then_some(events))
    }

    /// How many events this service has moved from the outbox to the bus.
    pub fn events_published(&self) -> u64 {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the bus refused the last events it was offered (they wait in the outbox).
    pub fn bus_failing(&self) -> bool {
        self.bus_failing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bus this service publishes on, for subscribing to task events.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// Registers a user. Emails are kept lower-case; email and GitHub username are unique.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn add_user(&self, input: NewUser) -> Result<User> {
        let user = User {
            id: Uuid::now_v7(),
            email: validate::email(&input.email)?,
            name: validate::optional_text("name", input.name.as_deref(), 255)?,
            github_username: input
                .github_username
                .as_deref()
                .map(validate::github_username)
                .transpose()?,
            created_at: now(),
        };
        self.store.insert_user(&user).await?;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.store.list_users().await
    }

    pub async fn list_repositories(&self) -> Result<Vec<Repository>> {
        self.store.list_repositories().await
    }

    /// A user by id, email or GitHub username; an unknown one is an error naming close matches.
    pub async fn resolve_user(&self, key: &str) -> Result<User> {
        let key = key.trim();
        if key.is_empty() || key.chars().count() > validate::MAX_USER_KEY {
            return Err(Error::Invalid {
                field: "user",
                message: format!(
                    "give a user's id, email or GitHub username (at most {} characters)",
                    validate::MAX_USER_KEY
                ),
            });
        }
        if let Some(user) = self.store.find_user(key).await? {
            return Ok(user);
        }
        let users = self.store.list_users().await?;
        let candidates = users.iter().flat_map(|u| {
            [Some(u.email.as_str()), u.github_username.as_deref()]
                .into_iter()
                .flatten()
                .map(move |name| (name, u.email.as_str()))
        });
        Err(Error::UnknownUser {
            given: key.chars().take(100).collect(),
            suggestions: validate::close_matches(key, candidates),
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(repository = %input.repository, actor = %actor))]
    pub async fn create_task(&self, input: NewTask, actor: &str) -> Result<Task> {
        let actor = validate::actor(actor)?;
        let title = validate::title(&input.title)?;
        let description = validate::description(&input.description)?;
        let repository_name = validate::repository(&input.repository)?;
        let assignee = self.resolve_user(&input.assignee).await?;
        // An existing repository keeps the spelling it was registered with.
        let repository = match self.store.find_repository(&repository_name).await? {
            Some(existing) => existing.name,
            None => repository_name,
        };
        let at = now();
        let task = Task {
            id: Uuid::now_v7(),
            title,
            description,
            status: Status::NotStarted,
            priority: input.priority.unwrap_or(Priority::Medium),
            complexity: input.complexity.unwrap_or(Complexity::Medium),
            assignee_id: assignee.id,
            assignee: assignee.email,
            repository,
            created_by: actor.clone(),
            updated_by: actor.clone(),
            created_at: at,
            updated_at: at,
            version: 1,
        };
        let history = [HistoryEntry {
            field: "created".into(),
            old_value: None,
            new_value: Some(task.title.clone()),
            actor: actor.clone(),
            comment: None,
            at,
        }];
        let event = task_event("task_created", &actor, &task, at, json!({ "task": task }));
        self.store.insert_task(&task, &history, &event).await?;
        self.publish_pending().await;
        Ok(task)
    }

    pub async fn get_task(&self, id: &str) -> Result<Task> {
        let id = validate::task_id(id)?;
        self.store
            .get_task(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "task",
                id: id.to_string(),
            })
    }

    /// A task with its comments and history.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn get_task_detail(&self, id: &str) -> Result<TaskDetail> {
        let task = self.get_task(id).await?;
        let (comments, history) =
            tokio::try_join!(self.store.comments(task.id), self.store.history(task.id))?;
        Ok(TaskDetail {
            task,
            comments,
            history,
        })
    }

    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_tasks(&self, input: ListTasks) -> Result<TaskList> {
        let limit = match input.limit {
            None => TaskQuery::DEFAULT_LIMIT,
            Some(limit) if (1..=TaskQuery::MAX_LIMIT).contains(&limit) => limit,
            Some(limit) => {
                return Err(Error::Invalid {
                    field: "limit",
                    message: format!("{limit} is not between 1 and {}", TaskQuery::MAX_LIMIT),
                });
            }
        };
        let assignee_id = match input.assignee.as_deref() {
            Some(key) => Some(self.resolve_user(key).await?.id),
            None => None,
        };
        let repository_id = match input.repository.as_deref() {
            Some(name) => Some(self.resolve_repository(name).await?),
            None => None,
        };
        let text = validate::optional_text("query", input.text.as_deref(), 200)?;
        let after = input.cursor.as_deref().map(Cursor::decode).transpose()?;
        let TaskPage { tasks, next_cursor } = self
            .store
            .list_tasks(&TaskQuery {
                assignee_id,
                repository_id,
                status: input.status,
                text,
                limit,
                after,
            })
            .await?;
        Ok(TaskList {
            tasks,
            next_cursor: next_cursor.map(|c| c.encode()),
        })
    }

    /// A repository name as registered (`owner/name` checked; the registered spelling when the
    /// repository exists, the given one otherwise).
    pub async fn canonical_repository(&self, name: &str) -> Result<String> {
        let name = validate::repository(name)?;
        Ok(match self.store.find_repository(&name).await? {
            Some(repository) => repository.name,
            None => name,
        })
    }

    async fn resolve_repository(&self, name: &str) -> Result<Uuid> {
        let name = validate::repository(name)?;
        let name = name.as_str();
        if let Some(repository) = self.store.find_repository(name).await? {
            return Ok(repository.id);
        }
        let repositories = self.store.list_repositories().await?;
        Err(Error::UnknownRepository {
            given: name.chars().take(100).collect(),
            suggestions: validate::close_matches(
                name,
                repositories
                    .iter()
                    .map(|r| (r.name.as_str(), r.name.as_str())),
            ),
        })
    }

    /// Changes the fields `patch` sets, recording `comment` with each change. With
    /// `expected_version`, a task whose version differs is left alone and [`Error::Conflict`]
    /// names the current version; without it the patch applies to the current task. A patch
    /// that changes nothing is [`Modified::Unchanged`]: no event, no new version, and a
    /// `comment` is kept as a comment on the task.
    #[tracing::instrument(level = "debug", skip(self, patch, comment))]
    pub async fn update_task(
        &self,
        id: &str,
        patch: TaskPatch,
        actor: &str,
        expected_version: Option<i64>,
        comment: Option<&str>,
    ) -> Result<Modified> {
        let id = validate::task_id(id)?;
        let actor = validate::actor(actor)?;
        let comment = validate::optional_text("comment", comment, validate::MAX_COMMENT)?;
        let title = patch.title.as_deref().map(validate::title).transpose()?;
        let description = patch
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?;
        let assignee = match patch.assignee.as_deref() {
            Some(key) => Some(self.resolve_user(key).await?),
            None => None,
        };

        let comment_if_unchanged = comment.clone();
        let actor_if_unchanged = actor.clone();
        let edit = move |current: &Task| -> Result<Option<TaskWrite>> {
            if let Some(expected) = expected_version
                && expected != current.version
            {
                return Err(Error::Conflict {
                    task_id: current.id.to_string(),
                    expected,
                    current: current.version,
                });
            }
            let mut next = current.clone();
            if let Some(title) = title {
                next.title = title;
            }
            if let Some(description) = description {
                next.description = description;
            }
            next.status = patch.status.unwrap_or(current.status);
            next.priority = patch.priority.unwrap_or(current.priority);
            next.complexity = patch.complexity.unwrap_or(current.complexity);
            if let Some(user) = assignee {
                next.assignee_id = user.id;
                next.assignee = user.email;
            }
            let changes = diff(current, &next);
            if changes.is_empty() {
                return Ok(None);
            }
            let at = now();
            next.updated_by.clone_from(&actor);
            // Keep updated_at monotonic per task even if the clock steps back.
            next.updated_at = at.max(current.updated_at);
            next.version = current.version + 1;
            let history = changes
                .iter()
                .map(|c| HistoryEntry {
                    field: c.field.to_owned(),
                    old_value: Some(c.old_value.clone()),
                    new_value: Some(c.new_value.clone()),
                    actor: actor.clone(),
                    comment: comment.clone(),
                    at,
                })
                .collect();
            let kind = if next.status == Status::Completed && current.status != Status::Completed {
                "task_completed"
            } else if next.assignee_id != current.assignee_id {
                "task_assigned"
            } else {
                "task_updated"
            };
            let mut data = json!({ "task": next, "changes": changes });
            if let Some(comment) = &comment {
                data["comment"] = json!(comment);
            }
            let event = task_event(kind, &actor, &next, at, data);
            Ok(Some(TaskWrite {
                task: next,
                history,
                event,
            }))
        };
        let modified = self.store.modify_task(id, Box::new(edit)).await?;
        match &modified {
            // Nothing to change, but the reason given is not thrown away.
            Modified::Unchanged(task) => {
                if let Some(comment) = comment_if_unchanged {
                    self.add_comment(&task.id.to_string(), &comment, &actor_if_unchanged)
                        .await?;
                }
            }
            Modified::Updated(_) => self.publish_pending().await,
        }
        Ok(modified)
    }

    /// Moves a task to `status`, recording `comment` with the change.
    pub async fn update_status(
        &self,
        id: &str,
        status: Status,
        actor: &str,
        comment: Option<&str>,
    ) -> Result<Modified> {
        let patch = TaskPatch {
            status: Some(status),
            ..TaskPatch::default()
        };
        self.update_task(id, patch, actor, None, comment).await
    }

    #[tracing::instrument(level = "debug", skip(self, text))]
    pub async fn add_comment(&self, id: &str, text: &str, author: &str) -> Result<Comment> {
        let task = self.get_task(id).await?;
        let author = validate::actor(author)?;
        let text = validate::comment(text)?;
        let at = now();
        let comment = Comment {
            id: Uuid::now_v7(),
            task_id: task.id,
            comment: text,
            author: author.clone(),
            created_at: at,
        };
        let event = task_event(
            "task_commented",
            &author,
            &task,
            at,
            json!({ "comment": comment }),
        );
        self.store.insert_comment(&comment, &event).await?;
        self.publish_pending().await;
        Ok(comment)
    }

    /// Deletes a task and its comments; its history is kept. With `expected_version`, a task
    /// whose version differs is left alone and [`Error::Conflict`] names the current version.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_task(
        &self,
        id: &str,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<Task> {
        let id = validate::task_id(id)?;
        let actor = validate::actor(actor)?;
        let edit = move |task: &Task| {
            if let Some(expected) = expected_version
                && expected != task.version
            {
                return Err(Error::Conflict {
                    task_id: task.id.to_string(),
                    expected,
                    current: task.version,
                });
            }
            let at = now();
            let history = vec![HistoryEntry {
                field: "deleted".into(),
                old_value: Some(task.title.clone()),
                new_value: None,
                actor: actor.clone(),
                comment: None,
                at,
            }];
            let event = task_event("task_deleted", &actor, task, at, json!({ "task": task }));
            Ok((history, event))
        };
        let task = self.store.remove_task(id, Box::new(edit)).await?;
        self.publish_pending().await;
        Ok(task)
    }

    /// Publishes committed events that have not reached the bus yet, oldest first, and returns
    /// how many went out. Rows stay in the outbox when the bus fails and go out on the next
    /// call, so a bus outage delays events but loses none.
    pub async fn flush_outbox(&self) -> Result<usize> {
        let _order = self.relay.lock().await;
        let mut published = 0;
        // A write that committed while this flush ran found the lock taken and left its rows
        // to this flush: keep going until no such write is left.
        loop {
            self.flush_wanted
                .store(false, std::sync::atomic::Ordering::SeqCst);
            published += self.flush_locked().await?;
            if !self.flush_wanted.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(published);
            }
        }
    }

    /// One pass over the outbox; the caller holds `relay`.
    async fn flush_locked(&self) -> Result<usize> {
        let mut published = 0;
        loop {
            let batch = self.store.pending_events(OUTBOX_BATCH).await?;
            let full = batch.len() == OUTBOX_BATCH as usize;
            if batch.is_empty() {
                return Ok(published);
            }
            let mut marks = Vec::with_capacity(batch.len());
            let mut failure = None;
            for row in batch {
                match self.bus.publish(row.event).await {
                    Ok(event) => marks.push((row.seq, event.id)),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            // Record what did go out before reporting a failure, so it is not sent twice.
            self.store.mark_published(&marks).await?;
            published += marks.len();
            self.published
                .fetch_add(marks.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.bus_failing
                .store(failure.is_some(), std::sync::atomic::Ordering::Relaxed);
            if let Some(error) = failure {
                return Err(error.into());
            }
            if !full {
                return Ok(published);
            }
        }
    }

    /// Keeps the outbox moving: every `interval`, publishes what earlier flushes could not
    /// (the bus was down), until `shutdown` completes; then flushes one last time.
    pub async fn relay_until(
        &self,
        interval: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // While this loop runs, writes hand their events to it instead of publishing them on
        // the request's time.
        let running = RelayRunning::start(&self.relay_running);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = self.relay_wanted.notified() => {
                    // A bus that is down is retried on the tick, not on every write.
                    if !self.bus_failing.load(std::sync::atomic::Ordering::Relaxed)
                        && let Err(error) = self.flush_outbox().await
                    {
                        tracing::warn!(%error, "events not published yet");
                    }
                    continue;
                }
                _ = ticks.tick() => {}
            }
            // Rows left behind by an instance that died (or cannot reach the bus) for a minute
            // are taken over, so a restart during a bus outage loses nothing.
            match self.store.adopt_orphans(ORPHAN_AFTER).await {
                Ok(0) => {}
                Ok(adopted) => tracing::info!(
                    adopted,
                    "took over events another instance left unpublished"
                ),
                Err(error) => tracing::debug!(%error, "cannot look for orphaned events"),
            }
            match self.flush_outbox().await {
                Ok(0) => {}
                Ok(published) => tracing::info!(published, "published events that were waiting"),
                Err(error) => tracing::debug!(%error, "events still waiting for the bus"),
            }
        }
        // Writes still finishing publish for themselves from here on.
        drop(running);
        if let Err(error) = self.flush_outbox().await {
            tracing::warn!(%error, "events left unpublished in the outbox at shutdown");
        }
    }

    async fn publish_pending(&self) {
        // While the bus is refusing events, a write tries it at most once a second (the relay
        // loop, when running, retries too): writes need not each wait on a bus that is down,
        // and an embedder that runs no relay loop still recovers by itself.
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        if self.bus_failing.load(std::sync::atomic::Ordering::Relaxed)
            && now_ms.saturating_sub(
                self.last_attempt_ms
                    .load(std::sync::atomic::Ordering::Relaxed),
            ) < 1_000
        {
            return;
        }
        if self.relay_running.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.relay_wanted.notify_one();
            return;
        }
        self.last_attempt_ms
            .store(now_ms, std::sync::atomic::Ordering::Relaxed);
        // Without a relay loop, the write publishes. Writes coalesce: when another flush holds the relay, this write's rows are left to
        // it (it loops while `flush_wanted` is set) and the write returns at once, so
        // concurrent writes do not queue behind each other's publishing.
        self.flush_wanted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        loop {
            let Ok(order) = self.relay.try_lock() else {
                return;
            };
            while self
                .flush_wanted
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                if let Err(error) = self.flush_locked().await {
                    // The change is committed; its event waits in the outbox for the relay.
                    tracing::warn!(%error, "events not published yet");
                    return;
                }
            }
            drop(order);
            // A write may have set the flag after the last check but before the unlock, and
            // found the lock still taken: pick its rows up.
            if !self.flush_wanted.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// Counts a running relay loop for as long as it lives.
struct RelayRunning<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> RelayRunning<'a> {
    fn start(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for RelayRunning<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn task_event(
    kind: &str,
    actor: &str,
    task: &Task,
    at: DateTime<Utc>,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent::new(TOPIC, kind, actor)
        .with_at(at)
        .with_subject("task_id", task.id.to_string())
        .with_subject("assignee", task.assignee_id.to_string())
        .with_subject("repository", task.repository.clone())
        .with_data(data)
}

fn diff(old: &Task, new: &Task) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut field = |field: &'static str, old: &str, new: &str| {
        if old != new {
            changes.push(Change {
                field,
                old_value: old.to_owned(),
                new_value: new.to_owned(),
            });
        }
    };
    field("title", &old.title, &new.title);
    field("description", &old.description, &new.description);
    field("status", old.status.as_str(), new.status.as_str());
    field("priority", old.priority.as_str(), new.priority.as_str());
    field(
        "complexity",
        old.complexity.as_str(),
        new.complexity.as_str(),
    );
    field("assignee", &old.assignee, &new.assignee);
    changes
}
