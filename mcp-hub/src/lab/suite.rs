//! `suite.toml`: what a lab run loads, where, and what it expects.
//!
//! ```toml
//! name = "tasks"
//! timeout = "10s"                       # per request
//!
//! [target]                              # one of: url, command, upstream
//! url = "http://127.0.0.1:8080/mcp"
//!
//! [[steps]]
//! kind = "list_tools"
//! expect = { contains = "get_tasks" }
//!
//! [[steps]]
//! name = "get_tasks at 200/s"
//! kind = "call"
//! tool = "get_tasks"
//! arguments = { limit = 10 }
//! rate = 200                            # calls per second, for `duration`
//! duration = "10s"
//! expect = { p99_below_ms = 5, error_rate_below = 0.001 }
//!
//! [steps.chaos]                         # a fault while the load runs, through a hub
//! server = "tasks"                      # the upstream's id in the hub (default: the tool's
//!                                       # `server__` prefix)
//! at = "2s"                             # when into the step
//! kill = true                           # SIGKILL its child, or inject instead:
//! # latency_ms = 200, error_rate = 0.5, for = "3s"
//! # hub = "http://127.0.0.1:8080"       # default: the origin of a target URL ending in /mcp
//! # token = "..."                       # a bearer with the admin scope, if the hub has auth
//! ```
//!
//! Parsing checks everything a run would trip on later (an unknown key, a zero rate, a call
//! without a tool), so a bad suite fails before any request is sent.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;

use crate::gateway::{GatewayConfig, Transport};

/// Calls per step when a suite gives neither `calls` nor `rate`.
pub(crate) const DEFAULT_CALLS: u64 = 1;
/// Requests in flight at once in a counted step unless it says otherwise.
pub(crate) const DEFAULT_CONCURRENCY: usize = 1;
/// The most requests in flight in a fixed-rate step unless it says otherwise: enough that a
/// slow answer does not delay the requests due after it.
pub(crate) const DEFAULT_RATE_CONCURRENCY: usize = 64;
/// The longest a request may take unless the suite says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most requests in flight one step may ask for.
pub(crate) const MAX_CONCURRENCY: usize = 4096;
/// The most calls one step may make (a count or rate × duration).
pub(crate) const MAX_CALLS: u64 = 100_000_000;

/// A parsed, checked suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub target: Target,
    /// The longest one request may take before it counts as a timeout.
    pub timeout: Duration,
    pub steps: Vec<Step>,
}

/// The MCP server a suite runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The same transports the gateway knows: a command (stdio) or a Streamable HTTP URL.
    Server(Transport),
}

impl Target {
    /// A `--target` given on the command line: a URL when it starts with `http://` or
    /// `https://`, else a command line split on whitespace.
    pub fn from_arg(arg: &str) -> Result<Target, SuiteError> {
        let arg = arg.trim();
        if arg.starts_with("http://") || arg.starts_with("https://") {
            check_url(arg)?;
            return Ok(Target::Server(Transport::Http {
                url: arg.to_owned(),
                headers: BTreeMap::new(),
                bearer_token: None,
            }));
        }
        let mut words = arg.split_whitespace().map(str::to_owned);
        let Some(command) = words.next() else {
            return Err(invalid("target", "is empty; give a URL or a command"));
        };
        Ok(Target::Server(Transport::Stdio {
            command,
            args: words.collect(),
            env: BTreeMap::new(),
            cwd: None,
        }))
    }

    /// How the target is named in reports (no secrets: headers, environment, a URL's
    /// user info and query are left out).
    pub fn describe(&self) -> String {
        match self {
            Target::Server(Transport::Http { url, .. }) => without_secrets(url),
            Target::Server(Transport::Stdio { command, args, .. }) => {
                let mut line = command.clone();
                for arg in args {
                    line.push(' ');
                    line.push_str(arg);
                }
                line
            }
        }
    }
}

/// `url` without its user info (`user:password@`) and query (`?token=…`).
fn without_secrets(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// One step of a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub action: Action,
    pub load: Load,
    pub expect: Expect,
    /// A fault brought on while the step's load runs.
    pub chaos: Option<Chaos>,
}

