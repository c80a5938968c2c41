//! Live snapshots for dashboards: `GET /api/dashboard/ws` (WebSocket) and
//! `GET /api/dashboard/stream` (Server-Sent Events) carry the same messages. A connection starts
//! with `initial_data` (every matching snapshot) or, when it resumes with `last_event_id`, with
//! one `<channel>_update` for each snapshot announced after that id; then every update as it is
//! announced. Snapshots are whole states, so what a client missed is exactly the latest state
//! of each snapshot that changed since its cursor, and the store says which: resuming needs no
//! replay from the bus, works across restarts, and costs nothing when nothing changed. When the
//! store holds a snapshot that was never announced (the bus was down), or the bus cuts off a
//! client that fell behind, the client gets a fresh `initial_data`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::stream::{self, StreamExt};
use mcp_core::{
    Delivery, Event, EventId, Subscription,
    http::{ApiError, ApiQuery},
    metrics::HttpMetrics,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Result,
    hub::{Hub, announcement},
    snapshot::{Snapshot, SnapshotQuery},
    validate,
};

/// How often an idle WebSocket is pinged (and an SSE stream sent a comment).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The largest message a dashboard may send (they send only small subscribe requests).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Ends every live connection when the server shuts down, so graceful shutdown is not held open.
#[derive(Clone, Debug, Default)]
pub(crate) struct LiveShutdown(pub(crate) CancellationToken);

pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/dashboard/ws", get(websocket))
        .route("/api/dashboard/stream", get(sse))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveParams {
    /// Comma-separated channel names; all when absent.
    channels: Option<String>,
    repository: Option<String>,
    last_event_id: Option<String>,
    /// Read by the auth middleware (browsers cannot set headers on these connections).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// What a connection is subscribed to.
fn subscription_query(channels: Option<&str>, repository: Option<String>) -> Result<SnapshotQuery> {
    let channels: Vec<String> = channels
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    for channel in &channels {
        validate::channel(channel)?;
    }
    let repository = repository.filter(|r| !r.trim().is_empty());
    if let Some(repository) = &repository {
        validate::repository(repository)?;
    }
    Ok(SnapshotQuery {
        channels,
        repository,
    })
}

fn parse_cursor(text: Option<&str>) -> Result<Option<EventId>, ApiError> {
    match text.map(str::trim).filter(|c| !c.is_empty()) {
        Some(text) => text.parse::<EventId>().map(Some).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("last_event_id: {e}"),
            )
        }),
        None => Ok(None),
    }
}

/// A connection's start: its live subscription and the messages to send before live ones.
struct Start {
    subscription: Subscription,
    first: Vec<First>,
}

/// A message sent before the live ones.
enum First {
    /// Every matching snapshot, as `{"type":"initial_data","id",…}`.
    Initial(Value),
    /// A snapshot the client missed, as the announcement it would have received.
    Missed(Event),
}

async fn start(hub: &Hub, query: &SnapshotQuery, after: Option<EventId>) -> Result<Start> {
    // Subscribe before listing: a push between the two is then both listed and announced
    // (harmless: a snapshot is a whole state, and clients ignore a revision they already
    // have), never neither.
    let mut subscription = hub.subscribe(query, None).await?;
    let snapshots = hub.snapshots(query).await?;
    // An empty store with a cursor from before means the store lost its state (a `memory:`
    // hub restarted): the client must drop what it holds, so it gets an empty initial_data.
    if let Some(cursor) = after
        && !snapshots.is_empty()
        && snapshots.iter().all(|s| s.event_id.is_some())
    {
        let mut missed: Vec<Snapshot> = snapshots
            .into_iter()
            .filter(|s| s.event_id.is_some_and(|id| id > cursor))
            .collect();
        missed.sort_by_key(|s| s.event_id);
        if let Some(last) = missed.last().and_then(|s| s.event_id) {
            // Announcements up to the last one sent are older states of what was just sent.
            subscription.skip_through(last);
        }
        let first = missed
            .iter()
            .filter_map(|s| Some(First::Missed(announcement(s).into_event(s.event_id?))))
            .collect();
        return Ok(Start {
            subscription,
            first,
        });
    }
    Ok(Start {
        subscription,
        first: vec![First::Initial(initial_data(snapshots))],
    })
}

fn initial_data(snapshots: Vec<Snapshot>) -> Value {
    let latest = snapshots.iter().filter_map(|s| s.event_id).max();
    json!({
        "type": "initial_data",
        "id": latest,
        "data": { "snapshots": snapshots },
    })
}

impl First {
    fn text(&self) -> String {
        match self {
            First::Initial(initial) => initial.to_string(),
            First::Missed(event) => envelope(event),
        }
    }

    fn sse(&self) -> SseEvent {
        match self {
            First::Initial(initial) => initial_sse(initial),
            First::Missed(event) => event_sse(event),
        }
    }
}

