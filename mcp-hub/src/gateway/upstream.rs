//! The `Upstream` seam: how a session to one MCP server behind the gateway is opened. A stdio
//! upstream is a child process the gateway owns (it is always reaped, and its stderr lines
//! become log entries); a Streamable HTTP upstream is a URL with optional headers.

// MCP logging is deprecated (SEP-2577), but 2025-11-25 servers still send log messages, and
// their clients still want them.
#![allow(deprecated)]

use std::{
    collections::{HashMap, VecDeque},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use futures_util::StreamExt;
use rmcp::{
    ClientHandler, ErrorData as McpError, RoleClient, ServiceExt,
    model::{
        ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
        CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
        ElicitResult, Implementation, JsonRpcMessage, LoggingMessageNotificationParam,
        NumberOrString, ProgressNotificationParam, ProgressToken, ResourceUpdatedNotificationParam,
        ServerNotification, ServerRequest,
    },
    service::{
        NotificationContext, RequestContext, RunningService, RxJsonRpcMessage, TxJsonRpcMessage,
    },
    transport::{
        IntoTransport, StreamableHttpClientTransport, Transport as McpTransport,
        common::client_side_sse::ExponentialBackoff,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio::{
    process::{Child, Command},
    sync::Notify,
};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::{
    Downstream,
    config::Transport,
    logs::{LogBook, LogLevel, LogSource},
};

/// How long an upstream may take to start and answer `initialize`.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest stderr line kept whole; longer ones are cut (a child that never writes a newline
/// must not grow the hub's memory).
const MAX_STDERR_LINE: usize = 8 * 1024;
/// How many of a child's last stderr lines an error message quotes.
const STDERR_TAIL: usize = 3;
/// How many requests the gateway keeps in flight on one HTTP upstream session.
const HTTP_CONCURRENCY: usize = 256;

/// One MCP server behind the gateway.
#[async_trait]
pub(crate) trait Upstream: Send + Sync {
    /// Opens a session: starts the child or connects to the URL and completes `initialize`.
    /// The error is a sentence for people: it names what failed.
    async fn connect(&self, client: UpstreamClient) -> Result<Connection, String>;
}

/// An open session, and for a stdio upstream the child that serves it.
pub(crate) struct Connection {
    pub(crate) session: RunningService<RoleClient, UpstreamClient>,
    pub(crate) child: Option<OwnedChild>,
    /// For an HTTP upstream, the short way plain calls take on this session.
    pub(crate) http: Option<Arc<super::http_call::HttpLane>>,
}

/// A child process the gateway started. Dropping it kills it; [`OwnedChild::stop`] and
/// [`OwnedChild::exited`] reap it.
pub(crate) struct OwnedChild {
    child: Child,
    /// Its pid, which is its process group's id, kept after it is reaped: what it started
    /// may still run.
    group: Option<u32>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl OwnedChild {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGKILL to the child alone (not its group), as a crash would end it; it is reaped
    /// by [`OwnedChild::exited`] or [`OwnedChild::stop`] as any exit is.
    pub(crate) fn kill_now(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Waits until the child exits by itself, reaping it.
    pub(crate) async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Gives the child `grace` to exit after its stdin closed, then kills it; reaps it either
    /// way. Whatever it started in its process group (a `sh -c` wrapper's server, a
    /// server's helpers) is killed too, so nothing it leaves behind outlives the session.
    pub(crate) async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        let group = self.group;
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                // While the leader is not reaped its group id cannot be reused.
                kill_group(group);
                // kill() sends SIGKILL and waits, so no zombie is left.
                let _ = self.child.kill().await;
                self.child.try_wait().ok().flatten()
            }
        };
        // The leader exited by itself: what is left of its group goes too.
        kill_group(group);
        status
    }

    /// The child's last few stderr lines, for an error message.
    pub(crate) fn stderr_tail(&self) -> String {
        tail_text(&self.stderr_tail)
    }
}

/// SIGKILL to the process group the child leads (it was started with `process_group(0)`).
fn kill_group(leader: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = leader.and_then(|pid| i32::try_from(pid).ok()) {
        // ESRCH (the group is empty) is the usual answer.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    #[cfg(not(unix))]
    let _ = leader;
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tail.iter().cloned().collect::<Vec<_>>().join(" | ")
}

/// Describes an exit status as a person reads it.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    "exited".to_owned()
}

/// What an upstream's notifications reach: the gateway's progress relay, its log book, and
/// the supervisor (list changes).
#[derive(Clone)]
pub(crate) struct UpstreamClient {
    pub(crate) server: Arc<str>,
    /// Which of the upstream's sessions this is (0 is the one that lists and subscribes);
    /// each session numbers its progress tokens from 0, so routes are keyed by it too.
    pub(crate) lane: u32,
    pub(crate) logs: Arc<LogBook>,
    pub(crate) relay: Arc<ProgressRelay>,
    /// Woken when the upstream says its tools, prompts or resources changed.
    pub(crate) changed: Arc<Notify>,
    /// Notifications being passed on (see [`Handling`]).
    pub(crate) handling: Arc<Handling>,
}

/// rmcp hands each notification to a task of its own, so an upstream's last progress or log
/// message of a call may still be on its way when the call's answer arrives. The transport
/// counts them as they arrive, in order with the answers, and the handlers count them when
/// passed on; a call waits until every one that came before its answer is passed on, so its
/// client sees them first, as the upstream sent them.
#[derive(Default)]
pub(crate) struct Handling {
    received: std::sync::atomic::AtomicU64,
    handled: std::sync::atomic::AtomicU64,
    progressed: Notify,
}

struct Handled<'a>(&'a Handling);

impl Drop for Handled<'_> {
    fn drop(&mut self) {
        self.0
            .handled
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.0.progressed.notify_waiters();
    }
}

