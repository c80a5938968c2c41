//! One task per upstream keeps its session alive: it connects, lists what the upstream offers,
//! probes it, re-lists on `list_changed` (and on a slow poll), and when the session ends it
//! reaps the child and reconnects after a capped, jittered exponential backoff. The status it
//! reports is always the real one: a dead child is `down` the moment it is reaped.
//!
//! A disconnected upstream keeps its last listing in the catalog: tool names stay the same
//! while it restarts (in `conditional` prefix mode a name would otherwise flip between `echo`
//! and `a__echo`), and a call to it fails at once saying it is down.

// MCP logging is deprecated (SEP-2577), but 2025-11-25 servers still speak logging/setLevel.
#![allow(deprecated)]

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use rmcp::{
    Peer, RoleClient,
    model::{ClientRequest, PingRequest},
};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Core,
    config::{Transport, UpstreamConfig},
    fault::{FaultSlot, FaultStatus},
    http_call::HttpLane,
    logs::{LogLevel, LogSource},
    registry::Listing,
    upstream::{self, Connection, UpstreamClient, describe_exit},
};

/// How often the tools are listed again even without `list_changed`, for upstreams that never
/// send it.
const RELIST_EVERY: Duration = Duration::from_secs(60);
/// Consecutive failed probes after which a session is given up and reopened.
const DOWN_AFTER: u32 = 3;
/// How long a child may take to exit after its stdin closed, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// An upstream's state, as the dashboard and `/api/servers` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being started or connected to.
    Starting,
    /// Connected, and its last probe answered.
    Healthy,
    /// Connected, but its last probe failed or timed out.
    Degraded,
    /// Not connected: it failed, exited or stopped answering; it is being restarted.
    Down,
    /// Stopped by an operator, or disabled in the configuration.
    Stopped,
}

/// What the gateway knows about one upstream.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub id: String,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// The command line or URL (never the environment, headers or token).
    pub target: String,
    pub state: State,
    /// When it entered this state.
    pub since: DateTime<Utc>,
    /// How many times its session was opened again after the first.
    pub restarts: u64,
    pub last_error: Option<String>,
    /// The child's process id, for a stdio upstream that runs.
    pub pid: Option<u32>,
    /// How long its last successful probe took.
    pub latency_ms: Option<f64>,
    /// The name and version it gave in `initialize`.
    pub server_info: Option<String>,
    /// How many of its tools the catalog exposes.
    pub tools: usize,
    /// How many sessions to it are open (calls are spread over them).
    pub sessions: usize,
    /// The fault an operator injected into its calls, while it is in force.
    pub fault: Option<FaultStatus>,
}

/// What an operator asks of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Start,
    Stop,
    Restart,
    /// SIGKILL to a stdio upstream's child: a crash, restarted with the usual backoff.
    Kill,
}

/// One supervised upstream.
pub(crate) struct Supervised {
    pub(crate) id: Arc<str>,
    pub(crate) config: UpstreamConfig,
    status: Mutex<ServerStatus>,
    peer: RwLock<Option<Peer<RoleClient>>>,
    /// The sessions `tools/call` goes out on, by lane: the primary session (lane 0) and the
    /// extra ones that are open (see [`UpstreamConfig::sessions`]).
    lanes: RwLock<Vec<Lane>>,
    next_lane: std::sync::atomic::AtomicUsize,
    /// The log level a client last asked of this upstream, given again to every session that
    /// opens (a restart, an extra session).
    log_level: Mutex<Option<rmcp::model::LoggingLevel>>,
    listing: RwLock<Listing>,
    control: mpsc::Sender<Control>,
    changed: Arc<Notify>,
    /// Notifications of this upstream being passed on.
    pub(crate) handling: Arc<upstream::Handling>,
    /// The fault injected into calls to it, if an operator set one.
    pub(crate) fault: FaultSlot,
    /// Woken by a call that failed on the transport, so a dead HTTP upstream is noticed at
    /// once rather than at the next probe.
    probe_now: Notify,
    /// Woken when the session has been found dead.
    failed: Notify,
    /// Cancelled when the upstream is removed or the gateway shuts down.
    stop: CancellationToken,
    /// Cancelled when its task has ended: its session is closed and its child reaped.
    finished: CancellationToken,
}

