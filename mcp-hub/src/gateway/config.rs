//! The gateway's configuration: the `hub.toml` format (or a Claude/Cursor `mcpServers` JSON file
//! taken as is), `${VAR}` expansion, validation with errors that name the file, the server and
//! the field, the glob matcher every filter uses, and a polling watcher for hot reload.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// How long a tool call may take when the configuration does not say.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an upstream is pinged when the configuration does not say.
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may take when the configuration does not say.
pub(crate) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// The first restart delay after an upstream's session ends.
pub(crate) const DEFAULT_RESTART_INITIAL: Duration = Duration::from_millis(250);
/// The longest restart delay the backoff grows to.
pub(crate) const DEFAULT_RESTART_MAX: Duration = Duration::from_secs(30);
/// A session that lived this long resets the backoff.
pub(crate) const DEFAULT_RESTART_STABLE_AFTER: Duration = Duration::from_secs(30);

/// Durations longer than this are refused, so that `Instant + duration` can never overflow.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest server id: it prefixes tool names, which clients often limit to 64 characters.
const MAX_ID_LEN: usize = 64;

/// The whole gateway configuration, as read from `hub.toml` or an `mcpServers` JSON file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// When tool names get their server's id as a prefix.
    pub prefix: PrefixMode,
    /// How long a tool call may take, unless a server overrides it.
    pub call_timeout: Duration,
    /// The health checks, unless a server overrides them.
    pub health: HealthConfig,
    /// How upstream sessions are restarted.
    pub restart: RestartConfig,
    /// The upstream servers, sorted by id.
    pub servers: Vec<UpstreamConfig>,
    /// Who may call which tool, in file order.
    pub access: Vec<AccessRule>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            prefix: PrefixMode::default(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            health: HealthConfig::default(),
            restart: RestartConfig::default(),
            servers: Vec::new(),
            access: Vec::new(),
        }
    }
}

/// When a tool's name gets its server's id as a prefix (`tasks__create_task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMode {
    /// Every tool is prefixed.
    Always,
    /// Only names that two or more servers share are prefixed.
    #[default]
    Conditional,
    /// No tool is prefixed.
    Never,
}

/// How an upstream's health is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between two pings.
    pub interval: Duration,
    /// How long one ping may take before it counts as failed.
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
        }
    }
}

/// The restart backoff of upstream sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartConfig {
    /// The first delay; it doubles on each failure in a row.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A session that lived this long resets the delay to `initial`.
    pub stable_after: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            initial: DEFAULT_RESTART_INITIAL,
            max: DEFAULT_RESTART_MAX,
            stable_after: DEFAULT_RESTART_STABLE_AFTER,
        }
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The table key: `[A-Za-z0-9_-]{1,64}` without `__`, unique.
    pub id: String,
    pub transport: Transport,
    /// A disabled server stays in the configuration but is not started.
    pub enabled: bool,
    /// Which of the upstream's own tools the gateway exposes.
    pub tools: ToolFilter,
    /// This server's health checks (its overrides, else the global ones).
    pub health: HealthConfig,
    /// This server's call timeout (its override, else the global one).
    pub call_timeout: Duration,
    /// How many sessions the gateway opens to it for `tools/call` (`sessions`): one for a
    /// stdio server (its process), [`DEFAULT_HTTP_SESSIONS`] for a Streamable HTTP one (an
    /// rmcp server, for one, handles one session's messages in turn). Set `sessions = 1` for
    /// an upstream that keeps state per session.
    pub sessions: usize,
}

/// Sessions opened to a Streamable HTTP upstream unless `sessions` says otherwise.
pub const DEFAULT_HTTP_SESSIONS: usize = 4;
/// The most sessions one upstream may be given.
pub const MAX_SESSIONS: usize = 32;

/// How the gateway reaches an upstream. `Debug` hides the values of `env`, `headers` and
/// `bearer_token`, which usually hold secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// A bare name (looked up in `PATH` at spawn time) or an absolute path.
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        /// Absolute unless the configuration was parsed with a relative base directory.
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        url: String,
        headers: BTreeMap<String, String>,
        bearer_token: Option<String>,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &RedactedValues(env))
                .field("cwd", cwd)
                .finish(),
            Transport::Http {
                url,
                headers,
                bearer_token,
            } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &RedactedValues(headers))
                .field("bearer_token", &bearer_token.as_ref().map(|_| Redacted))
                .finish(),
        }
    }
}

/// Prints `<redacted>` in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Prints a map's keys with every value redacted.
struct RedactedValues<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, Redacted)))
            .finish()
    }
}

/// Glob patterns over an upstream's own tool names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolFilter {
    /// Empty means every tool.
    pub allow: Vec<String>,
    /// Wins over `allow`.
    pub deny: Vec<String>,
}

impl ToolFilter {
    /// Whether the gateway exposes the upstream tool `tool`.
    pub fn admits(&self, tool: &str) -> bool {
        if self.deny.iter().any(|p| glob_match(p, tool)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| glob_match(p, tool))
    }
}

/// One `[[access]]` rule: glob patterns over principals and over the names of tools, prompts
/// and resources (the names clients see, and the canonical `server__name`; see `access.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessRule {
    /// `key:<name>`, `jwt:<sub>` or `anonymous`, as patterns; never empty.
    pub principals: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (or has disappeared).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML or JSON.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// The file holds JSON but is not named `.json`.
    #[error(
        "{file}: this is JSON, but the file name does not end in .json; rename it to import an mcpServers file, or write it as TOML"
    )]
    LooksLikeJson { file: String },
    /// A value outside any server (the top level, `[gateway]`, `[[access]]`) is wrong.
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    /// A value of one server is wrong.
    #[error("{file}: server `{server}`: {field}: {message}")]
    Server {
        file: String,
        server: String,
        field: String,
        message: String,
    },
    /// A `${VAR}` refers to a variable that is not set.
    #[error("{file}: server `{server}`: {field}: environment variable `{var}` is not set")]
    MissingVar {
        file: String,
        server: String,
        field: String,
        var: String,
    },
}

impl GatewayConfig {
    /// Reads and parses a configuration file: `.json` files as Claude/Cursor `mcpServers`
    /// JSON, anything else as `hub.toml`. Relative paths in it are resolved against the file's
    /// directory; `${VAR}` is expanded from the process environment.
    pub fn from_path(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse_file(path, &bytes)
    }

    /// Parses `hub.toml` text; relative paths are resolved against `base_dir`.
    pub fn parse_toml(text: &str, base_dir: &Path) -> Result<GatewayConfig, ConfigError> {
        let ctx = Ctx::new("(toml text)", base_dir, &env_var);
        parse(Format::Toml, text, &ctx)
    }

    /// Parses Claude/Cursor `mcpServers` JSON; relative paths are resolved against `base_dir`.
    pub fn parse_json(text: &str, base_dir: &Path) -> Result<GatewayConfig, ConfigError> {
        let ctx = Ctx::new("(json text)", base_dir, &env_var);
        parse(Format::Json, text, &ctx)
    }

    /// The server with this id.
    pub fn server(&self, id: &str) -> Option<&UpstreamConfig> {
        self.servers.iter().find(|s| s.id == id)
    }
}

/// Matches `text` against a glob `pattern`: `*` matches any run of characters (also none), `?`
/// exactly one character, anything else itself. Runs in O(len(pattern) × len(text)) at worst.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and the text position it is currently assumed to stretch to.
    // Only the last star needs remembering: a later star can absorb anything an earlier one
    // would have, which is what keeps this linear in backtracking.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Parses a duration: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or a bare number of seconds. Zero
/// and anything over seven days are refused.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a duration; write a whole number with ms, s, m or h, such as \"10s\""
        ));
    }
    let Ok(number) = number.parse::<u64>() else {
        return Err(format!("{text:?} is too long a duration"));
    };
    let duration = match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "" | "s" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        "h" => number.checked_mul(3600).map(Duration::from_secs),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    check_duration(text, duration)
}

fn check_duration(text: &str, duration: Option<Duration>) -> Result<Duration, String> {
    match duration {
        Some(d) if d.is_zero() => Err(format!("{text:?}: the duration must be greater than zero")),
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{text:?}: the duration must be at most 168h")),
    }
}

/// Why `${VAR}` expansion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExpandError {
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    #[error("`${{` without a closing `}}` (write `$${{` for a literal `${{`)")]
    Unterminated,
    #[error(
        "`${{{0}}}` is not a variable name (letters, digits and `_`, not starting with a digit)"
    )]
    BadName(String),
}

