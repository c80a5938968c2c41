//! The store contract and the service rules, run against every `TaskStore`: SQLite always,
//! PostgreSQL when `TEST_DATABASE_URL` is set (`.ci/run` always sets it; under `CI=true` a
//! missing database fails instead of skipping).

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test here.

use std::{str::FromStr, sync::Arc};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use mcp_core::{Delivery, EventBus, EventFilter, EventId, MemoryBus, NewEvent};
use mcp_tasks::{
    Comment, Complexity, Error, HistoryEntry, Priority, Status, Task, TaskService, TaskStore, User,
    service::{ListTasks, NewTask, NewUser, TaskPatch},
    store::{Modified, PostgresStore, SqliteStore, StatusFilter, TaskEdit, TaskQuery, TaskWrite},
};
use sqlx::{Connection, Executor, postgres::PgConnectOptions};
use uuid::Uuid;

/// A store under test and what must be cleaned up after it.
struct Harness {
    store: Arc<dyn TaskStore>,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(PgConnectOptions, String)>,
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("tasks.db"))
            .await
            .expect("open sqlite");
        Self {
            store: Arc::new(store),
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// A fresh schema in the test database, so tests run in parallel without seeing each other.
    async fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            assert!(
                std::env::var("CI").is_err(),
                "TEST_DATABASE_URL must be set in CI"
            );
            eprintln!("skipped: TEST_DATABASE_URL is not set, PostgreSQL store not tested");
            return None;
        };
        let options = PgConnectOptions::from_str(&url).expect("valid TEST_DATABASE_URL");
        let schema = format!("contract_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("create schema");
        let store = PostgresStore::connect_in_schema(&url, &schema)
            .await
            .expect("connect postgres store");
        Some(Self {
            store: Arc::new(store),
            _dir: None,
            pg_schema: Some((options, schema)),
        })
    }

    /// Another store instance (as another process would open) on the same database.
    async fn another(&self) -> Arc<dyn TaskStore> {
        if let Some(dir) = &self._dir {
            return Arc::new(
                SqliteStore::open(&dir.path().join("tasks.db"))
                    .await
                    .expect("reopen sqlite"),
            );
        }
        let (_, schema) = self.pg_schema.as_ref().expect("a postgres harness");
        let url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
        Arc::new(
            PostgresStore::connect_in_schema(&url, schema)
                .await
                .expect("second postgres store"),
        )
    }

    async fn cleanup(self) {
        if let Some((options, schema)) = self.pg_schema {
            drop(self.store);
            let mut conn = sqlx::PgConnection::connect_with(&options)
                .await
                .expect("connect");
            conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .expect("drop schema");
        }
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = super::Harness::sqlite().await;
                    super::$name(harness.store.clone()).await;
                    harness.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = super::Harness::postgres().await else { return };
                    super::$name(harness.store.clone()).await;
                    harness.cleanup().await;
                }
            )*
        }
    };
}

/// Contract tests that need two store instances on one database.
macro_rules! contract_shared {
    ($($name:ident),* $(,)?) => {
        mod sqlite_shared {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = super::Harness::sqlite().await;
                    super::$name(harness.store.clone(), harness.another().await).await;
                    harness.cleanup().await;
                }
            )*
        }
        mod postgres_shared {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = super::Harness::postgres().await else { return };
                    super::$name(harness.store.clone(), harness.another().await).await;
                    harness.cleanup().await;
                }
            )*
        }
    };
}

contract_shared!(
    each_instance_relays_only_its_own_events,
    orphaned_events_are_taken_over,
);

contract!(
    users_are_found_by_id_email_or_github_username,
    service_keeps_the_comment_of_an_update_that_changes_nothing,
    duplicate_users_are_rejected,
    tasks_round_trip_and_register_their_repository,
    a_stale_update_writes_nothing,
    deletes_keep_history_and_drop_comments,
    comments_need_an_existing_task,
    listing_filters_and_pages_with_keyset_cursors,
    the_outbox_holds_one_row_per_write_until_published,
    published_events_are_read_back_in_id_order,
    service_records_history_with_the_actor,
    service_rejects_stale_versions_with_the_current_one,
    service_publishes_one_event_per_committed_change,
    concurrent_updates_with_the_same_version_have_one_winner,
    service_rejects_bad_input_and_changes_nothing,
    service_lists_with_filters,
    a_running_relay_publishes_concurrent_writes_once_each,
);

fn at(offset_secs: i64) -> DateTime<Utc> {
    (DateTime::from_timestamp(1_763_773_200, 0).expect("valid") + Duration::seconds(offset_secs))
        .trunc_subsecs(6)
}

fn user(email: &str, github: Option<&str>) -> User {
    User {
        id: Uuid::now_v7(),
        email: email.into(),
        name: Some("Test".into()),
        github_username: github.map(Into::into),
        created_at: at(0),
    }
}