fn envelope(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| "{}".into())
}

async fn websocket(
    State(hub): State<Arc<Hub>>,
    shutdown: Option<Extension<LiveShutdown>>,
    metrics: Option<Extension<Arc<HttpMetrics>>>,
    ApiQuery(params): ApiQuery<LiveParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let query = subscription_query(params.channels.as_deref(), params.repository)?;
    let after = parse_cursor(params.last_event_id.as_deref())?;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return Err(ApiError::new(
                rejection.status(),
                "bad_request",
                format!("{}: connect with a WebSocket client", rejection.body_text()),
            ));
        }
    };
    // Started before the upgrade, so a bad subscription or a store that does not answer is an
    // HTTP error the client can read, not a socket that closes.
    let start = start(&hub, &query, after).await?;
    let stop = shutdown.map(|Extension(s)| s.0).unwrap_or_default();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let _open = metrics.map(|Extension(metrics)| metrics.stream_opened());
            if let Err(error) = serve_socket(socket, hub, query, start, stop).await {
                tracing::debug!(%error, "dashboard websocket ended");
            }
        }))
}

/// What a dashboard may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    /// Replace the subscription; answered with a fresh `initial_data`.
    Subscribe {
        #[serde(default)]
        channels: Option<Vec<String>>,
        #[serde(default)]
        repository: Option<String>,
    },
    Ping,
}

async fn serve_socket(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    mut query: SnapshotQuery,
    start: Start,
    stop: CancellationToken,
) -> std::result::Result<(), axum::Error> {
    let Start {
        mut subscription,
        first,
    } = start;
    for message in first {
        socket.send(Message::text(message.text())).await?;
    }
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return Ok(());
            }
            delivery = subscription.recv() => match delivery {
                Some(Delivery::Event(event)) => {
                    socket.send(Message::text(envelope(&event))).await?;
                }
                // Missed events (or cut off for falling behind): start over from the snapshots.
                _ => {
                    match start_over(&hub, &query).await {
                        Ok((fresh, initial)) => {
                            subscription = fresh;
                            socket.send(Message::text(initial.to_string())).await?;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot resync a dashboard; closing it");
                            let _ = socket.send(Message::Close(None)).await;
                            return Ok(());
                        }
                    }
                }
            },
            message = socket.recv() => {
                let Some(message) = message else { return Ok(()) };
                match message? {
                    Message::Text(text) => {
                        let reply = match serde_json::from_str::<ClientMessage>(text.as_str()) {
                            Ok(ClientMessage::Ping) => json!({"type": "pong"}),
                            Ok(ClientMessage::Subscribe { channels, repository }) => {
                                let channels = channels.map(|c| c.join(","));
                                match subscription_query(channels.as_deref(), repository) {
                                    Ok(new_query) => match start_over(&hub, &new_query).await {
                                        Ok((fresh, initial)) => {
                                            query = new_query;
                                            subscription = fresh;
                                            initial
                                        }
                                        Err(error) => error_message(&for_client(&error)),
                                    },
                                    Err(error) => error_message(&for_client(&error)),
                                }
                            }
                            Err(error) => error_message(&format!(
                                "expected {{\"type\":\"subscribe\",\"channels\":[…],\"repository\":…}} or {{\"type\":\"ping\"}}: {error}"
                            )),
                        };
                        socket.send(Message::text(reply.to_string())).await?;
                    }
                    Message::Close(_) => return Ok(()),
                    // Pings are answered by axum; pongs and binary frames mean nothing here.
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                socket.send(Message::Ping(Default::default())).await?;
            }
        }
    }
}

/// A fresh subscription and the `initial_data` to send with it.
async fn start_over(hub: &Hub, query: &SnapshotQuery) -> Result<(Subscription, Value)> {
    let subscription = hub.subscribe(query, None).await?;
    let snapshots = hub.snapshots(query).await?;
    Ok((subscription, initial_data(snapshots)))
}

/// What a dashboard is told of `error`: what was wrong with its request, or only that the hub
/// could not serve it (storage details go to the log).
fn for_client(error: &Error) -> String {
    match error {
        Error::Invalid { .. } | Error::Schema { .. } => error.to_string(),
        other => {
            tracing::warn!(error = %other, "cannot serve a dashboard's subscription");
            "the hub cannot serve this subscription now; try again".into()
        }
    }
}

fn error_message(message: &str) -> Value {
    json!({ "type": "error", "message": message })
}