/// A session calls go out on.
#[derive(Clone)]
pub(crate) struct Lane {
    pub(crate) id: u32,
    pub(crate) peer: Peer<RoleClient>,
    /// The short way for plain calls, on an HTTP upstream.
    pub(crate) http: Option<Arc<HttpLane>>,
}

enum End {
    /// The gateway is shutting down or the upstream was removed.
    Cancelled,
    Stopped,
    Restart,
    Failed(String),
}

impl Supervised {
    /// Creates the upstream and starts its task on the gateway's tracker.
    pub(crate) fn spawn(core: &Arc<Core>, config: UpstreamConfig) -> Arc<Self> {
        let (control, receiver) = mpsc::channel(8);
        let now = Utc::now();
        let (transport, target) = describe(&config.transport);
        let supervised = Arc::new(Self {
            id: config.id.as_str().into(),
            status: Mutex::new(ServerStatus {
                id: config.id.clone(),
                transport,
                target,
                state: if config.enabled {
                    State::Starting
                } else {
                    State::Stopped
                },
                since: now,
                restarts: 0,
                last_error: None,
                pid: None,
                latency_ms: None,
                server_info: None,
                tools: 0,
                sessions: 0,
                fault: None,
            }),
            config,
            peer: RwLock::new(None),
            lanes: RwLock::new(Vec::new()),
            next_lane: Default::default(),
            log_level: Mutex::new(None),
            listing: RwLock::new(Listing::default()),
            control,
            changed: Arc::new(Notify::new()),
            handling: Arc::default(),
            fault: FaultSlot::default(),
            probe_now: Notify::new(),
            failed: Notify::new(),
            stop: core.cancel.child_token(),
            finished: CancellationToken::new(),
        });
        let task = supervised.clone();
        let core = core.clone();
        core.tasks
            .clone()
            .spawn(async move { task.run(core, receiver).await });
        supervised
    }

    pub(crate) fn status(&self) -> ServerStatus {
        let sessions = self.lanes.read().unwrap_or_else(|p| p.into_inner()).len();
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        status.sessions = sessions;
        status.fault = self.fault.status();
        status
    }