/// Replaces every `${VAR}` in `text` with `lookup(VAR)`; `$${` stands for a literal `${`, and
/// a `$` not followed by `{` is kept. Substituted values are not expanded again.
pub(crate) fn expand_vars(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err(ExpandError::Unterminated);
            };
            let name = &body[..end];
            if !is_var_name(name) {
                return Err(ExpandError::BadName(name.to_owned()));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => return Err(ExpandError::Missing(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The process environment; a variable that is not valid Unicode counts as unset.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
}

/// What parsing needs besides the text: a name for errors, where relative paths start, and
/// where `${VAR}` values come from.
struct Ctx<'a> {
    file: &'a str,
    base_dir: &'a Path,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str, base_dir: &'a Path, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Ctx {
            file,
            base_dir,
            lookup,
        }
    }

    fn err(&self, at: At<'_>, field: &str, message: impl Into<String>) -> ConfigError {
        let file = self.file.to_owned();
        let message = message.into();
        match at {
            At::Top => ConfigError::Invalid {
                file,
                field: field.to_owned(),
                message,
            },
            At::Gateway => ConfigError::Invalid {
                file,
                field: format!("gateway.{field}"),
                message,
            },
            At::Access(index) => ConfigError::Invalid {
                file,
                field: format!("access[{index}].{field}"),
                message,
            },
            At::Server(server) => ConfigError::Server {
                file,
                server: server.to_owned(),
                field: field.to_owned(),
                message,
            },
        }
    }

    /// Expands `${VAR}` in one value of a server.
    fn expand(&self, server: &str, field: &str, text: &str) -> Result<String, ConfigError> {
        expand_vars(text, self.lookup).map_err(|error| match error {
            ExpandError::Missing(var) => ConfigError::MissingVar {
                file: self.file.to_owned(),
                server: server.to_owned(),
                field: field.to_owned(),
                var,
            },
            other => self.err(At::Server(server), field, other.to_string()),
        })
    }

    /// A path from the file, absolute or relative to the file's directory.
    fn resolve(&self, path: &str) -> PathBuf {
        // `components()` drops `.` segments, so `cwd = "."` is the directory itself.
        self.base_dir.join(path).components().collect()
    }
}

/// Where in the file a value sits, for error messages.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Top,
    Gateway,
    Server(&'a str),
    Access(usize),
}

/// Whether keys nobody knows are errors (our own tables) or ignored (the Claude/Cursor shape,
/// where other tools' keys are common).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    Reject,
    Ignore,
}

/// A table being taken apart key by key, so every error can name its key.
struct Table<'c, 'a> {
    ctx: &'c Ctx<'a>,
    at: At<'c>,
    map: Map<String, Value>,
}

impl<'c, 'a> Table<'c, 'a> {
    fn new(ctx: &'c Ctx<'a>, at: At<'c>, field: &str, value: Value) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Table { ctx, at, map }),
            other => Err(ctx.err(
                at,
                field,
                format!("expected a table, found {}", kind(&other)),
            )),
        }
    }

    /// Removes and deserializes `key`; absent and `null` are `None`.
    fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| self.ctx.err(self.at, key, e.to_string())),
        }
    }

    fn take_raw(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn take_duration(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(value) = self.take_raw(key) else {
            return Ok(None);
        };
        let parsed = match &value {
            Value::String(text) => parse_duration(text),
            Value::Number(n) => match n.as_u64() {
                Some(secs) => check_duration(&n.to_string(), Some(Duration::from_secs(secs))),
                None => Err(format!("{n} is not a whole, positive number of seconds")),
            },
            other => Err(format!(
                "expected a duration such as \"10s\", found {}",
                kind(other)
            )),
        };
        parsed
            .map(Some)
            .map_err(|message| self.ctx.err(self.at, key, message))
    }

    /// Fails on a key left over, unless unknown keys are ignored here.
    fn finish(self, unknown: Unknown, known: &[&str]) -> Result<(), ConfigError> {
        if unknown == Unknown::Ignore {
            return Ok(());
        }
        match self.map.keys().next() {
            None => Ok(()),
            Some(key) => Err(self.ctx.err(
                self.at,
                key,
                format!("unknown key; expected one of {}", known.join(", ")),
            )),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

const TOP_KEYS: &[&str] = &["gateway", "servers", "mcpServers", "access"];
const GATEWAY_KEYS: &[&str] = &[
    "prefix",
    "call_timeout",
    "health_interval",
    "health_timeout",
    "restart_initial",
    "restart_max",
    "restart_stable_after",
];
const SERVER_KEYS: &[&str] = &[
    "type",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "bearer_token",
    "tools",
    "enabled",
    "disabled",
    "health_interval",
    "health_timeout",
    "call_timeout",
    "sessions",
];
const FILTER_KEYS: &[&str] = &["allow", "deny"];
const ACCESS_KEYS: &[&str] = &["principals", "allow", "deny"];

const SSE_UNSUPPORTED: &str =
    "the legacy SSE transport is not supported; use the server's Streamable HTTP endpoint";

/// Parses the bytes of the file at `path`, choosing the format by its extension.
fn parse_file(path: &Path, bytes: &[u8]) -> Result<GatewayConfig, ConfigError> {
    let file = path.display().to_string();
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(ConfigError::Syntax {
            file,
            message: "the file is not valid UTF-8".to_owned(),
        });
    };
    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let format = if is_json { Format::Json } else { Format::Toml };
    // Relative paths in the file are meant from its directory, wherever the hub was started.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let base_dir = absolute.parent().unwrap_or(Path::new("."));
    let ctx = Ctx::new(&file, base_dir, &env_var);
    parse(format, text, &ctx)
}

fn parse(format: Format, text: &str, ctx: &Ctx<'_>) -> Result<GatewayConfig, ConfigError> {
    match format {
        Format::Toml => {
            let value = toml::from_str::<Value>(text).map_err(|e| {
                if text.trim_start().starts_with('{') {
                    return ConfigError::LooksLikeJson {
                        file: ctx.file.to_owned(),
                    };
                }
                ConfigError::Syntax {
                    file: ctx.file.to_owned(),
                    message: toml_message(text, &e),
                }
            })?;
            parse_toml_value(value, ctx)
        }
        Format::Json => {
            let value = serde_json::from_str::<Value>(text).map_err(|e| ConfigError::Syntax {
                file: ctx.file.to_owned(),
                message: format!("invalid JSON: {e}"),
            })?;
            parse_json_value(value, ctx)
        }
    }
}

/// A TOML error on one line: where, then what.
fn toml_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    let Some(span) = error.span() else {
        return format!("invalid TOML: {message}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("invalid TOML at line {line}, column {column}: {message}")
}

fn parse_toml_value(value: Value, ctx: &Ctx<'_>) -> Result<GatewayConfig, ConfigError> {
    let mut top = Table::new(ctx, At::Top, "(top level)", value)?;
    let gateway = top.take_raw("gateway");
    let servers = top.take_raw("servers");
    let claude = top.take_raw("mcpServers");
    let access = top.take_raw("access");
    top.finish(Unknown::Reject, TOP_KEYS)?;
    let mut config = parse_gateway(gateway, ctx)?;
    config.servers = match (servers, claude) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                At::Top,
                "mcpServers",
                "use either [servers] or [mcpServers], not both",
            ));
        }
        (Some(servers), None) => parse_servers(servers, "servers", Unknown::Reject, &config, ctx)?,
        (None, Some(claude)) => parse_servers(claude, "mcpServers", Unknown::Ignore, &config, ctx)?,
        (None, None) => Vec::new(),
    };
    config.access = parse_access(access, ctx)?;
    Ok(config)
}

fn parse_json_value(value: Value, ctx: &Ctx<'_>) -> Result<GatewayConfig, ConfigError> {
    let mut top = Table::new(ctx, At::Top, "(top level)", value)?;
    let gateway = top.take_raw("gateway");
    let claude = top.take_raw("mcpServers");
    let access = top.take_raw("access");
    let vscode = top.map.contains_key("servers");
    // Claude's and Cursor's files carry many other keys; they are not ours to judge.
    top.finish(Unknown::Ignore, TOP_KEYS)?;
    let Some(claude) = claude else {
        let hint = if vscode {
            " (VS Code's `servers` shape is not supported; rename it to `mcpServers`)"
        } else {
            ""
        };
        return Err(ctx.err(
            At::Top,
            "mcpServers",
            format!("expected a top-level `mcpServers` object{hint}"),
        ));
    };
    let mut config = parse_gateway(gateway, ctx)?;
    config.servers = parse_servers(claude, "mcpServers", Unknown::Ignore, &config, ctx)?;
    config.access = parse_access(access, ctx)?;
    Ok(config)
}

/// The `[gateway]` table, over the defaults; servers and access are left empty.
fn parse_gateway(value: Option<Value>, ctx: &Ctx<'_>) -> Result<GatewayConfig, ConfigError> {
    let mut config = GatewayConfig::default();
    let Some(value) = value else {
        return Ok(config);
    };
    let mut table = Table::new(ctx, At::Top, "gateway", value)?;
    table.at = At::Gateway;
    if let Some(prefix) = table.take("prefix")? {
        config.prefix = prefix;
    }
    let call_timeout = table.take_duration("call_timeout")?;
    let health_interval = table.take_duration("health_interval")?;
    let health_timeout = table.take_duration("health_timeout")?;
    let restart_initial = table.take_duration("restart_initial")?;
    let restart_max = table.take_duration("restart_max")?;
    let stable_after = table.take_duration("restart_stable_after")?;
    table.finish(Unknown::Reject, GATEWAY_KEYS)?;
    config.call_timeout = call_timeout.unwrap_or(config.call_timeout);
    config.health.interval = health_interval.unwrap_or(config.health.interval);
    config.health.timeout = health_timeout.unwrap_or(config.health.timeout);
    config.restart.initial = restart_initial.unwrap_or(config.restart.initial);
    config.restart.max = restart_max.unwrap_or(config.restart.max);
    config.restart.stable_after = stable_after.unwrap_or(config.restart.stable_after);
    if config.restart.initial > config.restart.max {
        return Err(ctx.err(
            At::Gateway,
            "restart_initial",
            format!(
                "{:?} is longer than restart_max ({:?})",
                config.restart.initial, config.restart.max
            ),
        ));
    }
    Ok(config)
}

