//! A minimal MCP server to put behind the gateway: `cargo run --example echo_upstream -- stdio`
//! serves on stdin/stdout, `cargo run --example echo_upstream -- http --listen 127.0.0.1:0`
//! serves Streamable HTTP at `/mcp` (and `GET /healthz`) and prints one line to stdout,
//! `listening on http://ADDR/mcp`, so a test can read the port.
//!
//! Tests and benchmarks control its behaviour: `--name` (the `initialize` server name),
//! `--stderr-line TEXT` (repeatable; written to stderr at startup), `--exit-after-ms N` (exits
//! with code 3 by itself), `--startup-delay-ms N` (sleeps before serving), `--no-logging`
//! (declares no `logging` capability); over HTTP, `--require-header NAME=VALUE` (repeatable)
//! refuses with 401 a request to `/mcp` without exactly one such header.
//!
//! Tools: `echo {text}`, `add {a, b}`, `sleep {ms}` (progress every 100 ms when asked for;
//! writes `sleep cancelled` to stderr when cancelled), `log {level, message}` (an MCP log
//! notification and `LEVEL message` on stderr), `fail {message}` (an `isError` result),
//! `crash {code}` (writes `crashing` to stderr and exits without answering), `toggle_extra`
//! (adds or removes the tool `extra` for every session and sends `tools/list_changed`),
//! `whoami` (name and pid), `meta` (the request's `_meta` as it arrived) and `sample
//! {prompt}` (asks the client to sample; returns its text). One prompt, `greet {name}`, and
//! one resource, `echo://info`; getting the prompt writes `get_prompt greet NAME` to stderr
//! and reading the resource `read_resource URI`, so a test can tell which requests reached the
//! upstream.
//! Its own diagnostics go to stderr at `warn` and above, rmcp's at `error` (`ECHO_UPSTREAM_LOG`
//! overrides, as an `EnvFilter`; `RUST_LOG` is ignored, so a parent's setting does not leak in);
//! stdout carries only MCP (stdio) or the one address line (HTTP).

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use anyhow::Context;
use axum::{Router, routing::get};
use clap::{Parser, Subcommand};
#[allow(
    deprecated,
    reason = "sampling is deprecated by SEP-2577, still in 2025-11-25"
)]
use rmcp::model::{CreateMessageRequestParams, SamplingMessage};
#[allow(
    deprecated,
    reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};
use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler,
    handler::server::{
        common::schema_for_empty_input,
        router::tool::ToolRouter,
        tool::{ToolCallContext, schema_for_output},
        wrapper::Parameters,
    },
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
        ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, Prompt, PromptArgument, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
        ResourceContents, Role, ServerCapabilities, ServerConfig, Tool,
    },
    serde::{Deserialize, Serialize, Serializer},
    service::{NotificationContext, RequestContext},
    tool, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use schemars::JsonSchema;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The exit code of `--exit-after-ms`.
const EXIT_AFTER_CODE: i32 = 3;
/// The longest `sleep` honoured.
const MAX_SLEEP_MS: u64 = 60_000;
/// How often `sleep` reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// The tool `toggle_extra` adds and removes.
const EXTRA: &str = "extra";
/// The one resource.
const INFO_URI: &str = "echo://info";

#[derive(Debug, Parser)]
#[command(about = "A minimal, scriptable MCP server for testing the gateway")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// The server name sent in `initialize` (and the logger name of log notifications).
    #[arg(long, global = true, default_value = "echo")]
    name: String,
    /// A line to write to stderr at startup (repeatable).
    #[arg(
        long = "stderr-line",
        value_name = "TEXT",
        global = true,
        allow_hyphen_values = true
    )]
    stderr_lines: Vec<String>,
    /// Exit by itself with code 3 this many milliseconds after starting.
    #[arg(long, value_name = "MS", global = true)]
    exit_after_ms: Option<u64>,
    /// Sleep this many milliseconds before serving.
    #[arg(long, value_name = "MS", global = true)]
    startup_delay_ms: Option<u64>,
    /// Do not declare the `logging` capability (the `log` tool still sends its notification).
    #[arg(long, global = true)]
    no_logging: bool,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Serve one client on stdin/stdout until stdin closes or a signal comes.
    Stdio,
    /// Serve Streamable HTTP at /mcp (and GET /healthz) until a signal comes.
    Http {
        /// The address to listen on; port 0 picks a free one (printed to stdout).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Refuse (401) any request to /mcp without exactly one header NAME of this VALUE
        /// (repeatable), to check what a client sends.
        #[arg(long = "require-header", value_name = "NAME=VALUE")]
        require_headers: Vec<String>,
    },
}

