//! The hub's rules for storing and announcing, with a bus that can be made to fail: concurrent
//! pushes are announced in the order they were stored, a push stored while the bus was down is
//! announced by its retry, and a full hub refuses new snapshots but updates the ones it has.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use mcp_core::{
    BusError, Delivery, Event, EventBus, EventFilter, EventId, MemoryBus, NewEvent, Subscription,
};
use mcp_hub::{
    Hub, Push,
    snapshot::{MemorySnapshotStore, NewSnapshot, Put, Snapshot, SnapshotQuery},
};
use serde_json::json;

/// A `MemoryBus` whose next `failures` publishes fail as if Redis were down.
struct FlakyBus {
    inner: MemoryBus,
    failures: AtomicUsize,
}

#[async_trait]
impl EventBus for FlakyBus {
    async fn publish(&self, event: NewEvent) -> Result<Arc<Event>, BusError> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(BusError::Unavailable("down for the test".into()));
        }
        self.inner.publish(event).await
    }

    async fn subscribe(
        &self,
        filter: EventFilter,
        after: Option<EventId>,
    ) -> Result<Subscription, BusError> {
        self.inner.subscribe(filter, after).await
    }
}

fn push(n: i64, key: Option<&str>) -> Push {
    Push {
        channel: "issues".into(),
        repository: Some("acme/api".into()),
        title: None,
        data: json!({ "issues": [{ "number": n, "title": format!("issue {n}") }] }),
        idempotency_key: key.map(Into::into),
    }
}