fn parse_servers(
    value: Value,
    field: &str,
    unknown: Unknown,
    global: &GatewayConfig,
    ctx: &Ctx<'_>,
) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ctx.err(
            At::Top,
            field,
            format!("expected a table of servers, found {}", kind(&value)),
        ));
    };
    let mut servers = map
        .into_iter()
        .map(|(id, value)| parse_server(&id, value, unknown, global, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    // Map keys are unique already; sorting makes the order independent of the map type.
    servers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(servers)
}

/// Why an id cannot be used, if it cannot.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the server id must not be empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "the server id is longer than {MAX_ID_LEN} characters"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(format!(
            "the server id contains {bad:?}; use only letters, digits, `_` and `-`"
        ));
    }
    if id.contains("__") {
        return Err(
            "the server id contains `__`, which separates server ids from tool names".to_owned(),
        );
    }
    Ok(())
}

fn parse_server(
    id: &str,
    value: Value,
    unknown: Unknown,
    global: &GatewayConfig,
    ctx: &Ctx<'_>,
) -> Result<UpstreamConfig, ConfigError> {
    let at = At::Server(id);
    check_id(id).map_err(|message| ctx.err(at, "id", message))?;
    let mut table = Table::new(ctx, at, "(server)", value)?;
    let kind: Option<String> = table.take("type")?;
    let command: Option<String> = table.take("command")?;
    let args: Option<Vec<String>> = table.take("args")?;
    let env: Option<BTreeMap<String, String>> = table.take("env")?;
    let cwd: Option<String> = table.take("cwd")?;
    let url: Option<String> = table.take("url")?;
    let headers: Option<BTreeMap<String, String>> = table.take("headers")?;
    let bearer_token: Option<String> = table.take("bearer_token")?;
    let tools = table.take_raw("tools");
    let enabled: Option<bool> = table.take("enabled")?;
    let disabled: Option<bool> = table.take("disabled")?;
    let health_interval = table.take_duration("health_interval")?;
    let health_timeout = table.take_duration("health_timeout")?;
    let call_timeout = table.take_duration("call_timeout")?;
    let sessions: Option<i64> = table.take("sessions")?;
    table.finish(unknown, SERVER_KEYS)?;
    let sessions = match sessions {
        None => None,
        Some(n) if (1..=MAX_SESSIONS as i64).contains(&n) => Some(n as usize),
        Some(n) => {
            return Err(ctx.err(
                at,
                "sessions",
                format!("{n} is out of range; expected 1 to {MAX_SESSIONS}"),
            ));
        }
    };

    let transport = match (kind.as_deref(), command, url) {
        (Some("sse"), _, _) => return Err(ctx.err(at, "type", SSE_UNSUPPORTED)),
        (Some(other), _, _) if !matches!(other, "stdio" | "http" | "streamable-http") => {
            return Err(ctx.err(
                at,
                "type",
                format!("unknown transport {other:?}; expected stdio, http or streamable-http"),
            ));
        }
        (_, Some(_), Some(_)) => {
            return Err(ctx.err(
                at,
                "command",
                "set exactly one of `command` (a stdio server) or `url` (a Streamable HTTP server), not both",
            ));
        }
        (_, None, None) => {
            return Err(ctx.err(
                at,
                "command",
                "set exactly one of `command` (a stdio server) or `url` (a Streamable HTTP server)",
            ));
        }
        (Some("stdio"), None, Some(_)) => {
            return Err(ctx.err(at, "type", "a stdio server needs `command`, not `url`"));
        }
        (Some("http" | "streamable-http"), Some(_), None) => {
            return Err(ctx.err(
                at,
                "type",
                "a Streamable HTTP server needs `url`, not `command`",
            ));
        }
        (_, Some(command), None) => {
            let only_http = [
                ("headers", headers.is_some()),
                ("bearer_token", bearer_token.is_some()),
            ];
            reject_foreign(ctx, at, unknown, &only_http, "url")?;
            if sessions.is_some_and(|n| n > 1) {
                return Err(ctx.err(
                    at,
                    "sessions",
                    "a stdio server has one session, its process; `sessions` is for Streamable \
                     HTTP servers",
                ));
            }
            stdio_transport(ctx, id, command, args, env, cwd)?
        }
        (_, None, Some(url)) => {
            let only_stdio = [
                ("args", args.is_some()),
                ("env", env.is_some()),
                ("cwd", cwd.is_some()),
            ];
            reject_foreign(ctx, at, unknown, &only_stdio, "command")?;
            http_transport(ctx, id, url, headers, bearer_token)?
        }
    };

    let enabled = match (enabled, disabled) {
        (Some(e), Some(d)) if e == d => {
            return Err(ctx.err(
                at,
                "enabled",
                "`enabled` and `disabled` contradict each other",
            ));
        }
        (Some(e), _) => e,
        (None, Some(d)) => !d,
        (None, None) => true,
    };
    let tools = match tools {
        Some(value) => parse_filter(value, at, ctx)?,
        None => ToolFilter::default(),
    };
    Ok(UpstreamConfig {
        id: id.to_owned(),
        enabled,
        tools,
        health: HealthConfig {
            interval: health_interval.unwrap_or(global.health.interval),
            timeout: health_timeout.unwrap_or(global.health.timeout),
        },
        call_timeout: call_timeout.unwrap_or(global.call_timeout),
        sessions: sessions.unwrap_or(match transport {
            Transport::Stdio { .. } => 1,
            Transport::Http { .. } => DEFAULT_HTTP_SESSIONS,
        }),
        transport,
    })
}

/// In our own tables, a key of the other transport is a mistake worth reporting; in the
/// Claude/Cursor shape it is ignored like any foreign key.
fn reject_foreign(
    ctx: &Ctx<'_>,
    at: At<'_>,
    unknown: Unknown,
    present: &[(&str, bool)],
    other: &str,
) -> Result<(), ConfigError> {
    if unknown == Unknown::Ignore {
        return Ok(());
    }
    match present.iter().find(|(_, is_set)| *is_set) {
        Some((key, _)) => Err(ctx.err(at, key, format!("applies only to `{other}` servers"))),
        None => Ok(()),
    }
}

fn stdio_transport(
    ctx: &Ctx<'_>,
    id: &str,
    command: String,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<String>,
) -> Result<Transport, ConfigError> {
    let at = At::Server(id);
    let command = ctx.expand(id, "command", &command)?;
    if command.trim().is_empty() {
        return Err(ctx.err(at, "command", "must not be empty"));
    }
    // A bare name is looked up in PATH when the child starts; a relative path with a
    // separator means "next to this file", as it would in a shell started there.
    let command = if command.contains(std::path::is_separator) && Path::new(&command).is_relative()
    {
        ctx.resolve(&command).to_string_lossy().into_owned()
    } else {
        command
    };
    let args = args
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, arg)| ctx.expand(id, &format!("args[{i}]"), arg))
        .collect::<Result<Vec<_>, _>>()?;
    let mut expanded = BTreeMap::new();
    for (key, value) in env.unwrap_or_default() {
        let field = format!("env.{key}");
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(ctx.err(at, &field, "not a valid environment variable name"));
        }
        let value = ctx.expand(id, &field, &value)?;
        expanded.insert(key, value);
    }
    let cwd = match cwd {
        None => None,
        Some(cwd) => {
            let cwd = ctx.expand(id, "cwd", &cwd)?;
            if cwd.is_empty() {
                return Err(ctx.err(at, "cwd", "must not be empty"));
            }
            Some(ctx.resolve(&cwd))
        }
    };
    Ok(Transport::Stdio {
        command,
        args,
        env: expanded,
        cwd,
    })
}

fn http_transport(
    ctx: &Ctx<'_>,
    id: &str,
    url: String,
    headers: Option<BTreeMap<String, String>>,
    bearer_token: Option<String>,
) -> Result<Transport, ConfigError> {
    let at = At::Server(id);
    let url = ctx.expand(id, "url", &url)?;
    check_url(&url).map_err(|message| ctx.err(at, "url", message))?;
    let mut expanded = BTreeMap::new();
    for (name, value) in headers.unwrap_or_default() {
        let field = format!("headers.{name}");
        if !is_header_name(&name) {
            return Err(ctx.err(at, &field, "not a valid HTTP header name"));
        }
        let value = ctx.expand(id, &field, &value)?;
        if !is_header_value(&value) {
            return Err(ctx.err(at, &field, "the value contains a control character"));
        }
        expanded.insert(name, value);
    }
    let bearer_token = match bearer_token {
        None => None,
        Some(token) => {
            let token = ctx.expand(id, "bearer_token", &token)?;
            if token.is_empty() || !is_header_value(&token) {
                return Err(ctx.err(
                    at,
                    "bearer_token",
                    "must be non-empty, without control characters",
                ));
            }
            if expanded
                .keys()
                .any(|name| name.eq_ignore_ascii_case("authorization"))
            {
                return Err(ctx.err(
                    at,
                    "bearer_token",
                    "set either bearer_token or an Authorization header, not both",
                ));
            }
            Some(token)
        }
    };
    Ok(Transport::Http {
        url,
        headers: expanded,
        bearer_token,
    })
}

fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace"));
    }
    Ok(())
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn is_header_value(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

fn parse_filter(value: Value, at: At<'_>, ctx: &Ctx<'_>) -> Result<ToolFilter, ConfigError> {
    let mut table = Table::new(ctx, at, "tools", value)?;
    let allow = table.take::<Vec<String>>("allow");
    let deny = table.take::<Vec<String>>("deny");
    // Name the sub-key in errors: `tools.allow`, not just `allow`.
    let prefixed = |e: ConfigError| match e {
        ConfigError::Server {
            file,
            server,
            field,
            message,
        } => ConfigError::Server {
            file,
            server,
            field: format!("tools.{field}"),
            message,
        },
        other => other,
    };
    let allow = allow.map_err(prefixed)?.unwrap_or_default();
    let deny = deny.map_err(prefixed)?.unwrap_or_default();
    table
        .finish(Unknown::Reject, FILTER_KEYS)
        .map_err(prefixed)?;
    Ok(ToolFilter { allow, deny })
}

fn parse_access(value: Option<Value>, ctx: &Ctx<'_>) -> Result<Vec<AccessRule>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(ctx.err(
            At::Top,
            "access",
            format!(
                "expected an array of rules ([[access]]), found {}",
                kind(&value)
            ),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let at = At::Access(index);
            let mut table = Table::new(ctx, At::Top, &format!("access[{index}]"), item)?;
            table.at = at;
            let principals: Vec<String> = table.take("principals")?.unwrap_or_default();
            let allow: Vec<String> = table.take("allow")?.unwrap_or_default();
            let deny: Vec<String> = table.take("deny")?.unwrap_or_default();
            table.finish(Unknown::Reject, ACCESS_KEYS)?;
            if principals.is_empty() {
                return Err(ctx.err(
                    at,
                    "principals",
                    "a rule needs at least one principal pattern, such as \"key:ci-bot\"",
                ));
            }
            Ok(AccessRule {
                principals,
                allow,
                deny,
            })
        })
        .collect()
}

/// Polls a configuration file for changes and reports each new content once.
pub(crate) struct ConfigWatcher {
    path: PathBuf,
    interval: Duration,
    seen: Seen,
}

/// What the watcher last saw at the path.
#[derive(Debug)]
enum Seen {
    /// Nothing read yet; the caller runs this configuration.
    Initial(Box<GatewayConfig>),
    /// Content with this hash, and the metadata read just before it.
    Content(Snapshot),
    /// The file was missing once; this is the content before. An editor that deletes and
    /// rewrites a file is not reported as a disappearance.
    MaybeMissing(Snapshot),
    /// The file is missing and that has been reported.
    Missing,
    /// Reading failed with this kind of error, which has been reported.
    Unreadable(io::ErrorKind),
}

#[derive(Debug, Clone)]
struct Snapshot {
    hash: u64,
    stamp: Stamp,
    /// When the metadata was read: a modification time this close to it cannot be trusted to
    /// change on the next write (coarse file system clocks), so the bytes are compared then.
    checked_at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The coarsest modification time granularity we expect from a file system (FAT has 2 s).
const MTIME_SLACK: Duration = Duration::from_secs(2);
/// A zero interval would spin; this is the shortest poll.
const MIN_POLL: Duration = Duration::from_millis(10);

impl Snapshot {
    /// Whether `stamp` proves the content is still what this snapshot hashed.
    fn unchanged(&self, stamp: &Stamp) -> bool {
        let Some(modified) = stamp.modified else {
            return false;
        };
        *stamp == self.stamp
            && modified
                .checked_add(MTIME_SLACK)
                .is_some_and(|settled| settled <= self.checked_at)
    }
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

impl ConfigWatcher {
    /// Polls `path` every `interval` (at least 10 ms) until `cancel` fires, and calls
    /// `on_change` once per change of the file's content: `Ok` with the new configuration, or
    /// `Err` once per distinct bad content, disappearance or read failure (the caller keeps its
    /// last good configuration). Touching the file without changing it is not a change;
    /// replacing it by rename is, and so is its reappearance after it was reported missing.
    ///
    /// `initial` is the configuration the caller runs. The first poll, right away, reports
    /// the file only if it no longer parses to `initial`, so an edit made between loading the
    /// file and calling this is not lost.
    pub(crate) fn spawn(
        path: PathBuf,
        interval: Duration,
        initial: &GatewayConfig,
        cancel: CancellationToken,
        mut on_change: impl FnMut(Result<GatewayConfig, ConfigError>) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let mut watcher = ConfigWatcher::new(path, interval, initial);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(watcher.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if let Some(report) = watcher.poll().await {
                    on_change(report);
                }
            }
        })
    }

    fn new(path: PathBuf, interval: Duration, initial: &GatewayConfig) -> Self {
        ConfigWatcher {
            path,
            interval: interval.max(MIN_POLL),
            seen: Seen::Initial(Box::new(initial.clone())),
        }
    }