impl Handling {
    fn enter(&self) -> Handled<'_> {
        Handled(self)
    }

    /// Waits (at most `bound`) until the notifications received so far are passed on.
    pub(crate) async fn settle(&self, bound: Duration) {
        let target = self.received.load(std::sync::atomic::Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let progressed = self.progressed.notified();
            if self.handled.load(std::sync::atomic::Ordering::Acquire) >= target {
                return;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return;
            }
        }
    }
}

/// A transport that counts the progress and log notifications it receives (see [`Handling`]).
pub(crate) struct Counted<T> {
    inner: T,
    handling: Arc<Handling>,
}

impl<T: McpTransport<RoleClient>> McpTransport<RoleClient> for Counted<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(notification) = &message
            && matches!(
                notification.notification,
                ServerNotification::ProgressNotification(_)
                    | ServerNotification::LoggingMessageNotification(_)
            )
        {
            self.handling
                .received
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        Some(message)
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

fn counted<T, E, A>(
    transport: T,
    handling: Arc<Handling>,
) -> Counted<impl McpTransport<RoleClient, Error = E>>
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    Counted {
        inner: transport.into_transport(),
        handling,
    }
}

impl UpstreamClient {
    /// Asks the calling client to sample for the upstream: `to`, when the call is known, else
    /// the upstream's newest caller.
    pub(crate) async fn sample(
        &self,
        params: CreateMessageRequestParams,
        to: Option<rmcp::Peer<rmcp::RoleServer>>,
    ) -> Result<CreateMessageResult, McpError> {
        let peer = match to {
            Some(peer) => peer,
            None => self.caller("sampling")?,
        };
        match peer
            .send_request(ServerRequest::CreateMessageRequest(
                CreateMessageRequest::new(params),
            ))
            .await
        {
            Ok(ClientResult::CreateMessageResult(result)) => Ok(*result),
            Ok(_) => Err(McpError::internal_error(
                "the client answered sampling with something else",
                None,
            )),
            Err(error) => Err(downstream_error(error)),
        }
    }

    /// Asks the calling client to elicit for the upstream (`to` as for [`Self::sample`]).
    pub(crate) async fn elicit(
        &self,
        params: ElicitRequestParams,
        to: Option<rmcp::Peer<rmcp::RoleServer>>,
    ) -> Result<ElicitResult, McpError> {
        let peer = match to {
            Some(peer) => peer,
            None => self.caller("elicitation")?,
        };
        match peer
            .send_request(ServerRequest::ElicitRequest(ElicitRequest::new(params)))
            .await
        {
            Ok(ClientResult::ElicitResult(result)) => Ok(result),
            Ok(_) => Err(McpError::internal_error(
                "the client answered elicitation with something else",
                None,
            )),
            Err(error) => Err(downstream_error(error)),
        }
    }