fn task(owner: &User, repository: &str, title: &str, updated: DateTime<Utc>) -> Task {
    Task {
        id: Uuid::now_v7(),
        title: title.into(),
        description: "desc".into(),
        status: Status::NotStarted,
        priority: Priority::High,
        complexity: Complexity::Low,
        assignee_id: owner.id,
        assignee: owner.email.clone(),
        repository: repository.into(),
        created_by: "agent:test".into(),
        updated_by: "agent:test".into(),
        created_at: updated,
        updated_at: updated,
        version: 1,
    }
}

fn event(kind: &str, task: &Task) -> NewEvent {
    NewEvent::new("tasks", kind, "agent:test")
        .with_at(task.updated_at)
        .with_subject("task_id", task.id.to_string())
        .with_data(serde_json::json!({ "title": task.title }))
}

fn history(field: &str) -> Vec<HistoryEntry> {
    vec![HistoryEntry {
        field: field.into(),
        old_value: None,
        new_value: Some("x".into()),
        actor: "agent:test".into(),
        comment: None,
        at: at(0),
    }]
}

async fn users_are_found_by_id_email_or_github_username(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", Some("Alice-GH"));
    store.insert_user(&alice).await.unwrap();
    let upper = alice.id.to_string().to_uppercase();
    let simple = alice.id.simple().to_string();
    for key in [
        alice.id.to_string().as_str(),
        upper.as_str(),
        simple.as_str(),
        "alice@example.com",
        "ALICE@example.com",
        "alice-gh",
    ] {
        let found = store.find_user(key).await.unwrap();
        assert_eq!(found.as_ref(), Some(&alice), "lookup by {key}");
    }
    assert_eq!(store.find_user("nobody@example.com").await.unwrap(), None);
    assert_eq!(
        store.find_user("not-a-uuid-or-anything").await.unwrap(),
        None
    );
    assert_eq!(store.list_users().await.unwrap(), vec![alice]);
}

async fn duplicate_users_are_rejected(store: Arc<dyn TaskStore>) {
    store
        .insert_user(&user("a@example.com", Some("octo")))
        .await
        .unwrap();
    let same_email = store.insert_user(&user("a@example.com", None)).await;
    assert!(
        matches!(same_email, Err(Error::AlreadyExists { .. })),
        "{same_email:?}"
    );
    let same_github = store
        .insert_user(&user("b@example.com", Some("OCTO")))
        .await;
    assert!(
        matches!(same_github, Err(Error::AlreadyExists { .. })),
        "{same_github:?}"
    );
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

async fn tasks_round_trip_and_register_their_repository(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    store.insert_user(&alice).await.unwrap();
    let first = task(&alice, "acme/api", "first", at(1));
    store
        .insert_task(&first, &history("created"), &event("task_created", &first))
        .await
        .unwrap();
    assert_eq!(store.get_task(first.id).await.unwrap(), Some(first.clone()));

    // The same repository named in another case is the same repository.
    let mut second = task(&alice, "ACME/API", "second", at(2));
    store
        .insert_task(&second, &[], &event("task_created", &second))
        .await
        .unwrap();
    second.repository = "acme/api".into();
    assert_eq!(store.get_task(second.id).await.unwrap(), Some(second));
    let repositories = store.list_repositories().await.unwrap();
    assert_eq!(repositories.len(), 1);
    assert_eq!(repositories[0].name, "acme/api");
    assert_eq!(
        repositories[0].url.as_deref(),
        Some("https://github.com/acme/api")
    );
    assert_eq!(
        store
            .find_repository("Acme/Api")
            .await
            .unwrap()
            .map(|r| r.id),
        Some(repositories[0].id)
    );
    assert_eq!(store.get_task(Uuid::now_v7()).await.unwrap(), None);

    // A task whose assignee does not exist is refused, and nothing of it is stored.
    let ghost = user("ghost@example.com", None);
    let orphan = task(&ghost, "acme/other", "orphan", at(3));
    let refused = store
        .insert_task(
            &orphan,
            &history("created"),
            &event("task_created", &orphan),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::NotFound { kind: "user", .. })),
        "{refused:?}"
    );
    assert_eq!(store.find_repository("acme/other").await.unwrap(), None);
    assert!(store.history(orphan.id).await.unwrap().is_empty());
    assert_eq!(store.pending_events(100).await.unwrap().len(), 2);
}

fn rename(title: &'static str, at_secs: i64) -> TaskEdit {
    Box::new(move |current: &Task| {
        let mut task = current.clone();
        task.title = title.into();
        task.version += 1;
        task.updated_at = at(at_secs);
        let event = event("task_updated", &task);
        Ok(Some(TaskWrite {
            task,
            history: history("title"),
            event,
        }))
    })
}