/// The most latency a chaos step may inject into each call.
pub(crate) const MAX_CHAOS_LATENCY_MS: u64 = 600_000;

/// A fault a `call` step brings on while its load runs (`[steps.chaos]`), through the REST API
/// of the hub whose gateway serves the target: `POST /api/servers/{server}/kill`, or
/// `PUT /api/servers/{server}/fault` and, when it is over, `DELETE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    /// The hub's base URL (`http://host:port`); `None`: the origin of the target's URL.
    pub hub: Option<String>,
    /// A bearer token with the admin scope; `None`: the target's own, if any.
    pub token: Option<String>,
    /// The upstream's id in that hub.
    pub server: String,
    /// When into the step it is brought on.
    pub at: Duration,
    pub fault: ChaosFault,
}

/// What a chaos step does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChaosFault {
    /// SIGKILL to the stdio upstream's child; the hub restarts it as after any crash.
    Kill,
    /// Every call to the upstream waits `latency_ms`, and `error_rate` of them fail, for
    /// `lasts` (until the step ends when `None`).
    Inject {
        latency_ms: u64,
        error_rate: f64,
        lasts: Option<Duration>,
    },
}

impl ChaosFault {
    pub fn kind(&self) -> &'static str {
        match self {
            ChaosFault::Kill => "kill",
            ChaosFault::Inject { .. } => "inject",
        }
    }
}

/// What a step's requests do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Opens fresh sessions (a new connection, or a new process for a command) and times the
    /// `initialize` handshake of each.
    Initialize,
    /// `tools/list` on the run's session.
    ListTools,
    /// `tools/call` of `tool` with `arguments` on the run's session.
    Call { tool: String, arguments: Value },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Initialize => "initialize",
            Action::ListTools => "list_tools",
            Action::Call { .. } => "call",
        }
    }
}

/// How many requests a step sends, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `calls` requests, `concurrency` at a time, each sent as soon as one finishes.
    Count { calls: u64, concurrency: usize },
    /// As many requests as `concurrency` workers get answered in `duration`, each sent as
    /// soon as one finishes (a closed loop bounded by time: what a server can serve).
    For {
        duration: Duration,
        concurrency: usize,
    },
    /// `rate` requests per second for `duration`, each due at its own time whether or not
    /// the ones before have been answered (up to `concurrency` in flight). Latency is
    /// measured from when a request was due, so a stall shows in every request it delayed.
    Rate {
        rate: f64,
        duration: Duration,
        concurrency: usize,
    },
}

impl Load {
    /// How many requests this load sends; `None` when only its duration bounds it.
    pub fn calls(&self) -> Option<u64> {
        match *self {
            Load::Count { calls, .. } => Some(calls),
            Load::For { .. } => None,
            // Checked against MAX_CALLS when parsed; a fraction of a call is not sent.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Load::Rate { rate, duration, .. } => {
                Some((rate * duration.as_secs_f64()).floor() as u64)
            }
        }
    }

    pub fn concurrency(&self) -> usize {
        match *self {
            Load::Count { concurrency, .. }
            | Load::For { concurrency, .. }
            | Load::Rate { concurrency, .. } => concurrency,
        }
    }
}

/// What a step must show to pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expect {
    /// Every request succeeds (the default unless `error_rate_below` is given).
    pub no_error: bool,
    /// Every result's JSON holds this text (in a text content, a value, anywhere).
    pub contains: Option<String>,
    /// Every result has this value at this path (`$.structuredContent.count`,
    /// `content[0].text`).
    pub json_path: Option<(JsonPath, Value)>,
    /// The step's 99th percentile latency is below this.
    pub p99_below: Option<Duration>,
    /// The share of failed requests (0–1) is below this.
    pub error_rate_below: Option<f64>,
}

