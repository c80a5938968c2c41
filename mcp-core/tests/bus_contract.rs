//! The `EventBus` contract, run against every bus: `MemoryBus` always, `RedisBus` when
//! `TEST_REDIS_URL` is set (`.ci/run` always sets it; under `CI=true` a missing Redis fails
//! instead of skipping). Each Redis test uses a stream of its own.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test here.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use mcp_core::{
    Delivery, Event, EventBus, EventFilter, EventId, MemoryBus, NewEvent, RedisBus, RedisBusConfig,
    Subscription,
};

const WAIT: Duration = Duration::from_secs(10);

fn redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "TEST_REDIS_URL must be set in CI"
            );
            eprintln!("skipped: TEST_REDIS_URL is not set, RedisBus not tested");
            None
        }
    }
}

fn unique_stream() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("switchboard:test:{}:{nanos}:{n}", std::process::id())
}

async fn drop_stream(url: &str, stream: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let bus: std::sync::Arc<dyn mcp_core::EventBus> = std::sync::Arc::new(mcp_core::MemoryBus::default());
                    super::$name(bus.clone(), bus).await;
                }
            )*
        }
        mod redis_streams {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = super::redis_url() else { return };
                    let stream = super::unique_stream();
                    let config = mcp_core::RedisBusConfig::new(url.clone()).with_stream(stream.clone());
                    let a = mcp_core::RedisBus::connect(config.clone()).await.expect("connect");
                    let b = mcp_core::RedisBus::connect(config).await.expect("connect");
                    super::$name(std::sync::Arc::new(a), std::sync::Arc::new(b)).await;
                    super::drop_stream(&url, &stream).await;
                }
            )*
        }
    };
}

// Each case gets two handles on one bus: for MemoryBus the same bus twice, for RedisBus two
// instances (as two processes would have) on one stream.
contract!(
    ids_are_strictly_increasing,
    subscribers_get_matching_events_in_order,
    a_resumed_subscription_replays_then_goes_live_without_gaps,
    every_instance_hears_every_publisher,
    resuming_while_others_publish_loses_and_repeats_nothing,
);

fn ev(kind: &str, repo: &str) -> NewEvent {
    NewEvent::new("tasks", kind, "test").with_subject("repository", repo)
}

async fn next_event(sub: &mut Subscription) -> Arc<Event> {
    match tokio::time::timeout(WAIT, sub.recv()).await {
        Ok(Some(Delivery::Event(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn ids_are_strictly_increasing(a: Arc<dyn EventBus>, b: Arc<dyn EventBus>) {
    let mut last = EventId::ZERO;
    for i in 0..200 {
        let bus = if i % 2 == 0 { &a } else { &b };
        let event = bus.publish(ev("x", "acme/api")).await.unwrap();
        assert!(event.id > last, "{} after {}", event.id, last);
        assert_eq!(event.id.to_string().parse::<EventId>().unwrap(), event.id);
        last = event.id;
    }
}

async fn subscribers_get_matching_events_in_order(a: Arc<dyn EventBus>, b: Arc<dyn EventBus>) {
    let mut all = b.subscribe(EventFilter::all(), None).await.unwrap();
    let mut api_updates = b
        .subscribe(
            EventFilter::all()
                .topic("tasks")
                .types(["task_updated"])
                .subject("repository", ["acme/api"]),
            None,
        )
        .await
        .unwrap();
    let published = [
        a.publish(ev("task_created", "acme/api")).await.unwrap(),
        a.publish(ev("task_updated", "acme/web")).await.unwrap(),
        a.publish(ev("task_updated", "acme/api")).await.unwrap(),
    ];
    for expected in &published {
        let got = next_event(&mut all).await;
        assert_eq!(got.id, expected.id);
        assert_eq!(got.kind, expected.kind);
        assert_eq!(got.subject, expected.subject);
    }
    assert_eq!(next_event(&mut api_updates).await.id, published[2].id);
    let extra = tokio::time::timeout(Duration::from_millis(100), api_updates.recv()).await;
    assert!(extra.is_err(), "the filter let through {extra:?}");
}

async fn a_resumed_subscription_replays_then_goes_live_without_gaps(
    a: Arc<dyn EventBus>,
    b: Arc<dyn EventBus>,
) {
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(a.publish(ev("x", "acme/api")).await.unwrap().id);
    }
    let mut resumed = b.subscribe(EventFilter::all(), Some(ids[6])).await.unwrap();
    // Events published while the subscriber replays must come after the replay, once each.
    let publisher = a.clone();
    let live = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(publisher.publish(ev("x", "acme/api")).await.unwrap().id);
        }
        ids
    });
    let live_ids = live.await.unwrap();
    let expected: Vec<EventId> = ids[7..].iter().chain(live_ids.iter()).copied().collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(next_event(&mut resumed).await.id);
    }
    assert_eq!(got, expected);
    let extra = tokio::time::timeout(Duration::from_millis(100), resumed.recv()).await;
    assert!(extra.is_err(), "duplicate or stray delivery: {extra:?}");
}