async fn a_stale_update_writes_nothing(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    store.insert_user(&alice).await.unwrap();
    let original = task(&alice, "acme/api", "original", at(1));
    store
        .insert_task(&original, &[], &event("task_created", &original))
        .await
        .unwrap();

    let renamed = match store
        .modify_task(original.id, rename("renamed", 2))
        .await
        .unwrap()
    {
        Modified::Updated(task) => task,
        other => panic!("expected an update, got {other:?}"),
    };
    assert_eq!((renamed.title.as_str(), renamed.version), ("renamed", 2));
    assert_eq!(
        store.get_task(original.id).await.unwrap(),
        Some(renamed.clone())
    );

    // An edit that refuses, or that asks for nothing, writes nothing.
    let refused = store
        .modify_task(
            original.id,
            Box::new(|current: &Task| {
                Err(Error::Conflict {
                    task_id: current.id.to_string(),
                    expected: 1,
                    current: current.version,
                })
            }),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Conflict { current: 2, .. })),
        "{refused:?}"
    );
    let unchanged = store
        .modify_task(original.id, Box::new(|_: &Task| Ok(None)))
        .await
        .unwrap();
    assert_eq!(unchanged, Modified::Unchanged(renamed.clone()));
    assert_eq!(store.get_task(original.id).await.unwrap(), Some(renamed));
    assert_eq!(store.history(original.id).await.unwrap().len(), 1);
    assert_eq!(store.pending_events(100).await.unwrap().len(), 2);

    // An edit naming an assignee that does not exist rolls back whole.
    let ghost = Box::new(|current: &Task| {
        let mut task = current.clone();
        task.assignee_id = Uuid::now_v7();
        task.version += 1;
        let event = event("task_assigned", &task);
        Ok(Some(TaskWrite {
            task,
            history: history("assignee"),
            event,
        }))
    });
    let result = store.modify_task(original.id, ghost).await;
    assert!(
        matches!(result, Err(Error::NotFound { kind: "user", .. })),
        "{result:?}"
    );
    assert_eq!(store.history(original.id).await.unwrap().len(), 1);
    assert_eq!(store.pending_events(100).await.unwrap().len(), 2);

    let missing = store.modify_task(Uuid::now_v7(), rename("x", 3)).await;
    assert!(
        matches!(missing, Err(Error::NotFound { kind: "task", .. })),
        "{missing:?}"
    );
}

async fn deletes_keep_history_and_drop_comments(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    store.insert_user(&alice).await.unwrap();
    let doomed = task(&alice, "acme/api", "doomed", at(1));
    store
        .insert_task(
            &doomed,
            &history("created"),
            &event("task_created", &doomed),
        )
        .await
        .unwrap();
    let comment = Comment {
        id: Uuid::now_v7(),
        task_id: doomed.id,
        comment: "hello".into(),
        author: "bob".into(),
        created_at: at(2),
    };
    store
        .insert_comment(&comment, &event("task_commented", &doomed))
        .await
        .unwrap();
    assert_eq!(store.comments(doomed.id).await.unwrap(), vec![comment]);

    let stale = store.remove_task(doomed.id, deletion(Some(7))).await;
    assert!(
        matches!(stale, Err(Error::Conflict { current: 1, .. })),
        "{stale:?}"
    );
    assert!(store.get_task(doomed.id).await.unwrap().is_some());
    assert_eq!(
        store.history(doomed.id).await.unwrap().len(),
        1,
        "a refused delete writes nothing"
    );

    let removed = store
        .remove_task(doomed.id, deletion(Some(1)))
        .await
        .unwrap();
    assert_eq!(removed, doomed);
    assert_eq!(store.get_task(doomed.id).await.unwrap(), None);
    assert!(store.comments(doomed.id).await.unwrap().is_empty());
    let kept: Vec<String> = store
        .history(doomed.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.field)
        .collect();
    assert_eq!(kept, ["created", "deleted"]);
    let again = store.remove_task(doomed.id, deletion(None)).await;
    assert!(matches!(again, Err(Error::NotFound { .. })), "{again:?}");
    assert_eq!(
        store.pending_events(100).await.unwrap().len(),
        3,
        "created, commented, deleted"
    );
}

/// A deletion that insists on `expected` (when given) as the current version.
fn deletion(expected: Option<i64>) -> mcp_tasks::store::RemoveEdit {
    Box::new(move |task: &Task| {
        if let Some(expected) = expected
            && expected != task.version
        {
            return Err(Error::Conflict {
                task_id: task.id.to_string(),
                expected,
                current: task.version,
            });
        }
        Ok((history("deleted"), event("task_deleted", task)))
    })
}

async fn comments_need_an_existing_task(store: Arc<dyn TaskStore>) {
    let comment = Comment {
        id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        comment: "into the void".into(),
        author: "bob".into(),
        created_at: at(0),
    };
    let result = store
        .insert_comment(&comment, &NewEvent::new("tasks", "task_commented", "bob"))
        .await;
    assert!(
        matches!(result, Err(Error::NotFound { kind: "task", .. })),
        "{result:?}"
    );
    assert!(store.pending_events(10).await.unwrap().is_empty());
}

