//! `Hub`: the dashboard backend's rules in one place. A push is validated, stored as the latest
//! snapshot of its channel and repository, then announced on the event bus as
//! `<channel>_update`; readers list snapshots and subscribe to the announcements.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mcp_core::{EventBus, EventFilter, EventId, NewEvent, Subscription};
use serde::Serialize;

use crate::{
    Result,
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
    /// The push's key was seen before: nothing was stored or announced again.
    pub duplicate: bool,
    /// Whether dashboards were told.
    pub broadcast: bool,
}

/// The hub's service: snapshots and their announcements.
pub struct Hub {
    store: Arc<dyn SnapshotStore>,
    bus: Arc<dyn EventBus>,
}

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
        Self { store, bus }
    }

    /// Validates, stores and announces a push made by `actor`.
    #[tracing::instrument(skip(self, push), fields(channel = %push.channel))]
    pub async fn sync(&self, push: Push, actor: &str) -> Result<Receipt> {
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
        let put = self
            .store
            .put(NewSnapshot {
                channel: push.channel,
                repository: push.repository,
                title,
                data: push.data,
                actor: actor.to_owned(),
                idempotency_key: push.idempotency_key,
            })
            .await?;
        let snapshot = match put {
            Put::Duplicate { current, revision } => {
                return Ok(Receipt {
                    event_id: current.event_id.filter(|_| current.revision == revision),
                    received_at: current.updated_at,
                    channel: current.channel,
                    repository: current.repository,
                    duplicate: true,
                    broadcast: false,
                });
            }
            Put::Stored(snapshot) => snapshot,
        };
        let event_id = match self.bus.publish(announcement(&snapshot)).await {
            Ok(event) => {
                // The snapshot is stored either way; without its event id a dashboard that
                // resumes from exactly this event is sent the full state instead.
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
                None
            }
        };
        Ok(Receipt {
            channel: snapshot.channel,
            repository: snapshot.repository,
            event_id,
            received_at: snapshot.updated_at,
            duplicate: false,
            broadcast: event_id.is_some(),
        })
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
fn announcement(snapshot: &Snapshot) -> NewEvent {
    NewEvent::new(TOPIC, update_type(&snapshot.channel), &snapshot.actor)
        .with_subject("channel", &snapshot.channel)
        .with_subject(
            "repository",
            crate::snapshot::repo_key(snapshot.repository.as_deref()),
        )
        .with_at(snapshot.updated_at)
        .with_data(serde_json::to_value(snapshot).unwrap_or_default())
}
