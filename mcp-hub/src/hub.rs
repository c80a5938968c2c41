//! `Hub`: the dashboard backend's rules in one place. A push is validated, stored as the latest
//! snapshot of its channel and repository, then announced on the event bus as
//! `<channel>_update`; readers list snapshots and subscribe to the announcements.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use mcp_core::{EventBus, EventFilter, EventId, NewEvent, Subscription};
use serde::Serialize;
use tokio_util::task::TaskTracker;

use crate::{
    Error, Result,
    snapshot::{NewSnapshot, Put, Snapshot, SnapshotQuery, SnapshotStore},
    validate,
};

/// The topic of every event the hub publishes.
pub const TOPIC: &str = "dashboard";

/// One push, as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub channel: String,
    pub repository: Option<String>,
    /// Defaults to the channel's name.
    pub title: Option<String>,
    pub data: serde_json::Value,
    pub idempotency_key: Option<String>,
}

/// What the hub answers a push with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    pub channel: String,
    pub repository: Option<String>,
    /// The event that announced it; `None` when the bus could not be reached (the snapshot is
    /// stored, and dashboards get it when they next connect).
    pub event_id: Option<EventId>,
    pub received_at: DateTime<Utc>,
    /// The push's key was seen before: nothing was stored again (it is announced now only if
    /// the first attempt never was).
    pub duplicate: bool,
    /// Whether dashboards were told.
    pub broadcast: bool,
}

/// The hub's service: snapshots and their announcements.
pub struct Hub {
    store: Arc<dyn SnapshotStore>,
    bus: Arc<dyn EventBus>,
    /// Held from storing a push to announcing it.
    writes: tokio::sync::Mutex<()>,
    max_snapshots: u64,
    /// Some snapshot was stored but not announced: the next push that reaches the bus
    /// announces it too.
    unannounced: AtomicBool,
    /// The pushes being stored and announced.
    pushes: TaskTracker,
    /// Bounds the pushes waiting for their turn (each holds its payload in memory).
    queue: Arc<tokio::sync::Semaphore>,
    stats: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    stored: AtomicU64,
    duplicates: AtomicU64,
    announce_failures: AtomicU64,
}

/// What a hub has done since it started, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Pushes stored as a new revision.
    pub stored: u64,
    /// Retried pushes answered with the first one's receipt.
    pub duplicates: u64,
    /// Announcements the bus refused or did not take in time.
    pub announce_failures: u64,
}

/// How many pushes may wait for their turn at once; more are refused as busy (503, which
/// sinks retry).
pub(crate) const MAX_QUEUED_PUSHES: usize = 64;

/// How long announcing one push may take before it counts as not announced.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How many snapshots (channel × repository) a hub keeps by default. Every dashboard that
/// connects is sent all it subscribes to, so this bounds what one connection costs.
pub const DEFAULT_MAX_SNAPSHOTS: u64 = 2_000;

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// The event type announcing a new snapshot of `channel`.
pub fn update_type(channel: &str) -> String {
    format!("{channel}_update")
}