async fn listing_filters_and_pages_with_keyset_cursors(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    let bob = user("bob@example.com", None);
    store.insert_user(&alice).await.unwrap();
    store.insert_user(&bob).await.unwrap();
    let mut all = Vec::new();
    for i in 0..25i64 {
        let owner = if i % 2 == 0 { &alice } else { &bob };
        let repo = if i % 3 == 0 { "acme/web" } else { "acme/api" };
        // Pairs share an updated_at, so the id must break ties for paging to be exact.
        let mut t = task(
            owner,
            repo,
            &format!("task {i} {}", if i == 7 { "needle_50%" } else { "hay" }),
            at(i / 2),
        );
        if i % 5 == 0 {
            t.status = Status::Completed;
        }
        store
            .insert_task(&t, &[], &event("task_created", &t))
            .await
            .unwrap();
        all.push(t);
    }
    all.sort_by_key(|t| std::cmp::Reverse((t.updated_at, t.id)));

    let mut seen = Vec::new();
    let mut query = TaskQuery {
        limit: 4,
        ..TaskQuery::default()
    };
    loop {
        let page = store.list_tasks(&query).await.unwrap();
        assert!(page.tasks.len() <= 4);
        seen.extend(page.tasks);
        match page.next_cursor {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        seen, all,
        "paging returns every task once, in (updated_at, id) descending order"
    );

    let repo = store.find_repository("acme/web").await.unwrap().unwrap();
    let q = |f: &dyn Fn(&mut TaskQuery)| {
        let mut query = TaskQuery {
            limit: 100,
            ..TaskQuery::default()
        };
        f(&mut query);
        query
    };
    let by_alice = store
        .list_tasks(&q(&|q| q.assignee_id = Some(alice.id)))
        .await
        .unwrap()
        .tasks;
    assert_eq!(
        by_alice,
        all.iter()
            .filter(|t| t.assignee_id == alice.id)
            .cloned()
            .collect::<Vec<_>>()
    );
    let in_web = store
        .list_tasks(&q(&|q| q.repository_id = Some(repo.id)))
        .await
        .unwrap()
        .tasks;
    assert_eq!(
        in_web,
        all.iter()
            .filter(|t| t.repository == "acme/web")
            .cloned()
            .collect::<Vec<_>>()
    );
    let open = store
        .list_tasks(&q(&|q| q.status = Some(StatusFilter::Open)))
        .await
        .unwrap()
        .tasks;
    assert_eq!(
        open,
        all.iter()
            .filter(|t| t.status != Status::Completed)
            .cloned()
            .collect::<Vec<_>>()
    );
    let done = store
        .list_tasks(&q(&|q| q.status = Some(StatusFilter::Completed)))
        .await
        .unwrap()
        .tasks;
    assert_eq!(done.len(), 5);
    // LIKE wildcards in the text are matched literally.
    let needle = store
        .list_tasks(&q(&|q| q.text = Some("NEEDLE_50%".into())))
        .await
        .unwrap()
        .tasks;
    assert_eq!(
        needle.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(),
        ["task 7 needle_50%"]
    );
    let none = store
        .list_tasks(&q(&|q| q.text = Some("needle_5%x".into())))
        .await
        .unwrap()
        .tasks;
    assert!(none.is_empty());
    let combined = store
        .list_tasks(&q(&|q| {
            q.assignee_id = Some(bob.id);
            q.repository_id = Some(repo.id);
            q.status = Some(StatusFilter::Open);
        }))
        .await
        .unwrap()
        .tasks;
    let expected: Vec<Task> = all
        .iter()
        .filter(|t| {
            t.assignee_id == bob.id && t.repository == "acme/web" && t.status != Status::Completed
        })
        .cloned()
        .collect();
    assert_eq!(combined, expected);
}

async fn the_outbox_holds_one_row_per_write_until_published(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    store.insert_user(&alice).await.unwrap();
    let mut written = Vec::new();
    for i in 0..3 {
        let t = task(&alice, "acme/api", &format!("t{i}"), at(i));
        let e = event("task_created", &t);
        store.insert_task(&t, &[], &e).await.unwrap();
        written.push(e);
    }
    let pending = store.pending_events(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.event.clone()).collect::<Vec<_>>(),
        written
    );
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    store
        .mark_published(&[(pending[0].seq, EventId::new(1, 0))])
        .await
        .unwrap();
    let rest = store.pending_events(10).await.unwrap();
    assert_eq!(rest, pending[1..]);
    assert_eq!(store.pending_events(1).await.unwrap(), pending[1..2]);
}

async fn service(store: Arc<dyn TaskStore>) -> (TaskService, Arc<MemoryBus>) {
    let bus = Arc::new(MemoryBus::default());
    let service = TaskService::new(store, bus.clone());
    service
        .add_user(NewUser {
            email: "Alice@Example.com".into(),
            name: Some("Alice".into()),
            github_username: Some("alice-gh".into()),
        })
        .await
        .unwrap();
    service
        .add_user(NewUser {
            email: "bob@example.com".into(),
            ..NewUser::default()
        })
        .await
        .unwrap();
    (service, bus)
}

fn new_task(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        description: "Users cannot log in with SSO".into(),
        assignee: "alice@example.com".into(),
        repository: "acme/api".into(),
        priority: Some(Priority::High),
        complexity: None,
    }
}

