//! The tasks board's feed: when the hub is told where a task service is, it follows that
//! service's event stream (`GET /api/tasks/stream`) and, after each burst of task events, reads
//! the current tasks (`GET /api/tasks`) and publishes them as the `tasks` channel's snapshot.
//! The board thus shows what the task service holds, live, without the page talking to a second
//! server. A lost connection is retried with capped backoff; while it is down, the board keeps
//! the last snapshot.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Push};

/// The channel the board reads.
pub const TASKS_CHANNEL: &str = "tasks";
/// The actor recorded for the feed's snapshots.
const ACTOR: &str = "feed:tasks";
/// Events that arrive together are answered with one read.
const DEBOUNCE: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The task service's largest page.
const PAGE: u32 = 200;
/// A connection that lasted this long was healthy.
const STEADY: Duration = Duration::from_secs(30);
/// How long one list read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest line the event stream may send (task events are a few KB).
const MAX_LINE: usize = 1024 * 1024;

/// Where the board's tasks come from.
#[derive(Clone)]
pub struct TasksFeedConfig {
    /// The task service's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// A `read` key of the task service, when it requires one.
    pub api_key: Option<String>,
    /// How many of the most recently changed tasks the board shows.
    pub limit: usize,
}

impl std::fmt::Debug for TasksFeedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TasksFeedConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("limit", &self.limit)
            .finish()
    }
}

impl TasksFeedConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            limit: 500,
        }
    }
}

/// Follows the task service until `shutdown` is cancelled.
pub async fn run_tasks_feed(hub: Arc<Hub>, config: TasksFeedConfig, shutdown: CancellationToken) {
    // No overall timeout: the event stream stays open. Each list read has its own.
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the tasks feed's HTTP client; no tasks board");
            return;
        }
    };
    let feed = Feed {
        hub,
        client,
        config,
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = feed.follow() => outcome,
        };
        // Followed for a while before it ended: start again quickly. A stream that ends at
        // once keeps backing off, so a misbehaving service is not read in a tight loop.
        if started.elapsed() > STEADY {
            backoff = Duration::from_millis(500);
        }
        match outcome {
            Ok(()) => {
                tracing::info!(url = %feed.config.url, retry_in = ?backoff, "task stream ended")
            }
            Err(error) => {
                tracing::warn!(url = %feed.config.url, %error, retry_in = ?backoff, "tasks feed interrupted");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct Feed {
    hub: Arc<Hub>,
    client: reqwest::Client,
    config: TasksFeedConfig,
}

#[derive(Debug, Deserialize)]
struct TaskPage {
    tasks: Vec<Value>,
    next_cursor: Option<String>,
}

impl Feed {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(format!("{}{path}", self.config.url));
        match &self.config.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// One connection to the event stream: the board is read once connected (so nothing
    /// changed in between is missed) and again after every burst of events. Returns when the
    /// stream ends; an error when it cannot be opened or read.
    async fn follow(&self) -> Result<(), String> {
        let mut stream = self
            .get("/api/tasks/stream")
            .send()
            .await
            .map_err(|e| format!("cannot reach the task service: {e}"))?;
        if !stream.status().is_success() {
            return Err(format!(
                "the task service answered {} on its stream",
                stream.status()
            ));
        }
        self.refresh().await?;
        tracing::info!(url = %self.config.url, "following the task service for the tasks board");
        let mut pending: Option<tokio::time::Instant> = None;
        let mut partial = String::new();
        loop {
            let wake = async {
                match pending {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wake => {
                    pending = None;
                    self.refresh().await?;
                }
                chunk = stream.chunk() => {
                    let Some(chunk) = chunk.map_err(|e| format!("reading the task stream: {e}"))? else {
                        return Ok(());
                    };
                    partial.push_str(&String::from_utf8_lossy(&chunk));
                    // Only whole lines count; the rest waits for the next chunk.
                    let complete = partial.rfind('\n').map_or(0, |at| at + 1);
                    let lines: String = partial.drain(..complete).collect();
                    if partial.len() > MAX_LINE {
                        return Err("the task stream sent a line longer than 1 MiB".into());
                    }
                    if lines.lines().any(|line| line.starts_with("event:")) && pending.is_none() {
                        pending = Some(tokio::time::Instant::now() + DEBOUNCE);
                    }
                }
            }
        }
    }

    /// Reads the most recently changed tasks and publishes them as the board's snapshot.
    async fn refresh(&self) -> Result<(), String> {
        let mut tasks = Vec::new();
        let mut cursor: Option<String> = None;
        while tasks.len() < self.config.limit {
            let mut path = format!("/api/tasks?limit={PAGE}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let response = self
                .get(&path)
                .timeout(READ_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("reading tasks: {e}"))?;
            if !response.status().is_success() {
                return Err(format!(
                    "the task service answered {} to a list",
                    response.status()
                ));
            }
            let page: TaskPage = response
                .json()
                .await
                .map_err(|e| format!("reading tasks: {e}"))?;
            tasks.extend(page.tasks.into_iter().map(card));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tasks.truncate(self.config.limit);
        let push = Push {
            channel: TASKS_CHANNEL.into(),
            repository: None,
            title: Some("Tasks".into()),
            data: json!({ "tasks": tasks, "source": self.config.url }),
            idempotency_key: None,
        };
        self.hub
            .sync(push, ACTOR)
            .await
            .map(|_| ())
            .map_err(|e| format!("publishing the tasks board: {e}"))
    }
}

/// What a board card needs of a task.
fn card(task: Value) -> Value {
    let field = |name: &str| task.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "id": field("id"),
        "title": field("title"),
        "status": field("status"),
        "priority": field("priority"),
        "assignee": field("assignee"),
        "repository": field("repository"),
        "updated_at": field("updated_at"),
        "version": field("version"),
    })
}