async fn sse(
    State(hub): State<Arc<Hub>>,
    shutdown: Option<Extension<LiveShutdown>>,
    metrics: Option<Extension<Arc<HttpMetrics>>>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<LiveParams>,
) -> Result<Response, ApiError> {
    let query = subscription_query(params.channels.as_deref(), params.repository)?;
    let cursor = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(params.last_event_id);
    let after = parse_cursor(cursor.as_deref())?;
    let Start {
        subscription,
        first,
    } = start(&hub, &query, after).await?;
    let stop = shutdown.map(|Extension(s)| s.0).unwrap_or_default();
    let hello = SseEvent::default()
        .retry(Duration::from_secs(2))
        .comment("connected");
    let first: Vec<SseEvent> = first.iter().map(First::sse).collect();
    let events = stream::unfold(Some((hub, query, subscription)), |state| async move {
        let (hub, query, mut subscription) = state?;
        match subscription.recv().await {
            Some(Delivery::Event(event)) => {
                Some((event_sse(&event), Some((hub, query, subscription))))
            }
            _ => match start_over(&hub, &query).await {
                Ok((fresh, initial)) => Some((initial_sse(&initial), Some((hub, query, fresh)))),
                Err(error) => {
                    tracing::warn!(%error, "cannot resync a dashboard stream; ending it");
                    None
                }
            },
        }
    });
    // The guard rides along in the stream, so the stream counts as open until it is dropped.
    let open = metrics.map(|Extension(metrics)| metrics.stream_opened());
    let body = stream::once(async move { hello })
        .chain(stream::iter(first))
        .chain(events)
        .take_until(async move { stop.cancelled_owned().await })
        .map(move |event| {
            let _open = &open;
            Ok::<_, Infallible>(event)
        });
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn event_sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.clone())
        .data(envelope(event))
}

fn initial_sse(initial: &Value) -> SseEvent {
    let event = SseEvent::default()
        .event("initial_data")
        .data(initial.to_string());
    match initial.get("id").and_then(Value::as_str) {
        Some(id) => event.id(id),
        None => event,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use mcp_core::{Delivery, MemoryBus};
    use serde_json::json;

    use super::*;
    use crate::{
        Push, SnapshotStore,
        snapshot::{MemorySnapshotStore, NewSnapshot},
    };

    fn push(repository: &str) -> Push {
        Push {
            channel: "issues".into(),
            repository: Some(repository.into()),
            title: None,
            data: json!({ "issues": [{ "number": 1, "title": "x" }] }),
            idempotency_key: None,
        }
    }

    fn kinds(first: &[First]) -> Vec<String> {
        first
            .iter()
            .map(|message| match message {
                First::Initial(_) => "initial_data".to_owned(),
                First::Missed(event) => format!("{} {}", event.kind, event.subject["repository"]),
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resuming_client_gets_what_changed_after_its_cursor_then_live_updates() {
        let store = Arc::new(MemorySnapshotStore::default());
        let hub = Arc::new(Hub::new(store.clone(), Arc::new(MemoryBus::default())));
        let api = hub.sync(push("acme/api"), "test").await.unwrap();
        let web = hub.sync(push("acme/web"), "test").await.unwrap();
        let cli = hub.sync(push("acme/cli"), "test").await.unwrap();
        let query = SnapshotQuery::default();

        let start_after_api = start(&hub, &query, api.event_id).await.unwrap();
        assert_eq!(
            kinds(&start_after_api.first),
            ["issues_update acme/web", "issues_update acme/cli"],
            "in id order, and nothing from before the cursor"
        );
        let up_to_date = start(&hub, &query, cli.event_id).await.unwrap();
        assert!(up_to_date.first.is_empty(), "nothing changed since");
        let mut subscription = up_to_date.subscription;
        let next = hub.sync(push("acme/web"), "test").await.unwrap();
        match subscription.recv().await {
            Some(Delivery::Event(event)) => assert_eq!(Some(event.id), next.event_id),
            other => panic!("expected the live update, got {other:?}"),
        }
        assert!(web.event_id < cli.event_id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unannounced_snapshot_or_an_empty_store_means_starting_over() {
        let store = Arc::new(MemorySnapshotStore::default());
        let hub = Arc::new(Hub::new(store.clone(), Arc::new(MemoryBus::default())));
        let query = SnapshotQuery::default();
        // A cursor from a hub that lost its state: the client must drop what it holds.
        let empty = start(&hub, &query, Some(EventId::new(1, 0))).await.unwrap();
        assert_eq!(kinds(&empty.first), ["initial_data"]);

        let api = hub.sync(push("acme/api"), "test").await.unwrap();
        // Stored without an announcement (as when the bus was down): its id is unknown, so the
        // cursor cannot say whether the client has it.
        store
            .put(NewSnapshot {
                channel: "issues".into(),
                repository: Some("acme/web".into()),
                title: "t".into(),
                data: json!({ "issues": [] }),
                actor: "test".into(),
                idempotency_key: None,
            })
            .await
            .unwrap();
        let resumed = start(&hub, &query, api.event_id).await.unwrap();
        assert_eq!(kinds(&resumed.first), ["initial_data"]);
        let First::Initial(initial) = &resumed.first[0] else {
            unreachable!()
        };
        assert_eq!(initial["data"]["snapshots"].as_array().unwrap().len(), 2);
    }
}