async fn service_records_history_with_the_actor(store: Arc<dyn TaskStore>) {
    let (service, _bus) = service(store).await;
    let task = service
        .create_task(new_task("Fix login"), "agent:claude")
        .await
        .unwrap();
    assert_eq!(
        (task.version, task.status, task.complexity),
        (1, Status::NotStarted, Complexity::Medium)
    );
    service
        .update_status(
            &task.id.to_string(),
            Status::InProgress,
            "alice@example.com",
            Some("starting on it"),
        )
        .await
        .unwrap();
    let patch = TaskPatch {
        title: Some("Fix SSO login".into()),
        assignee: Some("bob@example.com".into()),
        ..TaskPatch::default()
    };
    let updated = service
        .update_task(&task.id.to_string(), patch, "agent:cursor", Some(2), None)
        .await
        .unwrap()
        .into_task();
    assert_eq!(
        (
            updated.version,
            updated.assignee.as_str(),
            updated.updated_by.as_str()
        ),
        (3, "bob@example.com", "agent:cursor")
    );

    let detail = service.get_task_detail(&task.id.to_string()).await.unwrap();
    assert_eq!(detail.task, updated);
    type Row<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
    );
    let rows: Vec<Row> = detail
        .history
        .iter()
        .map(|h| {
            (
                h.field.as_str(),
                h.old_value.as_deref(),
                h.new_value.as_deref(),
                h.actor.as_str(),
                h.comment.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("created", None, Some("Fix login"), "agent:claude", None),
            (
                "status",
                Some("not_started"),
                Some("in_progress"),
                "alice@example.com",
                Some("starting on it")
            ),
            (
                "title",
                Some("Fix login"),
                Some("Fix SSO login"),
                "agent:cursor",
                None
            ),
            (
                "assignee",
                Some("alice@example.com"),
                Some("bob@example.com"),
                "agent:cursor",
                None
            ),
        ]
    );

    // A patch that changes nothing is not a change: no version, no history, no event.
    let same = service
        .update_task(
            &task.id.to_string(),
            TaskPatch {
                title: Some(" Fix SSO login ".into()),
                ..TaskPatch::default()
            },
            "x",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(same, Modified::Unchanged(updated));
    assert_eq!(
        service
            .get_task_detail(&task.id.to_string())
            .await
            .unwrap()
            .history
            .len(),
        4
    );
}

async fn service_rejects_stale_versions_with_the_current_one(store: Arc<dyn TaskStore>) {
    let (service, _bus) = service(store).await;
    let task = service
        .create_task(new_task("Fix login"), "agent:claude")
        .await
        .unwrap();
    let id = task.id.to_string();
    service
        .update_status(&id, Status::Blocked, "bob", None)
        .await
        .unwrap();
    let stale = service
        .update_task(
            &id,
            TaskPatch {
                title: Some("mine".into()),
                ..TaskPatch::default()
            },
            "carol",
            Some(1),
            None,
        )
        .await;
    match &stale {
        Err(
            err @ Error::Conflict {
                expected: 1,
                current: 2,
                ..
            },
        ) => {
            assert!(
                err.to_string().contains("the current version is 2"),
                "{err}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let now = service.get_task(&id).await.unwrap();
    assert_eq!((now.title.as_str(), now.version), ("Fix login", 2));
    let deleted = service.delete_task(&id, "carol", Some(1)).await;
    assert!(
        matches!(deleted, Err(Error::Conflict { current: 2, .. })),
        "{deleted:?}"
    );
    service.delete_task(&id, "carol", Some(2)).await.unwrap();
    assert!(matches!(
        service.get_task(&id).await,
        Err(Error::NotFound { .. })
    ));
}

async fn next_event(sub: &mut mcp_core::Subscription) -> Arc<mcp_core::Event> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await {
        Ok(Some(Delivery::Event(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn service_publishes_one_event_per_committed_change(store: Arc<dyn TaskStore>) {
    let (service, bus) = service(store.clone()).await;
    let mut sub = bus
        .subscribe(EventFilter::all().topic("tasks"), None)
        .await
        .unwrap();
    let task = service
        .create_task(new_task("Fix login"), "agent:claude")
        .await
        .unwrap();
    let id = task.id.to_string();
    // Rejected writes: stale version, bad status input, unknown assignee, comment on a missing task.
    assert!(
        service
            .update_task(
                &id,
                TaskPatch {
                    title: Some("x".into()),
                    ..TaskPatch::default()
                },
                "a",
                Some(9),
                None
            )
            .await
            .is_err()
    );
    assert!(
        service
            .update_task(
                &id,
                TaskPatch {
                    assignee: Some("nobody".into()),
                    ..TaskPatch::default()
                },
                "a",
                None,
                None
            )
            .await
            .is_err()
    );
    assert!(
        service
            .add_comment(&Uuid::now_v7().to_string(), "hi", "a")
            .await
            .is_err()
    );
    service
        .update_status(&id, Status::InProgress, "alice", None)
        .await
        .unwrap();
    service
        .update_task(
            &id,
            TaskPatch {
                assignee: Some("bob@example.com".into()),
                ..TaskPatch::default()
            },
            "alice",
            None,
            None,
        )
        .await
        .unwrap();
    service
        .add_comment(&id, "looking into it", "bob")
        .await
        .unwrap();
    service
        .update_status(&id, Status::Completed, "bob", Some("fixed"))
        .await
        .unwrap();
    service.delete_task(&id, "bob", None).await.unwrap();

    let expected = [
        "task_created",
        "task_updated",
        "task_assigned",
        "task_commented",
        "task_completed",
        "task_deleted",
    ];
    let mut last = EventId::ZERO;
    for kind in expected {
        let event = next_event(&mut sub).await;
        assert_eq!(event.kind, kind);
        assert_eq!(event.subject.get("task_id"), Some(&id));
        assert_eq!(
            event.subject.get("repository").map(String::as_str),
            Some("acme/api")
        );
        assert!(event.id > last);
        last = event.id;
    }
    let extra = tokio::time::timeout(std::time::Duration::from_millis(100), sub.recv()).await;
    assert!(extra.is_err(), "no further event: {extra:?}");
    assert!(
        store.pending_events(100).await.unwrap().is_empty(),
        "everything committed was published"
    );
}

async fn concurrent_updates_with_the_same_version_have_one_winner(store: Arc<dyn TaskStore>) {
    let (service, bus) = service(store.clone()).await;
    let service = Arc::new(service);
    let task = service
        .create_task(new_task("Contended"), "agent:claude")
        .await
        .unwrap();
    let id = task.id.to_string();
    let mut sub = bus
        .subscribe(EventFilter::all().types(["task_updated"]), None)
        .await
        .unwrap();

    let mut version = task.version;
    let mut winners_total = 0;
    for round in 0..3 {
        let calls = (0..50).map(|i| {
            let service = service.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let patch = TaskPatch {
                    title: Some(format!("round {round} writer {i}")),
                    ..TaskPatch::default()
                };
                service
                    .update_task(&id, patch, &format!("writer-{i}"), Some(version), None)
                    .await
            })
        });
        let results = futures_join(calls).await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "exactly one writer wins version {version}");
        for result in &results {
            if let Err(err) = result {
                assert!(
                    matches!(err, Error::Conflict { current, .. } if *current == version + 1),
                    "{err:?}"
                );
            }
        }
        winners_total += winners;
        version += 1;
    }
    let detail = service.get_task_detail(&id).await.unwrap();
    assert_eq!(detail.task.version, version);
    let title_rows = detail.history.iter().filter(|h| h.field == "title").count();
    assert_eq!(
        title_rows, winners_total,
        "one history row per winning write, none lost"
    );
    for _ in 0..winners_total {
        next_event(&mut sub).await;
    }
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), sub.recv())
            .await
            .is_err()
    );

    // Without expected_version, concurrent writers all apply, one after another, and every
    // change is in the history.
    let calls = (0..20).map(|i| {
        let service = service.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let patch = TaskPatch {
                description: Some(format!("pass {i}")),
                ..TaskPatch::default()
            };
            service.update_task(&id, patch, "w", None, None).await
        })
    });
    for result in futures_join(calls).await {
        result.expect("an unchecked write is applied on top of whatever came before");
    }
    let detail = service.get_task_detail(&id).await.unwrap();
    assert_eq!(detail.task.version, version + 20);
    assert_eq!(
        detail
            .history
            .iter()
            .filter(|h| h.field == "description")
            .count(),
        20
    );
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task did not panic"));
    }
    out
}