/// A path into a JSON value: keys and array indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl JsonPath {
    /// Parses `$.a.b[0].c`, `a.b.0.c` or `a["key with dots"]`.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let mut segments = Vec::new();
        let rest = text.trim();
        let mut rest = rest.strip_prefix('$').unwrap_or(rest);
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                rest = after;
                continue;
            }
            if let Some(after) = rest.strip_prefix("[\"") {
                let end = after
                    .find("\"]")
                    .ok_or_else(|| format!("{text:?}: `[\"` without a closing `\"]`"))?;
                segments.push(Segment::Key(after[..end].to_owned()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("{text:?}: `[` without a closing `]`"))?;
                let index = after[..end]
                    .trim()
                    .parse()
                    .map_err(|_| format!("{text:?}: `[{}]` is not an index", &after[..end]))?;
                segments.push(Segment::Index(index));
                rest = &after[end + 1..];
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let key = &rest[..end];
                segments.push(match key.parse() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Key(key.to_owned()),
                });
                rest = &rest[end..];
            }
        }
        if segments.is_empty() {
            return Err(format!("{text:?}: the path names nothing"));
        }
        Ok(JsonPath {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if there is one.
    pub fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(value, |value, segment| match segment {
                Segment::Key(key) => value.get(key),
                Segment::Index(index) => value.get(index),
            })
    }
}