// ---------------------------------------------------------------------------------------------
// Tool arguments and results

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct SampleArgs {
    /// What to ask the client's model.
    prompt: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct EchoOutput {
    text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct AddArgs {
    a: f64,
    b: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct AddOutput {
    /// Whole sums are written as integers (`3`, not `3.0`).
    #[serde(serialize_with = "whole_as_integer")]
    sum: f64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct SleepArgs {
    /// How long to sleep, in milliseconds (at most 60000).
    ms: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct SleepOutput {
    slept_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde", rename_all = "lowercase")]
enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }

    #[allow(
        deprecated,
        reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
    )]
    fn mcp(self) -> LoggingLevel {
        match self {
            Self::Debug => LoggingLevel::Debug,
            Self::Info => LoggingLevel::Info,
            Self::Warning => LoggingLevel::Warning,
            Self::Error => LoggingLevel::Error,
        }
    }
}

/// Severity order of MCP log levels (`LoggingLevel` has no `Ord`).
#[allow(
    deprecated,
    reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
)]
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct LogArgs {
    level: Level,
    message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct LogOutput {
    logged: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct FailArgs {
    /// The error text of the result.
    message: String,
    /// Answer with a JSON-RPC error of this code instead of an isError result.
    #[serde(default)]
    code: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct CrashArgs {
    /// The process exit code (default 1).
    #[serde(default = "one")]
    code: i32,
}

fn one() -> i32 {
    1
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct ToggleOutput {
    extra_present: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct WhoamiOutput {
    name: String,
    pid: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct ExtraOutput {
    extra: bool,
}

fn whole_as_integer<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    // Below 2^53 every whole f64 is exactly an i64.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation, reason = "whole and below 2^53")]
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

/// A successful result: `value` as structured content, `text` as its readable summary.
fn structured<T: Serialize>(
    value: &T,
    text: impl Into<String>,
) -> Result<CallToolResult, McpError> {
    let structured = serde_json::to_value(value)
        .map_err(|e| McpError::internal_error(format!("cannot encode result: {e}"), None))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text.into())]);
    result.structured_content = Some(structured);
    Ok(result)
}

/// Writes one line to stderr. Errors are ignored: an upstream whose stderr was closed keeps
/// serving.
fn stderr_line(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
    let _ = stderr.flush();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The server

/// What every session of the process shares.
#[derive(Debug)]
struct Shared {
    name: String,
    /// Whether `initialize` declares the `logging` capability.
    logging: bool,
    /// The static tools (every tool but `extra`), built once.
    tools: ToolRouter<Echo>,
    /// Whether the tool `extra` is listed (`toggle_extra`).
    extra: Mutex<bool>,
    /// Every session that finished `initialize`, to hear of tool list changes. Closed ones
    /// are dropped as they are found.
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl Shared {
    fn new(name: String, logging: bool) -> Self {
        let mut tools = Echo::static_tools();
        // Schemas as every Switchboard server compacts them (no `$defs`, `format`, `$schema`).
        for route in tools.map.values_mut() {
            compact_schemas(&mut route.attr);
        }
        Self {
            name,
            logging,
            tools,
            extra: Mutex::new(false),
            peers: Mutex::new(Vec::new()),
        }
    }

    fn extra_present(&self) -> bool {
        *lock(&self.extra)
    }

    fn register(&self, peer: Peer<RoleServer>) {
        let mut peers = lock(&self.peers);
        peers.retain(|peer| !peer.is_transport_closed());
        peers.push(peer);
    }

    /// Sends `notifications/tools/list_changed` to every live session.
    async fn notify_tool_list_changed(&self) {
        let peers: Vec<_> = {
            let mut peers = lock(&self.peers);
            peers.retain(|peer| !peer.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            if let Err(error) = peer.notify_tool_list_changed().await {
                tracing::debug!(%error, "a session did not take tools/list_changed");
            }
        }
    }
}

fn compact_schemas(tool: &mut Tool) {
    use mcp_core::schema::{Kind, compact};
    tool.input_schema = Arc::new(compact(&tool.input_schema, Kind::Input));
    if let Some(output) = &tool.output_schema {
        tool.output_schema = Some(Arc::new(compact(output, Kind::Output)));
    }
}

/// The MCP server of one session; sessions share [`Shared`]. Cheap to build: rmcp's HTTP
/// service calls its factory for every request, not only for new sessions.
#[derive(Clone)]
struct Echo {
    shared: Arc<Shared>,
    /// The session's `logging/setLevel`; log notifications below it are not sent.
    #[allow(
        deprecated,
        reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
    )]
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl Echo {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            log_level: Arc::default(),
        }
    }

    fn extra_tool() -> Tool {
        let mut tool = Tool::new(
            EXTRA,
            "Listed only while toggle_extra has added it. Returns {\"extra\": true}.",
            schema_for_empty_input(),
        )
        .with_raw_output_schema(schema_for_output::<ExtraOutput>());
        compact_schemas(&mut tool);
        tool
    }
}

#[tool_router(router = static_tools)]
impl Echo {
    #[tool(
        description = "Return the text unchanged.",
        output_schema = schema_for_output::<EchoOutput>()
    )]
    async fn echo(
        &self,
        Parameters(EchoArgs { text }): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, McpError> {
        structured(&EchoOutput { text: text.clone() }, text)
    }

    #[tool(
        description = "Add two numbers.",
        output_schema = schema_for_output::<AddOutput>()
    )]
    async fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, McpError> {
        let output = AddOutput { sum: a + b };
        let text = serde_json::to_value(&output)
            .map(|v| v["sum"].to_string())
            .unwrap_or_default();
        structured(&output, text)
    }

    #[tool(
        description = "Wait ms milliseconds (at most 60000), reporting progress every 100 ms \
                       when the request has a progress token. Stops early when cancelled.",
        output_schema = schema_for_output::<SleepOutput>()
    )]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let total = ms.min(MAX_SLEEP_MS);
        let token = context.meta.get_progress_token();
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_millis(total);
        let mut ticks = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let step = u64::try_from(PROGRESS_EVERY.as_millis()).unwrap_or(100);
        let mut reported = 0;
        loop {
            tokio::select! {
                biased;
                () = context.ct.cancelled() => {
                    stderr_line("sleep cancelled");
                    let slept = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    return structured(
                        &SleepOutput { slept_ms: slept },
                        format!("sleep cancelled after {slept} ms"),
                    );
                }
                () = tokio::time::sleep_until(deadline) => break,
                _ = ticks.tick() => {
                    reported = (reported + step).min(total);
                    if let Some(token) = &token {
                        #[allow(clippy::cast_precision_loss, reason = "at most 60000")]
                        let progress = ProgressNotificationParam::new(token.clone(), reported as f64)
                            .with_total(total as f64);
                        let _ = context.peer.notify_progress(progress).await;
                    }
                }
            }
        }
        if let Some(token) = token {
            #[allow(clippy::cast_precision_loss, reason = "at most 60000")]
            let done = ProgressNotificationParam::new(token, total as f64).with_total(total as f64);
            let _ = context.peer.notify_progress(done).await;
        }
        structured(
            &SleepOutput { slept_ms: total },
            format!("slept {total} ms"),
        )
    }

    #[tool(
        description = "Send an MCP log notification (logger = the server name) and write \
                       'LEVEL message' to stderr.",
        output_schema = schema_for_output::<LogOutput>()
    )]
    #[allow(
        deprecated,
        reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
    )]
    async fn log(
        &self,
        Parameters(LogArgs { level, message }): Parameters<LogArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        stderr_line(&format!("{} {message}", level.label()));
        let wanted = lock(&self.log_level).is_none_or(|min| severity(level.mcp()) >= severity(min));
        if wanted {
            let notification = LoggingMessageNotificationParam::new(level.mcp(), json!(message))
                .with_logger(self.shared.name.clone());
            if let Err(error) = context.peer.notify_logging_message(notification).await {
                tracing::debug!(%error, "cannot send a log notification");
            }
        }
        structured(&LogOutput { logged: true }, "logged")
    }

    #[tool(
        description = "Return an isError result whose text is the message, or with `code` a \
                       JSON-RPC error of that code."
    )]
    async fn fail(
        &self,
        Parameters(FailArgs { message, code }): Parameters<FailArgs>,
    ) -> Result<CallToolResult, McpError> {
        // With `code`, `call_tool` answers before this (rmcp turns a tool's Err into an
        // isError result).
        let _ = code;
        Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
    }

    #[tool(
        description = "Write 'crashing' to stderr and exit the process at once with the code \
                       (default 1), without answering."
    )]
    async fn crash(
        &self,
        Parameters(CrashArgs { code }): Parameters<CrashArgs>,
    ) -> Result<CallToolResult, McpError> {
        stderr_line("crashing");
        std::process::exit(code)
    }

    #[tool(
        description = "Add the tool 'extra' (or remove it if present) for every session, then \
                       send notifications/tools/list_changed.",
        output_schema = schema_for_output::<ToggleOutput>()
    )]
    async fn toggle_extra(&self) -> Result<CallToolResult, McpError> {
        let present = {
            let mut extra = lock(&self.shared.extra);
            *extra = !*extra;
            *extra
        };
        self.shared.notify_tool_list_changed().await;
        let text = if present {
            "extra tool added"
        } else {
            "extra tool removed"
        };
        structured(
            &ToggleOutput {
                extra_present: present,
            },
            text,
        )
    }

    #[tool(
        description = "The server's name and process id.",
        output_schema = schema_for_output::<WhoamiOutput>()
    )]
    async fn whoami(&self) -> Result<CallToolResult, McpError> {
        let output = WhoamiOutput {
            name: self.shared.name.clone(),
            pid: std::process::id(),
        };
        let text = format!("{} (pid {})", output.name, output.pid);
        structured(&output, text)
    }

    #[tool(
        description = "Ask the client to sample (sampling/createMessage) for the prompt; \
                          return the text it answered."
    )]
    #[allow(
        deprecated,
        reason = "sampling is deprecated by SEP-2577, still in 2025-11-25"
    )]
    async fn sample(
        &self,
        Parameters(SampleArgs { prompt }): Parameters<SampleArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let request =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
        let result = context
            .peer
            .create_message(request)
            .await
            .map_err(|e| McpError::internal_error(format!("sampling failed: {e}"), None))?;
        let text = result
            .message
            .content
            .first()
            .and_then(|content| content.as_text())
            .map_or_else(|| "(no text)".to_owned(), |content| content.text.clone());
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(
        description = "Return the request's `_meta` (what the client, or a gateway on its \
                          way, put there) as structured content."
    )]
    async fn meta(&self, context: RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
        let text = serde_json::to_string(&context.meta)
            .map_err(|e| McpError::internal_error(format!("cannot encode _meta: {e}"), None))?;
        structured(&context.meta, text)
    }
}