async fn service_rejects_bad_input_and_changes_nothing(store: Arc<dyn TaskStore>) {
    let (service, _bus) = service(store.clone()).await;
    let cases: Vec<(NewTask, &str)> = vec![
        (
            NewTask {
                title: "   ".into(),
                ..new_task("")
            },
            "invalid title: required",
        ),
        (new_task(&"t".repeat(501)), "at most 500 characters"),
        (
            NewTask {
                assignee: "alice@exmaple.com".into(),
                ..new_task("x")
            },
            "did you mean alice@example.com",
        ),
        (
            NewTask {
                assignee: "".into(),
                ..new_task("x")
            },
            "invalid user",
        ),
        (
            NewTask {
                repository: "acme".into(),
                ..new_task("x")
            },
            "owner/name",
        ),
        (
            NewTask {
                description: "\0".into(),
                ..new_task("x")
            },
            "NUL",
        ),
    ];
    for (input, message) in cases {
        let err = service
            .create_task(input, "agent")
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains(message),
            "{err} should mention {message}"
        );
    }
    let err = service
        .create_task(new_task("ok"), " ")
        .await
        .expect_err("blank actor");
    assert!(err.to_string().contains("actor"), "{err}");
    assert!(
        store.list_repositories().await.unwrap().is_empty(),
        "no repository registered by a refused task"
    );
    assert!(store.pending_events(10).await.unwrap().is_empty());

    let task = service.create_task(new_task("ok"), "agent").await.unwrap();
    let id = task.id.to_string();
    let err = service.get_task("nope").await.expect_err("bad id");
    assert!(err.to_string().contains("not a task id"), "{err}");
    let err = service
        .update_status(&Uuid::now_v7().to_string(), Status::Completed, "a", None)
        .await
        .expect_err("missing");
    assert!(
        matches!(err, Error::NotFound { kind: "task", .. }),
        "{err:?}"
    );
    let err = service
        .add_comment(&id, " ", "a")
        .await
        .expect_err("blank comment");
    assert!(err.to_string().contains("comment"), "{err}");
    let err = service
        .add_user(NewUser {
            email: "ALICE@example.com".into(),
            ..NewUser::default()
        })
        .await
        .expect_err("dup");
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    let err = service
        .list_tasks(ListTasks {
            limit: Some(0),
            ..ListTasks::default()
        })
        .await
        .expect_err("limit");
    assert!(err.to_string().contains("between 1 and 200"), "{err}");
    let err = service
        .list_tasks(ListTasks {
            cursor: Some("garbage".into()),
            ..ListTasks::default()
        })
        .await
        .expect_err("cursor");
    assert!(err.to_string().contains("cursor"), "{err}");
    let err = service
        .list_tasks(ListTasks {
            repository: Some("acme/apj".into()),
            ..ListTasks::default()
        })
        .await
        .expect_err("repo");
    assert!(err.to_string().contains("did you mean acme/api"), "{err}");
    assert_eq!(
        service.get_task(&id).await.unwrap(),
        task,
        "nothing changed"
    );
}

