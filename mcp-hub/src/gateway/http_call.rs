//! The short way out: a plain `tools/call` POSTed straight to a Streamable HTTP upstream.
//!
//! rmcp's client sends every request through its session worker: a channel to the worker, a
//! task per request stream, a progress token added to the request, an SSE parser, a channel
//! back. For a call whose client asked for no progress, the gateway POSTs the call itself on
//! the same upstream session and reads the answer, JSON or SSE. The session id and the headers
//! rmcp negotiated are learnt as rmcp sends `notifications/initialized` (again after rmcp
//! recovers an expired session), through [`Learning`], the HTTP client rmcp's transport is
//! given.
//!
//! What arrives on the call's stream before its answer is handled as rmcp's client handles
//! it: log messages are recorded and relayed, sampling and elicitation are asked of the
//! calling client and the answer POSTed back, list changes wake discovery. Sessions of the
//! 2026-07-28 protocol (per-request headers) keep rmcp's way, and so does any call before the
//! session is learnt. Unlike rmcp, a call whose stream breaks before its answer is not resumed
//! with `Last-Event-ID`: it fails, naming the upstream, and the supervisor checks the upstream.

// MCP logging is deprecated (SEP-2577), but 2025-11-25 servers still send log messages, and
// their clients still want them.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, stream::BoxStream};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::{
    ErrorData as McpError,
    model::{
        CallToolRequest, CallToolRequestParams, CancelledNotification, CancelledNotificationParam,
        ClientJsonRpcMessage, ClientNotification, ClientRequest, ErrorCode, NumberOrString,
        RequestId, ServerJsonRpcMessage, ServerNotification, ServerResult,
    },
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    },
};
use sse_stream::Sse;

use super::upstream::UpstreamClient;

/// The most of one answer (a JSON body or one SSE event) read: rmcp's own bound.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How long the rest of a stream is read after its answer, in the background, so the
/// connection can be reused.
const DRAIN: Duration = Duration::from_millis(100);
/// How long telling the upstream of a cancelled call may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// The protocol versions whose sessions this way serves: an id, and the same headers on every
/// request. (From 2026-07-28 on, rmcp puts per-request headers on each message.)
const SESSION_VERSIONS: [&[u8]; 4] = [b"2024-11-05", b"2025-03-26", b"2025-06-18", b"2025-11-25"];

/// An upstream session as rmcp negotiated it.
#[derive(Clone)]
pub(crate) struct Session {
    id: HeaderValue,
    headers: HeaderMap,
    auth: Option<String>,
}

/// What a message rmcp posts may teach of the session.
struct Learnt {
    session_id: Option<Arc<str>>,
    session: Option<Session>,
}

/// One HTTP session to an upstream (a lane), for calls that take the short way.
pub(crate) struct HttpLane {
    url: Arc<str>,
    client: reqwest::Client,
    notices: UpstreamClient,
    session: Mutex<Option<Session>>,
    next_id: AtomicU64,
    /// Calls in flight on this way, bounded as rmcp bounds its own requests per session.
    permits: tokio::sync::Semaphore,
}

/// The client a call on the short way came from: what the upstream sends on the call's own
/// stream concerns that call, so it goes to this client alone.
pub(crate) struct CallerOf {
    pub(crate) peer: rmcp::Peer<rmcp::RoleServer>,
    /// The call's own stream to the client, when the gateway writes it (see `direct.rs`).
    pub(crate) notes: Option<super::upstream::Notes>,
}

/// How a call on the short way failed.
pub(crate) enum Failure {
    /// The upstream answered with a JSON-RPC error.
    Refused(McpError),
    /// The connection or the session failed; the sentence says how.
    Broken(String),
    /// The upstream refused the request at the HTTP level (a 4xx other than 404): the
    /// upstream itself is fine.
    Rejected(String),
    /// The upstream no longer knows the session (HTTP 404), so the call was not made: rmcp's
    /// way recovers the session, and the call goes that way.
    Expired(Box<CallToolRequestParams>),
}