impl Hub {
    pub fn new(store: Arc<dyn SnapshotStore>, bus: Arc<dyn EventBus>) -> Self {
        Self {
            store,
            bus,
            writes: tokio::sync::Mutex::new(()),
            max_snapshots: DEFAULT_MAX_SNAPSHOTS,
            unannounced: AtomicBool::new(false),
            pushes: TaskTracker::new(),
            queue: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_PUSHES)),
            stats: Counters::default(),
        }
    }

    /// The same hub keeping at most `limit` snapshots: a push to a new channel or repository
    /// beyond it is refused ([`Error::TooManySnapshots`]); existing ones still update.
    pub fn with_max_snapshots(mut self, limit: u64) -> Self {
        self.max_snapshots = limit;
        self
    }

    /// Validates, stores and announces a push made by `actor`.
    #[tracing::instrument(skip(self, push), fields(channel = %push.channel))]
    pub async fn sync(self: &Arc<Self>, push: Push, actor: &str) -> Result<Receipt> {
        validate::channel(&push.channel)?;
        if let Some(repository) = &push.repository {
            validate::repository(repository)?;
        }
        let title = push.title.unwrap_or_else(|| push.channel.clone());
        validate::title(&title)?;
        if let Some(key) = &push.idempotency_key {
            validate::idempotency_key(key)?;
        }
        validate::data(&push.channel, &push.data)?;
        // A key is one client's name for one push: scoped by who sent it and where, so another
        // writer (or another channel) reusing the same key is not mistaken for a retry.
        // Neither a channel nor a key can hold a newline, so the scoped form is unambiguous.
        let idempotency_key = push
            .idempotency_key
            .map(|key| format!("{actor}\n{}\n{key}", push.channel));
        let snapshot = NewSnapshot {
            channel: push.channel,
            repository: push.repository,
            title,
            data: push.data,
            actor: actor.to_owned(),
            idempotency_key,
        };
        // Stored and announced on a task of its own: a client that gives up waiting (and
        // cancels this request) must not leave a stored push unannounced.
        let Ok(permit) = self.queue.clone().try_acquire_owned() else {
            return Err(Error::Busy);
        };
        // Tracked, so a stopping server waits for the pushes it accepted.
        let hub = self.clone();
        self.pushes
            .spawn(async move {
                let _permit = permit;
                hub.store_and_announce(snapshot).await
            })
            .await
            .map_err(|e| Error::Transport(format!("the push was interrupted: {e}")))?
    }

    /// Waits (up to `limit`) for the pushes in progress to be stored and announced; used when
    /// the server stops, so none is left stored but unannounced.
    pub async fn finish_pushes(&self, limit: Duration) {
        self.pushes.close();
        if tokio::time::timeout(limit, self.pushes.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.pushes.len(),
                "stopping with pushes still in progress"
            );
        }
    }

    async fn store_and_announce(&self, snapshot: NewSnapshot) -> Result<Receipt> {
        // One push at a time, so revisions are announced in the order they were stored: two
        // concurrent pushes to one channel can never leave dashboards on the older one.
        let _turn = self.writes.lock().await;
        // Counted under the lock, so concurrent pushes cannot pass the limit together (within
        // this hub; hubs sharing a database may pass it by the pushes in flight). The tasks
        // board is the operator's own channel and is never refused.
        if snapshot.channel != crate::TASKS_CHANNEL
            && self.store.count().await? >= self.max_snapshots
            && self
                .store
                .get(&snapshot.channel, snapshot.repository.as_deref())
                .await?
                .is_none()
        {
            return Err(Error::TooManySnapshots {
                limit: self.max_snapshots,
            });
        }
        let put = self.store.put(snapshot).await?;
        let counter = match put {
            Put::Stored(_) => &self.stats.stored,
            Put::Duplicate { .. } => &self.stats.duplicates,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = match put {
            Put::Stored(snapshot) => {
                let event_id = self.announce(&snapshot).await;
                receipt(snapshot, event_id, false)
            }
            Put::Duplicate { current, revision } if current.revision == revision => {
                // The first attempt was stored but not announced (the bus was down, or the
                // hub stopped in between): the retry announces it.
                let event_id = match current.event_id {
                    Some(id) => Some(id),
                    None => self.announce(&current).await,
                };
                receipt(current, event_id, true)
            }
            // A newer push replaced it since; that one was (or will be) announced.
            Put::Duplicate { current, .. } => receipt(current, None, true),
        };
        if outcome.broadcast && self.unannounced.swap(false, Ordering::AcqRel) {
            self.announce_missed().await;
        }
        Ok(outcome)
    }

    /// Announces the snapshots stored while the bus could not be reached, now that it can
    /// (pages that stayed connected would otherwise never see them).
    async fn announce_missed(&self) {
        let snapshots = match self.store.list(&SnapshotQuery::default()).await {
            Ok(snapshots) => snapshots,
            Err(error) => {
                tracing::warn!(%error, "cannot list the snapshots left unannounced");
                self.unannounced.store(true, Ordering::Release);
                return;
            }
        };
        for snapshot in snapshots.iter().filter(|s| s.event_id.is_none()) {
            if self.announce(snapshot).await.is_none() {
                return;
            }
        }
    }

    /// Publishes `snapshot`'s announcement and records its id; `None` when the bus refused it
    /// (the snapshot stays stored, and dashboards get it when they next connect).
    async fn announce(&self, snapshot: &Snapshot) -> Option<EventId> {
        // Bounded: every push waits on this one (see `writes`).
        let published =
            tokio::time::timeout(PUBLISH_TIMEOUT, self.bus.publish(announcement(snapshot)))
                .await
                .unwrap_or_else(|_| {
                    Err(mcp_core::BusError::Unavailable(
                        "publishing timed out".into(),
                    ))
                });
        match published {
            Ok(event) => {
                // Without its event id a dashboard that resumes after this event is sent the
                // full state instead: correct, only larger.
                if let Err(error) = self
                    .store
                    .set_event_id(
                        &snapshot.channel,
                        snapshot.repository.as_deref(),
                        snapshot.revision,
                        event.id,
                    )
                    .await
                {
                    tracing::warn!(%error, "cannot record the event id of a snapshot");
                }
                Some(event.id)
            }
            Err(error) => {
                tracing::warn!(%error, "stored a push but could not announce it");
                self.unannounced.store(true, Ordering::Release);
                self.stats.announce_failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub async fn snapshot(
        &self,
        channel: &str,
        repository: Option<&str>,
    ) -> Result<Option<Snapshot>> {
        validate::channel(channel)?;
        if let Some(repository) = repository {
            validate::repository(repository)?;
        }
        self.store.get(channel, repository).await
    }

    pub async fn snapshots(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>> {
        for channel in &query.channels {
            validate::channel(channel)?;
        }
        if let Some(repository) = &query.repository {
            validate::repository(repository)?;
        }
        self.store.list(query).await
    }

    /// Subscribes to the announcements of the snapshots `query` matches, after `after`.
    pub async fn subscribe(
        &self,
        query: &SnapshotQuery,
        after: Option<EventId>,
    ) -> Result<Subscription> {
        Ok(self.bus.subscribe(filter(query), after).await?)
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            stored: self.stats.stored.load(Ordering::Relaxed),
            duplicates: self.stats.duplicates.load(Ordering::Relaxed),
            announce_failures: self.stats.announce_failures.load(Ordering::Relaxed),
        }
    }

    /// How many snapshots the store holds.
    pub async fn snapshot_count(&self) -> Result<u64> {
        self.store.count().await
    }

    pub async fn ready(&self) -> Result<()> {
        self.store.ping().await
    }
}

/// The bus filter for the announcements of the snapshots `query` matches.
fn filter(query: &SnapshotQuery) -> EventFilter {
    let mut filter = EventFilter::all().topic(TOPIC);
    if !query.channels.is_empty() {
        filter = filter.types(query.channels.iter().map(|c| update_type(c)));
    }
    if let Some(repository) = &query.repository {
        filter = filter.subject("repository", [crate::snapshot::repo_key(Some(repository))]);
    }
    filter
}

/// The event announcing `snapshot`: the envelope's data is the snapshot itself, so a dashboard
/// needs nothing else to draw it.
pub(crate) fn announcement(snapshot: &Snapshot) -> NewEvent {
    NewEvent::new(TOPIC, update_type(&snapshot.channel), &snapshot.actor)
        .with_subject("channel", &snapshot.channel)
        .with_subject(
            "repository",
            crate::snapshot::repo_key(snapshot.repository.as_deref()),
        )
        .with_at(snapshot.updated_at)
        .with_data(serde_json::to_value(snapshot).unwrap_or_default())
}

/// The receipt for `snapshot`, announced as `event_id` (when it was).
fn receipt(snapshot: Snapshot, event_id: Option<EventId>, duplicate: bool) -> Receipt {
    Receipt {
        channel: snapshot.channel,
        repository: snapshot.repository,
        event_id,
        received_at: snapshot.updated_at,
        duplicate,
        broadcast: event_id.is_some(),
    }
}
