//! `GET /api/tasks/stream`: task events as Server-Sent Events, for editors that keep a task
//! list live. Every event has an `id:`; a client that reconnects with `Last-Event-ID` gets what
//! it missed (from the bus, or from the store's event table when the bus no longer holds it), or
//! a `resync` event telling it to reload when neither can replay it.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::stream::{self, Stream, StreamExt};
use mcp_core::{Delivery, Event, EventFilter, EventId};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{ApiError, ApiQuery};
use crate::{TaskService, service::TOPIC};

/// The event types a client may ask for.
const TYPES: &[&str] = &[
    "task_created",
    "task_assigned",
    "task_updated",
    "task_completed",
    "task_commented",
    "task_deleted",
];

pub(super) fn routes() -> Router<Arc<TaskService>> {
    Router::new().route("/api/tasks/stream", get(stream_tasks))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    /// Only tasks assigned to this user (id, email or GitHub username).
    user_id: Option<String>,
    /// Comma-separated `owner/name` list.
    repositories: Option<String>,
    /// Comma-separated event types.
    types: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// Ends every stream when the server shuts down, so graceful shutdown is not held open.
#[derive(Clone, Debug)]
pub(crate) struct StreamShutdown(pub(crate) CancellationToken);

#[utoipa::path(get, path = "/api/tasks/stream", tag = "tasks", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "Server-Sent Events: task_* events and resync", content_type = "text/event-stream"),
        (status = 400, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub(super) async fn stream_tasks(
    State(service): State<Arc<TaskService>>,
    shutdown: Option<Extension<StreamShutdown>>,
    metrics: Option<Extension<Arc<mcp_core::metrics::HttpMetrics>>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let mut filter = EventFilter::all().topic(TOPIC);
    if let Some(user) = &query.user_id {
        let user = service.resolve_user(user).await?;
        filter = filter.subject("assignee", [user.id.to_string()]);
    }
    if let Some(list) = &query.repositories {
        let mut names = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            names.push(service.canonical_repository(name).await?);
        }
        filter = filter.subject("repository", names);
    }
    if let Some(list) = &query.types {
        let types: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if let Some(unknown) = types.iter().find(|t| !TYPES.contains(t)) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_argument",
                format!(
                    "unknown event type {unknown:?}; known: {}",
                    TYPES.join(", ")
                ),
            ));
        }
        filter = filter.types(types);
    }
    let cursor = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    let after = match cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(text) => Some(text.parse::<EventId>().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("Last-Event-ID: {e}"),
            )
        })?),
        None => None,
    };
    let Resumed {
        subscription,
        replayed,
    } = resume(&service, &filter, after).await?;
    let from_store: Vec<SseEvent> = match replayed {
        Some(events) => events.iter().map(sse_event).collect(),
        None => vec![resync()],
    };
    let stop = shutdown
        .map(|Extension(StreamShutdown(token))| token)
        .unwrap_or_default();

    let hello = SseEvent::default()
        .retry(Duration::from_secs(3))
        .comment("connected");
    let replayed = stream::iter(from_store);
    let open = metrics.map(|Extension(metrics)| metrics.stream_opened());
    // The guard rides along in the stream's state, so the stream counts as open until dropped.
    let events = stream::unfold(Some((subscription, open)), |state| async move {
        let (mut subscription, open) = state?;
        match subscription.recv().await {
            Some(Delivery::Event(event)) => {
                Some((shared_sse_event(&event), Some((subscription, open))))
            }
            // Events were missed and cannot be replayed: the client must reload. The stream
            // goes on with live events; its cursor stays where it was.
            Some(_) => Some((resync(), Some((subscription, open)))),
            // The server cut this subscriber off (it fell behind): say so and end; the client
            // reconnects with its Last-Event-ID.
            None => Some((resync(), None)),
        }
    });
    let body = stream::once(async move { hello })
        .chain(replayed)
        .chain(events)
        .take_until(async move { stop.cancelled_owned().await })
        .map(Ok::<_, Infallible>);
    let mut response = sse_response(body).into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// At most this many events are replayed from the store; a client further behind reloads.
const MAX_STORE_REPLAY: u32 = 10_000;

/// A stream's start: the live subscription, and what the store replays before it (`None`: the
/// client missed events nobody can replay and must reload).
struct Resumed {
    subscription: mcp_core::Subscription,
    replayed: Option<Vec<Event>>,
}