impl HttpLane {
    pub(crate) fn new(
        url: &str,
        client: reqwest::Client,
        notices: UpstreamClient,
        concurrency: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            url: url.into(),
            client,
            notices,
            session: Mutex::new(None),
            next_id: AtomicU64::new(0),
            permits: tokio::sync::Semaphore::new(concurrency),
        })
    }

    /// The session, once rmcp has opened it (and when its protocol suits this way).
    pub(crate) fn session(&self) -> Option<Session> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A request id of this way's own: rmcp numbers its requests, so a string never collides.
    pub(crate) fn next_id(&self) -> RequestId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        NumberOrString::String(format!("hub-{n}").into())
    }

    /// What rmcp sends tells the session: `initialize` ends the one known, and the
    /// `notifications/initialized` after it names the new one, once the upstream has
    /// accepted it (see [`HttpLane::after`]).
    fn before(
        &self,
        message: &ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) -> Learnt {
        let mut learnt = Learnt {
            session_id,
            session: None,
        };
        match message {
            ClientJsonRpcMessage::Request(request)
                if matches!(request.request, ClientRequest::InitializeRequest(_)) =>
            {
                *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            ClientJsonRpcMessage::Notification(notification)
                if matches!(
                    notification.notification,
                    ClientNotification::InitializedNotification(_)
                ) =>
            {
                let version = headers
                    .get("mcp-protocol-version")
                    .map_or(&b"2025-03-26"[..], HeaderValue::as_bytes);
                let id = learnt
                    .session_id
                    .as_deref()
                    .and_then(|id| HeaderValue::from_str(id).ok());
                if let Some(id) = id
                    && SESSION_VERSIONS.contains(&version)
                {
                    learnt.session = Some(Session {
                        id,
                        headers: headers
                            .iter()
                            .map(|(name, value)| (name.clone(), value.clone()))
                            .collect(),
                        auth,
                    });
                }
            }
            _ => {}
        }
        learnt
    }

    /// Takes the session learnt from `notifications/initialized` once it was accepted.
    fn after(&self, learnt: Learnt, accepted: bool) {
        if let Some(session) = learnt.session
            && accepted
        {
            *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        }
    }

    /// Forgets a session the upstream no longer knows; rmcp's way recovers it.
    fn forget(&self, gone: &Session) {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if session.as_ref().is_some_and(|s| s.id == gone.id) {
            *session = None;
        }
    }

    async fn post(
        &self,
        session: &Session,
        message: &ClientJsonRpcMessage,
    ) -> Result<reqwest::Response, Failure> {
        let body = serde_json::to_vec(message)
            .map_err(|e| Failure::Broken(format!("the call could not be encoded: {e}")))?;
        // Inserted, not appended: a configured header of the same name is replaced, as
        // rmcp's client does.
        let mut headers = session.headers.clone();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("mcp-session-id", session.id.clone());
        if let Some(token) = &session.auth
            && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            headers.insert(AUTHORIZATION, value);
        }
        self.client
            .post(&*self.url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Broken(mcp_core::retry::error_chain(&e)))
    }

    /// Sends the call and reads its stream to the answer.
    pub(crate) async fn call(
        &self,
        session: &Session,
        id: &RequestId,
        params: CallToolRequestParams,
        caller: Option<&CallerOf>,
    ) -> Result<ServerResult, Failure> {
        let message = ClientJsonRpcMessage::request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            id.clone(),
        );
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Failure::Broken("the session is closing".to_owned()))?;
        let mut response = self.post(session, &message).await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            self.forget(session);
            if let ClientJsonRpcMessage::Request(request) = message
                && let ClientRequest::CallToolRequest(call) = request.request
            {
                return Err(Failure::Expired(Box::new(call.params)));
            }
            return Err(Failure::Broken(
                "it no longer knows the gateway's session (HTTP 404)".to_owned(),
            ));
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !status.is_success() || status.as_u16() == 202 || status.as_u16() == 204 || !is_sse {
            let body = read_all(&mut response).await?;
            if let Ok(message) = serde_json::from_slice::<ServerJsonRpcMessage>(&body)
                && let Some(answer) = self.handle(session, id, message, caller).await
            {
                return answer;
            }
            let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            let said = if start.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", start.trim())
            };
            return Err(if status.is_client_error() {
                Failure::Rejected(format!("it refused the call with HTTP {status}{said}"))
            } else if status.is_success() {
                Failure::Broken(format!(
                    "it answered the call with HTTP {status} and no result"
                ))
            } else {
                Failure::Broken(format!("it answered the call with HTTP {status}{said}"))
            });
        }
        let mut reader = SseReader::default();
        loop {
            while let Some(data) = reader.next_event() {
                let Ok(message) = serde_json::from_str::<ServerJsonRpcMessage>(&data) else {
                    // Priming events carry no data; anything else unreadable is skipped, as
                    // rmcp's client does.
                    continue;
                };
                if let Some(answer) = self.handle(session, id, message, caller).await {
                    drain(response);
                    return answer;
                }
            }
            match response.chunk().await {
                Ok(Some(chunk)) => reader.push(&chunk)?,
                Ok(None) => {
                    return Err(Failure::Broken(
                        "it closed the call's stream without answering".to_owned(),
                    ));
                }
                Err(error) => {
                    return Err(Failure::Broken(format!(
                        "the call's stream broke: {}",
                        mcp_core::retry::error_chain(&error)
                    )));
                }
            }
        }
    }

    /// One message of the call's stream: the answer, or something to pass on.
    async fn handle(
        &self,
        session: &Session,
        id: &RequestId,
        message: ServerJsonRpcMessage,
        caller: Option<&CallerOf>,
    ) -> Option<Result<ServerResult, Failure>> {
        match message {
            ServerJsonRpcMessage::Response(response) if response.id == *id => {
                Some(Ok(response.result))
            }
            ServerJsonRpcMessage::Error(error) if error.id.as_ref() == Some(id) => {
                Some(Err(Failure::Refused(error.error)))
            }
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_) => None,
            ServerJsonRpcMessage::Notification(notification) => {
                match notification.notification {
                    ServerNotification::LoggingMessageNotification(log) => {
                        self.notices.record_log(&log.params).await;
                        match caller {
                            // A client that reads its stream slowly misses messages rather
                            // than holding up the call (the merged log has them).
                            Some(CallerOf {
                                notes: Some(notes), ..
                            }) => {
                                let _ = notes.try_send(log.params);
                            }
                            Some(CallerOf { peer, notes: None }) => {
                                let _ = peer.notify_logging_message(log.params).await;
                            }
                            None => {}
                        }
                    }
                    ServerNotification::ResourceUpdatedNotification(updated) => {
                        self.notices.resource_updated(updated.params).await;
                    }
                    ServerNotification::ToolListChangedNotification(_)
                    | ServerNotification::PromptListChangedNotification(_)
                    | ServerNotification::ResourceListChangedNotification(_) => {
                        self.notices.changed.notify_one();
                    }
                    // No progress token was sent, so no progress is routed.
                    _ => {}
                }
                None
            }
            ServerJsonRpcMessage::Request(request) => {
                let answer = match self
                    .notices
                    .answer(request.request, caller.map(|c| c.peer.clone()))
                    .await
                {
                    Ok(result) => ClientJsonRpcMessage::response(result, request.id),
                    Err(error) => ClientJsonRpcMessage::error(error, Some(request.id)),
                };
                // The upstream waits for this answer before it goes on with the call; if it
                // cannot be delivered, the call's own stream says what happened next.
                if let Ok(response) = self.post(session, &answer).await
                    && !response.status().is_success()
                {
                    tracing::debug!(status = %response.status(), "an answer to the upstream's request was refused");
                }
                None
            }
        }
    }

    /// Tells the upstream a call is cancelled, in the background and bounded.
    pub(crate) fn cancel(self: &Arc<Self>, session: Session, id: RequestId, reason: String) {
        let lane = self.clone();
        tokio::spawn(async move {
            let params = CancelledNotificationParam::new(Some(id), Some(reason));
            let message = ClientJsonRpcMessage::notification(
                ClientNotification::CancelledNotification(CancelledNotification::new(params)),
            );
            let _ = tokio::time::timeout(CANCEL_TIMEOUT, lane.post(&session, &message)).await;
        });
    }
}