    /// Answers a request the upstream sent on a call's stream (see [`super::http_call`]), as
    /// rmcp's client would, by asking `to` (the call's client), when there is one.
    pub(crate) async fn answer(
        &self,
        request: ServerRequest,
        to: Option<rmcp::Peer<rmcp::RoleServer>>,
    ) -> Result<ClientResult, McpError> {
        match request {
            ServerRequest::CreateMessageRequest(request) => self
                .sample(request.params, to)
                .await
                .map(|result| ClientResult::CreateMessageResult(Box::new(result))),
            ServerRequest::ElicitRequest(request) => self
                .elicit(request.params, to)
                .await
                .map(ClientResult::ElicitResult),
            ServerRequest::PingRequest(_) => Ok(ClientResult::empty(())),
            ServerRequest::ListRootsRequest(_) => Err(super::http_call::not_served("roots/list")),
            ServerRequest::CustomRequest(request) => {
                Err(super::http_call::not_served(&request.method))
            }
            _ => Err(super::http_call::not_served("this request")),
        }
    }

    /// Passes on a resource update to the clients subscribed to it.
    pub(crate) async fn resource_updated(&self, params: ResourceUpdatedNotificationParam) {
        self.relay.resource_updated(&self.server, params).await;
    }

    /// Records an upstream's log message in the merged log and relays it to the clients with
    /// a call in flight on the upstream.
    pub(crate) async fn log_message(&self, params: LoggingMessageNotificationParam) {
        self.record_log(&params).await;
        self.relay.forward_log(&self.server, params).await;
    }

    /// Records an upstream's log message in the merged log.
    pub(crate) async fn record_log(&self, params: &LoggingMessageNotificationParam) {
        let message = match &params.data {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        // The merged log keeps at most as much of a message as of a stderr line; the
        // calling client still gets the message whole.
        let message = if message.len() > MAX_STDERR_LINE {
            format!(
                "{} [message longer than 8 KiB cut]",
                super::shorten(&message, MAX_STDERR_LINE / 4)
            )
        } else {
            message
        };
        let level = LogLevel::from_mcp(params.level);
        self.logs
            .record(&self.server, level, LogSource::Mcp, message)
            .await;
    }

    fn caller(&self, what: &str) -> Result<rmcp::Peer<rmcp::RoleServer>, McpError> {
        self.relay.caller_of(&self.server).ok_or_else(|| {
            McpError::invalid_request(
                format!("{what} is only passed on during a call from a client of the gateway"),
                None,
            )
        })
    }
}

fn downstream_error(error: rmcp::ServiceError) -> McpError {
    match error {
        rmcp::ServiceError::McpError(error) => error,
        other => McpError::internal_error(format!("the client did not answer: {other}"), None),
    }
}

impl ClientHandler for UpstreamClient {
    /// Sampling and elicitation are offered upstream and asked of the calling client.
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        capabilities.elicitation = Some(Default::default());
        ClientConfig::new(
            capabilities,
            Implementation::new("switchboard-hub", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.sample(params, None).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        self.elicit(params, None).await
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.resource_updated(params).await;
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _busy = self.handling.enter();
        self.relay.forward(&self.server, self.lane, params).await;
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _busy = self.handling.enter();
        self.log_message(params).await;
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }
}

/// Routes upstream progress notifications to the downstream client whose call caused them.
/// rmcp gives every request it sends a progress token of its own; the gateway keys its routes
/// by upstream and that token, and puts the client's own token back on the way down.
/// An upstream and a name within it: a progress token, a call, a resource URI.
type Key = (Arc<str>, String);
/// A downstream session and the peer to notify it through.
type Subscriber = (u64, rmcp::Peer<rmcp::RoleServer>);

#[derive(Default)]
pub(crate) struct ProgressRelay {
    routes: Mutex<HashMap<Key, Route>>,
    opened: std::sync::atomic::AtomicU64,
    /// Progress that came before its call's token was known (the upstream answered within
    /// microseconds of reading the request), held for a moment.
    early: Mutex<VecDeque<(Key, std::time::Instant, ProgressNotificationParam)>>,
    /// Resource subscriptions: which downstream sessions want updates of an upstream's URI.
    subscribers: Mutex<HashMap<Key, Vec<Subscriber>>>,
}

#[derive(Clone)]
struct Route {
    /// Increases per call, so the newest caller of an upstream is known.
    opened: u64,
    /// The downstream session, so a log message reaches each client once.
    session: u64,
    peer: rmcp::Peer<rmcp::RoleServer>,
    /// The client's token, when it asked for progress.
    token: Option<ProgressToken>,
    /// The call's own stream for log messages, when it has one.
    notes: Option<Notes>,
}

/// Where the log messages of one call go when the gateway writes the call's stream itself.
pub(crate) type Notes = tokio::sync::mpsc::Sender<LoggingMessageNotificationParam>;

impl Route {
    async fn send_progress(&self, mut params: ProgressNotificationParam) {
        if let Some(token) = &self.token {
            params.progress_token = token.clone();
            let _ = self.peer.notify_progress(params).await;
        }
    }
}

/// How long, and how many, progress notifications wait for their call's token.
const EARLY_PROGRESS_KEPT: Duration = Duration::from_secs(2);
const EARLY_PROGRESS_MAX: usize = 256;

/// Removes its routes when the call ends, however it ends.
pub(crate) struct RouteGuard {
    relay: Arc<ProgressRelay>,
    keys: Vec<(Arc<str>, String)>,
}

impl RouteGuard {
    /// Adds the progress token rmcp gave the upstream request (known once it is sent), and
    /// forwards what progress already came for it.
    pub(crate) async fn progress_token(&mut self, lane: u32, upstream_token: &ProgressToken) {
        let key = (self.keys[0].0.clone(), token_key(lane, upstream_token));
        let early = {
            let mut routes = self.relay.lock();
            let Some(route) = routes.get(&self.keys[0]).cloned() else {
                return;
            };
            routes.insert(key.clone(), route.clone());
            let mut early = self.relay.early.lock().unwrap_or_else(|p| p.into_inner());
            let (now, rest): (Vec<_>, Vec<_>) = early.drain(..).partition(|(k, _, _)| *k == key);
            *early = rest.into();
            now.into_iter()
                .map(|(_, _, params)| (route.clone(), params))
                .collect::<Vec<_>>()
        };
        self.keys.push(key);
        for (route, params) in early {
            route.send_progress(params).await;
        }
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.relay.lock();
        for key in &self.keys {
            routes.remove(key);
        }
    }
}

fn token_key(lane: u32, token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::Number(n) => format!("{lane}/n:{n}"),
        NumberOrString::String(s) => format!("{lane}/s:{s}"),
    }
}

impl ProgressRelay {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Arc<str>, String), Route>> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a call about to be sent to `server`, before it is sent: the upstream may log
    /// or ask for sampling as soon as it reads it.
    pub(crate) fn open(self: &Arc<Self>, server: &Arc<str>, downstream: Downstream) -> RouteGuard {
        let opened = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (server.clone(), format!("call:{opened}"));
        self.lock().insert(
            key.clone(),
            Route {
                opened,
                session: downstream.session,
                peer: downstream.peer,
                token: downstream.progress,
                notes: downstream.notes,
            },
        );
        RouteGuard {
            relay: self.clone(),
            keys: vec![key],
        }
    }

