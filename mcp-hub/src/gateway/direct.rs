//! The short way for a plain `tools/call` over Streamable HTTP.
//!
//! rmcp serves each `/mcp` POST through its session worker: the request is queued to the
//! session's task, the gateway's handler runs in a task of its own, and the answer goes back
//! as an SSE stream. For a plain `tools/call` (no progress token) that machinery costs the hub
//! more than the call does, so this layer in front of rmcp answers such a call itself: it
//! routes the call through the same [`Core::call`] (access, timeout, audit, stats, log
//! relay), and replies with one `application/json` body, which the transport allows for any
//! request. Everything else — `initialize`, other methods, calls with a progress token,
//! unknown sessions, the 2026-07-28 session-less protocol, anything it cannot read — goes to
//! rmcp unchanged, so errors and edge cases keep rmcp's answers.
//!
//! A `notifications/cancelled` for a call answered here is handled here too. A client that
//! drops the HTTP request cancels its call: the upstream is told and the audit records it.

// MCP logging is deprecated (SEP-2577), but 2025-11-25 servers still send log messages, and
// their clients still want them.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::{
    RoleServer,
    model::{
        CallToolRequestParams, LoggingMessageNotification, LoggingMessageNotificationParam,
        RequestId, ServerJsonRpcMessage, ServerNotification, ServerResult,
    },
    service::Peer,
};
use serde::Deserialize;
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CallError, Caller, Core, Downstream};

const SESSION_HEADER: &str = "mcp-session-id";

/// The downstream HTTP sessions this layer may answer for, and the calls it has in flight.
#[derive(Default)]
pub(crate) struct DirectSessions {
    /// rmcp's session id → the gateway's session number and its peer (for log messages).
    sessions: Mutex<HashMap<String, (u64, Peer<RoleServer>)>>,
    /// (session id, JSON of the request id) → the call's cancellation.
    in_flight: Mutex<HashMap<(String, String), CancellationToken>>,
}

impl DirectSessions {
    /// Remembers an initialized session (called from the session's `on_initialized`), and
    /// forgets those that have ended since.
    pub(crate) fn add(&self, http_session: String, session: u64, peer: Peer<RoleServer>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, (_, peer)| !peer.is_transport_closed());
        sessions.insert(http_session, (session, peer));
    }

    /// Forgets the sessions whose number is in `gone`.
    pub(crate) fn forget(&self, gone: &[u64]) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (session, _)| !gone.contains(session));
    }

    /// The live session for rmcp's id; a closed one is forgotten.
    fn get(&self, http_session: &str) -> Option<(u64, Peer<RoleServer>)> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let (session, peer) = sessions.get(http_session)?;
        if peer.is_transport_closed() {
            sessions.remove(http_session);
            return None;
        }
        Some((*session, peer.clone()))
    }
}

/// The session id rmcp gave a request, from the HTTP parts it passes to the handler.
pub(crate) fn http_session_of(extensions: &rmcp::model::Extensions) -> Option<String> {
    extensions
        .get::<axum::http::request::Parts>()?
        .headers
        .get(SESSION_HEADER)?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// One JSON-RPC message, as far as this layer needs to read it.
#[derive(Deserialize)]
struct Message {
    jsonrpc: String,
    id: Option<RequestId>,
    method: Option<String>,
    #[serde(default)]
    params: Option<serde_json::Value>,
}

/// The middleware in front of rmcp's `/mcp` service.
pub(crate) async fn intercept(
    axum::extract::State(core): axum::extract::State<Arc<Core>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(http_session) = candidate(&request) else {
        return next.run(request).await;
    };
    let Some((session, peer)) = core.direct.get(&http_session) else {
        // rmcp answers unknown and ended sessions (404) itself.
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    // The same bound rmcp applies to a request body.
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large or could not be read",
            )
                .into_response();
        }
    };
    let Some(message) = plain(&bytes, &parts.headers) else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    match message {
        Plain::Call { id, params } => {
            let caller =
                Caller::from_principal(parts.extensions.get::<mcp_core::auth::Principal>());
            call(&core, &http_session, caller, id, params, session, peer).await
        }
        Plain::Cancelled { request } => {
            let key = (http_session, request);
            let token = core
                .direct
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            match token {
                Some(token) => {
                    token.cancel();
                    StatusCode::ACCEPTED.into_response()
                }
                // Not one of ours: rmcp knows its own requests.
                None => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
            }
        }
    }
}