/// Reads the end of a call's stream after its answer, so the connection goes back to the
/// pool: at once when it has come (as it usually has), else in the background, bounded.
fn drain(mut response: reqwest::Response) {
    loop {
        match response.chunk().now_or_never() {
            Some(Ok(Some(_))) => {}
            Some(_) => return,
            None => break,
        }
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN, async {
            while let Ok(Some(_)) = response.chunk().await {}
        })
        .await;
    });
}

async fn read_all(response: &mut reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_MESSAGE {
                    return Err(Failure::Broken(
                        "its answer is larger than 16 MiB".to_owned(),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(Failure::Broken(format!(
                    "its answer could not be read: {}",
                    mcp_core::retry::error_chain(&error)
                )));
            }
        }
    }
}

/// Server-Sent Events, as far as a call's stream needs them: each event's `data` lines.
#[derive(Default)]
struct SseReader {
    buffer: Vec<u8>,
    /// How far the buffer has been searched for the end of an event.
    searched: usize,
}

impl SseReader {
    fn push(&mut self, chunk: &[u8]) -> Result<(), Failure> {
        if self.buffer.len() + chunk.len() > MAX_MESSAGE {
            return Err(Failure::Broken(
                "an event of its answer is larger than 16 MiB".to_owned(),
            ));
        }
        self.buffer.extend_from_slice(chunk);
        Ok(())
    }