    async fn forward(&self, server: &Arc<str>, lane: u32, params: ProgressNotificationParam) {
        let key = (server.clone(), token_key(lane, &params.progress_token));
        let route = {
            let routes = self.lock();
            let route = routes.get(&key).cloned();
            if route.is_none() {
                let mut early = self.early.lock().unwrap_or_else(|p| p.into_inner());
                let now = std::time::Instant::now();
                while early
                    .front()
                    .is_some_and(|(_, at, _)| now.duration_since(*at) > EARLY_PROGRESS_KEPT)
                    || early.len() >= EARLY_PROGRESS_MAX
                {
                    early.pop_front();
                }
                early.push_back((key, now, params.clone()));
            }
            route
        };
        if let Some(route) = route {
            route.send_progress(params).await;
        }
    }

    /// The client to ask when an upstream sends a request of its own (sampling, elicitation)
    /// during a call. The protocol does not say which call it belongs to; the newest caller
    /// of that upstream is asked.
    fn caller_of(&self, server: &str) -> Option<rmcp::Peer<rmcp::RoleServer>> {
        self.lock()
            .iter()
            .filter(|((s, _), _)| &**s == server)
            .max_by_key(|(_, route)| route.opened)
            .map(|(_, route)| route.peer.clone())
    }

    /// Records that `session` wants updates of `uri` on `server`; true if it is the first.
    pub(crate) fn subscribe(
        &self,
        server: &Arc<str>,
        uri: &str,
        session: u64,
        peer: rmcp::Peer<rmcp::RoleServer>,
    ) -> bool {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let list = subscribers
            .entry((server.clone(), uri.to_owned()))
            .or_default();
        let first = list.is_empty();
        if !list.iter().any(|(s, _)| *s == session) {
            list.push((session, peer));
        }
        first
    }