async fn every_instance_hears_every_publisher(a: Arc<dyn EventBus>, b: Arc<dyn EventBus>) {
    let mut on_a = a.subscribe(EventFilter::all(), None).await.unwrap();
    let mut on_b = b.subscribe(EventFilter::all(), None).await.unwrap();
    let from_a = a.publish(ev("from_a", "x/y")).await.unwrap();
    let from_b = b.publish(ev("from_b", "x/y")).await.unwrap();
    for sub in [&mut on_a, &mut on_b] {
        assert_eq!(next_event(sub).await.id, from_a.id);
        assert_eq!(next_event(sub).await.id, from_b.id);
    }
}

/// Redis trims old entries (`MAXLEN ~`): a cursor older than what the stream still holds must
/// be told to resync rather than be handed a replay with a hole in it.
#[tokio::test]
async fn redis_a_trimmed_cursor_gets_resync() {
    let Some(url) = redis_url() else { return };
    let stream = unique_stream();
    let bus = RedisBus::connect(
        RedisBusConfig::new(url.clone())
            .with_stream(stream.clone())
            .with_max_len(10),
    )
    .await
    .unwrap();
    let first = bus.publish(ev("x", "a/b")).await.unwrap().id;
    // MAXLEN ~ trims whole nodes of 100 entries: publish enough for the first node to go.
    for _ in 0..400 {
        bus.publish(ev("x", "a/b")).await.unwrap();
    }
    let mut sub = bus
        .subscribe(EventFilter::all(), Some(first))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, sub.recv()).await.unwrap(),
        Some(Delivery::Resync)
    );
    let live = bus.publish(ev("x", "a/b")).await.unwrap();
    assert_eq!(next_event(&mut sub).await.id, live.id);
    drop_stream(&url, &stream).await;
}

/// An unreachable Redis is a clear error, not a hang.
#[tokio::test]
async fn redis_unreachable_is_an_error() {
    let started = std::time::Instant::now();
    let result = RedisBus::connect(RedisBusConfig::new("redis://127.0.0.1:1/")).await;
    assert!(
        matches!(result, Err(mcp_core::BusError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn memory_bus_is_usable_as_a_trait_object() {
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::default());
    let mut sub = bus.subscribe(EventFilter::all(), None).await.unwrap();
    let event = bus.publish(ev("x", "a/b")).await.unwrap();
    assert_eq!(next_event(&mut sub).await.id, event.id);
}

/// A Redis server of the test's own on a free port, so it can be stopped and started again.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH (.ci/run installs it)");
        // Owned from here on, so any failure below still reaps the child (Drop).
        let server = Self {
            port,
            child: Some(child),
        };
        let client = redis::Client::open(server.url().as_str()).unwrap();
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Redis goes away and comes back: publishing fails clearly meanwhile (the task outbox keeps
/// such events), and once it is back the reader of another instance has reconnected by itself
/// and hears new events.
#[tokio::test]
async fn redis_outage_then_recovery() {
    if redis_url().is_none() {
        return;
    }
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start(port).await;
    let config = RedisBusConfig::new(redis.url());
    let a = RedisBus::connect(config.clone()).await.unwrap();
    let b = RedisBus::connect(config).await.unwrap();
    let mut on_b = b.subscribe(EventFilter::all(), None).await.unwrap();
    let before = a.publish(ev("before", "a/b")).await.unwrap();
    assert_eq!(next_event(&mut on_b).await.id, before.id);

    redis.stop();
    let during = a.publish(ev("during", "a/b")).await;
    assert!(
        matches!(during, Err(mcp_core::BusError::Unavailable(_))),
        "{during:?}"
    );

    let _redis = OwnRedis::start(port).await;
    // The publisher's connection manager reconnects on use; retry until it has.
    let deadline = std::time::Instant::now() + WAIT;
    let after = loop {
        match a.publish(ev("after", "a/b")).await {
            Ok(event) => break event,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for redis: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("redis did not come back: {error}"),
        }
    };
    let heard = next_event(&mut on_b).await;
    assert_eq!((heard.id, heard.kind.as_str()), (after.id, "after"));
}

/// The race a resuming subscriber lives in: events keep being published while it subscribes
/// (between its replay and its going live). Whatever the interleaving, it sees every event after
/// its cursor exactly once, in order.
async fn resuming_while_others_publish_loses_and_repeats_nothing(
    a: Arc<dyn EventBus>,
    b: Arc<dyn EventBus>,
) {
    let cursor = a.publish(ev("x", "a/b")).await.unwrap().id;
    let publisher = a.clone();
    let publishing = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..300 {
            ids.push(publisher.publish(ev("x", "a/b")).await.unwrap().id);
            tokio::task::yield_now().await;
        }
        ids
    });
    // Subscribe several times while the publisher runs, each from the same cursor.
    let mut subscriptions = Vec::new();
    for _ in 0..5 {
        subscriptions.push(b.subscribe(EventFilter::all(), Some(cursor)).await.unwrap());
        tokio::task::yield_now().await;
    }
    let published = publishing.await.unwrap();
    for mut subscription in subscriptions {
        let mut got = Vec::new();
        while got.len() < published.len() {
            got.push(next_event(&mut subscription).await.id);
        }
        assert_eq!(got, published);
        let extra = tokio::time::timeout(Duration::from_millis(50), subscription.recv()).await;
        assert!(extra.is_err(), "a repeat or a stray: {extra:?}");
    }
}
