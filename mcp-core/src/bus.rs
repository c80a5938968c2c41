//! The `EventBus` seam: publish an event, subscribe with a filter and an optional resume cursor.

pub(crate) mod memory;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{Event, EventId, NewEvent};

/// Errors of a bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus cannot be reached now (e.g. Redis is down); the caller may retry later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// Carries events from producers to subscribers.
///
/// Ids are chosen by the bus at publish time and are strictly increasing, so a subscriber can
/// resume after the last id it saw.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Gives the event its id and delivers it to every matching subscriber.
    async fn publish(&self, event: NewEvent) -> Result<Arc<Event>, BusError>;

    /// Subscribes to the events that match `filter`. With `after`, the events after that id that
    /// the bus still holds are delivered first; when the bus no longer holds all of them the
    /// first delivery is [`Delivery::Resync`].
    async fn subscribe(
        &self,
        filter: EventFilter,
        after: Option<EventId>,
    ) -> Result<Subscription, BusError>;
}

/// Which events a subscriber wants. An empty list or map matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    topics: Vec<String>,
    types: Vec<String>,
    subject: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// A filter that matches every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of this topic (may be called again to allow several).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Only events of these types.
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Only events whose subject field `key` is one of `values`.
    pub fn subject<I, S>(mut self, key: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subject
            .entry(key.into())
            .or_default()
            .extend(values.into_iter().map(Into::into));
        self
    }

    pub fn matches(&self, event: &Event) -> bool {
        let allowed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        allowed(&self.topics, &event.topic)
            && allowed(&self.types, &event.kind)
            && self.subject.iter().all(|(key, values)| {
                event
                    .subject
                    .get(key)
                    .is_some_and(|value| values.iter().any(|v| v == value))
            })
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Delivery {
    Event(Arc<Event>),
    /// Events were missed (the resume cursor is older than what the bus holds, or the
    /// subscriber fell too far behind): reload the current state, then go on.
    Resync,
}

/// A live subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Delivery>,
    overflowed: Arc<AtomicBool>,
    resync_reported: bool,
}

impl Subscription {
    pub(crate) fn new(rx: mpsc::Receiver<Delivery>, overflowed: Arc<AtomicBool>) -> Self {
        Self {
            rx,
            overflowed,
            resync_reported: false,
        }
    }

    /// The next delivery, or `None` once the bus has closed this subscription. A subscriber
    /// that could not keep up receives what was queued, then one [`Delivery::Resync`], then
    /// `None`: it should reload and subscribe again.
    pub async fn recv(&mut self) -> Option<Delivery> {
        match self.rx.recv().await {
            Some(delivery) => Some(delivery),
            None if !self.resync_reported && self.overflowed.load(Ordering::Acquire) => {
                self.resync_reported = true;
                Some(Delivery::Resync)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, kind: &str, repo: &str) -> Event {
        NewEvent::new(topic, kind, "test")
            .with_subject("repository", repo)
            .into_event(EventId::new(1, 0))
    }

    #[test]
    fn filter_combines_topic_type_and_subject() {
        let filter = EventFilter::all()
            .topic("tasks")
            .types(["task_created", "task_updated"])
            .subject("repository", ["acme/api", "acme/web"]);
        assert!(filter.matches(&event("tasks", "task_created", "acme/api")));
        assert!(filter.matches(&event("tasks", "task_updated", "acme/web")));
        assert!(!filter.matches(&event("hub", "task_created", "acme/api")));
        assert!(!filter.matches(&event("tasks", "task_deleted", "acme/api")));
        assert!(!filter.matches(&event("tasks", "task_created", "acme/other")));
        assert!(EventFilter::all().matches(&event("x", "y", "z")));
    }

    #[test]
    fn subject_filter_needs_the_field_present() {
        let filter = EventFilter::all().subject("assignee", ["u1"]);
        assert!(!filter.matches(&event("tasks", "task_created", "acme/api")));
    }
}