async fn next_event(subscription: &mut Subscription) -> Arc<Event> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), subscription.recv()).await {
        Ok(Some(Delivery::Event(event))) => event,
        other => panic!("expected an announcement, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_are_announced_in_the_order_they_were_stored() {
    let bus = Arc::new(MemoryBus::default());
    let hub = Arc::new(Hub::new(
        Arc::new(MemorySnapshotStore::default()),
        bus.clone(),
    ));
    let mut watcher = bus.subscribe(EventFilter::all(), None).await.unwrap();
    let pushes: Vec<_> = (0..40)
        .map(|n| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.sync(push(n, None), "test").await.unwrap() })
        })
        .collect();
    for handle in pushes {
        handle.await.unwrap();
    }
    let mut last = 0;
    for _ in 0..40 {
        let event = next_event(&mut watcher).await;
        let revision = event.data["revision"].as_i64().unwrap();
        assert!(
            revision > last,
            "revision {revision} announced after {last}"
        );
        last = revision;
    }
    let stored = hub
        .snapshot("issues", Some("acme/api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, 40);
    assert_eq!(last, 40, "dashboards end on what the store holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stored_while_the_bus_was_down_is_announced_by_its_retry() {
    let bus = Arc::new(FlakyBus {
        inner: MemoryBus::default(),
        failures: AtomicUsize::new(1),
    });
    let hub = Arc::new(Hub::new(
        Arc::new(MemorySnapshotStore::default()),
        bus.clone(),
    ));
    let mut watcher = bus.subscribe(EventFilter::all(), None).await.unwrap();
    let first = hub.sync(push(1, Some("retry-me")), "sink").await.unwrap();
    assert!(!first.broadcast && first.event_id.is_none() && !first.duplicate);
    let stored = hub
        .snapshot("issues", Some("acme/api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.event_id, None, "stored, not announced");

    let retry = hub.sync(push(1, Some("retry-me")), "sink").await.unwrap();
    assert!(retry.duplicate, "nothing is stored twice");
    assert!(retry.broadcast, "but the retry announces it");
    let event = next_event(&mut watcher).await;
    assert_eq!(Some(event.id), retry.event_id);
    assert_eq!(event.data["revision"], 1);
    let stored = hub
        .snapshot("issues", Some("acme/api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.event_id, retry.event_id);

    // Announced once: a third attempt only reports it.
    let again = hub.sync(push(1, Some("retry-me")), "sink").await.unwrap();
    assert_eq!(again.event_id, retry.event_id);
    hub.sync(push(2, None), "sink").await.unwrap();
    assert_eq!(next_event(&mut watcher).await.data["revision"], 2);

    // The same key from another writer, or on another channel, is another push.
    let other = hub
        .sync(push(3, Some("retry-me")), "someone-else")
        .await
        .unwrap();
    assert!(!other.duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hub_refuses_new_snapshots_but_updates_the_ones_it_has() {
    let hub = Arc::new(
        Hub::new(
            Arc::new(MemorySnapshotStore::default()),
            Arc::new(MemoryBus::default()),
        )
        .with_max_snapshots(2),
    );
    hub.sync(push(1, None), "test").await.unwrap();
    let other = Push {
        repository: Some("acme/web".into()),
        ..push(2, None)
    };
    hub.sync(other, "test").await.unwrap();
    let third = Push {
        repository: Some("acme/cli".into()),
        ..push(3, None)
    };
    let error = hub.sync(third, "test").await.unwrap_err();
    assert!(
        matches!(error, mcp_hub::Error::TooManySnapshots { limit: 2 }),
        "{error}"
    );
    assert!(error.to_string().contains("--max-snapshots"), "{error}");
    let update = hub.sync(push(4, None), "test").await.unwrap();
    assert!(!update.duplicate, "an existing snapshot still updates");
    assert!(
        hub.snapshot("issues", Some("acme/cli"))
            .await
            .unwrap()
            .is_none()
    );
}

/// A push stored while the bus was down, and never retried (the tasks feed sends no key), is
/// announced with the next push that reaches the bus, so pages that stayed connected see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_push_announces_what_the_bus_missed() {
    let bus = Arc::new(FlakyBus {
        inner: MemoryBus::default(),
        failures: AtomicUsize::new(1),
    });
    let hub = Arc::new(Hub::new(
        Arc::new(MemorySnapshotStore::default()),
        bus.clone(),
    ));
    let mut watcher = bus.subscribe(EventFilter::all(), None).await.unwrap();
    let missed = hub.sync(push(1, None), "feed").await.unwrap();
    assert!(!missed.broadcast);
    let web = Push {
        repository: Some("acme/web".into()),
        ..push(2, None)
    };
    let next = hub.sync(web, "feed").await.unwrap();
    assert!(next.broadcast);
    assert_eq!(
        next_event(&mut watcher).await.subject["repository"],
        "acme/web"
    );
    let late = next_event(&mut watcher).await;
    assert_eq!(
        late.subject["repository"], "acme/api",
        "the missed push follows"
    );
    let stored = hub
        .snapshot("issues", Some("acme/api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.event_id, Some(late.id));
}

/// A store that holds every `put` until the test lets it go.
struct GatedStore {
    inner: MemorySnapshotStore,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl mcp_hub::SnapshotStore for GatedStore {
    async fn put(&self, snapshot: NewSnapshot) -> mcp_hub::Result<Put> {
        self.gate.acquire().await.unwrap().forget();
        self.inner.put(snapshot).await
    }
    async fn set_event_id(
        &self,
        channel: &str,
        repository: Option<&str>,
        revision: i64,
        id: EventId,
    ) -> mcp_hub::Result<()> {
        self.inner
            .set_event_id(channel, repository, revision, id)
            .await
    }
    async fn get(
        &self,
        channel: &str,
        repository: Option<&str>,
    ) -> mcp_hub::Result<Option<Snapshot>> {
        self.inner.get(channel, repository).await
    }
    async fn list(&self, query: &SnapshotQuery) -> mcp_hub::Result<Vec<Snapshot>> {
        self.inner.list(query).await
    }
    async fn count(&self) -> mcp_hub::Result<u64> {
        self.inner.count().await
    }
    async fn latest_event_id(&self) -> mcp_hub::Result<Option<EventId>> {
        self.inner.latest_event_id().await
    }
    async fn ping(&self) -> mcp_hub::Result<()> {
        self.inner.ping().await
    }
}

/// Pushes wait their turn in a bounded queue: past it the hub answers busy at once (a 503,
/// which sinks retry) instead of holding ever more payloads in memory; nothing queued is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_fills_a_bounded_queue_and_further_pushes_are_told_the_hub_is_busy() {
    let store = Arc::new(GatedStore {
        inner: MemorySnapshotStore::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let hub = Arc::new(Hub::new(store.clone(), Arc::new(MemoryBus::default())));
    let handles: Vec<_> = (0..200)
        .map(|n| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.sync(push(n, None), "test").await })
        })
        .collect();
    // 64 pushes get a place and wait on the held store; the other 136 are answered at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while handles.iter().filter(|h| h.is_finished()).count() < 200 - 64 {
        assert!(
            std::time::Instant::now() < deadline,
            "busy answers come at once"
        );
        tokio::task::yield_now().await;
    }
    let (answered, waiting): (Vec<_>, Vec<_>) = handles.into_iter().partition(|h| h.is_finished());
    assert_eq!(answered.len(), 136);
    for handle in answered {
        assert!(matches!(handle.await.unwrap(), Err(mcp_hub::Error::Busy)));
    }
    store.gate.add_permits(1_000);
    for handle in waiting {
        let receipt = handle.await.unwrap().unwrap();
        assert!(!receipt.duplicate);
    }
    let stored = hub
        .snapshot("issues", Some("acme/api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.revision, 64,
        "every push that got a place was stored"
    );
}
