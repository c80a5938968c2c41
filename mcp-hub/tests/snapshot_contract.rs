//! One contract for every `SnapshotStore`: memory, SQLite, and PostgreSQL when
//! `TEST_DATABASE_URL` is set (`.ci/run` always sets it; under `CI` a missing database fails
//! instead of skipping). Each PostgreSQL test runs in a schema of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

use std::{str::FromStr, sync::Arc};

use mcp_core::EventId;
use mcp_hub::snapshot::{
    MemorySnapshotStore, NewSnapshot, PostgresSnapshotStore, Put, SnapshotQuery,
    SqliteSnapshotStore,
};
use mcp_hub::{Hub, Push, SnapshotStore};
use serde_json::json;
use sqlx::{Connection, Executor, postgres::PgConnectOptions};

/// The stores under test, and how to drop what they made.
struct Harness {
    stores: Vec<(&'static str, Arc<dyn SnapshotStore>)>,
    _dir: tempfile::TempDir,
    pg_schema: Option<String>,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteSnapshotStore::open(&dir.path().join("hub.db"))
            .await
            .unwrap();
        let mut stores: Vec<(&'static str, Arc<dyn SnapshotStore>)> = vec![
            ("memory", Arc::new(MemorySnapshotStore::default())),
            ("sqlite", Arc::new(sqlite)),
        ];
        let mut pg_schema = None;
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => {
                let schema = unique_schema();
                let options = PgConnectOptions::from_str(&url).expect("valid TEST_DATABASE_URL");
                let mut conn = sqlx::PgConnection::connect_with(&options)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .await
                    .expect("create schema");
                let store = PostgresSnapshotStore::connect_in_schema(&url, &schema)
                    .await
                    .expect("open the PostgreSQL store");
                stores.push(("postgres", Arc::new(store)));
                pg_schema = Some(schema);
            }
            Err(_) => {
                assert!(
                    std::env::var("CI").is_err(),
                    "TEST_DATABASE_URL must be set in CI"
                );
                eprintln!("skipped: TEST_DATABASE_URL is not set, PostgreSQL store not tested");
            }
        }
        Self {
            stores,
            _dir: dir,
            pg_schema,
        }
    }

    async fn drop_schema(self) {
        if let (Some(schema), Ok(url)) = (self.pg_schema, std::env::var("TEST_DATABASE_URL")) {
            let options = PgConnectOptions::from_str(&url).unwrap();
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
        }
    }
}

fn unique_schema() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "hub_contract_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn push(channel: &str, repository: Option<&str>, n: i64, key: Option<&str>) -> NewSnapshot {
    NewSnapshot {
        channel: channel.into(),
        repository: repository.map(Into::into),
        title: format!("{channel} {n}"),
        data: json!({ "issues": [{ "number": n, "title": format!("issue {n}") }] }),
        actor: "key:test".into(),
        idempotency_key: key.map(Into::into),
    }
}