    /// The data of the next complete event, when one is buffered.
    fn next_event(&mut self) -> Option<String> {
        loop {
            let end = self.event_end()?;
            let event: Vec<u8> = self.buffer.drain(..end).collect();
            self.searched = 0;
            let mut data: Option<String> = None;
            for line in event.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(value) = line.strip_prefix(b"data") else {
                    continue;
                };
                let value = match value {
                    [] => &[][..],
                    [b':', b' ', rest @ ..] | [b':', rest @ ..] => rest,
                    _ => continue, // a field named data-something
                };
                let text = String::from_utf8_lossy(value);
                match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&text);
                    }
                    None => data = Some(text.into_owned()),
                }
            }
            if let Some(data) = data {
                return Some(data);
            }
        }
    }

    /// Where the first event ends (past its blank line): `\n\n` or `\n\r\n`.
    fn event_end(&mut self) -> Option<usize> {
        let from = self.searched.saturating_sub(2);
        let buffer = &self.buffer[from..];
        for (i, &byte) in buffer.iter().enumerate() {
            if byte != b'\n' {
                continue;
            }
            match &buffer[i + 1..] {
                [b'\n', ..] => return Some(from + i + 2),
                [b'\r', b'\n', ..] => return Some(from + i + 3),
                _ => {}
            }
        }
        self.searched = self.buffer.len();
        None
    }
}

/// The HTTP client given to rmcp's transport: reqwest's, learning the session as rmcp
/// negotiates it.
#[derive(Clone)]
pub(crate) struct Learning {
    pub(crate) inner: reqwest::Client,
    pub(crate) lane: Arc<HttpLane>,
}

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;
type StreamResult =
    Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>;

impl StreamableHttpClient for Learning {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> PostResult {
        // rmcp's default bound, which is this way's too.
        self.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            MAX_MESSAGE,
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> PostResult {
        let learnt = self
            .lane
            .before(&message, session_id, auth_header.clone(), &custom_headers);
        let posted = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                learnt.session_id.clone(),
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.lane.after(learnt, posted.is_ok());
        posted
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<reqwest::Error>>> + Send + '_ {
        *self.lane.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = StreamResult> + Send + '_ {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = StreamResult> + Send + '_ {
        self.inner.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
    }
}

/// The error a method the gateway's client does not serve gets.
pub(crate) fn not_served(method: &str) -> McpError {
    McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("the gateway does not serve {method}"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut reader = SseReader::default();
        let mut out = Vec::new();
        for chunk in chunks {
            reader.push(chunk.as_bytes()).ok();
            while let Some(data) = reader.next_event() {
                out.push(data);
            }
        }
        out
    }

    #[test]
    fn events_are_read_across_chunks_and_line_endings() {
        // A priming event with empty data, an event split across chunks, CRLF lines,
        // multi-line data, comments and other fields, and an unfinished event at the end.
        let got = events(&[
            "id: 0\ndata:\n\n",
            ": comment\nevent: message\nid: 1\nda",
            "ta: {\"a\":1}\n",
            "\n",
            "data: x\r\ndata:y\r\n\r\n",
            "retry: 10\n\n",
            "data: unfinished\n",
        ]);
        assert_eq!(got, vec!["", "{\"a\":1}", "x\ny"]);
    }

    #[test]
    fn an_event_larger_than_the_bound_is_refused() {
        let mut reader = SseReader::default();
        let big = vec![b'a'; MAX_MESSAGE];
        assert!(reader.push(&big).is_ok());
        assert!(matches!(reader.push(b"b"), Err(Failure::Broken(_))));
    }
}