/// rmcp's default bound on a request body (4 MiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The session id of a request this layer might answer: a POST of JSON that accepts JSON, in
/// a session, not of the session-less protocol.
fn candidate(request: &Request) -> Option<String> {
    if request.method() != Method::POST || !matches!(request.uri().path(), "/" | "") {
        return None;
    }
    let headers = request.headers();
    let is_json = |value: &HeaderValue| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
    };
    if !headers.get(header::CONTENT_TYPE).is_some_and(is_json) {
        return None;
    }
    // rmcp refuses a client that does not accept both; so does this layer, by leaving it to rmcp.
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect::<Vec<_>>();
    if !accepts.iter().any(|v| v == "application/json")
        || !accepts.iter().any(|v| v == "text/event-stream")
    {
        return None;
    }
    // The versions the gateway negotiates; any other header value is rmcp's to refuse.
    if headers.get("mcp-protocol-version").is_some_and(|v| {
        !matches!(
            v.as_bytes(),
            b"2024-11-05" | b"2025-03-26" | b"2025-06-18" | b"2025-11-25"
        )
    }) {
        return None;
    }
    headers
        .get(SESSION_HEADER)?
        .to_str()
        .ok()
        .map(str::to_owned)
}

enum Plain {
    Call {
        id: RequestId,
        params: CallToolRequestParams,
    },
    Cancelled {
        request: String,
    },
}

/// The message, when it is one this layer answers: a `tools/call` without a progress token or
/// anything but a name, arguments and `_meta`, or a `notifications/cancelled`.
fn plain(body: &Bytes, headers: &HeaderMap) -> Option<Plain> {
    let message: Message = serde_json::from_slice(body).ok()?;
    if message.jsonrpc != "2.0" {
        return None;
    }
    let method = message.method?;
    // SEP-2243: a method header that contradicts the body is rmcp's to refuse.
    if headers
        .get("mcp-method")
        .is_some_and(|v| v.as_bytes() != method.as_bytes())
    {
        return None;
    }
    match (method.as_str(), message.id) {
        ("tools/call", Some(id)) => {
            let params = message.params?;
            let object = params.as_object()?;
            if object
                .keys()
                .any(|key| !matches!(key.as_str(), "name" | "arguments" | "_meta"))
            {
                return None;
            }
            // Progress needs the request's own SSE stream: rmcp's way.
            if object
                .get("_meta")
                .is_some_and(|meta| meta.get("progressToken").is_some())
            {
                return None;
            }
            let params: CallToolRequestParams = serde_json::from_value(params).ok()?;
            Some(Plain::Call { id, params })
        }
        ("notifications/cancelled", None) => {
            let request = message.params?.get("requestId")?.clone();
            Some(Plain::Cancelled {
                request: serde_json::to_string(&request).ok()?,
            })
        }
        _ => None,
    }
}

/// Routes the call, findable by `notifications/cancelled` while it runs; a client that goes
/// away cancels it (see [`Core::call_detached`]). A call that finishes before the upstream
/// logs anything is answered with one JSON body. Once the upstream logs during the call, the
/// answer becomes an SSE stream: the log messages as they come, then the answer, so the
/// client has them all before its result (as on rmcp's way, where they share the request's
/// stream).
async fn call(
    core: &Arc<Core>,
    http_session: &str,
    caller: Caller,
    id: RequestId,
    params: CallToolRequestParams,
    session: u64,
    peer: Peer<RoleServer>,
) -> Response {
    let cancel = CancellationToken::new();
    let key = (
        http_session.to_owned(),
        serde_json::to_string(&id).unwrap_or_default(),
    );
    let in_flight = InFlight::register(core.clone(), key, cancel.clone());
    let (notes, mut logged) = mpsc::channel(NOTES);
    let downstream = Downstream {
        session,
        peer,
        progress: None,
        notes: Some(notes),
    };
    let routed = {
        let core = core.clone();
        async move {
            core.call_detached(&caller, params, Some(downstream), cancel, "mcp")
                .await
        }
    };
    let mut routed: Pin<Box<dyn Future<Output = Outcome> + Send>> = Box::pin(routed);
    let first = tokio::select! {
        biased;
        outcome = &mut routed => {
            // What was logged before the answer still goes first.
            match logged.try_recv() {
                Ok(first) => Streamed::Ending { first: Some(first), outcome, logged, id },
                Err(_) => return json(&answer(outcome, id)),
            }
        }
        Some(first) = logged.recv() => Streamed::Streaming { first: Some(first), routed, logged, id, _in_flight: in_flight },
    };
    let stream = futures_util::stream::unfold(first, next_chunk);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// How many log messages of one call may wait for its client to read them.
const NOTES: usize = 64;

type Outcome = Result<super::CallToolResponse, CallError>;

/// The state of a call answered as an SSE stream.
enum Streamed {
    /// The call runs; log messages are sent as they come.
    Streaming {
        first: Option<LoggingMessageNotificationParam>,
        routed: Pin<Box<dyn Future<Output = Outcome> + Send>>,
        logged: mpsc::Receiver<LoggingMessageNotificationParam>,
        id: RequestId,
        /// Keeps the call findable by `notifications/cancelled`; dropping the stream (the
        /// client hung up) drops `routed`, which cancels the call.
        _in_flight: InFlight,
    },
    /// The call is answered: the log messages still queued, then the answer.
    Ending {
        first: Option<LoggingMessageNotificationParam>,
        outcome: Outcome,
        logged: mpsc::Receiver<LoggingMessageNotificationParam>,
        id: RequestId,
    },
    Done,
}

async fn next_chunk(
    state: Streamed,
) -> Option<(Result<Bytes, std::convert::Infallible>, Streamed)> {
    match state {
        Streamed::Streaming {
            mut first,
            mut routed,
            mut logged,
            id,
            _in_flight,
        } => {
            if let Some(note) = first.take() {
                let chunk = event(&log_message(note));
                return Some((
                    Ok(chunk),
                    Streamed::Streaming {
                        first,
                        routed,
                        logged,
                        id,
                        _in_flight,
                    },
                ));
            }
            tokio::select! {
                biased;
                Some(note) = logged.recv() => Some((
                    Ok(event(&log_message(note))),
                    Streamed::Streaming { first, routed, logged, id, _in_flight },
                )),
                outcome = &mut routed => {
                    Some((Ok(last_chunk(None, &mut logged, outcome, id)), Streamed::Done))
                }
            }
        }
        Streamed::Ending {
            first,
            outcome,
            mut logged,
            id,
        } => Some((
            Ok(last_chunk(first, &mut logged, outcome, id)),
            Streamed::Done,
        )),
        Streamed::Done => None,
    }
}

/// The end of a call's stream: the log messages still queued, then the answer.
fn last_chunk(
    first: Option<LoggingMessageNotificationParam>,
    logged: &mut mpsc::Receiver<LoggingMessageNotificationParam>,
    outcome: Outcome,
    id: RequestId,
) -> Bytes {
    let mut chunk = Vec::new();
    for note in first
        .into_iter()
        .chain(std::iter::from_fn(|| logged.try_recv().ok()))
    {
        chunk.extend_from_slice(&event(&log_message(note)));
    }
    chunk.extend_from_slice(&event(&answer(outcome, id)));
    Bytes::from(chunk)
}

fn log_message(params: LoggingMessageNotificationParam) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::notification(ServerNotification::LoggingMessageNotification(
        LoggingMessageNotification::new(params),
    ))
}

