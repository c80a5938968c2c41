//! The `EventBus` seam: publish an event, subscribe with a filter and an optional resume cursor.

pub(crate) mod memory;
pub(crate) mod redis;

use std::{
    collections::{BTreeMap, VecDeque},
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
///
/// Deliveries come in id order: first what the bus replayed after the resume cursor, then live
/// events. An event whose id is not newer than the last one delivered is dropped, so a bus may
/// hand the same event to a subscription twice (say, once in the replay and once live) safely.
#[derive(Debug)]
pub struct Subscription {
    backlog: VecDeque<Delivery>,
    rx: mpsc::Receiver<Delivery>,
    overflowed: Arc<AtomicBool>,
    resync_reported: bool,
    last: Option<EventId>,
}

impl Subscription {
    pub(crate) fn new(
        backlog: VecDeque<Delivery>,
        rx: mpsc::Receiver<Delivery>,
        overflowed: Arc<AtomicBool>,
    ) -> Self {
        Self {
            backlog,
            rx,
            overflowed,
            resync_reported: false,
            last: None,
        }
    }

    /// Whether the subscription starts by saying events were missed (its resume cursor was too
    /// old for the bus); if so, that notice is consumed, so the caller can fill the gap from
    /// elsewhere and go on with what the bus delivers next.
    pub fn take_initial_resync(&mut self) -> bool {
        if self.last.is_none() && matches!(self.backlog.front(), Some(Delivery::Resync)) {
            self.backlog.pop_front();
            true
        } else {
            false
        }
    }

    /// Delivers nothing with an id up to `id` from now on (it was delivered by other means).
    pub fn skip_through(&mut self, id: EventId) {
        self.last = Some(self.last.map_or(id, |last| last.max(id)));
    }

    /// The next delivery, or `None` once the bus has closed this subscription. A subscriber
    /// that could not keep up receives what was queued, then one [`Delivery::Resync`], then
    /// `None`: it should reload and subscribe again.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            let delivery = match self.backlog.pop_front() {
                Some(delivery) => delivery,
                None => match self.rx.recv().await {
                    Some(delivery) => delivery,
                    None if !self.resync_reported && self.overflowed.load(Ordering::Acquire) => {
                        self.resync_reported = true;
                        return Some(Delivery::Resync);
                    }
                    None => return None,
                },
            };
            if let Delivery::Event(event) = &delivery {
                if self.last.is_some_and(|last| event.id <= last) {
                    continue;
                }
                self.last = Some(event.id);
            }
            return Some(delivery);
        }
    }
}

/// The local subscribers of a bus and the delivery of one event to them.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    subscribers: Vec<Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    filter: EventFilter,
    tx: mpsc::Sender<Delivery>,
    overflowed: Arc<AtomicBool>,
}

impl Fanout {
    /// Registers a subscriber whose queue holds `capacity` deliveries, and returns its ends.
    pub(crate) fn add(
        &mut self,
        filter: EventFilter,
        capacity: usize,
    ) -> (mpsc::Receiver<Delivery>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        self.subscribers.push(Subscriber {
            filter,
            tx,
            overflowed: overflowed.clone(),
        });
        (rx, overflowed)
    }

    /// Hands `event` to every matching subscriber without waiting: one whose queue is full is
    /// cut off (it gets `Resync`), one that has gone away is forgotten.
    pub(crate) fn deliver(&mut self, event: &Arc<Event>) {
        self.subscribers.retain(|sub| {
            if !sub.filter.matches(event) {
                return !sub.tx.is_closed();
            }
            match sub.tx.try_send(Delivery::Event(event.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.overflowed.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Tells every subscriber that events may have been missed.
    pub(crate) fn resync_all(&mut self) {
        self.subscribers
            .retain(|sub| sub.tx.try_send(Delivery::Resync).is_ok());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.subscribers.len()
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