    /// Forgets `session`'s subscription; true if nobody wants `uri` any more.
    pub(crate) fn unsubscribe(&self, server: &Arc<str>, uri: &str, session: u64) -> bool {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let key = (server.clone(), uri.to_owned());
        let Some(list) = subscribers.get_mut(&key) else {
            return false;
        };
        list.retain(|(s, _)| *s != session);
        let last = list.is_empty();
        if last {
            subscribers.remove(&key);
        }
        last
    }

    /// The URIs of `server` someone is subscribed to (to subscribe again after a restart).
    pub(crate) fn subscribed(&self, server: &str) -> Vec<String> {
        let subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers
            .keys()
            .filter(|(s, _)| &**s == server)
            .map(|(_, uri)| uri.clone())
            .collect()
    }

    async fn resource_updated(&self, server: &Arc<str>, params: ResourceUpdatedNotificationParam) {
        let peers: Vec<_> = {
            let subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subscribers
                .get(&(server.clone(), params.uri.clone()))
                .cloned()
                .unwrap_or_default()
        };
        for (_, peer) in peers {
            let _ = peer.notify_resource_updated(params.clone()).await;
        }
    }

    /// Upstream log messages are not tied to a request in the protocol: they go to every
    /// client with a call in flight on that upstream.
    async fn forward_log(&self, server: &str, params: LoggingMessageNotificationParam) {
        let (peers, streams) = {
            let routes = self.lock();
            let mut peers: HashMap<u64, rmcp::Peer<rmcp::RoleServer>> = HashMap::new();
            // A call's route is under its progress token too: one message per call.
            let mut streams: HashMap<u64, Notes> = HashMap::new();
            for ((route_server, _), route) in routes.iter() {
                if &**route_server != server {
                    continue;
                }
                match &route.notes {
                    Some(notes) => {
                        streams.entry(route.opened).or_insert_with(|| notes.clone());
                    }
                    None => {
                        peers
                            .entry(route.session)
                            .or_insert_with(|| route.peer.clone());
                    }
                }
            }
            (peers, streams)
        };
        // A call's stream is read as fast as its client reads it: a client that falls
        // behind misses messages (the merged log has them), rather than holding up the
        // upstream's notifications for every other client.
        for notes in streams.into_values() {
            let _ = notes.try_send(params.clone());
        }
        for peer in peers.into_values() {
            let _ = peer.notify_logging_message(params.clone()).await;
        }
    }
}

/// A stdio upstream: a command the gateway starts and keeps alive.
pub(crate) struct StdioUpstream {
    pub(crate) transport: Transport,
}

#[async_trait]
impl Upstream for StdioUpstream {
    async fn connect(&self, client: UpstreamClient) -> Result<Connection, String> {
        let Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } = &self.transport
        else {
            return Err("not a stdio upstream".to_owned());
        };
        let mut cmd = Command::new(command);
        cmd.args(args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A backstop: every path that ends a session reaps the child itself.
            .kill_on_drop(true);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        // Its own process group: a ctrl-C in the hub's terminal reaches the hub, which stops
        // its children in order, instead of killing them under it.
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let (Some(stdout), Some(stdin), Some(stderr)) =
            (child.stdout.take(), child.stdin.take(), child.stderr.take())
        else {
            return Err(format!("`{command}` started without its pipes"));
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        tokio::spawn(read_stderr(
            stderr,
            client.server.clone(),
            client.logs.clone(),
            stderr_tail.clone(),
        ));
        let group = child.id();
        let mut owned = OwnedChild {
            child,
            group,
            stderr_tail,
        };
        let started = tokio::select! {
            started = tokio::time::timeout(
                STARTUP_TIMEOUT,
                client.clone().serve(counted((stdout, stdin), client.handling.clone())),
            ) => started,
            status = owned.exited() => {
                let how = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                return Err(with_tail(
                    format!("`{command}` {how} before initializing"),
                    &owned.stderr_tail(),
                ));
            }
        };
        match started {
            Ok(Ok(session)) => Ok(Connection {
                session,
                child: Some(owned),
                http: None,
            }),
            Ok(Err(error)) => {
                let tail = owned.stderr_tail();
                let status = owned.stop(Duration::from_millis(500)).await;
                let how = status
                    .map(describe_exit)
                    .unwrap_or_else(|| "was stopped".to_owned());
                Err(with_tail(
                    format!("`{command}` failed to initialize ({error}); it {how}"),
                    &tail,
                ))
            }
            Err(_) => {
                let tail = owned.stderr_tail();
                owned.stop(Duration::ZERO).await;
                Err(with_tail(
                    format!(
                        "`{command}` did not answer initialize within {}s",
                        STARTUP_TIMEOUT.as_secs()
                    ),
                    &tail,
                ))
            }
        }
    }
}

fn with_tail(message: String, tail: &str) -> String {
    if tail.is_empty() {
        message
    } else {
        format!("{message}; its stderr: {tail}")
    }
}

/// Turns a child's stderr into log entries, one per line, and keeps the last few for errors.
async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    server: Arc<str>,
    logs: Arc<LogBook>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_STDERR_LINE));
    // After a decoding error `FramedRead` ends the stream once (`None`) and then reads on; the
    // codec drops the rest of the overlong line. So the `None` right after one is not the end.
    let mut just_cut = false;
    loop {
        let line = match lines.next().await {
            Some(Ok(line)) => {
                just_cut = false;
                line
            }
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                just_cut = true;
                "[line longer than 8 KiB cut]".to_owned()
            }
            None if just_cut => {
                just_cut = false;
                continue;
            }
            None | Some(Err(LinesCodecError::Io(_))) => break,
        };
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            continue;
        }
        {
            let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        let level = LogLevel::guess(&line);
        logs.record(&server, level, LogSource::Stderr, line).await;
    }
}