fn stored(put: Put) -> mcp_hub::snapshot::Snapshot {
    match put {
        Put::Stored(snapshot) => snapshot,
        other => panic!("expected a stored snapshot, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_push_per_channel_and_repository_is_kept() {
    let harness = Harness::new().await;
    for (name, store) in &harness.stores {
        let first = stored(
            store
                .put(push("issues", Some("Acme/API"), 1, None))
                .await
                .unwrap(),
        );
        assert_eq!(first.revision, 1, "{name}");
        let second = stored(
            store
                .put(push("issues", Some("acme/api"), 2, None))
                .await
                .unwrap(),
        );
        assert_eq!(
            second.revision, 2,
            "{name}: repositories compare without case"
        );
        store
            .put(push("issues", Some("acme/web"), 3, None))
            .await
            .unwrap();
        store.put(push("custom", None, 4, None)).await.unwrap();

        let got = store
            .get("issues", Some("ACME/api"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, second, "{name}: reads back exactly what put returned");
        assert_eq!(
            got.repository.as_deref(),
            Some("acme/api"),
            "{name}: latest spelling"
        );
        assert_eq!(got.data["issues"][0]["number"], 2, "{name}");
        assert!(
            store
                .get("issues", Some("acme/none"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.get("custom", None).await.unwrap().is_some(), "{name}");

        let all = store.list(&SnapshotQuery::default()).await.unwrap();
        let keys: Vec<_> = all
            .iter()
            .map(|s| (s.channel.as_str(), s.repository.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("custom", None),
                ("issues", Some("acme/api")),
                ("issues", Some("acme/web"))
            ],
            "{name}: ordered by channel, then repository"
        );
        let issues = store
            .list(&SnapshotQuery {
                channels: vec!["issues".into()],
                repository: Some("ACME/WEB".into()),
            })
            .await
            .unwrap();
        assert_eq!(issues.len(), 1, "{name}");
        assert_eq!(issues[0].data["issues"][0]["number"], 3, "{name}");
        let none = store
            .list(&SnapshotQuery {
                channels: vec!["commits".into()],
                repository: None,
            })
            .await
            .unwrap();
        assert!(none.is_empty(), "{name}");
    }
    harness.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_push_is_applied_once() {
    let harness = Harness::new().await;
    for (name, store) in &harness.stores {
        let first = stored(
            store
                .put(push("issues", Some("acme/api"), 1, Some("key-1")))
                .await
                .unwrap(),
        );
        // A newer push lands before the retry of the first arrives.
        store
            .put(push("issues", Some("acme/api"), 2, Some("key-2")))
            .await
            .unwrap();
        match store
            .put(push("issues", Some("acme/api"), 1, Some("key-1")))
            .await
            .unwrap()
        {
            Put::Duplicate { current, revision } => {
                assert_eq!(revision, first.revision, "{name}");
                assert_eq!(
                    current.revision, 2,
                    "{name}: the retry did not roll it back"
                );
                assert_eq!(current.data["issues"][0]["number"], 2, "{name}");
            }
            other => panic!("{name}: expected a duplicate, got {other:?}"),
        }
        let current = store
            .get("issues", Some("acme/api"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(current.revision, 2, "{name}");
    }
    harness.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_is_recorded_only_for_its_revision() {
    let harness = Harness::new().await;
    for (name, store) in &harness.stores {
        let first = stored(store.put(push("issues", None, 1, None)).await.unwrap());
        let second = stored(store.put(push("issues", None, 2, None)).await.unwrap());
        // The first push's announcement is recorded late, after the second was stored.
        store
            .set_event_id("issues", None, first.revision, EventId::new(10, 0))
            .await
            .unwrap();
        assert_eq!(
            store.get("issues", None).await.unwrap().unwrap().event_id,
            None,
            "{name}"
        );
        store
            .set_event_id("issues", None, second.revision, EventId::new(11, 0))
            .await
            .unwrap();
        store.put(push("other", None, 3, None)).await.unwrap();
        store
            .set_event_id("other", None, 1, EventId::new(9, 10))
            .await
            .unwrap();
        assert_eq!(
            store.latest_event_id().await.unwrap(),
            Some(EventId::new(11, 0)),
            "{name}: ids compare as numbers (9-10 is older than 11-0)"
        );
        assert_eq!(
            store.get("issues", None).await.unwrap().unwrap().event_id,
            Some(EventId::new(11, 0)),
            "{name}"
        );
    }
    harness.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_change_nothing() {
    let harness = Harness::new().await;
    for (name, store) in &harness.stores {
        let hub = Arc::new(Hub::new(
            store.clone(),
            Arc::new(mcp_core::MemoryBus::default()),
        ));
        let good = Push {
            channel: "issues".into(),
            repository: Some("acme/api".into()),
            title: None,
            data: json!({ "issues": [{ "number": 1, "title": "x" }] }),
            idempotency_key: None,
        };
        hub.sync(good.clone(), "test").await.unwrap();
        let bad = [
            Push {
                channel: "Issues!".into(),
                ..good.clone()
            },
            Push {
                repository: Some("not a repository".into()),
                ..good.clone()
            },
            Push {
                title: Some("t".repeat(201)),
                ..good.clone()
            },
            Push {
                data: json!({ "issues": [{ "number": 2 }] }),
                ..good.clone()
            },
            Push {
                data: json!("text"),
                ..good.clone()
            },
            Push {
                idempotency_key: Some("has space".into()),
                ..good.clone()
            },
            // PostgreSQL's JSONB cannot store U+0000: refused the same on every store.
            Push {
                data: json!({ "issues": [{ "number": 3, "title": "nul \u{0} here" }] }),
                ..good.clone()
            },
        ];
        for push in bad {
            let error = hub.sync(push.clone(), "test").await.unwrap_err();
            assert!(
                matches!(
                    error,
                    mcp_hub::Error::Invalid { .. } | mcp_hub::Error::Schema { .. }
                ),
                "{name}: {push:?} gave {error}"
            );
        }
        let all = store.list(&SnapshotQuery::default()).await.unwrap();
        assert_eq!(all.len(), 1, "{name}");
        assert_eq!(all[0].revision, 1, "{name}");
    }
    harness.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    {
        let store = SqliteSnapshotStore::open(&path).await.unwrap();
        store
            .put(push("issues", Some("acme/api"), 7, Some("k")))
            .await
            .unwrap();
    }
    let store = SqliteSnapshotStore::open(&path).await.unwrap();
    let got = store
        .get("issues", Some("acme/api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data["issues"][0]["number"], 7);
    assert!(matches!(
        store
            .put(push("issues", Some("acme/api"), 7, Some("k")))
            .await
            .unwrap(),
        Put::Duplicate { .. }
    ));
}
