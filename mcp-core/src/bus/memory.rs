//! `MemoryBus`: the in-process bus, with a bounded replay ring for resuming subscribers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use super::{BusError, Delivery, EventBus, EventFilter, Fanout, Subscription};
use crate::{Event, EventId, NewEvent};
use async_trait::async_trait;
use chrono::Utc;

/// Sizes of a [`MemoryBus`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryBusConfig {
    /// How many recent events are kept for subscribers that resume with a cursor.
    pub replay_capacity: usize,
    /// How many undelivered events one subscriber may have queued before it is cut off with a
    /// [`Delivery::Resync`].
    pub subscriber_capacity: usize,
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        Self {
            replay_capacity: 10_000,
            subscriber_capacity: 4_096,
        }
    }
}

/// The default, in-process [`EventBus`].
#[derive(Debug)]
pub struct MemoryBus {
    config: MemoryBusConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last_id: EventId,
    ring: VecDeque<Arc<Event>>,
    /// The id of the newest event dropped from the ring, if any: a cursor older than this has
    /// missed events the bus can no longer replay.
    evicted_up_to: Option<EventId>,
    subscribers: Fanout,
}

impl MemoryBus {
    pub fn new(config: MemoryBusConfig) -> Self {
        Self {
            config: MemoryBusConfig {
                replay_capacity: config.replay_capacity,
                subscriber_capacity: config.subscriber_capacity.max(1),
            },
            state: Mutex::new(State {
                last_id: EventId::ZERO,
                ring: VecDeque::new(),
                // The bus knows nothing from before it was made: a cursor from then (say, from
                // a previous run of the process) has missed events and must resync.
                evicted_up_to: Some(EventId::new(now_ms(), 0)),
                subscribers: Fanout::default(),
            }),
        }
    }