/// Why a suite cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
    #[error("target upstream {upstream:?}: {message}")]
    Upstream { upstream: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SuiteError {
    SuiteError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Suite {
    /// Reads and checks a suite file; a target `hub` path is resolved against its directory.
    pub fn from_path(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Suite::parse(&text, base)
            .map_err(|error| SuiteError::Syntax(format!("{}: {error}", path.display())))
    }

    /// Parses and checks suite text.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Suite, SuiteError> {
        let raw: RawSuite =
            toml::from_str(text).map_err(|error| SuiteError::Syntax(error.to_string()))?;
        let name = raw.name.trim().to_owned();
        if name.is_empty() || name.len() > 128 {
            return Err(invalid("name", "must be 1 to 128 characters"));
        }
        // Names and targets are stored as text (PostgreSQL refuses the NUL character).
        if name.contains('\0') {
            return Err(invalid("name", "must not contain the NUL character"));
        }
        let timeout = match raw.timeout {
            Some(text) => parse_duration("timeout", &text)?,
            None => DEFAULT_TIMEOUT,
        };
        let target = raw.target.into_target(base_dir)?;
        if target.describe().contains('\0') {
            return Err(invalid("target", "must not contain the NUL character"));
        }
        if raw.steps.is_empty() {
            return Err(invalid("steps", "are missing; a suite needs at least one"));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (index, step) in raw.steps.into_iter().enumerate() {
            let step = step.into_step(index)?;
            if let Some(chaos) = &step.chaos
                && chaos.hub.is_none()
                && hub_of(&target).is_none()
            {
                return Err(invalid(
                    format!("steps[{index}].chaos.hub"),
                    "is required unless the target is a hub's /mcp URL (http://host:port/mcp)",
                ));
            }
            if steps.iter().any(|s: &Step| s.name == step.name) {
                return Err(invalid(
                    format!("steps[{index}].name"),
                    format!(
                        "{:?} is used by an earlier step; names must be unique",
                        step.name
                    ),
                ));
            }
            steps.push(step);
        }
        Ok(Suite {
            name,
            target,
            timeout,
            steps,
        })
    }
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, SuiteError> {
    crate::gateway::config::parse_duration(text).map_err(|message| invalid(field, message))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: String,
    timeout: Option<String>,
    target: RawTarget,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    bearer_token: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    /// A server of a `hub.toml` (or Claude/Cursor JSON), run as the gateway would run it.
    upstream: Option<String>,
    /// That file; `hub.toml` beside the suite unless given.
    hub: Option<PathBuf>,
}

impl RawTarget {
    fn into_target(self, base_dir: &Path) -> Result<Target, SuiteError> {
        let given = [
            self.url.is_some(),
            self.command.is_some(),
            self.upstream.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(invalid(
                "target",
                "needs exactly one of url, command or upstream",
            ));
        }
        if let Some(url) = self.url {
            if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                return Err(invalid(
                    "target",
                    "args, env and cwd go with command, not url",
                ));
            }
            check_url(&url)?;
            return Ok(Target::Server(Transport::Http {
                url,
                headers: self.headers,
                bearer_token: self.bearer_token,
            }));
        }
        if let Some(command) = self.command {
            if !self.headers.is_empty() || self.bearer_token.is_some() {
                return Err(invalid(
                    "target",
                    "headers and bearer_token go with url, not command",
                ));
            }
            if command.trim().is_empty() {
                return Err(invalid("target.command", "is empty"));
            }
            return Ok(Target::Server(Transport::Stdio {
                command,
                args: self.args,
                env: self.env,
                cwd: self.cwd.map(|cwd| base_dir.join(cwd)),
            }));
        }
        let upstream = self.upstream.unwrap_or_default();
        let hub = base_dir.join(self.hub.unwrap_or_else(|| PathBuf::from("hub.toml")));
        let config = GatewayConfig::from_path(&hub).map_err(|error| SuiteError::Upstream {
            upstream: upstream.clone(),
            message: error.to_string(),
        })?;
        let server = config
            .server(&upstream)
            .ok_or_else(|| SuiteError::Upstream {
                upstream: upstream.clone(),
                message: format!(
                    "{} has no such server (it has: {})",
                    hub.display(),
                    config
                        .servers
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        Ok(Target::Server(server.transport.clone()))
    }
}

/// The hub a target URL points into, when it is a hub's `/mcp`: its origin, and the target's
/// bearer token.
pub(crate) fn hub_of(target: &Target) -> Option<(String, Option<String>)> {
    let Target::Server(Transport::Http {
        url, bearer_token, ..
    }) = target
    else {
        return None;
    };
    let rest = url.strip_prefix("http://")?;
    let cut = rest.find('/')?;
    let path = rest[cut..].split(['?', '#']).next().unwrap_or_default();
    (path.trim_end_matches('/') == "/mcp")
        .then(|| (format!("http://{}", &rest[..cut]), bearer_token.clone()))
}

/// Only plain `http://host:port/path` is spoken by the lab's client.
pub(crate) fn check_url(url: &str) -> Result<(), SuiteError> {
    super::client::HttpTarget::parse(url)
        .map(|_| ())
        .map_err(|message| invalid("target.url", message))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    kind: String,
    tool: Option<String>,
    arguments: Option<toml::Value>,
    calls: Option<u64>,
    rate: Option<f64>,
    duration: Option<String>,
    concurrency: Option<usize>,
    #[serde(default)]
    expect: RawExpect,
    chaos: Option<RawChaos>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChaos {
    hub: Option<String>,
    token: Option<String>,
    server: Option<String>,
    at: Option<String>,
    kill: Option<bool>,
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    #[serde(rename = "for")]
    lasts: Option<String>,
}

impl RawChaos {
    /// Checks the table against its step: `tool` gives the default server, `duration` bounds
    /// `at` and `for`.
    fn into_chaos(self, index: usize, tool: &str, duration: Duration) -> Result<Chaos, SuiteError> {
        let field = |name: &str| format!("steps[{index}].chaos.{name}");
        let hub = match self.hub {
            Some(hub) => {
                let hub = hub.trim().trim_end_matches('/').to_owned();
                super::client::HttpTarget::parse(&hub).map_err(|m| invalid(field("hub"), m))?;
                Some(hub)
            }
            None => None,
        };
        let server = match self.server {
            Some(server) if server.trim().is_empty() => {
                return Err(invalid(field("server"), "is empty"));
            }
            Some(server) => {
                crate::gateway::config::check_id(&server).map_err(|m| invalid(field("server"), m))?;
                server
            }
            None => tool
                .split_once(crate::gateway::SEPARATOR)
                .map(|(server, _)| server.to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid(
                        field("server"),
                        "is required (the upstream's id in the hub) unless the tool is named server__tool",
                    )
                })?,
        };
        let at = self
            .at
            .as_deref()
            .ok_or_else(|| invalid(field("at"), "is required: when into the step, e.g. \"2s\""))?;
        // The step's very start is a moment too, which durations elsewhere may not be.
        let at = if matches!(at.trim(), "0" | "0s" | "0ms") {
            Duration::ZERO
        } else {
            parse_duration(&field("at"), at)?
        };
        if at >= duration {
            return Err(invalid(
                field("at"),
                format!(
                    "is {} ms, not before the end of the step ({} ms)",
                    at.as_millis(),
                    duration.as_millis()
                ),
            ));
        }
        let injects =
            self.latency_ms.is_some() || self.error_rate.is_some() || self.lasts.is_some();
        let fault = match (self.kill, injects) {
            (Some(true), true) => {
                return Err(invalid(
                    field("kill"),
                    "excludes latency_ms, error_rate and for: a chaos step kills or injects, not both",
                ));
            }
            (Some(true), false) => ChaosFault::Kill,
            (_, false) => {
                return Err(invalid(
                    format!("steps[{index}].chaos"),
                    "needs kill = true, or latency_ms and/or error_rate (with for)",
                ));
            }
            (_, true) => {
                let latency_ms = self.latency_ms.unwrap_or(0);
                if latency_ms > MAX_CHAOS_LATENCY_MS {
                    return Err(invalid(
                        field("latency_ms"),
                        format!("must be at most {MAX_CHAOS_LATENCY_MS}"),
                    ));
                }
                let error_rate = self.error_rate.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&error_rate) {
                    return Err(invalid(
                        field("error_rate"),
                        "must be from 0 to 1 (a share of calls)",
                    ));
                }
                if latency_ms == 0 && error_rate == 0.0 {
                    return Err(invalid(
                        field("latency_ms"),
                        "or error_rate must be above 0: the fault would do nothing",
                    ));
                }
                let lasts = match self.lasts.as_deref() {
                    Some(text) => {
                        let lasts = parse_duration(&field("for"), text)?;
                        if lasts.is_zero() {
                            return Err(invalid(field("for"), "must be above 0"));
                        }
                        if at + lasts > duration {
                            return Err(invalid(
                                field("for"),
                                format!(
                                    "ends after the step: at + for is {} ms, the step lasts {} ms",
                                    (at + lasts).as_millis(),
                                    duration.as_millis()
                                ),
                            ));
                        }
                        Some(lasts)
                    }
                    None => None,
                };
                ChaosFault::Inject {
                    latency_ms,
                    error_rate,
                    lasts,
                }
            }
        };
        Ok(Chaos {
            hub,
            token: self.token,
            server,
            at,
            fault,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    no_error: Option<bool>,
    contains: Option<String>,
    json_path: Option<String>,
    equals: Option<toml::Value>,
    p99_below_ms: Option<f64>,
    error_rate_below: Option<f64>,
}

impl RawStep {
    fn into_step(self, index: usize) -> Result<Step, SuiteError> {
        let field = |name: &str| format!("steps[{index}].{name}");
        if self.kind != "call" && (self.tool.is_some() || self.arguments.is_some()) {
            return Err(invalid(
                field("tool"),
                "and arguments go with kind = \"call\" only",
            ));
        }
        let action = match self.kind.as_str() {
            "initialize" => Action::Initialize,
            "list_tools" => Action::ListTools,
            "call" => {
                let tool = self
                    .tool
                    .clone()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| invalid(field("tool"), "is required for a call step"))?;
                let arguments = match self.arguments {
                    None => Value::Object(serde_json::Map::new()),
                    Some(toml::Value::Table(table)) => serde_json::to_value(table)
                        .map_err(|e| invalid(field("arguments"), e.to_string()))?,
                    Some(_) => return Err(invalid(field("arguments"), "must be a table")),
                };
                Action::Call { tool, arguments }
            }
            other => {
                return Err(invalid(
                    field("kind"),
                    format!("{other:?} is not a step kind; use initialize, list_tools or call"),
                ));
            }
        };
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(invalid(
                field("concurrency"),
                format!("must be 1 to {MAX_CONCURRENCY}"),
            ));
        }
        let load = match (self.calls, self.rate, self.duration) {
            (Some(_), Some(_), _) => {
                return Err(invalid(
                    field("calls"),
                    "and rate exclude each other: a count, a duration, or a rate for a duration",
                ));
            }
            (calls, None, None) => {
                let calls = calls.unwrap_or(DEFAULT_CALLS);
                if calls == 0 || calls > MAX_CALLS {
                    return Err(invalid(field("calls"), format!("must be 1 to {MAX_CALLS}")));
                }
                Load::Count { calls, concurrency }
            }
            (Some(_), None, Some(_)) => {
                return Err(invalid(field("duration"), "goes with rate, not calls"));
            }
            (None, Some(_), None) => {
                return Err(invalid(field("duration"), "is required with rate"));
            }
            (None, None, Some(duration)) => Load::For {
                duration: parse_duration(&field("duration"), &duration)?,
                concurrency,
            },
            (None, Some(rate), Some(duration)) => {
                if !rate.is_finite() || rate <= 0.0 {
                    return Err(invalid(
                        field("rate"),
                        "must be a positive number of calls per second",
                    ));
                }
                let duration = parse_duration(&field("duration"), &duration)?;
                let load = Load::Rate {
                    rate,
                    duration,
                    concurrency: self.concurrency.unwrap_or(DEFAULT_RATE_CONCURRENCY),
                };
                if load.calls() == Some(0) {
                    return Err(invalid(field("rate"), "× duration is less than one call"));
                }
                if load.calls() > Some(MAX_CALLS) {
                    return Err(invalid(
                        field("rate"),
                        format!("× duration exceeds {MAX_CALLS} calls"),
                    ));
                }
                load
            }
        };
        let expect = self.expect.into_expect(index)?;
        let chaos = match (self.chaos, &action, load) {
            (None, _, _) => None,
            (
                Some(chaos),
                Action::Call { tool, .. },
                Load::Rate { duration, .. } | Load::For { duration, .. },
            ) => Some(chaos.into_chaos(index, tool, duration)?),
            (Some(_), _, _) => {
                return Err(invalid(
                    field("chaos"),
                    "goes with a call step that runs for a time (rate and duration, or duration)",
                ));
            }
        };
        let name = match self.name {
            Some(name) if name.trim().is_empty() => {
                return Err(invalid(field("name"), "is empty"));
            }
            Some(name) => name,
            None => match &action {
                Action::Call { tool, .. } => tool.clone(),
                other => other.kind().to_owned(),
            },
        };
        Ok(Step {
            name,
            action,
            load,
            expect,
            chaos,
        })
    }
}

impl RawExpect {
    fn into_expect(self, index: usize) -> Result<Expect, SuiteError> {
        let field = |name: &str| format!("steps[{index}].expect.{name}");
        let json_path = match (self.json_path, self.equals) {
            (Some(path), Some(equals)) => Some((
                JsonPath::parse(&path).map_err(|m| invalid(field("json_path"), m))?,
                serde_json::to_value(equals)
                    .map_err(|e| invalid(field("equals"), e.to_string()))?,
            )),
            (None, None) => None,
            (Some(_), None) => return Err(invalid(field("equals"), "is required with json_path")),
            (None, Some(_)) => return Err(invalid(field("json_path"), "is required with equals")),
        };
        let p99_below = match self.p99_below_ms {
            Some(ms) if ms.is_finite() && ms > 0.0 && ms < 1e9 => {
                Some(Duration::from_secs_f64(ms / 1000.0))
            }
            Some(_) => return Err(invalid(field("p99_below_ms"), "must be a positive number")),
            None => None,
        };
        if let Some(rate) = self.error_rate_below
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(invalid(
                field("error_rate_below"),
                "must be above 0 and at most 1 (a share of requests)",
            ));
        }
        Ok(Expect {
            no_error: self.no_error.unwrap_or(self.error_rate_below.is_none()),
            contains: self.contains,
            json_path,
            p99_below,
            error_rate_below: self.error_rate_below,
        })
    }
}
