//! One contract for every `SnapshotStore` (and the `LabStore` and `UserStore` the same stores
//! are): memory,
//! SQLite, and PostgreSQL when
//! `TEST_DATABASE_URL` is set (`.ci/run` always sets it; under `CI` a missing database fails
//! instead of skipping). Each PostgreSQL test runs in a schema of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test here.

use std::{str::FromStr, sync::Arc};

use mcp_core::EventId;
use mcp_hub::lab::{
    RunReport, SessionReport,
    store::{LabStore, NewRun, NewSuite, RunQuery},
};
use mcp_hub::login::{Role, UserChange, UserStore};
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
    /// The same stores, as the lab's.
    labs: Vec<(&'static str, Arc<dyn LabStore>)>,
    /// And as the users'.
    users: Vec<(&'static str, Arc<dyn UserStore>)>,
    _dir: tempfile::TempDir,
    pg_schema: Option<String>,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteSnapshotStore::open(&dir.path().join("hub.db"))
            .await
            .unwrap();
        let memory = Arc::new(MemorySnapshotStore::default());
        let sqlite = Arc::new(sqlite);
        let mut stores: Vec<(&'static str, Arc<dyn SnapshotStore>)> =
            vec![("memory", memory.clone()), ("sqlite", sqlite.clone())];
        let mut labs: Vec<(&'static str, Arc<dyn LabStore>)> =
            vec![("memory", memory.clone()), ("sqlite", sqlite.clone())];
        let mut users: Vec<(&'static str, Arc<dyn UserStore>)> =
            vec![("memory", memory), ("sqlite", sqlite)];
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
                let store = Arc::new(store);
                stores.push(("postgres", store.clone()));
                labs.push(("postgres", store.clone()));
                users.push(("postgres", store));
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
            labs,
            users,
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

fn suite_text(name: &str) -> String {
    format!(
        "name = \"{name}\"\n[target]\nurl = \"http://127.0.0.1:1/mcp\"\n[[steps]]\nkind = \"list_tools\"\n"
    )
}

fn report(suite: &str, minutes_ago: i64, passed: bool) -> RunReport {
    RunReport {
        suite: suite.into(),
        target: "http://127.0.0.1:1/mcp".into(),
        started_at: chrono::Utc::now() - chrono::TimeDelta::minutes(minutes_ago),
        duration_ms: 12.5,
        session: SessionReport {
            initialize_ms: 1.0,
            server: None,
            error: (!passed).then(|| "refused".to_owned()),
        },
        steps: Vec::new(),
        passed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_suites_and_runs_are_kept_and_listed_newest_first() {
    let harness = Harness::new().await;
    for (name, store) in &harness.labs {
        let every = |secs| Some(std::time::Duration::from_secs(secs));
        let a = store
            .create_suite(NewSuite {
                definition: suite_text("alpha"),
                interval: every(60),
            })
            .await
            .unwrap();
        assert_eq!(a.name, "alpha", "{name}");
        assert_eq!(a.interval, every(60), "{name}");
        let b = store
            .create_suite(NewSuite {
                definition: suite_text("beta"),
                interval: None,
            })
            .await
            .unwrap();
        assert_ne!(a.id, b.id);
        // Names are unique; the text must be a suite; intervals under a second are refused.
        let taken = store
            .create_suite(NewSuite {
                definition: suite_text("alpha"),
                interval: None,
            })
            .await
            .unwrap_err();
        assert!(
            taken.to_string().contains("exists already"),
            "{name}: {taken}"
        );
        let bad = store
            .create_suite(NewSuite {
                definition: "name = 1".into(),
                interval: None,
            })
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("definition"), "{name}: {bad}");
        let fast = store
            .create_suite(NewSuite {
                definition: suite_text("gamma"),
                interval: Some(std::time::Duration::from_millis(10)),
            })
            .await
            .unwrap_err();
        assert!(
            fast.to_string().contains("at least one second"),
            "{name}: {fast}"
        );
        let listed: Vec<String> = store
            .suites()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(listed, ["alpha", "beta"], "{name}");
        assert_eq!(
            store.suite(&a.id).await.unwrap().as_ref(),
            Some(&a),
            "{name}"
        );
        assert_eq!(store.suite("nope").await.unwrap(), None, "{name}");

        // An update renames and reschedules; onto another's name it is refused.
        let renamed = store
            .update_suite(
                &a.id,
                NewSuite {
                    definition: suite_text("alpha2"),
                    interval: every(5),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.interval),
            ("alpha2", every(5)),
            "{name}"
        );
        assert_eq!(renamed.created_at, a.created_at, "{name}");
        assert!(renamed.updated_at >= a.updated_at, "{name}");
        let clash = store
            .update_suite(
                &a.id,
                NewSuite {
                    definition: suite_text("beta"),
                    interval: None,
                },
            )
            .await
            .unwrap_err();
        assert!(
            clash.to_string().contains("exists already"),
            "{name}: {clash}"
        );
        assert!(
            store
                .update_suite(
                    "nope",
                    NewSuite {
                        definition: suite_text("x"),
                        interval: None
                    }
                )
                .await
                .unwrap_err()
                .to_string()
                .contains("no suite nope")
        );

        // Runs: kept whole, listed newest first, per suite or all.
        let old = store
            .insert_run(NewRun {
                suite_id: Some(a.id.clone()),
                report: report("alpha2", 30, true),
            })
            .await
            .unwrap();
        let new = store
            .insert_run(NewRun {
                suite_id: Some(a.id.clone()),
                report: report("alpha2", 1, false),
            })
            .await
            .unwrap();
        let loose = store
            .insert_run(NewRun {
                suite_id: None,
                report: report("from a file", 10, true),
            })
            .await
            .unwrap();
        let orphan = store
            .insert_run(NewRun {
                suite_id: Some("nope".into()),
                report: report("x", 0, true),
            })
            .await
            .unwrap_err();
        assert!(
            orphan.to_string().contains("no suite nope"),
            "{name}: {orphan}"
        );
        let stored = store.run(&new.id).await.unwrap().unwrap();
        assert_eq!(stored.summary, new, "{name}");
        assert!(!stored.report.passed);
        assert_eq!(
            stored.report.session.error.as_deref(),
            Some("refused"),
            "{name}"
        );
        assert_eq!(store.run("nope").await.unwrap(), None);
        let all: Vec<String> = store
            .runs(RunQuery {
                suite_id: None,
                limit: 10,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            all,
            [new.id.clone(), loose.id.clone(), old.id.clone()],
            "{name}"
        );
        let of_a = store
            .runs(RunQuery {
                suite_id: Some(a.id.clone()),
                limit: 1,
            })
            .await
            .unwrap();
        assert_eq!(of_a, std::slice::from_ref(&new), "{name}");

        // Deleting a suite keeps its runs, untied from it.
        assert!(store.delete_suite(&a.id).await.unwrap(), "{name}");
        assert!(!store.delete_suite(&a.id).await.unwrap(), "{name}");
        assert_eq!(store.suite(&a.id).await.unwrap(), None);
        let kept = store.run(&old.id).await.unwrap().unwrap();
        assert_eq!(kept.summary.suite_id, None, "{name}");
        assert!(
            store
                .runs(RunQuery {
                    suite_id: Some(a.id.clone()),
                    limit: 10
                })
                .await
                .unwrap()
                .is_empty()
        );
    }
    harness.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_refresh_tokens_are_kept_and_revoked() {
    use chrono::{Duration, Utc};
    let harness = Harness::new().await;
    for (name, store) in &harness.users {
        let alice = store
            .create_user("alice", Role::Admin, "$argon2id$hash-a")
            .await
            .unwrap();
        assert_eq!(
            (alice.username.as_str(), alice.role),
            ("alice", Role::Admin)
        );
        store
            .create_user("bob", Role::Viewer, "$argon2id$hash-b")
            .await
            .unwrap();
        let taken = store.create_user("alice", Role::Viewer, "x").await;
        assert!(
            matches!(taken, Err(mcp_hub::Error::Conflict { .. })),
            "{name}: {taken:?}"
        );
        let read = store.user("alice").await.unwrap().unwrap();
        assert_eq!(read.user, alice, "{name}: reads back as returned");
        assert_eq!(read.password_hash, "$argon2id$hash-a");
        assert!(store.user("carol").await.unwrap().is_none());
        let names: Vec<String> = store
            .users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"], "{name}");

        // Refresh tokens work once; an unknown one is none; one for nobody is refused.
        let later = Utc::now() + Duration::hours(1);
        store
            .insert_refresh_token("d1", "alice", later)
            .await
            .unwrap();
        store
            .insert_refresh_token("d2", "alice", later)
            .await
            .unwrap();
        store
            .insert_refresh_token("d3", "bob", later)
            .await
            .unwrap();
        let taken = store.take_refresh_token("d1").await.unwrap().unwrap();
        assert_eq!(taken.0, "alice", "{name}");
        assert!((taken.1 - later).num_milliseconds().abs() < 1, "{name}");
        assert!(
            store.take_refresh_token("d1").await.unwrap().is_none(),
            "{name}"
        );
        assert!(store.take_refresh_token("nope").await.unwrap().is_none());
        assert!(
            store
                .insert_refresh_token("d4", "carol", later)
                .await
                .is_err(),
            "{name}: a token for no user"
        );

        // A role change keeps tokens; a password change revokes them.
        let bob = store
            .update_user(
                "bob",
                UserChange {
                    role: Some(Role::Operator),
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(bob.role, Role::Operator);
        let kept = store.take_refresh_token("d3").await.unwrap();
        assert_eq!(
            kept.map(|k| k.0).as_deref(),
            Some("bob"),
            "{name}: a role change keeps tokens"
        );
        store
            .insert_refresh_token("d3", "bob", later)
            .await
            .unwrap();
        assert_eq!(
            store.user("bob").await.unwrap().unwrap().password_hash,
            "$argon2id$hash-b"
        );
        store
            .update_user(
                "alice",
                UserChange {
                    role: None,
                    password_hash: Some("$argon2id$hash-a2".into()),
                },
            )
            .await
            .unwrap();
        assert!(
            store.take_refresh_token("d2").await.unwrap().is_none(),
            "{name}: revoked"
        );
        let missing = store.update_user("carol", UserChange::default()).await;
        assert!(
            matches!(missing, Err(mcp_hub::Error::NotFound { .. })),
            "{name}"
        );

        // Removing a user removes their tokens.
        assert!(store.delete_user("bob").await.unwrap());
        assert!(!store.delete_user("bob").await.unwrap());
        assert!(
            store.take_refresh_token("d3").await.unwrap().is_none(),
            "{name}"
        );
        assert!(store.user("bob").await.unwrap().is_none());
    }
    harness.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_quoting_a_nul_character_is_stored() {
    let harness = Harness::new().await;
    for (name, store) in &harness.labs {
        let mut run = report("nul", 0, false);
        run.session.error = Some("the server said \u{0}boom".into());
        let summary = store
            .insert_run(NewRun {
                suite_id: None,
                report: run,
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stored = store.run(&summary.id).await.unwrap().unwrap();
        let error = stored.report.session.error.unwrap();
        assert!(error.ends_with("boom"), "{name}: {error:?}");
        assert!(error.contains("said"), "{name}: {error:?}");
    }
    harness.drop_schema().await;
}