    pub(crate) fn state(&self) -> State {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).state
    }

    pub(crate) fn peer(&self) -> Option<Peer<RoleClient>> {
        self.peer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A session to send a call on, and its lane: the open sessions in turn.
    pub(crate) fn call_peer(&self) -> Option<Lane> {
        let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
        if lanes.is_empty() {
            return None;
        }
        let next = self
            .next_lane
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(lanes[next % lanes.len()].clone())
    }

    /// Sets the upstream's log level on every open session, and remembers it for the
    /// sessions opened later.
    pub(crate) async fn set_log_level(&self, level: rmcp::model::LoggingLevel) {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
        let peers: Vec<_> = self
            .lanes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|lane| lane.peer.clone())
            .collect();
        for peer in peers {
            self.give_log_level(&peer).await;
        }
    }

    /// Tells a session the remembered log level, if a client set one.
    async fn give_log_level(&self, peer: &Peer<RoleClient>) {
        let level = *self.log_level.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(level) = level {
            let request = rmcp::model::SetLevelRequestParams::new(level);
            let _ = tokio::time::timeout(self.config.health.timeout, peer.set_level(request)).await;
        }
    }

    fn client(&self, core: &Core, lane: u32) -> UpstreamClient {
        UpstreamClient {
            server: self.id.clone(),
            lane,
            logs: core.logs.clone(),
            relay: core.relay.clone(),
            changed: self.changed.clone(),
            handling: self.handling.clone(),
        }
    }

    pub(crate) fn listing(&self) -> Listing {
        self.listing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_tool_count(&self, tools: usize) -> bool {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let changed = status.tools != tools;
        status.tools = tools;
        changed
    }

    /// Asks the task to start, stop or restart the upstream, without waiting: a task busy
    /// starting a session does not hold the operator's request up.
    pub(crate) fn control(&self, control: Control) -> Result<(), String> {
        self.control.try_send(control).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                "the server has several requests waiting already; try again in a moment".to_owned()
            }
            mpsc::error::TrySendError::Closed(_) => "the server's supervisor has ended".to_owned(),
        })
    }

    /// Waits up to `timeout` for the session to be found dead, and returns why it died.
    pub(crate) async fn wait_for_failure(&self, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.failed.notified();
            {
                let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                if matches!(status.state, State::Down | State::Starting | State::Stopped) {
                    return status.last_error.clone();
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// A call on this upstream failed on the transport: probe it now.
    pub(crate) fn suspect(&self) {
        self.probe_now.notify_one();
    }

    /// Ends the task (the upstream was removed from the configuration).
    pub(crate) fn remove(&self) {
        self.stop.cancel();
    }

    /// Waits until the task has ended, its child reaped and its last status announced.
    pub(crate) async fn finished(&self) {
        self.finished.cancelled().await;
    }

    async fn set_state(&self, core: &Core, state: State, error: Option<String>) {
        let sessions = self.lanes.read().unwrap_or_else(|p| p.into_inner()).len();
        let status = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let error_changed = error.is_some() && status.last_error != error;
            if status.state == state && !error_changed {
                return;
            }
            if status.state != state {
                status.since = Utc::now();
            }
            status.state = state;
            if error.is_some() {
                status.last_error = error;
            }
            if !matches!(state, State::Healthy | State::Degraded) {
                status.latency_ms = None;
            }
            status.sessions = sessions;
            let mut status = status.clone();
            status.fault = self.fault.status();
            status
        };
        core.announce_status(&status).await;
    }

    async fn note(&self, core: &Core, level: LogLevel, message: String) {
        core.logs
            .record(&self.id, level, LogSource::Hub, message)
            .await;
    }

    async fn run(self: Arc<Self>, core: Arc<Core>, mut control: mpsc::Receiver<Control>) {
        let _finished = self.finished.clone().drop_guard();
        // Its first state (starting, or stopped when disabled), for the pages already open.
        core.announce_status(&self.status()).await;
        let mut wanted = self.config.enabled;
        let mut attempt: u32 = 0;
        let mut opened_before = false;
        loop {
            if !wanted {
                self.set_state(&core, State::Stopped, None).await;
                loop {
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        request = control.recv() => match request {
                            None => return,
                            Some(Control::Start | Control::Restart) => break,
                            Some(Control::Stop | Control::Kill) => {}
                        },
                    }
                }
                wanted = true;
                attempt = 0;
            }
            if opened_before {
                self.status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .restarts += 1;
            }
            opened_before = true;
            self.set_state(&core, State::Starting, None).await;
            let upstream = upstream::for_transport(&self.config.transport);
            let client = self.client(&core, 0);
            let connecting = upstream.connect(client);
            tokio::pin!(connecting);
            let connected = loop {
                tokio::select! {
                    connected = &mut connecting => break Some(connected),
                    () = self.stop.cancelled() => return,
                    request = control.recv() => match request {
                        None => return,
                        Some(Control::Stop) => { wanted = false; break None }
                        Some(Control::Start | Control::Restart) => break None,
                        // No session runs yet that a kill could end.
                        Some(Control::Kill) => {}
                    },
                }
            };
            let Some(connected) = connected else {
                continue;
            };
            let end = match connected {
                Err(error) => End::Failed(error),
                Ok(connection) => {
                    let opened = Instant::now();
                    let end = self.serve(&core, connection, &mut control).await;
                    if opened.elapsed() >= core.settings().restart.stable_after {
                        attempt = 0;
                    }
                    end
                }
            };
            match end {
                End::Cancelled => {
                    self.set_state(&core, State::Stopped, None).await;
                    return;
                }
                End::Stopped => {
                    self.note(&core, LogLevel::Info, "stopped by an operator".to_owned())
                        .await;
                    wanted = false;
                }
                End::Restart => {
                    self.note(&core, LogLevel::Info, "restarting on request".to_owned())
                        .await;
                    attempt = 0;
                }
                End::Failed(error) => {
                    attempt = attempt.saturating_add(1);
                    let restart = core.settings().restart;
                    let wait = mcp_core::retry::backoff(restart.initial, attempt, restart.max);
                    self.note(
                        &core,
                        LogLevel::Error,
                        format!("{error}; reconnecting in {} ms", wait.as_millis()),
                    )
                    .await;
                    self.set_state(&core, State::Down, Some(error)).await;
                    self.failed.notify_waiters();
                    let until = tokio::time::Instant::now() + wait;
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => break,
                            () = self.stop.cancelled() => return,
                            request = control.recv() => match request {
                                None => return,
                                Some(Control::Stop) => { wanted = false; break }
                                Some(Control::Start | Control::Restart) => { attempt = 0; break }
                                // Nothing runs while it waits; the backoff goes on.
                                Some(Control::Kill) => {}
                            },
                        }
                    }
                }
            }
        }
    }

    /// Runs one open session until it ends, then closes it and reaps the child.
    async fn serve(
        self: &Arc<Self>,
        core: &Arc<Core>,
        connection: Connection,
        control: &mut mpsc::Receiver<Control>,
    ) -> End {
        let Connection {
            session,
            mut child,
            http,
        } = connection;
        let peer = session.peer().clone();
        let closer = session.cancellation_token();
        let mut ended = std::pin::pin!(session.waiting());
        let mut session_done = false;
        let health = self.config.health;
        // The extra sessions live as long as this one.
        let pool = self.stop.child_token();
        let _pool_guard = pool.clone().drop_guard();

        let end = 'session: {
            let listing = match tokio::time::timeout(
                health.timeout.max(Duration::from_secs(5)),
                discover(&peer),
            )
            .await
            {
                Ok(Ok(listing)) => listing,
                Ok(Err(error)) => {
                    break 'session End::Failed(format!("listing its tools failed: {error}"));
                }
                Err(_) => break 'session End::Failed("listing its tools timed out".to_owned()),
            };
            let info = peer
                .peer_info()
                .and_then(|info| info.server_info.clone())
                .map(|i| format!("{} {}", i.name, i.version));
            let pid = child.as_ref().and_then(|c| c.pid());
            {
                let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                status.pid = pid;
                status.server_info = info.clone();
            }
            // Clients' resource subscriptions outlive a restart of the upstream.
            for uri in core.relay.subscribed(&self.id) {
                #[allow(deprecated)] // resources/subscribe is what 2025-11-25 servers speak.
                let subscribed = peer
                    .subscribe(rmcp::model::SubscribeRequestParams::new(uri.clone()))
                    .await;
                if let Err(error) = subscribed {
                    self.note(
                        core,
                        LogLevel::Warning,
                        format!("subscribing again to {uri} failed: {error}"),
                    )
                    .await;
                }
            }
            self.give_log_level(&peer).await;
            *self.peer.write().unwrap_or_else(|p| p.into_inner()) = Some(peer.clone());
            *self.lanes.write().unwrap_or_else(|p| p.into_inner()) = vec![Lane {
                id: 0,
                peer: peer.clone(),
                http,
            }];
            for lane in 1..self.config.sessions {
                let stop = pool.child_token();
                let lane = u32::try_from(lane).unwrap_or(u32::MAX);
                let task = self.clone();
                let core = core.clone();
                core.tasks
                    .clone()
                    .spawn(async move { task.lane(&core, lane, stop).await });
            }
            *self.listing.write().unwrap_or_else(|p| p.into_inner()) = listing;
            core.rebuild().await;
            self.note(
                core,
                LogLevel::Info,
                format!(
                    "connected{}{}",
                    info.map(|i| format!(" to {i}")).unwrap_or_default(),
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
            )
            .await;
            self.set_state(core, State::Healthy, None).await;

            let start = tokio::time::Instant::now();
            let mut probe = tokio::time::interval_at(start + health.interval, health.interval);
            let mut relist = tokio::time::interval_at(start + RELIST_EVERY, RELIST_EVERY);
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    status = child_exit(&mut child) => {
                        let how = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                        break 'session End::Failed(failure(&format!("the process {how}"), child.as_ref()));
                    }
                    reason = &mut ended, if !session_done => {
                        session_done = true;
                        // A child that closed its stdout is usually exiting: say how it ended.
                        let how = match &mut child {
                            Some(c) => match tokio::time::timeout(EXIT_GRACE, c.exited()).await {
                                Ok(Ok(status)) => format!("the process {}", describe_exit(status)),
                                _ => "the process closed its output".to_owned(),
                            },
                            None => format!("the session ended ({})", quit_reason(reason)),
                        };
                        break 'session End::Failed(failure(&how, child.as_ref()));
                    }
                    () = self.changed.notified() => self.relist(core, &peer).await,
                    _ = relist.tick() => self.relist(core, &peer).await,
                    () = self.probe_now.notified() => {
                        if let Some(end) = self.probe(core, &peer, &mut failures).await {
                            break 'session end;
                        }
                    }
                    _ = probe.tick() => {
                        if let Some(end) = self.probe(core, &peer, &mut failures).await {
                            break 'session end;
                        }
                    }
                    request = control.recv() => match request {
                        Some(Control::Stop) => break 'session End::Stopped,
                        Some(Control::Restart) => break 'session End::Restart,
                        // The child dies as in a crash: `child_exit` above sees it, and the
                        // session ends as a failure, restarted with the backoff.
                        Some(Control::Kill) => {
                            if let Some(child) = &mut child {
                                child.kill_now();
                            }
                        }
                        Some(Control::Start) => {}
                        None => break 'session End::Cancelled,
                    },
                    () = self.stop.cancelled() => break 'session End::Cancelled,
                }
            }
        };

        *self.peer.write().unwrap_or_else(|p| p.into_inner()) = None;
        // The session is over: say so before waiting for the child and the transport to wind
        // down, which can take seconds.
        if let End::Failed(error) = &end {
            self.set_state(core, State::Down, Some(error.clone())).await;
            self.failed.notify_waiters();
        }
        // A lane checks its token under this lock before it joins.
        pool.cancel();
        closer.cancel();
        self.lanes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if !session_done {
            let _ = tokio::time::timeout(EXIT_GRACE, &mut ended).await;
        }
        if let Some(child) = child {
            child.stop(EXIT_GRACE).await;
        }
        self.status.lock().unwrap_or_else(|p| p.into_inner()).pid = None;
        end
    }

    /// Keeps one extra session open while the primary one lives; it carries calls only.
    async fn lane(&self, core: &Arc<Core>, lane: u32, stop: CancellationToken) {
        let mut attempt: u32 = 0;
        loop {
            let upstream = upstream::for_transport(&self.config.transport);
            let connected = tokio::select! {
                connected = upstream.connect(self.client(core, lane)) => connected,
                () = stop.cancelled() => return,
            };
            match connected {
                Ok(Connection {
                    session,
                    child,
                    http,
                }) => {
                    let closer = session.cancellation_token();
                    self.give_log_level(session.peer()).await;
                    {
                        let mut lanes = self.lanes.write().unwrap_or_else(|p| p.into_inner());
                        if !stop.is_cancelled() {
                            lanes.push(Lane {
                                id: lane,
                                peer: session.peer().clone(),
                                http,
                            });
                        }
                    }
                    let mut ended = std::pin::pin!(session.waiting());
                    let gone = tokio::select! {
                        _ = &mut ended => true,
                        () = stop.cancelled() => false,
                    };
                    self.lanes
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|l| l.id != lane);
                    if !gone {
                        closer.cancel();
                        let _ = tokio::time::timeout(EXIT_GRACE, &mut ended).await;
                    }
                    if let Some(child) = child {
                        child.stop(EXIT_GRACE).await;
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                    attempt = 0;
                    self.note(
                        core,
                        LogLevel::Warning,
                        format!("extra session {lane} ended; opening it again"),
                    )
                    .await;
                }
                Err(error) => {
                    if attempt == 0 {
                        self.note(
                            core,
                            LogLevel::Warning,
                            format!("opening extra session {lane} failed: {error}"),
                        )
                        .await;
                    }
                }
            }
            attempt = attempt.saturating_add(1);
            let restart = core.settings().restart;
            let wait = mcp_core::retry::backoff(restart.initial, attempt, restart.max);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One health probe; `Some` when the session should be given up.
    async fn probe(&self, core: &Core, peer: &Peer<RoleClient>, failures: &mut u32) -> Option<End> {
        let timeout = self.config.health.timeout;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, ping(peer)).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(error)) => Err(format!("health probe failed: {error}")),
            Err(_) => Err(format!(
                "health probe got no answer within {} ms",
                timeout.as_millis()
            )),
        };
        match outcome {
            Ok(latency) => {
                *failures = 0;
                let changed = {
                    let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    status.latency_ms = Some(latency.as_secs_f64() * 1000.0);
                    status.state != State::Healthy
                };
                if changed {
                    self.set_state(core, State::Healthy, None).await;
                }
                None
            }
            Err(error) => {
                *failures += 1;
                if *failures >= DOWN_AFTER {
                    return Some(End::Failed(format!("{error} ({failures} in a row)")));
                }
                self.set_state(core, State::Degraded, Some(error)).await;
                None
            }
        }
    }

    async fn relist(&self, core: &Arc<Core>, peer: &Peer<RoleClient>) {
        let timeout = self.config.health.timeout.max(Duration::from_secs(5));
        match tokio::time::timeout(timeout, discover(peer)).await {
            Ok(Ok(listing)) => {
                *self.listing.write().unwrap_or_else(|p| p.into_inner()) = listing;
                core.rebuild().await;
            }
            Ok(Err(error)) => {
                self.note(
                    core,
                    LogLevel::Warning,
                    format!("listing its tools again failed: {error}"),
                )
                .await;
            }
            Err(_) => {
                self.note(
                    core,
                    LogLevel::Warning,
                    "listing its tools again timed out".to_owned(),
                )
                .await;
            }
        }
    }
}