async fn service_lists_with_filters(store: Arc<dyn TaskStore>) {
    let (service, _bus) = service(store).await;
    let a = service
        .create_task(new_task("first"), "agent")
        .await
        .unwrap();
    let b = service
        .create_task(
            NewTask {
                assignee: "bob@example.com".into(),
                ..new_task("second")
            },
            "agent",
        )
        .await
        .unwrap();
    let c = service
        .create_task(
            NewTask {
                repository: "acme/web".into(),
                ..new_task("third")
            },
            "agent",
        )
        .await
        .unwrap();
    service
        .update_status(&c.id.to_string(), Status::Completed, "agent", None)
        .await
        .unwrap();
    let ids = |list: mcp_tasks::service::TaskList| {
        list.tasks.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    let by_github = service
        .list_tasks(ListTasks {
            assignee: Some("ALICE-gh".into()),
            ..ListTasks::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(by_github), [c.id, a.id]);
    let api = service
        .list_tasks(ListTasks {
            repository: Some("acme/api".into()),
            ..ListTasks::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(api), [b.id, a.id]);
    let open = service
        .list_tasks(ListTasks {
            status: Some(StatusFilter::Open),
            ..ListTasks::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(open), [b.id, a.id]);
    let page = service
        .list_tasks(ListTasks {
            limit: Some(2),
            ..ListTasks::default()
        })
        .await
        .unwrap();
    let cursor = page.next_cursor.clone().expect("a second page");
    let rest = service
        .list_tasks(ListTasks {
            limit: Some(2),
            cursor: Some(cursor),
            ..ListTasks::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(page).into_iter().chain(ids(rest)).collect::<Vec<_>>(),
        [c.id, b.id, a.id]
    );
}

/// Two processes on one database, each with its own in-process bus: each must publish the
/// events of its own writes (its subscribers are the ones waiting for them), never the other's.
async fn each_instance_relays_only_its_own_events(
    first: Arc<dyn TaskStore>,
    second: Arc<dyn TaskStore>,
) {
    let (service_a, bus_a) = service(first).await;
    let bus_b = Arc::new(MemoryBus::default());
    let service_b = TaskService::new(second.clone(), bus_b.clone());
    let mut heard_a = bus_a.subscribe(EventFilter::all(), None).await.unwrap();
    let mut heard_b = bus_b.subscribe(EventFilter::all(), None).await.unwrap();

    // B commits a change whose event it has not published yet (as if its bus were down)...
    let alice = second
        .find_user("alice@example.com")
        .await
        .unwrap()
        .unwrap();
    let pending = task(&alice, "acme/api", "written by b", at(1));
    second
        .insert_task(&pending, &[], &event("task_created", &pending))
        .await
        .unwrap();
    // ...then A writes and flushes: A publishes its own event only.
    service_a
        .create_task(new_task("written by a"), "a")
        .await
        .unwrap();
    let event = next_event(&mut heard_a).await;
    assert_eq!(event.actor, "a");
    let extra = tokio::time::timeout(std::time::Duration::from_millis(50), heard_a.recv()).await;
    assert!(extra.is_err(), "A published B's event: {extra:?}");

    // B's relay still holds its row and publishes it on B's bus.
    assert_eq!(service_b.flush_outbox().await.unwrap(), 1);
    let event = next_event(&mut heard_b).await;
    assert_eq!(event.subject.get("task_id"), Some(&pending.id.to_string()));
    assert_eq!(service_a.flush_outbox().await.unwrap(), 0);
}

async fn service_keeps_the_comment_of_an_update_that_changes_nothing(store: Arc<dyn TaskStore>) {
    let (service, _bus) = service(store).await;
    let task = service
        .create_task(new_task("Fix login"), "agent")
        .await
        .unwrap();
    let id = task.id.to_string();
    let moved = service
        .update_status(&id, Status::InProgress, "alice", None)
        .await
        .unwrap();
    let again = service
        .update_status(
            &id,
            Status::InProgress,
            "alice",
            Some("still on it, waiting for review"),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Modified::Unchanged(moved.into_task()),
        "no new version"
    );
    let detail = service.get_task_detail(&id).await.unwrap();
    assert_eq!(detail.history.len(), 2, "no history row for a non-change");
    assert_eq!(detail.comments.len(), 1);
    assert_eq!(
        detail.comments[0].comment,
        "still on it, waiting for review"
    );
    assert_eq!(detail.comments[0].author, "alice");
}

/// The store remembers published events for clients that resume further back than the bus:
/// in id order (numeric, not text), after a cursor, bounded, whoever published them.
async fn published_events_are_read_back_in_id_order(store: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    store.insert_user(&alice).await.unwrap();
    let mut events = Vec::new();
    for i in 0..5 {
        let t = task(&alice, "acme/api", &format!("t{i}"), at(i));
        let e = event("task_created", &t);
        store.insert_task(&t, &[], &e).await.unwrap();
        events.push(e);
    }
    let pending = store.pending_events(10).await.unwrap();
    // Ids chosen so text order and numeric order differ (9 < 10).
    let ids = [
        EventId::new(100, 9),
        EventId::new(100, 10),
        EventId::new(101, 0),
        EventId::new(1000, 0),
    ];
    let marks: Vec<(i64, EventId)> = pending.iter().zip(ids).map(|(p, id)| (p.seq, id)).collect();
    store.mark_published(&marks).await.unwrap();

    let after = store
        .published_after(EventId::new(100, 9), 10)
        .await
        .unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), ids[1..]);
    assert_eq!(after[0].kind, "task_created");
    assert_eq!(after[0].subject, events[1].subject);
    assert_eq!(after[0].data, events[1].data);
    assert_eq!(
        store.published_after(EventId::ZERO, 2).await.unwrap().len(),
        2
    );
    assert!(
        store
            .published_after(EventId::new(1000, 0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The unpublished fifth row is not part of the record yet.
    assert_eq!(
        store
            .published_after(EventId::ZERO, 10)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// An instance died with events unpublished: another takes them over once they are old enough,
/// and not before.
async fn orphaned_events_are_taken_over(dead: Arc<dyn TaskStore>, alive: Arc<dyn TaskStore>) {
    let alice = user("alice@example.com", None);
    dead.insert_user(&alice).await.unwrap();
    let t = task(&alice, "acme/api", "left behind", at(1));
    let just_now = event("task_created", &t).with_at(Utc::now().trunc_subsecs(6));
    dead.insert_task(&t, &[], &just_now).await.unwrap();
    assert_eq!(
        alive
            .adopt_orphans(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "too young to adopt"
    );
    assert!(alive.pending_events(10).await.unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        alive
            .adopt_orphans(std::time::Duration::from_millis(10))
            .await
            .unwrap(),
        1
    );
    let adopted = alive.pending_events(10).await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(
        adopted[0].event.subject.get("task_id"),
        Some(&t.id.to_string())
    );
    assert!(
        dead.pending_events(10).await.unwrap().is_empty(),
        "no longer the dead one's"
    );
    assert_eq!(
        alive
            .adopt_orphans(std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "its own rows are not adopted again"
    );
}

/// With a relay loop running, writes hand their events to it: concurrent writes from many tasks
/// each reach the bus exactly once, and the outbox ends empty.
async fn a_running_relay_publishes_concurrent_writes_once_each(store: Arc<dyn TaskStore>) {
    let (service, bus) = service(store.clone()).await;
    let service = Arc::new(service);
    let mut sub = bus
        .subscribe(EventFilter::all().topic("tasks"), None)
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn({
        let service = service.clone();
        let stop = stop.clone();
        // A long tick, so what arrives came through the hand-off, not the periodic retry.
        async move {
            service
                .relay_until(std::time::Duration::from_secs(3600), stop.cancelled_owned())
                .await;
        }
    });
    // Let the loop start (its first tick fires at once) before writing.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut writers = Vec::new();
    for writer in 0..8 {
        let service = service.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..5 {
                let task = service
                    .create_task(new_task(&format!("task {writer}-{n}")), "agent:claude")
                    .await
                    .unwrap();
                ids.push(task.id.to_string());
            }
            ids
        }));
    }
    let mut created = std::collections::BTreeSet::new();
    for writer in writers {
        created.extend(writer.await.unwrap());
    }
    let mut received = std::collections::BTreeSet::new();
    for _ in 0..created.len() {
        let event = next_event(&mut sub).await;
        assert_eq!(event.kind, "task_created");
        assert!(
            received.insert(event.subject["task_id"].clone()),
            "{event:?} twice"
        );
    }
    assert_eq!(received, created);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), sub.recv())
            .await
            .is_err(),
        "no further events"
    );
    assert!(store.pending_events(10).await.unwrap().is_empty());
    stop.cancel();
    relay.await.unwrap();
}

/// SQLite: the store's own thread checkpoints the WAL while the store stays open, so writes
/// reach the database file without a commit ever doing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_the_wal_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let store: Arc<dyn TaskStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (service, _bus) = service(store.clone()).await;
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    for n in 0..200 {
        service
            .create_task(new_task(&format!("task {n}")), "agent:claude")
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        size() > before,
        "the database file stayed at {before} bytes while the store was open"
    );
    drop(store);
}