#[allow(
    deprecated,
    reason = "MCP logging is deprecated by SEP-2577, still in 2025-11-25"
)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        if !self.shared.logging {
            capabilities.logging = None;
        }
        ServerConfig::new(capabilities).with_server_info(Implementation::new(
            self.shared.name.clone(),
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.shared.register(context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        *lock(&self.log_level) = Some(request.level);
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.shared.tools.list_all();
        if self.shared.extra_present() {
            tools.push(Self::extra_tool());
            tools.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if name == EXTRA {
            return self.shared.extra_present().then(Self::extra_tool);
        }
        self.shared.tools.get(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name == EXTRA {
            if !self.shared.extra_present() {
                return Err(McpError::invalid_params("tool not found", None));
            }
            return structured(&ExtraOutput { extra: true }, "extra").map(Into::into);
        }
        if request.name == "fail"
            && let Some(code) = request
                .arguments
                .as_ref()
                .and_then(|args| args.get("code"))
                .and_then(serde_json::Value::as_i64)
                .and_then(|code| i32::try_from(code).ok())
        {
            let message = request
                .arguments
                .as_ref()
                .and_then(|args| args.get("message"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("failed")
                .to_owned();
            return Err(McpError::new(
                rmcp::model::ErrorCode(code),
                message,
                Some(json!({ "from": "fail" })),
            ));
        }
        let call = ToolCallContext::new(self, request, context);
        self.shared.tools.call(call).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "greet",
            Some("A user message greeting NAME."),
            Some(vec![
                PromptArgument::new("name")
                    .with_description("Who to greet")
                    .with_required(true),
            ]),
        )]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if request.name != "greet" {
            return Err(McpError::invalid_params(
                format!("no prompt {:?}; the one prompt is greet", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("name"))
            .and_then(|name| name.as_str())
            .ok_or_else(|| McpError::invalid_params("greet needs the argument name", None))?;
        stderr_line(&format!("get_prompt greet {name}"));
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Hello, {name}"),
        )])
        .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(INFO_URI, "info")
                .with_description("Which upstream this is")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if request.uri != INFO_URI {
            return Err(McpError::resource_not_found(
                format!(
                    "no resource {:?}; the one resource is {INFO_URI}",
                    request.uri
                ),
                Some(json!({ "uri": request.uri })),
            ));
        }
        stderr_line(&format!("read_resource {INFO_URI}"));
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(format!("echo upstream {}", self.shared.name), INFO_URI)
                .with_mime_type("text/plain"),
        ])
        .into())
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ECHO_UPSTREAM_LOG")
        // rmcp warns of every JSON-RPC error it answers; keep stderr to what tests ask for.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rmcp=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    for line in &cli.stderr_lines {
        stderr_line(line);
    }
    if let Some(ms) = cli.exit_after_ms {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            stderr_line(&format!("exiting after {ms} ms"));
            std::process::exit(EXIT_AFTER_CODE);
        });
    }
    if let Some(ms) = cli.startup_delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let shared = Arc::new(Shared::new(cli.name, !cli.no_logging));
    match cli.mode {
        Mode::Stdio => {
            mcp_core::stdio::serve_stdio(Echo::new(shared), shutdown_signal()).await?;
        }
        Mode::Http {
            listen,
            require_headers,
        } => {
            let required = require_headers
                .iter()
                .map(|pair| {
                    let (name, value) = pair
                        .split_once('=')
                        .with_context(|| format!("--require-header {pair}: NAME=VALUE"))?;
                    let name = axum::http::HeaderName::try_from(name.trim())
                        .with_context(|| format!("--require-header {pair}: a header name"))?;
                    Ok((name, value.to_owned()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            serve_http(listen, shared, required).await?;
        }
    }
    Ok(())
}

async fn serve_http(
    listen: SocketAddr,
    shared: Arc<Shared>,
    required: Vec<(axum::http::HeaderName, String)>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    // Cancelled when the signal comes: ends the sessions' streams so shutdown does not wait.
    let stop = CancellationToken::new();
    let mcp = StreamableHttpService::new(
        move || Ok(Echo::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(stop.clone()),
    );
    let required = Arc::new(required);
    let mcp = Router::new()
        .fallback_service(mcp)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let required = required.clone();
                async move {
                    let missing = required.iter().find(|(name, value)| {
                        let mut values = request.headers().get_all(name).iter();
                        !(values
                            .next()
                            .is_some_and(|v| v.as_bytes() == value.as_bytes())
                            && values.next().is_none())
                    });
                    match missing {
                        Some((name, _)) => axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::UNAUTHORIZED,
                            format!("header {name} is missing, repeated or wrong"),
                        )),
                        None => next.run(request).await,
                    }
                }
            },
        ));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/mcp", mcp);
    {
        // The one line a test reads to learn the port.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}/mcp")?;
        stdout.flush()?;
    }
    // TCP_NODELAY on every connection, graceful shutdown on the signal.
    mcp_core::http::serve(listener, app, shutdown_signal(), stop).await?;
    Ok(())
}

/// Completes on SIGTERM or ctrl-c.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        async move {
            match terminate {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; ctrl-c only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