async fn child_exit(
    child: &mut Option<upstream::OwnedChild>,
) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(child) => child.exited().await,
        None => std::future::pending().await,
    }
}

fn failure(how: &str, child: Option<&upstream::OwnedChild>) -> String {
    let tail = child.map(|c| c.stderr_tail()).unwrap_or_default();
    if tail.is_empty() {
        how.to_owned()
    } else {
        format!("{how}; its last stderr: {tail}")
    }
}

fn quit_reason(reason: Result<rmcp::service::QuitReason, tokio::task::JoinError>) -> String {
    match reason {
        Ok(rmcp::service::QuitReason::Closed) => "closed by the server".to_owned(),
        Ok(other) => format!("{other:?}").to_lowercase(),
        Err(error) => error.to_string(),
    }
}

async fn ping(peer: &Peer<RoleClient>) -> Result<(), String> {
    peer.send_request(ClientRequest::PingRequest(PingRequest::default()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Lists everything the upstream says it offers.
async fn discover(peer: &Peer<RoleClient>) -> Result<Listing, String> {
    let capabilities = peer.peer_info().map(|info| info.capabilities.clone());
    let offers =
        |what: fn(&rmcp::model::ServerCapabilities) -> bool| capabilities.as_ref().is_none_or(what);
    let mut listing = Listing::default();
    if offers(|c| c.tools.is_some()) {
        listing.tools = peer.list_all_tools().await.map_err(|e| e.to_string())?;
    }
    if offers(|c| c.prompts.is_some()) {
        listing.prompts = peer.list_all_prompts().await.map_err(|e| e.to_string())?;
    }
    if offers(|c| c.resources.is_some()) {
        listing.resources = peer.list_all_resources().await.map_err(|e| e.to_string())?;
        listing.templates = peer
            .list_all_resource_templates()
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(listing)
}

/// The transport's name and what it points at, without secrets.
fn describe(transport: &Transport) -> (&'static str, String) {
    match transport {
        Transport::Stdio { command, args, .. } => {
            let mut line = command.clone();
            for arg in args {
                line.push(' ');
                line.push_str(arg);
            }
            ("stdio", line)
        }
        Transport::Http { url, .. } => {
            // Credentials in a URL's user part or query are not shown.
            let shown = upstream::redact_url(url);
            ("http", shown)
        }
    }
}