    /// Looks at the file once; `Some` when there is something to report.
    async fn poll(&mut self) -> Option<Result<GatewayConfig, ConfigError>> {
        let checked_at = SystemTime::now();
        // Metadata before the bytes: if the file changes in between, the next poll sees a new
        // stamp and compares the bytes again.
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => meta,
            Err(error) => return self.failed(error),
        };
        let stamp = Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        };
        if let Seen::Content(snapshot) = &self.seen
            && snapshot.unchanged(&stamp)
        {
            return None;
        }
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(error) => return self.failed(error),
        };
        let hash = hash_bytes(&bytes);
        let snapshot = Snapshot {
            hash,
            stamp,
            checked_at,
        };
        let before = std::mem::replace(&mut self.seen, Seen::Content(snapshot));
        if let Seen::Content(before) | Seen::MaybeMissing(before) = &before
            && before.hash == hash
        {
            return None;
        }
        let report = parse_file(&self.path, &bytes);
        if let Seen::Initial(running) = &before
            && report.as_ref().is_ok_and(|new| new == running.as_ref())
        {
            return None;
        }
        // Anything else is news, also the same bytes coming back after a reported failure.
        Some(report)
    }

    fn failed(&mut self, error: io::Error) -> Option<Result<GatewayConfig, ConfigError>> {
        let next = match (&self.seen, error.kind()) {
            (Seen::Content(before), io::ErrorKind::NotFound) => {
                self.seen = Seen::MaybeMissing(before.clone());
                return None;
            }
            (Seen::Missing, io::ErrorKind::NotFound) => return None,
            (_, io::ErrorKind::NotFound) => Seen::Missing,
            (Seen::Unreadable(kind), now) if *kind == now => return None,
            (_, now) => Seen::Unreadable(now),
        };
        self.seen = next;
        Some(Err(ConfigError::Read {
            path: self.path.clone(),
            source: error,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn toml_with(text: &str, env: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let lookup = vars(env);
        let ctx = Ctx::new("hub.toml", Path::new("/etc/hub"), &lookup);
        parse(Format::Toml, text, &ctx)
    }

    fn toml(text: &str) -> Result<GatewayConfig, ConfigError> {
        toml_with(text, &[])
    }

    fn json_with(text: &str, env: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let lookup = vars(env);
        let ctx = Ctx::new("claude.json", Path::new("/etc/hub"), &lookup);
        parse(Format::Json, text, &ctx)
    }

    fn json(text: &str) -> Result<GatewayConfig, ConfigError> {
        json_with(text, &[])
    }

    fn message(result: Result<GatewayConfig, ConfigError>) -> String {
        match result {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const EXAMPLE: &str = r#"
[gateway]
prefix = "always"
call_timeout = "90s"
health_interval = "10s"
health_timeout = "5s"
restart_initial = "250ms"
restart_max = "30s"

[servers.tasks]
command = "mcp-tasks"
args = ["stdio"]
env = { DATABASE_URL = "sqlite://tasks.db" }
cwd = "."
health_interval = "5s"
enabled = true

[servers.github]
url = "http://127.0.0.1:8081/mcp"
headers = { "X-Team" = "a" }
bearer_token = "${GITHUB_MCP_TOKEN}"
tools = { allow = ["list_*", "get_*"], deny = ["send_*"] }

[[access]]
principals = ["key:ci-bot"]
allow = ["tasks__get_*"]
deny = []
"#;

    #[test]
    fn the_documented_example_parses() {
        let config = toml_with(EXAMPLE, &[("GITHUB_MCP_TOKEN", "t0k")]).unwrap();
        assert_eq!(config.prefix, PrefixMode::Always);
        assert_eq!(config.call_timeout, Duration::from_secs(90));
        assert_eq!(config.restart, RestartConfig::default());
        let ids: Vec<_> = config.servers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["github", "tasks"]);

        let tasks = config.server("tasks").unwrap();
        assert_eq!(
            tasks.transport,
            Transport::Stdio {
                command: "mcp-tasks".to_owned(),
                args: s(&["stdio"]),
                env: map(&[("DATABASE_URL", "sqlite://tasks.db")]),
                cwd: Some(PathBuf::from("/etc/hub")),
            }
        );
        assert!(tasks.enabled);
        assert_eq!(tasks.health.interval, Duration::from_secs(5));
        assert_eq!(tasks.health.timeout, Duration::from_secs(5));
        assert_eq!(tasks.call_timeout, Duration::from_secs(90));
        assert_eq!(tasks.tools, ToolFilter::default());

        let github = config.server("github").unwrap();
        assert_eq!(
            github.transport,
            Transport::Http {
                url: "http://127.0.0.1:8081/mcp".to_owned(),
                headers: map(&[("X-Team", "a")]),
                bearer_token: Some("t0k".to_owned()),
            }
        );
        assert_eq!(github.tools.allow, s(&["list_*", "get_*"]));
        assert_eq!(github.tools.deny, s(&["send_*"]));
        assert_eq!(github.health, HealthConfig::default());

        assert_eq!(
            config.access,
            vec![AccessRule {
                principals: s(&["key:ci-bot"]),
                allow: s(&["tasks__get_*"]),
                deny: vec![],
            }]
        );
        assert!(config.server("nope").is_none());
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let config = toml("").unwrap();
        assert_eq!(config, GatewayConfig::default());
        assert_eq!(config.prefix, PrefixMode::Conditional);
        assert_eq!(config.call_timeout, Duration::from_secs(60));
        assert_eq!(config.health.interval, Duration::from_secs(10));
        assert_eq!(config.health.timeout, Duration::from_secs(5));
        assert_eq!(config.restart.initial, Duration::from_millis(250));
        assert_eq!(config.restart.max, Duration::from_secs(30));
        assert_eq!(config.restart.stable_after, Duration::from_secs(30));
    }

    #[test]
    fn per_server_overrides_beat_the_globals() {
        let config = toml(
            r#"
            [gateway]
            call_timeout = 20
            health_interval = "1m"
            health_timeout = "2s"
            restart_stable_after = "1h"
            [servers.a]
            command = "a"
            call_timeout = "5s"
            health_timeout = "1s"
            [servers.b]
            command = "b"
            "#,
        )
        .unwrap();
        let a = config.server("a").unwrap();
        assert_eq!(a.call_timeout, Duration::from_secs(5));
        assert_eq!(a.health.interval, Duration::from_secs(60));
        assert_eq!(a.health.timeout, Duration::from_secs(1));
        let b = config.server("b").unwrap();
        assert_eq!(b.call_timeout, Duration::from_secs(20));
        assert_eq!(b.health.timeout, Duration::from_secs(2));
        assert_eq!(config.restart.stable_after, Duration::from_secs(3600));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("168h"), Ok(MAX_DURATION));
        for bad in [
            "",
            "s",
            "0",
            "0s",
            "0ms",
            "-1s",
            "1.5s",
            "10x",
            "10 sec",
            "169h",
            "1d",
            "99999999999999999999s",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(message(toml("[gateway]\ncall_timeout = 0")).contains("greater than zero"));
        assert!(message(toml("[gateway]\ncall_timeout = -3")).contains("positive"));
        assert!(message(toml("[gateway]\ncall_timeout = 1.5")).contains("positive"));
        assert!(message(toml("[gateway]\ncall_timeout = true")).contains("a boolean"));
        let error = message(toml(
            "[servers.a]\ncommand = \"a\"\nhealth_timeout = \"5 minutes\"",
        ));
        assert!(
            error.starts_with("hub.toml: server `a`: health_timeout: "),
            "{error}"
        );
        assert!(error.contains("unknown unit"), "{error}");
    }

    #[test]
    fn sessions_default_by_transport_and_are_bounded() {
        let config = toml(
            "[servers.a]\ncommand = \"a\"\n[servers.b]\nurl = \"http://127.0.0.1:1/mcp\"\n\
             [servers.c]\nurl = \"http://127.0.0.1:2/mcp\"\nsessions = 1\n",
        )
        .unwrap();
        let sessions: Vec<_> = config.servers.iter().map(|s| s.sessions).collect();
        assert_eq!(sessions, [1, DEFAULT_HTTP_SESSIONS, 1]);
        for bad in ["0", "-1", "33", "\"4\""] {
            let error = message(toml(&format!(
                "[servers.b]\nurl = \"http://127.0.0.1:1/mcp\"\nsessions = {bad}"
            )));
            assert!(
                error.starts_with("hub.toml: server `b`: sessions: "),
                "{bad}: {error}"
            );
        }
        let error = message(toml("[servers.a]\ncommand = \"a\"\nsessions = 2"));
        assert!(error.contains("one session, its process"), "{error}");
    }

    #[test]
    fn restart_initial_may_not_exceed_max() {
        let error = message(toml(
            "[gateway]\nrestart_initial = \"1m\"\nrestart_max = \"30s\"",
        ));
        assert!(
            error.starts_with("hub.toml: gateway.restart_initial: "),
            "{error}"
        );
    }

    #[test]
    fn prefix_modes() {
        for (text, mode) in [
            ("always", PrefixMode::Always),
            ("conditional", PrefixMode::Conditional),
            ("never", PrefixMode::Never),
        ] {
            let config = toml(&format!("[gateway]\nprefix = \"{text}\"")).unwrap();
            assert_eq!(config.prefix, mode);
        }
        let error = message(toml("[gateway]\nprefix = \"Always\""));
        assert!(
            error.starts_with("hub.toml: gateway.prefix: unknown variant"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_in_toml() {
        let error = message(toml("[servers.tasks]\ncomand = \"x\""));
        assert!(
            error.starts_with("hub.toml: server `tasks`: comand: unknown key; expected one of"),
            "{error}"
        );
        let error = message(toml("[gateway]\ntimeout = \"1s\""));
        assert!(
            error.starts_with("hub.toml: gateway.timeout: unknown key"),
            "{error}"
        );
        let error = message(toml("[server.tasks]\ncommand = \"x\""));
        assert!(
            error.starts_with("hub.toml: server: unknown key"),
            "{error}"
        );
        let error = message(toml("[servers.a]\ncommand = \"a\"\ntools = { alow = [] }"));
        assert!(
            error.starts_with("hub.toml: server `a`: tools.alow: unknown key"),
            "{error}"
        );
        let error = message(toml("[[access]]\nprincipals = [\"*\"]\nallows = []"));
        assert!(
            error.starts_with("hub.toml: access[0].allows: unknown key"),
            "{error}"
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let error = message(toml("[servers.a]\ncommand = \"a\"\nargs = \"stdio\""));
        assert!(
            error.starts_with("hub.toml: server `a`: args: invalid type"),
            "{error}"
        );
        let error = message(toml("[servers.a]\ncommand = \"a\"\nenv = { PORT = 80 }"));
        assert!(
            error.starts_with("hub.toml: server `a`: env: invalid type"),
            "{error}"
        );
        let error = message(toml(
            "[servers.a]\ncommand = \"a\"\ntools = { allow = \"x\" }",
        ));
        assert!(
            error.starts_with("hub.toml: server `a`: tools.allow: invalid type"),
            "{error}"
        );
        let error = message(toml("[servers]\na = 1"));
        assert!(
            error.contains("server `a`: (server): expected a table"),
            "{error}"
        );
        let error = message(toml("servers = 1"));
        assert!(
            error.starts_with("hub.toml: servers: expected a table"),
            "{error}"
        );
        let error = message(toml("[access]\nprincipals = []"));
        assert!(
            error.starts_with("hub.toml: access: expected an array"),
            "{error}"
        );
    }

    #[test]
    fn exactly_one_of_command_or_url() {
        let both = message(toml("[servers.x]\ncommand = \"a\"\nurl = \"http://h/mcp\""));
        assert!(
            both.starts_with("hub.toml: server `x`: command: set exactly one"),
            "{both}"
        );
        assert!(both.contains("not both"), "{both}");
        let neither = message(toml("[servers.x]\nargs = []"));
        assert!(neither.starts_with("hub.toml: server `x`: command: set exactly one"));
        let neither = message(toml("[servers.x]\n"));
        assert!(neither.contains("set exactly one"), "{neither}");
    }

    #[test]
    fn keys_of_the_other_transport_are_errors_in_toml() {
        let error = message(toml("[servers.x]\ncommand = \"a\"\nheaders = {}"));
        assert!(error.starts_with("hub.toml: server `x`: headers: applies only to `url`"));
        let error = message(toml("[servers.x]\nurl = \"http://h/\"\ncwd = \"/\""));
        assert!(error.starts_with("hub.toml: server `x`: cwd: applies only to `command`"));
    }

    #[test]
    fn urls_must_be_http() {
        for good in ["http://h/mcp", "https://h:8443/mcp", "HTTP://H/"] {
            assert!(
                toml(&format!("[servers.x]\nurl = \"{good}\"")).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "ftp://h/",
            "h/mcp",
            "http://",
            "http:///mcp",
            "http://h /mcp",
            "",
        ] {
            let error = message(toml(&format!("[servers.x]\nurl = \"{bad}\"")));
            assert!(error.starts_with("hub.toml: server `x`: url: "), "{error}");
        }
    }

    #[test]
    fn server_ids_are_checked() {
        let long = "a".repeat(64);
        assert!(toml(&format!("[servers.{long}]\ncommand = \"a\"")).is_ok());
        assert!(toml("[servers.A-b_9]\ncommand = \"a\"").is_ok());
        for bad in [
            "a".repeat(65),
            "\"a b\"".to_owned(),
            "\"a.b\"".to_owned(),
            "a__b".to_owned(),
            "\"\"".to_owned(),
            "\"é\"".to_owned(),
        ] {
            let error = message(toml(&format!("[servers.{bad}]\ncommand = \"a\"")));
            assert!(error.contains(": id: "), "{bad}: {error}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_file_directory() {
        let config = toml(
            r#"
            [servers.bare]
            command = "mcp-tasks"
            [servers.rel]
            command = "./bin/server"
            cwd = "data"
            [servers.abs]
            command = "/usr/bin/server"
            cwd = "/srv"
            [servers.up]
            command = "../x/server"
            "#,
        )
        .unwrap();
        let stdio = |id: &str| match &config.server(id).unwrap().transport {
            Transport::Stdio { command, cwd, .. } => (command.clone(), cwd.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(stdio("bare"), ("mcp-tasks".to_owned(), None));
        assert_eq!(
            stdio("rel"),
            (
                "/etc/hub/bin/server".to_owned(),
                Some(PathBuf::from("/etc/hub/data"))
            )
        );
        assert_eq!(
            stdio("abs"),
            ("/usr/bin/server".to_owned(), Some(PathBuf::from("/srv")))
        );
        assert_eq!(stdio("up").0, "/etc/hub/../x/server");
    }

    #[test]
    fn enabled_and_disabled() {
        let config = toml(
            r#"
            [servers.a]
            command = "a"
            enabled = false
            [servers.b]
            command = "b"
            disabled = true
            [servers.c]
            command = "c"
            enabled = true
            disabled = false
            "#,
        )
        .unwrap();
        let enabled: Vec<_> = config.servers.iter().map(|s| s.enabled).collect();
        assert_eq!(enabled, [false, false, true]);
        let error = message(toml(
            "[servers.a]\ncommand = \"a\"\nenabled = true\ndisabled = true",
        ));
        assert!(error.contains("server `a`: enabled: "), "{error}");
    }

    #[test]
    fn expansion_rules() {
        let lookup = vars(&[("A", "1"), ("B_2", "two"), ("NESTED", "${A}")]);
        assert_eq!(expand_vars("plain", &lookup).unwrap(), "plain");
        assert_eq!(expand_vars("${A}", &lookup).unwrap(), "1");
        assert_eq!(expand_vars("x${A}y${B_2}z", &lookup).unwrap(), "x1ytwoz");
        assert_eq!(expand_vars("$${A}", &lookup).unwrap(), "${A}");
        // Scanning is left to right: a `$` before an escape stays a `$`.
        assert_eq!(expand_vars("$$${A}", &lookup).unwrap(), "$${A}");
        assert_eq!(expand_vars("$A $ $$ 5$", &lookup).unwrap(), "$A $ $$ 5$");
        assert_eq!(expand_vars("${NESTED}", &lookup).unwrap(), "${A}");
        assert_eq!(expand_vars("é${A}é", &lookup).unwrap(), "é1é");
        assert_eq!(
            expand_vars("${MISSING}", &lookup),
            Err(ExpandError::Missing("MISSING".to_owned()))
        );
        assert_eq!(expand_vars("${A", &lookup), Err(ExpandError::Unterminated));
        assert_eq!(
            expand_vars("${}", &lookup),
            Err(ExpandError::BadName(String::new()))
        );
        assert_eq!(
            expand_vars("${1A}", &lookup),
            Err(ExpandError::BadName("1A".to_owned()))
        );
        assert_eq!(
            expand_vars("${A:-x}", &lookup),
            Err(ExpandError::BadName("A:-x".to_owned()))
        );
    }

    #[test]
    fn expansion_applies_to_every_documented_field() {
        let env = [
            ("BIN", "/opt/bin"),
            ("ARG", "--fast"),
            ("DB", "sqlite://x.db"),
            ("DIR", "/work"),
            ("HOST", "example.com"),
            ("TEAM", "blue"),
            ("TOKEN", "s3cret"),
        ];
        let config = toml_with(
            r#"
            [servers.s]
            command = "${BIN}/srv"
            args = ["${ARG}", "$${literal}"]
            env = { DATABASE_URL = "${DB}" }
            cwd = "${DIR}/data"
            [servers.h]
            url = "https://${HOST}/mcp"
            headers = { X-Team = "${TEAM}" }
            bearer_token = "${TOKEN}"
            "#,
            &env,
        )
        .unwrap();
        assert_eq!(
            config.server("s").unwrap().transport,
            Transport::Stdio {
                command: "/opt/bin/srv".to_owned(),
                args: s(&["--fast", "${literal}"]),
                env: map(&[("DATABASE_URL", "sqlite://x.db")]),
                cwd: Some(PathBuf::from("/work/data")),
            }
        );
        assert_eq!(
            config.server("h").unwrap().transport,
            Transport::Http {
                url: "https://example.com/mcp".to_owned(),
                headers: map(&[("X-Team", "blue")]),
                bearer_token: Some("s3cret".to_owned()),
            }
        );
    }

    #[test]
    fn a_missing_variable_names_the_variable_the_server_and_the_field() {
        let error =
            toml("[servers.github]\nurl = \"http://h/\"\nbearer_token = \"${GITHUB_MCP_TOKEN}\"")
                .unwrap_err();
        match &error {
            ConfigError::MissingVar {
                server, field, var, ..
            } => {
                assert_eq!(server, "github");
                assert_eq!(field, "bearer_token");
                assert_eq!(var, "GITHUB_MCP_TOKEN");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "hub.toml: server `github`: bearer_token: environment variable `GITHUB_MCP_TOKEN` is not set"
        );
        let error = message(toml(
            "[servers.a]\ncommand = \"a\"\nargs = [\"x\", \"${NOPE}\"]",
        ));
        assert!(
            error.contains("server `a`: args[1]: environment variable `NOPE`"),
            "{error}"
        );
        let error = message(toml(
            "[servers.a]\ncommand = \"a\"\nenv = { K = \"${NOPE}\" }",
        ));
        assert!(
            error.contains("server `a`: env.K: environment variable `NOPE`"),
            "{error}"
        );
        let error = message(toml("[servers.a]\ncommand = \"${A\""));
        assert!(
            error.contains("server `a`: command: `${` without a closing"),
            "{error}"
        );
    }

    #[test]
    fn header_and_token_checks() {
        let error = message(toml_with(
            "[servers.h]\nurl = \"http://h/\"\nheaders = { Authorization = \"Bearer x\" }\nbearer_token = \"${T}\"",
            &[("T", "y")],
        ));
        assert!(
            error.contains("server `h`: bearer_token: set either"),
            "{error}"
        );
        let error = message(toml(
            "[servers.h]\nurl = \"http://h/\"\nheaders = { \"a b\" = \"x\" }",
        ));
        assert!(
            error.contains("server `h`: headers.a b: not a valid"),
            "{error}"
        );
        let error = message(toml(
            "[servers.h]\nurl = \"http://h/\"\nheaders = { A = \"x\\ny\" }",
        ));
        assert!(
            error.contains("headers.A: the value contains a control"),
            "{error}"
        );
        let error = message(toml(
            "[servers.h]\nurl = \"http://h/\"\nbearer_token = \"\"",
        ));
        assert!(error.contains("bearer_token: must be non-empty"), "{error}");
        let error = message(toml(
            "[servers.s]\ncommand = \"a\"\nenv = { \"A=B\" = \"x\" }",
        ));
        assert!(
            error.contains("env.A=B: not a valid environment"),
            "{error}"
        );
        let error = message(toml("[servers.s]\ncommand = \"  \""));
        assert!(error.contains("command: must not be empty"), "{error}");
    }

    #[test]
    fn debug_redacts_secrets_but_shows_keys() {
        let config = toml_with(
            r#"
            [servers.s]
            command = "srv"
            env = { DATABASE_URL = "postgres://user:hunter2@db" }
            [servers.h]
            url = "http://h/mcp"
            headers = { X-Api-Key = "hunter3" }
            bearer_token = "${T}"
            "#,
            &[("T", "hunter4")],
        )
        .unwrap();
        let debug = format!("{config:?} {config:#?}");
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        for visible in [
            "DATABASE_URL",
            "X-Api-Key",
            "bearer_token: Some(<redacted>)",
            "srv",
        ] {
            assert!(debug.contains(visible), "{visible} missing: {debug}");
        }
        let none = Transport::Http {
            url: "http://h/".to_owned(),
            headers: BTreeMap::new(),
            bearer_token: None,
        };
        assert!(format!("{none:?}").contains("bearer_token: None"));
    }

    #[test]
    fn toml_may_use_the_claude_shape() {
        let config = toml(
            r#"
            [mcpServers.tasks]
            command = "mcp-tasks"
            args = ["stdio"]
            someEditorSetting = 3
            [mcpServers.remote]
            type = "http"
            url = "https://h/mcp"
            env = {}
            "#,
        )
        .unwrap();
        assert_eq!(config.servers.len(), 2);
        let both = message(toml(
            "[servers.a]\ncommand = \"a\"\n[mcpServers.b]\ncommand = \"b\"",
        ));
        assert!(
            both.starts_with("hub.toml: mcpServers: use either"),
            "{both}"
        );
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let error = message(toml("[gateway]\nprefix = \n"));
        assert!(
            error.starts_with("hub.toml: invalid TOML at line 2, column"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
        let error = message(json("{\"mcpServers\": {"));
        assert!(error.starts_with("claude.json: invalid JSON: "), "{error}");
        assert!(error.contains("line 1"), "{error}");
    }

    const CLAUDE: &str = r#"{"mcpServers": {
      "tasks":  {"command": "mcp-tasks", "args": ["stdio"], "env": {"A": "b"}, "cwd": "/x"},
      "remote": {"type": "http", "url": "https://h/mcp", "headers": {"Authorization": "Bearer x"}},
      "cursor-remote": {"url": "http://127.0.0.1:9/mcp"},
      "off": {"command": "x", "disabled": true}
    }, "globalShortcut": "Ctrl+Space"}"#;

    #[test]
    fn the_claude_example_imports_as_is() {
        let config = json(CLAUDE).unwrap();
        let ids: Vec<_> = config.servers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["cursor-remote", "off", "remote", "tasks"]);
        assert_eq!(
            config.server("tasks").unwrap().transport,
            Transport::Stdio {
                command: "mcp-tasks".to_owned(),
                args: s(&["stdio"]),
                env: map(&[("A", "b")]),
                cwd: Some(PathBuf::from("/x")),
            }
        );
        assert_eq!(
            config.server("remote").unwrap().transport,
            Transport::Http {
                url: "https://h/mcp".to_owned(),
                headers: map(&[("Authorization", "Bearer x")]),
                bearer_token: None,
            }
        );
        assert!(matches!(
            config.server("cursor-remote").unwrap().transport,
            Transport::Http { .. }
        ));
        assert!(!config.server("off").unwrap().enabled);
        assert!(config.server("tasks").unwrap().enabled);
        assert_eq!(config.prefix, PrefixMode::Conditional);
    }

    #[test]
    fn claude_types() {
        for kind in ["stdio", "http", "streamable-http"] {
            let target = if kind == "stdio" {
                r#""command": "x""#
            } else {
                r#""url": "http://h/""#
            };
            let text = format!(r#"{{"mcpServers": {{"a": {{"type": "{kind}", {target}}}}}}}"#);
            assert!(json(&text).is_ok(), "{text}");
        }
        let sse = message(json(
            r#"{"mcpServers": {"old": {"type": "sse", "url": "http://h/sse"}}}"#,
        ));
        assert_eq!(
            sse,
            "claude.json: server `old`: type: the legacy SSE transport is not supported; use the server's Streamable HTTP endpoint"
        );
        let odd = message(json(
            r#"{"mcpServers": {"a": {"type": "ws", "url": "http://h/"}}}"#,
        ));
        assert!(odd.contains("server `a`: type: unknown transport"), "{odd}");
        let mismatch = message(json(
            r#"{"mcpServers": {"a": {"type": "stdio", "url": "http://h/"}}}"#,
        ));
        assert!(
            mismatch.contains("server `a`: type: a stdio server needs"),
            "{mismatch}"
        );
        let mismatch = message(json(
            r#"{"mcpServers": {"a": {"type": "http", "command": "x"}}}"#,
        ));
        assert!(mismatch.contains("server `a`: type: a Streamable HTTP server needs"));
    }

    #[test]
    fn claude_json_ignores_foreign_keys_but_checks_ours() {
        let config = json(
            r#"{"mcpServers": {"a": {"command": "x", "autoApprove": ["t"], "timeout": 5,
                "env": {}, "headers": {"X": "ignored on stdio"}}}}"#,
        )
        .unwrap();
        assert_eq!(config.servers[0].id, "a");
        let error = message(json(r#"{"mcpServers": {"a": {"command": 5}}}"#));
        assert!(
            error.starts_with("claude.json: server `a`: command: invalid type"),
            "{error}"
        );
        let nulls = json(r#"{"mcpServers": {"a": {"command": "x", "cwd": null, "args": null}}}"#);
        assert!(nulls.is_ok());
    }

    #[test]
    fn claude_json_ids_are_not_renamed() {
        let error = message(json(r#"{"mcpServers": {"my server": {"command": "x"}}}"#));
        assert!(
            error.starts_with("claude.json: server `my server`: id: "),
            "{error}"
        );
        let error = message(json(r#"{"mcpServers": {"a.b": {"command": "x"}}}"#));
        assert!(error.contains("'.'"), "{error}");
    }

    #[test]
    fn claude_json_may_carry_a_gateway_object_and_access() {
        let config = json(
            r#"{"gateway": {"prefix": "never", "call_timeout": 30, "health_interval": "3s"},
                "mcpServers": {"a": {"command": "x", "call_timeout": "2s"}},
                "access": [{"principals": ["jwt:*"], "allow": ["*"]}]}"#,
        )
        .unwrap();
        assert_eq!(config.prefix, PrefixMode::Never);
        assert_eq!(config.call_timeout, Duration::from_secs(30));
        assert_eq!(config.servers[0].call_timeout, Duration::from_secs(2));
        assert_eq!(config.servers[0].health.interval, Duration::from_secs(3));
        assert_eq!(config.access.len(), 1);
        let error = message(json(r#"{"gateway": {"prefx": "never"}, "mcpServers": {}}"#));
        assert!(
            error.starts_with("claude.json: gateway.prefx: unknown key"),
            "{error}"
        );
    }

    #[test]
    fn claude_json_needs_mcp_servers() {
        let error = message(json("{}"));
        assert!(
            error.starts_with("claude.json: mcpServers: expected"),
            "{error}"
        );
        let error = message(json(r#"{"servers": {}}"#));
        assert!(error.contains("VS Code"), "{error}");
        let error = message(json("[]"));
        assert!(error.contains("expected a table"), "{error}");
        assert_eq!(json(r#"{"mcpServers": {}}"#).unwrap().servers, vec![]);
    }

    #[test]
    fn access_rules_need_principals() {
        let error = message(toml("[[access]]\nallow = [\"*\"]"));
        assert!(
            error.starts_with("hub.toml: access[0].principals: "),
            "{error}"
        );
        let config = toml(
            "[[access]]\nprincipals = [\"a\"]\n[[access]]\nprincipals = [\"b\"]\ndeny = [\"x\"]",
        )
        .unwrap();
        assert_eq!(config.access[1].principals, s(&["b"]));
        assert_eq!(config.access[1].deny, s(&["x"]));
    }

    #[test]
    fn tool_filters() {
        let all = ToolFilter::default();
        assert!(all.admits("anything"));
        let filter = ToolFilter {
            allow: s(&["list_*", "get_*"]),
            deny: s(&["get_secret*"]),
        };
        assert!(filter.admits("list_issues"));
        assert!(filter.admits("get_issue"));
        assert!(!filter.admits("get_secret_key"));
        assert!(!filter.admits("send_mail"));
        let deny_only = ToolFilter {
            allow: vec![],
            deny: s(&["delete_*"]),
        };
        assert!(deny_only.admits("create_task"));
        assert!(!deny_only.admits("delete_task"));
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "abc", true),
            ("", "", true),
            ("", "a", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("?", "é", true),
            ("tasks__*", "tasks__create_task", true),
            ("tasks__*", "tasks_create", false),
            ("*__get_*", "github__get_issue", true),
            ("*__get_*", "github__list_issues", false),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("**", "x", true),
            ("key:*", "key:ci-bot", true),
            ("key:*", "jwt:alice", false),
            ("[a]", "[a]", true),
            ("a.b", "axb", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern, text),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn globs_do_not_backtrack_exponentially() {
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "a*".repeat(50));
        let started = std::time::Instant::now();
        assert!(!glob_match(&pattern, &text));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn from_path_picks_the_format_and_the_base_directory() {
        let dir = tempfile::tempdir().unwrap();
        let hub = dir.path().join("hub.toml");
        write(&hub, "[servers.a]\ncommand = \"./srv\"\ncwd = \".\"");
        let config = GatewayConfig::from_path(&hub).unwrap();
        let base = std::path::absolute(dir.path()).unwrap();
        assert_eq!(
            config.server("a").unwrap().transport,
            Transport::Stdio {
                command: base.join("srv").to_string_lossy().into_owned(),
                args: vec![],
                env: BTreeMap::new(),
                cwd: Some(base.clone()),
            }
        );

        let claude = dir.path().join("claude_desktop_config.JSON");
        write(&claude, r#"{"mcpServers": {"a": {"command": "x"}}}"#);
        assert_eq!(GatewayConfig::from_path(&claude).unwrap().servers.len(), 1);

        let misnamed = dir.path().join("servers.toml");
        write(&misnamed, "\n  {\"mcpServers\": {}}");
        let error = GatewayConfig::from_path(&misnamed).unwrap_err();
        assert!(
            matches!(error, ConfigError::LooksLikeJson { .. }),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.contains("servers.toml") && shown.contains(".json"),
            "{shown}"
        );

        let missing = GatewayConfig::from_path(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
        assert!(missing.to_string().starts_with("cannot read "));

        let binary = dir.path().join("bin.toml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let error = GatewayConfig::from_path(&binary).unwrap_err();
        assert!(error.to_string().contains("not valid UTF-8"), "{error}");

        let bad = dir.path().join("bad.toml");
        write(&bad, "[servers.a]\nurl = \"ws://h\"");
        let error = GatewayConfig::from_path(&bad).unwrap_err().to_string();
        assert!(error.starts_with(&bad.display().to_string()), "{error}");
        assert!(error.contains("server `a`: url: "), "{error}");
    }

    #[test]
    fn public_parsers_use_the_real_environment() {
        // PATH is set in every test environment; the public entry points read the process env.
        let config = GatewayConfig::parse_toml(
            "[servers.a]\ncommand = \"x\"\nenv = { P = \"${PATH}\" }",
            Path::new("/"),
        )
        .unwrap();
        let Transport::Stdio { env, .. } = &config.servers[0].transport else {
            panic!("not stdio");
        };
        assert!(!env["P"].is_empty());
        let config = GatewayConfig::parse_json(
            r#"{"mcpServers": {"a": {"url": "http://h/"}}}"#,
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(config.servers.len(), 1);
        let error = GatewayConfig::parse_toml("x = 1", Path::new("/")).unwrap_err();
        assert!(
            error.to_string().starts_with("(toml text): x: unknown key"),
            "{error}"
        );
    }

    #[test]
    fn bad_input_never_panics() {
        let inputs = [
            "[servers]\n\"\" = {}",
            "[servers.a]\ncommand = \"$\"",
            "[servers.a]\ncommand = \"${\"",
            "[servers.a]\ncommand = \"$${\"",
            "[servers.a]\nurl = \"http://\u{0}\"",
            "[servers.a]\ncommand = \"a\"\ncall_timeout = 18446744073709551615",
            "[servers.a]\ncommand = \"a\"\ncall_timeout = \"18446744073709551615ms\"",
            "[servers.a]\ncommand = \"a\"\ncall_timeout = 1979-05-27T07:32:00Z",
            "[gateway]\nprefix = 3",
            "access = [1]",
            "[[access]]\nprincipals = \"x\"",
            "gateway = []",
        ];
        for input in inputs {
            let _ = toml(input);
        }
        let _ = json("null");
        let _ = json(r#"{"mcpServers": []}"#);
        let _ = json(r#"{"mcpServers": {"a": null}}"#);
        let _ = json(r#"{"mcpServers": {"a": {"url": "http://h/", "headers": {"": ""}}}}"#);
    }

    // The watcher: step by step through `poll`, deterministic, then once for real with `spawn`.

    /// A watcher primed with what the file parses to now, as the gateway primes it.
    fn watcher(path: &Path) -> ConfigWatcher {
        let running = GatewayConfig::from_path(path).unwrap();
        ConfigWatcher::new(path.to_owned(), Duration::from_millis(10), &running)
    }

    fn replace_by_rename(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        write(&tmp, text);
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn watcher_reports_content_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        write(&path, "[servers.a]\ncommand = \"a\"");
        let mut watcher = watcher(&path);
        assert!(watcher.poll().await.is_none(), "nothing changed yet");

        // A touch rewrites the same bytes: no change.
        write(&path, "[servers.a]\ncommand = \"a\"");
        assert!(watcher.poll().await.is_none());

        // Same length, different content, written within the same instant.
        write(&path, "[servers.b]\ncommand = \"b\"");
        let config = watcher.poll().await.unwrap().unwrap();
        assert_eq!(config.servers[0].id, "b");
        assert!(watcher.poll().await.is_none());

        // An editor's atomic save.
        replace_by_rename(&path, "[servers.c]\ncommand = \"c\"");
        let config = watcher.poll().await.unwrap().unwrap();
        assert_eq!(config.servers[0].id, "c");
        assert!(watcher.poll().await.is_none());
    }

    #[tokio::test]
    async fn watcher_reports_each_bad_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        write(&path, "");
        let mut watcher = watcher(&path);
        assert!(watcher.poll().await.is_none());

        write(&path, "[servers.a]\ncomand = \"a\"");
        let error = watcher.poll().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("comand"), "{error}");
        assert!(
            watcher.poll().await.is_none(),
            "the same bad content is reported once"
        );
        write(&path, "[servers.a]\ncomand = \"a\"");
        assert!(
            watcher.poll().await.is_none(),
            "a touch of the bad content is no news"
        );

        write(&path, "[servers.a]\ncommand = 1");
        assert!(
            watcher.poll().await.unwrap().is_err(),
            "a different bad content is news"
        );

        write(&path, "[servers.a]\ncommand = \"a\"");
        assert!(watcher.poll().await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn watcher_reports_a_disappearance_once_and_a_reappearance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        write(&path, "[servers.a]\ncommand = \"a\"");
        let mut watcher = watcher(&path);
        assert!(watcher.poll().await.is_none());

        // Deleted and rewritten with the same bytes between two polls: not a change.
        std::fs::remove_file(&path).unwrap();
        assert!(
            watcher.poll().await.is_none(),
            "one miss may be an editor's save"
        );
        write(&path, "[servers.a]\ncommand = \"a\"");
        assert!(watcher.poll().await.is_none());

        std::fs::remove_file(&path).unwrap();
        assert!(watcher.poll().await.is_none());
        let error = watcher.poll().await.unwrap().unwrap_err();
        assert!(
            matches!(&error, ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(watcher.poll().await.is_none(), "reported once");
        assert!(watcher.poll().await.is_none());

        // It comes back with the same content: news, since the caller was told it was gone.
        write(&path, "[servers.a]\ncommand = \"a\"");
        assert_eq!(watcher.poll().await.unwrap().unwrap().servers[0].id, "a");
        assert!(watcher.poll().await.is_none());
    }

    #[tokio::test]
    async fn spawned_watcher_calls_back_and_stops_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.json");
        write(&path, r#"{"mcpServers": {}}"#);
        let config = GatewayConfig::from_path(&path).unwrap();
        assert!(config.servers.is_empty());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = ConfigWatcher::spawn(
            path.clone(),
            Duration::from_millis(10),
            &config,
            cancel.clone(),
            move |report| {
                let _ = tx.send(report);
            },
        );
        let wait = Duration::from_secs(10);

        replace_by_rename(&path, r#"{"mcpServers": {"a": {"command": "a"}}}"#);
        let report = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.unwrap().servers[0].id, "a");

        replace_by_rename(
            &path,
            r#"{"mcpServers": {"a": {"type": "sse", "url": "http://h/"}}}"#,
        );
        let report = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(report.unwrap_err().to_string().contains("SSE"));

        replace_by_rename(&path, r#"{"mcpServers": {"b": {"command": "b"}}}"#);
        let report = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.unwrap().servers[0].id, "b");

        cancel.cancel();
        tokio::time::timeout(wait, task).await.unwrap().unwrap();
        // The callback (and its sender) is dropped with the task: the channel closes, and
        // nothing was reported beyond the three changes.
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn the_first_poll_compares_with_the_running_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        write(&path, "[servers.a]\ncommand = \"a\"");
        let running = GatewayConfig::from_path(&path).unwrap();

        // Other bytes, same configuration: nothing to apply.
        write(&path, "# a comment\n[servers.a]\ncommand = \"a\"");
        let mut watcher = ConfigWatcher::new(path.clone(), Duration::ZERO, &running);
        assert_eq!(watcher.interval, MIN_POLL);
        assert!(watcher.poll().await.is_none());
        // From then on, bytes count: an edit of the comment is reported.
        write(&path, "# another comment\n[servers.a]\ncommand = \"a\"");
        assert_eq!(watcher.poll().await.unwrap().unwrap(), running);

        // Edited between loading and watching: the first poll reports it.
        write(&path, "[servers.b]\ncommand = \"b\"");
        let mut watcher = ConfigWatcher::new(path.clone(), Duration::ZERO, &running);
        assert_eq!(watcher.poll().await.unwrap().unwrap().servers[0].id, "b");
        assert!(watcher.poll().await.is_none());

        // Broken, or gone, by the first poll: reported.
        write(&path, "[servers.b]\n");
        let mut watcher = ConfigWatcher::new(path.clone(), Duration::ZERO, &running);
        assert!(watcher.poll().await.unwrap().is_err());
        assert!(watcher.poll().await.is_none());
        std::fs::remove_file(&path).unwrap();
        let mut watcher = ConfigWatcher::new(path.clone(), Duration::ZERO, &running);
        assert!(matches!(
            watcher.poll().await,
            Some(Err(ConfigError::Read { .. }))
        ));
        assert!(watcher.poll().await.is_none());
    }
}