    /// Ids from now on are greater than `id`, whatever the clock says: a process that keeps
    /// ids from an earlier run (a hub's snapshot store does) calls this at start, so a clock
    /// that stepped back cannot hand out ids older than ones clients already hold.
    pub fn ids_after(&self, id: EventId) {
        let mut state = self.state();
        state.last_id = state.last_id.max(id);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to readers (each field is updated by a single statement), so recover.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(MemoryBusConfig::default())
    }
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, event: NewEvent) -> Result<Arc<Event>, BusError> {
        let mut state = self.state();
        let id = state.last_id.next_after(now_ms());
        state.last_id = id;
        let event = Arc::new(event.into_event(id));

        if self.config.replay_capacity > 0 {
            if state.ring.len() == self.config.replay_capacity
                && let Some(evicted) = state.ring.pop_front()
            {
                state.evicted_up_to = Some(evicted.id);
            }
            state.ring.push_back(event.clone());
        } else {
            state.evicted_up_to = Some(id);
        }

        state.subscribers.deliver(&event);
        Ok(event)
    }

    async fn subscribe(
        &self,
        filter: EventFilter,
        after: Option<EventId>,
    ) -> Result<Subscription, BusError> {
        let mut state = self.state();
        let mut backlog = VecDeque::new();
        if let Some(cursor) = after {
            if state.evicted_up_to.is_some_and(|evicted| cursor < evicted) {
                backlog.push_back(Delivery::Resync);
            } else {
                backlog.extend(
                    state
                        .ring
                        .iter()
                        .filter(|event| event.id > cursor && filter.matches(event))
                        .map(|event| Delivery::Event(event.clone())),
                );
            }
        }
        // Registered under the same lock as the replay was read: nothing falls in between.
        let (rx, overflowed) = state
            .subscribers
            .add(filter, self.config.subscriber_capacity);
        Ok(Subscription::new(backlog, rx, overflowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_continue_after_a_given_one_when_the_clock_is_behind() {
        let bus = MemoryBus::default();
        let future = EventId::new(now_ms() + 3_600_000, 7);
        bus.ids_after(future);
        let event = bus.publish(ev("k")).await.unwrap();
        assert!(event.id > future, "{} after {future}", event.id);
    }

    fn ev(kind: &str) -> NewEvent {
        NewEvent::new("tasks", kind, "test")
    }

    async fn next_event(sub: &mut Subscription) -> Arc<Event> {
        match sub.recv().await {
            Some(Delivery::Event(event)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ids_are_strictly_increasing() {
        let bus = MemoryBus::default();
        let mut last = EventId::ZERO;
        for _ in 0..5_000 {
            let event = bus.publish(ev("a")).await.expect("publish");
            assert!(event.id > last, "{} after {}", event.id, last);
            last = event.id;
        }
    }

    #[tokio::test]
    async fn live_subscribers_get_matching_events_in_order() {
        let bus = MemoryBus::default();
        let mut all = bus
            .subscribe(EventFilter::all(), None)
            .await
            .expect("subscribe");
        let mut only_b = bus
            .subscribe(EventFilter::all().types(["b"]), None)
            .await
            .expect("subscribe");
        let a = bus.publish(ev("a")).await.expect("publish");
        let b = bus.publish(ev("b")).await.expect("publish");
        assert_eq!(next_event(&mut all).await.id, a.id);
        assert_eq!(next_event(&mut all).await.id, b.id);
        assert_eq!(next_event(&mut only_b).await.id, b.id);
    }

    #[tokio::test]
    async fn resume_replays_exactly_what_came_after_the_cursor() {
        let bus = MemoryBus::default();
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(bus.publish(ev("a")).await.expect("publish").id);
        }
        let mut sub = bus
            .subscribe(EventFilter::all(), Some(ids[3]))
            .await
            .expect("subscribe");
        let live = bus.publish(ev("a")).await.expect("publish").id;
        for expected in ids[4..].iter().copied().chain([live]) {
            assert_eq!(next_event(&mut sub).await.id, expected);
        }
    }

    #[tokio::test]
    async fn a_cursor_older_than_the_ring_gets_resync() {
        let bus = MemoryBus::new(MemoryBusConfig {
            replay_capacity: 3,
            subscriber_capacity: 16,
        });
        let first = bus.publish(ev("a")).await.expect("publish").id;
        for _ in 0..5 {
            bus.publish(ev("a")).await.expect("publish");
        }
        let mut sub = bus
            .subscribe(EventFilter::all(), Some(first))
            .await
            .expect("subscribe");
        assert_eq!(sub.recv().await, Some(Delivery::Resync));
        let live = bus.publish(ev("a")).await.expect("publish").id;
        assert_eq!(next_event(&mut sub).await.id, live);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_resync() {
        let bus = MemoryBus::new(MemoryBusConfig {
            replay_capacity: 100,
            subscriber_capacity: 2,
        });
        let mut slow = bus
            .subscribe(EventFilter::all(), None)
            .await
            .expect("subscribe");
        for _ in 0..5 {
            bus.publish(ev("a")).await.expect("publish");
        }
        next_event(&mut slow).await;
        next_event(&mut slow).await;
        assert_eq!(slow.recv().await, Some(Delivery::Resync));
        assert_eq!(slow.recv().await, None);
    }

    #[tokio::test]
    async fn a_cursor_from_before_the_bus_existed_gets_resync() {
        let bus = MemoryBus::default();
        let before = EventId::new(now_ms().saturating_sub(60_000), 3);
        let mut sub = bus
            .subscribe(EventFilter::all(), Some(before))
            .await
            .expect("subscribe");
        assert_eq!(sub.recv().await, Some(Delivery::Resync));
        // A cursor from this bus's own events resumes normally.
        let first = bus.publish(ev("a")).await.expect("publish").id;
        let second = bus.publish(ev("a")).await.expect("publish").id;
        let mut resumed = bus
            .subscribe(EventFilter::all(), Some(first))
            .await
            .expect("subscribe");
        assert_eq!(next_event(&mut resumed).await.id, second);
    }

    #[tokio::test]
    async fn dropped_subscriptions_are_forgotten() {
        let bus = MemoryBus::default();
        let sub = bus
            .subscribe(EventFilter::all(), None)
            .await
            .expect("subscribe");
        drop(sub);
        bus.publish(ev("a")).await.expect("publish");
        assert_eq!(bus.state().subscribers.len(), 0);
    }
}