/// The JSON-RPC answer to the call.
fn answer(outcome: Outcome, id: RequestId) -> ServerJsonRpcMessage {
    match outcome.map_err(CallError::into_mcp) {
        Ok(response) => ServerJsonRpcMessage::response(ServerResult::from(response), id),
        Err(Ok(result)) => ServerJsonRpcMessage::response(ServerResult::CallToolResult(result), id),
        Err(Err(error)) => ServerJsonRpcMessage::error(error, Some(id)),
    }
}

/// One SSE event carrying `message`.
fn event(message: &ServerJsonRpcMessage) -> Bytes {
    let mut chunk = b"data: ".to_vec();
    // Serializing the protocol's own types does not fail; should it, the event is empty and
    // the client's read of the stream tells it the call went wrong.
    let _ = serde_json::to_writer(&mut chunk, message);
    chunk.extend_from_slice(b"\n\n");
    Bytes::from(chunk)
}

fn json(message: &ServerJsonRpcMessage) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A call in flight, found by `notifications/cancelled` until it is dropped.
struct InFlight {
    core: Arc<Core>,
    key: (String, String),
}

impl InFlight {
    fn register(core: Arc<Core>, key: (String, String), cancel: CancellationToken) -> Self {
        core.direct
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), cancel);
        Self { core, key }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.core
            .direct
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Option<Plain> {
        plain(&Bytes::from(body.to_owned()), &HeaderMap::new())
    }

    #[test]
    fn only_plain_calls_and_cancellations_take_the_short_way() {
        let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a__echo","arguments":{"text":"x"},"_meta":{"trace":"t"}}}"#;
        assert!(
            matches!(parse(call), Some(Plain::Call { params, .. }) if params.name == "a__echo")
        );
        let cancel =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r1"}}"#;
        assert!(matches!(parse(cancel), Some(Plain::Cancelled { request }) if request == "\"r1\""));
        for other in [
            // Progress needs the request's stream.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1}}}"#,
            // A field this layer does not know (a task request, input responses...).
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","task":{}}}"#,
            // Not a call, a notification, a batch, broken JSON, a wrong version, no id.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a""#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#,
            // Params rmcp would refuse: it gives the error.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        ] {
            assert!(parse(other).is_none(), "{other}");
        }
        // A method header contradicting the body is rmcp's to refuse.
        let mut headers = HeaderMap::new();
        headers.insert("mcp-method", HeaderValue::from_static("tools/list"));
        assert!(plain(&Bytes::from(call), &headers).is_none());
    }
}