/// Subscribes after `after`. When the bus no longer holds what follows `after`, the store's
/// event table replays it; then the bus is asked again from where the store's answer ends, for
/// the events published just now whose position the store has not recorded yet (they are in
/// neither the store's answer nor, the bus having resynced, the first subscription's backlog).
async fn resume(
    service: &TaskService,
    filter: &EventFilter,
    after: Option<EventId>,
) -> crate::Result<Resumed> {
    let mut subscription = service.bus().subscribe(filter.clone(), after).await?;
    let Some(cursor) = after else {
        return Ok(Resumed {
            subscription,
            replayed: Some(Vec::new()),
        });
    };
    if !subscription.take_initial_resync() {
        return Ok(Resumed {
            subscription,
            replayed: Some(Vec::new()),
        });
    }
    let Some(events) = service.events_after(cursor, MAX_STORE_REPLAY).await? else {
        return Ok(Resumed {
            subscription,
            replayed: None,
        });
    };
    if let Some(last) = events.last().map(|event| event.id) {
        let mut again = service.bus().subscribe(filter.clone(), Some(last)).await?;
        if again.take_initial_resync() {
            // The bus does not reach back that far either: what follows `last` and is not in
            // the store yet cannot be replayed; live events continue after `last`.
            subscription.skip_through(last);
        } else {
            subscription = again;
        }
    }
    Ok(Resumed {
        subscription,
        replayed: Some(events.into_iter().filter(|e| filter.matches(e)).collect()),
    })
}

fn sse_event(event: &Event) -> SseEvent {
    let body = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.clone())
        .data(body)
}

/// The last event serialized for a stream, shared by all streams: one event fans out to every
/// open stream at once, and each would otherwise serialize the same envelope again (10,000
/// times for 10,000 editors). Keyed by the event's allocation, not its id, so two buses in one
/// process cannot mix up their events.
static LAST_SERIALIZED: std::sync::Mutex<Option<(std::sync::Weak<Event>, Arc<str>)>> =
    std::sync::Mutex::new(None);

fn shared_sse_event(event: &Arc<Event>) -> SseEvent {
    let mut last = LAST_SERIALIZED.lock().unwrap_or_else(|p| p.into_inner());
    let body = match &*last {
        Some((cached, body)) if cached.upgrade().is_some_and(|c| Arc::ptr_eq(&c, event)) => {
            body.clone()
        }
        _ => {
            let body: Arc<str> = serde_json::to_string(&**event)
                .unwrap_or_else(|_| "{}".into())
                .into();
            *last = Some((Arc::downgrade(event), body.clone()));
            body
        }
    };
    drop(last);
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.clone())
        .data(&*body)
}

fn resync() -> SseEvent {
    SseEvent::default()
        .event("resync")
        .data(r#"{"reason":"events were missed; reload the tasks, then keep listening"}"#)
}

fn sse_response<S>(body: S) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>>
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    Sse::new(body).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("heartbeat"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use mcp_core::{Delivery, EventBus, EventFilter, MemoryBus, MemoryBusConfig, NewEvent};

    use super::resume;
    use crate::{
        TaskService,
        service::{NewTask, NewUser, TOPIC},
        store::SqliteStore,
    };

    /// A client resumes from a cursor the bus has forgotten. The store replays what it has
    /// recorded; the events published since but not yet recorded in the store (here, published
    /// straight to the bus) come from the bus, asked again from where the store's answer ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resuming_from_the_store_then_the_bus_leaves_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tasks.db"))
            .await
            .unwrap();
        let bus = Arc::new(MemoryBus::new(MemoryBusConfig {
            replay_capacity: 3,
            subscriber_capacity: 64,
        }));
        let service = TaskService::new(Arc::new(store), bus.clone());
        service
            .add_user(NewUser {
                email: "alice@example.com".into(),
                ..NewUser::default()
            })
            .await
            .unwrap();
        let filter = EventFilter::all().topic(TOPIC);
        let mut watcher = bus.subscribe(filter.clone(), None).await.unwrap();
        for n in 0..6 {
            let task = NewTask {
                title: format!("task {n}"),
                description: String::new(),
                assignee: "alice@example.com".into(),
                repository: "acme/api".into(),
                priority: None,
                complexity: None,
            };
            service.create_task(task, "test").await.unwrap();
        }
        let mut recorded = Vec::new();
        for _ in 0..6 {
            match watcher.recv().await {
                Some(Delivery::Event(event)) => recorded.push(event.id),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        // Published, but (as if the relay had not recorded them yet) not in the store.
        let mut unrecorded = Vec::new();
        for n in 0..2 {
            let event = NewEvent::new(TOPIC, "task_updated", "test")
                .with_subject("task_id", format!("unrecorded-{n}"));
            unrecorded.push(bus.publish(event).await.unwrap().id);
        }

        let resumed = resume(&service, &filter, Some(recorded[0])).await.unwrap();
        let replayed: Vec<_> = resumed
            .replayed
            .expect("the store replays")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(replayed, recorded[1..]);
        let mut subscription = resumed.subscription;
        for expected in unrecorded {
            let delivery =
                tokio::time::timeout(std::time::Duration::from_secs(2), subscription.recv())
                    .await
                    .expect("the bus replays what the store has not recorded");
            match delivery {
                Some(Delivery::Event(event)) => assert_eq!(event.id, expected),
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }
}