/// A Streamable HTTP upstream.
pub(crate) struct HttpUpstream {
    pub(crate) transport: Transport,
}

#[async_trait]
impl Upstream for HttpUpstream {
    async fn connect(&self, client: UpstreamClient) -> Result<Connection, String> {
        let Transport::Http {
            url,
            headers,
            bearer_token,
        } = &self.transport
        else {
            return Err("not an HTTP upstream".to_owned());
        };
        if !url.starts_with("http://") {
            return Err(format!(
                "{url}: only http:// upstreams are supported in this build (put an https server \
                 behind a local proxy, or run it as a stdio upstream)"
            ));
        }
        let mut custom = HashMap::new();
        for (name, value) in headers {
            let name = axum::http::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let value = axum::http::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of header {name} is not valid"))?;
            custom.insert(name, value);
        }
        let mut config =
            StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
        config.max_concurrent_requests = HTTP_CONCURRENCY;
        // rmcp's default retries a lost stream forever, so a call to an upstream that died
        // mid-call would never return; the supervisor reconnects instead.
        let mut retry = ExponentialBackoff::default();
        retry.max_times = Some(2);
        retry.base_duration = Duration::from_millis(100);
        config.retry_config = Arc::new(retry);
        if let Some(token) = bearer_token {
            config = config.auth_header(token.clone());
        }
        let inner = http_client()?;
        let lane =
            super::http_call::HttpLane::new(url, inner.clone(), client.clone(), HTTP_CONCURRENCY);
        let learning = super::http_call::Learning {
            inner,
            lane: lane.clone(),
        };
        let transport = counted(
            StreamableHttpClientTransport::with_client(learning, config),
            client.handling.clone(),
        );
        match tokio::time::timeout(STARTUP_TIMEOUT, client.serve(transport)).await {
            Ok(Ok(session)) => Ok(Connection {
                session,
                child: None,
                http: Some(lane),
            }),
            Ok(Err(error)) => {
                // Errors quote the URL; its query or user part may hold a credential.
                let shown = redact_url(url);
                let message = mcp_core::retry::error_chain(&error).replace(url.as_str(), &shown);
                Err(format!("{shown}: {message}"))
            }
            Err(_) => Err(format!(
                "{}: no answer to initialize within {}s",
                redact_url(url),
                STARTUP_TIMEOUT.as_secs()
            )),
        }
    }
}

/// The HTTP client of an upstream session. rmcp's default turns connection pooling off (a
/// reused connection stalls on a delayed ACK without TCP_NODELAY); with TCP_NODELAY on, pooled
/// connections are what make the gateway cheap: measured, a new connection per call cost the
/// hub more than the call itself. Redirects are not followed, so credentials never leave for
/// another address.
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// A URL as status and errors show it: without its query and its user part.
pub(crate) fn redact_url(url: &str) -> String {
    let shown = url.split(['?', '#']).next().unwrap_or(url);
    match shown.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => shown.to_owned(),
    }
}

/// The upstream for a transport.
pub(crate) fn for_transport(transport: &Transport) -> Arc<dyn Upstream> {
    match transport {
        Transport::Stdio { .. } => Arc::new(StdioUpstream {
            transport: transport.clone(),
        }),
        Transport::Http { .. } => Arc::new(HttpUpstream {
            transport: transport.clone(),
        }),
    }
}
