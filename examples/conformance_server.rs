//! The server the official MCP conformance suite (`@modelcontextprotocol/conformance`) tests:
//! its `test_*` tools, `test://` resources and `test_*` prompts, logging, completion and resource
//! subscriptions, built on rmcp like every Switchboard server.
//!
//! `cargo run --example conformance_server -- http [--listen 127.0.0.1:0]` serves Streamable
//! HTTP at `/mcp` and prints one stdout line, `listening on http://ADDR/mcp`;
//! `cargo run --example conformance_server -- stdio` serves the same tools on stdin/stdout (as a
//! gateway's stdio upstream). `scripts/conformance.sh --example` runs the suite against it.
//! Ctrl-C or SIGTERM stops it.

#![allow(
    deprecated,
    reason = "the conformance suite exercises logging and sampling, deprecated by SEP-2577"
)]

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rmcp::{
    ErrorData as McpError,
    RoleServer,
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ClientJsonRpcMessage, ClientRequest, ClientResult, CompleteRequestParams,
        CompleteResult, CompletionInfo, ContentBlock, CreateMessageRequestParams, ElicitRequest,
        ElicitRequestParams, ElicitResult, GetPromptRequestParams, GetPromptResponse,
        GetPromptResult, Implementation, JsonObject, JsonRpcMessage, JsonRpcRequest,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, LoggingLevel,
        LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, Prompt,
        PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, Reference, RequestId, Resource, ResourceContents, ResourceTemplate,
        Role, SamplingMessage, ServerCapabilities, ServerConfig, ServerRequest,
        SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
    },
    // The root package has no serde dependency of its own; rmcp re-exports the one it uses.
    serde::Deserialize,
    service::RequestContext,
    tool,
    tool_handler,
    tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::{
            EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
            local::{LocalSessionManager, LocalSessionManagerError},
        },
    },
};
use schemars::JsonSchema;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A 1×1 red PNG.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// A WAV file of one silent sample (8 kHz, mono, 16 bit).
const WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA==";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";

/// The name the logging notifications carry.
const LOGGER: &str = "conformance_server";

/// The tool that closes its own SSE stream mid-call.
const RECONNECTION_TOOL: &str = "test_reconnection";
/// The `retry:` hint sent when `test_reconnection` closes its stream.
const RECONNECT_AFTER: Duration = Duration::from_millis(250);

#[derive(Parser)]
#[command(about = "The MCP conformance suite's test server, on rmcp")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Streamable HTTP at /mcp; prints `listening on http://ADDR/mcp` once bound.
    Http {
        /// Loopback address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// One client on stdin/stdout.
    Stdio,
}

/// One session's server: the suite's tools, resources and prompts, the log level the client
/// chose and the resources it subscribed to.
#[derive(Clone)]
struct ConformanceServer {
    tool_router: ToolRouter<Self>,
    /// The HTTP sessions (`None` on stdio), for `test_reconnection`.
    sessions: Option<Arc<Sessions>>,
    /// The least severe level sent; `None` (no `logging/setLevel` yet) sends every level.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Severity order of the syslog levels MCP uses (`debug` least severe).
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
struct SamplingArgs {
    /// The prompt to send to the LLM
    prompt: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(crate = "rmcp::serde")]
struct ElicitationArgs {
    /// The message to show the user
    message: String,
}

/// The arguments `json_schema_2020_12_tool` takes; its advertised schema is written out in
/// [`json_schema_2020_12_input`] so that `$schema`, `$defs` and `additionalProperties` are
/// exactly what the suite looks for.
#[derive(Debug, Deserialize)]
#[serde(crate = "rmcp::serde", deny_unknown_fields)]
struct JsonSchemaArgs {
    name: Option<String>,
    address: Option<Address>,
}

#[derive(Debug, Deserialize)]
#[serde(crate = "rmcp::serde")]
struct Address {
    street: Option<String>,
    city: Option<String>,
}

fn json_schema_2020_12_input() -> Arc<JsonObject> {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" }
        },
        "additionalProperties": false
    });
    match schema {
        Value::Object(object) => Arc::new(object),
        _ => Arc::default(),
    }
}

/// Text content, the shape every tool answers with.
fn text(text: impl Into<String>) -> Result<CallToolResult, McpError> {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
}

/// A tool's refusal, as an `isError` result.
fn refuse(text: impl Into<String>) -> Result<CallToolResult, McpError> {
    Ok(CallToolResult::error(vec![ContentBlock::text(text)]))
}

#[tool_router]
impl ConformanceServer {
    fn new(sessions: Option<Arc<Sessions>>) -> Self {
        Self {
            tool_router: Self::tool_router(),
            sessions,
            log_level: Arc::default(),
            subscriptions: Arc::default(),
        }
    }

    #[tool(description = "Returns simple text content")]
    async fn test_simple_text(&self) -> Result<CallToolResult, McpError> {
        text("This is a simple text response for testing.")
    }

    #[tool(description = "Returns image content (a 1x1 PNG)")]
    async fn test_image_content(&self) -> Result<CallToolResult, McpError> {
        Ok(CallToolResult::success(vec![ContentBlock::image(
            PNG_BASE64,
            "image/png",
        )]))
    }

    #[tool(description = "Returns audio content (a one-sample WAV)")]
    async fn test_audio_content(&self) -> Result<CallToolResult, McpError> {
        Ok(CallToolResult::success(vec![ContentBlock::audio(
            WAV_BASE64,
            "audio/wav",
        )]))
    }

    #[tool(description = "Returns an embedded text resource")]
    async fn test_embedded_resource(&self) -> Result<CallToolResult, McpError> {
        Ok(CallToolResult::success(vec![ContentBlock::resource(
            ResourceContents::text(
                "This is an embedded resource content.",
                "test://embedded-resource",
            )
            .with_mime_type("text/plain"),
        )]))
    }

    #[tool(description = "Returns text, image and embedded resource content together")]
    async fn test_multiple_content_types(&self) -> Result<CallToolResult, McpError> {
        let resource = json!({ "test": "data", "value": 123 }).to_string();
        Ok(CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG_BASE64, "image/png"),
            ContentBlock::resource(
                ResourceContents::text(resource, "test://mixed-content-resource")
                    .with_mime_type("application/json"),
            ),
        ]))
    }

    #[tool(description = "Sends three info log notifications while it runs")]
    async fn test_tool_with_logging(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        for (step, message) in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ]
        .into_iter()
        .enumerate()
        {
            if step > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.log(&context, LoggingLevel::Info, message).await;
        }
        text("Tool with logging executed successfully")
    }

    #[tool(description = "Reports progress 0, 50 and 100 of 100 when given a progress token")]
    async fn test_tool_with_progress(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let token = context.meta.get_progress_token();
        for (step, progress) in [0u32, 50, 100].into_iter().enumerate() {
            if step > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                let update = ProgressNotificationParam::new(token.clone(), f64::from(progress))
                    .with_total(100.0)
                    .with_message(format!("Completed step {progress} of 100"));
                if let Err(error) = context.peer.notify_progress(update).await {
                    tracing::warn!(%error, "cannot send a progress notification");
                }
            }
        }
        text("Tool with progress executed successfully")
    }

    #[tool(description = "Always fails, with an isError result")]
    async fn test_error_handling(&self) -> Result<CallToolResult, McpError> {
        refuse("This tool intentionally returns an error for testing")
    }

    #[tool(description = "Asks the client's LLM (sampling/createMessage) to answer a prompt")]
    async fn test_sampling(
        &self,
        Parameters(args): Parameters<SamplingArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let supported = context
            .peer
            .peer_info()
            .is_some_and(|client| client.capabilities.sampling.is_some());
        if !supported {
            return refuse("the client does not support sampling (no sampling capability)");
        }
        let request =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(args.prompt)], 100);
        match context.peer.create_message(request).await {
            Ok(result) => {
                let answer = result
                    .message
                    .content
                    .first()
                    .and_then(|content| content.as_text())
                    .map_or_else(|| "(no text)".to_owned(), |content| content.text.clone());
                text(format!("LLM response: {answer}"))
            }
            Err(error) => refuse(format!("sampling failed: {error}")),
        }
    }

    #[tool(description = "Asks the user (elicitation/create) for a username and an email")]
    async fn test_elicitation(
        &self,
        Parameters(args): Parameters<ElicitationArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let schema = json!({
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" }
            },
            "required": ["username", "email"]
        });
        match elicit(&context, args.message, schema).await {
            Ok(result) => text(format!("User response: {}", describe(&result))),
            Err(refusal) => refuse(refusal),
        }
    }

    #[tool(description = "Elicits a form whose fields all carry defaults (SEP-1034)")]
    async fn test_elicitation_sep1034_defaults(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User age", "default": 30 },
                "score": { "type": "number", "description": "User score", "default": 95.5 },
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": {
                    "type": "boolean",
                    "description": "Verification status",
                    "default": true
                }
            },
            "required": []
        });
        let message = "Please review and update the form fields with defaults";
        match elicit(&context, message.into(), schema).await {
            Ok(result) => text(format!("Elicitation completed: {}", describe(&result))),
            Err(refusal) => refuse(refusal),
        }
    }

    #[tool(description = "Elicits a form with every enum variant (SEP-1330)")]
    async fn test_elicitation_sep1330_enums(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let schema = json!({
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Select one option",
                    "enum": ["option1", "option2", "option3"]
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Select one option with titles",
                    "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" }
                    ]
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Select one option (legacy enumNames)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Select several options",
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Select several options with titles",
                    "items": {
                        "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" }
                        ]
                    }
                }
            },
            "required": []
        });
        let message = "Please select options from the enum fields";
        match elicit(&context, message.into(), schema).await {
            Ok(result) => text(format!("Elicitation completed: {}", describe(&result))),
            Err(refusal) => refuse(refusal),
        }
    }

    #[tool(
        description = "Closes its SSE stream mid-call (Streamable HTTP) and answers once the client \
                       has reconnected with Last-Event-ID (SEP-1699)"
    )]
    async fn test_reconnection(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if let Some(sessions) = &self.sessions {
            sessions.close_stream_of(&context).await;
        }
        // The answer goes to the stream's replay cache; the client picks it up on reconnecting.
        tokio::time::sleep(Duration::from_millis(100)).await;
        text(
            "Reconnection test completed successfully. If you received this, the client \
             properly reconnected after stream closure.",
        )
    }

    #[tool(
        description = "Tool with JSON Schema 2020-12 features ($schema, $defs, additionalProperties)",
        input_schema = json_schema_2020_12_input()
    )]
    async fn json_schema_2020_12_tool(
        &self,
        Parameters(args): Parameters<JsonSchemaArgs>,
    ) -> Result<CallToolResult, McpError> {
        let address = args.address.map(|address| {
            format!(
                "{}, {}",
                address.street.as_deref().unwrap_or("?"),
                address.city.as_deref().unwrap_or("?")
            )
        });
        text(format!(
            "name: {}, address: {}",
            args.name.as_deref().unwrap_or("(none)"),
            address.as_deref().unwrap_or("(none)")
        ))
    }
}

impl ConformanceServer {
    /// Sends a log notification to the caller if `level` passes the session's level.
    async fn log(&self, context: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
        let threshold = *lock(&self.log_level);
        if threshold.is_some_and(|threshold| severity(level) < severity(threshold)) {
            return;
        }
        let notification =
            LoggingMessageNotificationParam::new(level, Value::from(message)).with_logger(LOGGER);
        if let Err(error) = context.peer.notify_logging_message(notification).await {
            tracing::warn!(%error, "cannot send a log notification");
        }
    }
}

/// Sends `elicitation/create` (a form with `schema`) to the caller. rmcp's typed
/// `create_elicitation` needs its `elicitation` feature, which this workspace does not enable;
/// the model types are there without it, so the request goes out through `send_request`.
async fn elicit(
    context: &RequestContext<RoleServer>,
    message: String,
    schema: Value,
) -> Result<ElicitResult, String> {
    let supported = context
        .peer
        .peer_info()
        .is_some_and(|client| client.capabilities.elicitation.is_some());
    if !supported {
        return Err("the client does not support elicitation (no elicitation capability)".into());
    }
    let requested_schema = serde_json::from_value(schema)
        .map_err(|error| format!("the elicitation schema is not one rmcp accepts: {error}"))?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema,
    };
    match context
        .peer
        .send_request(ServerRequest::ElicitRequest(ElicitRequest::new(params)))
        .await
    {
        Ok(ClientResult::ElicitResult(result)) => Ok(result),
        Ok(_) => Err("the client answered elicitation/create with another result".into()),
        Err(error) => Err(format!("elicitation failed: {error}")),
    }
}

/// `action=accept, content={...}`.
fn describe(result: &ElicitResult) -> String {
    let action = serde_json::to_value(&result.action)
        .ok()
        .and_then(|action| action.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", result.action));
    let content = result.content.clone().unwrap_or_else(|| json!({}));
    format!("action={action}, content={content}")
}

/// The `id` in `test://template/{id}/data`, if `uri` has that shape.
fn template_id(uri: &str) -> Option<&str> {
    uri.strip_prefix("test://template/")
        .and_then(|rest| rest.strip_suffix("/data"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether `uri` names a resource this server has.
fn known_resource(uri: &str) -> bool {
    matches!(uri, STATIC_TEXT_URI | STATIC_BINARY_URI | WATCHED_URI) || template_id(uri).is_some()
}

/// A string argument of a prompt; `None` when absent.
fn prompt_argument(request: &GetPromptRequestParams, name: &str) -> Option<String> {
    let value = request.arguments.as_ref()?.get(name)?;
    Some(match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

fn required_argument(request: &GetPromptRequestParams, name: &str) -> Result<String, McpError> {
    prompt_argument(request, name).ok_or_else(|| {
        McpError::invalid_params(
            format!("prompt {} needs the argument {name:?}", request.name),
            None,
        )
    })
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_tools()
                .build(),
        )
        .with_server_info(Implementation::new(
            "switchboard-conformance-server",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "The MCP conformance suite's test server: test_* tools, test:// resources, \
             test_* prompts.",
        )
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        *lock(&self.log_level) = Some(request.level);
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let candidates: &[&str] = match &request.r#ref {
            Reference::Prompt(prompt) => {
                match (prompt.name.as_str(), request.argument.name.as_str()) {
                    ("test_prompt_with_arguments", "arg1" | "arg2") => &["paris", "park", "party"],
                    ("test_prompt_with_embedded_resource", "resourceUri") => {
                        &[STATIC_TEXT_URI, STATIC_BINARY_URI, WATCHED_URI]
                    }
                    ("test_simple_prompt" | "test_prompt_with_image", _)
                    | ("test_prompt_with_arguments" | "test_prompt_with_embedded_resource", _) => {
                        &[]
                    }
                    (name, _) => {
                        return Err(McpError::invalid_params(
                            format!("no prompt named {name:?}"),
                            None,
                        ));
                    }
                }
            }
            Reference::Resource(template) if template.uri == TEMPLATE_URI => {
                if request.argument.name == "id" {
                    &["1", "2", "3", "123"]
                } else {
                    &[]
                }
            }
            Reference::Resource(template) => {
                return Err(McpError::invalid_params(
                    format!("no resource template {:?}", template.uri),
                    None,
                ));
            }
            _ => {
                return Err(McpError::invalid_params(
                    "unknown completion reference",
                    None,
                ));
            }
        };
        let prefix = request.argument.value.as_str();
        let values = candidates
            .iter()
            .filter(|candidate| candidate.starts_with(prefix))
            .map(|candidate| (*candidate).to_owned())
            .collect();
        let completion = CompletionInfo::with_all_values(values)
            .map_err(|error| McpError::internal_error(error, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let argument = |name: &str, description: &str| {
            PromptArgument::new(name)
                .with_description(description)
                .with_required(true)
        };
        Ok(ListPromptsResult::with_all_items(vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A simple prompt without arguments"),
                None,
            ),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt with two required arguments"),
                Some(vec![
                    argument("arg1", "First test argument"),
                    argument("arg2", "Second test argument"),
                ]),
            ),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that embeds a resource"),
                Some(vec![argument(
                    "resourceUri",
                    "URI of the resource to embed",
                )]),
            ),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt with image content"),
                None,
            ),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let arg1 = required_argument(&request, "arg1")?;
                let arg2 = required_argument(&request, "arg2")?;
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = required_argument(&request, "resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(
                            ResourceContents::text("Embedded resource content for testing.", uri)
                                .with_mime_type("text/plain"),
                        ),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_BASE64, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            name => {
                return Err(McpError::invalid_params(
                    format!("no prompt named {name:?}"),
                    None,
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(STATIC_TEXT_URI, "static-text")
                .with_description("A static text resource")
                .with_mime_type("text/plain"),
            Resource::new(STATIC_BINARY_URI, "static-binary")
                .with_description("A static binary resource (a 1x1 PNG)")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_URI, "watched-resource")
                .with_description("A resource to subscribe to")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(TEMPLATE_URI, "template-data")
                .with_description("Data for the id in the URI")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let contents = match uri.as_str() {
            STATIC_TEXT_URI => ResourceContents::text(
                "This is the content of the static text resource.",
                uri.clone(),
            )
            .with_mime_type("text/plain"),
            STATIC_BINARY_URI => {
                ResourceContents::blob(PNG_BASE64, uri.clone()).with_mime_type("image/png")
            }
            WATCHED_URI => ResourceContents::text("Watched resource content", uri.clone())
                .with_mime_type("text/plain"),
            _ => match template_id(&uri) {
                Some(id) => {
                    let data = json!({
                        "id": id,
                        "templateTest": true,
                        "data": format!("Data for ID: {id}")
                    });
                    ResourceContents::text(data.to_string(), uri.clone())
                        .with_mime_type("application/json")
                }
                None => {
                    return Err(McpError::resource_not_found(
                        format!("no resource {uri:?}"),
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    /// The resources never change, so a subscription only records the URI.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !known_resource(&request.uri) {
            return Err(McpError::resource_not_found(
                format!("no resource {:?}", request.uri),
                Some(json!({ "uri": request.uri })),
            ));
        }
        lock(&self.subscriptions).insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        lock(&self.subscriptions).remove(&request.uri);
        Ok(())
    }
}

/// rmcp's in-memory sessions, plus which HTTP stream carries each `test_reconnection` call so
/// that the tool can close it mid-call: rmcp can close a request's SSE stream
/// ([`LocalSessionHandle::close_sse_stream`]) but tells a handler neither its session nor its
/// stream, so this records them when the call arrives.
///
/// [`LocalSessionHandle::close_sse_stream`]: rmcp::transport::streamable_http_server::session::local::LocalSessionHandle::close_sse_stream
#[derive(Default)]
struct Sessions {
    local: LocalSessionManager,
    /// (session, JSON-RPC id of a pending `test_reconnection` call) → its HTTP stream.
    reconnecting: Mutex<HashMap<(SessionId, RequestId), u64>>,
}

/// The JSON-RPC id of `message` if it calls `test_reconnection`.
fn reconnection_call(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        JsonRpcMessage::Request(JsonRpcRequest {
            id,
            request: ClientRequest::CallToolRequest(call),
            ..
        }) if call.params.name == RECONNECTION_TOOL => Some(id.clone()),
        _ => None,
    }
}

impl Sessions {
    /// Closes the SSE stream carrying the call `context` handles (sending a `retry:` hint
    /// first); the session and the stream's replay cache stay.
    async fn close_stream_of(&self, context: &RequestContext<RoleServer>) {
        let Some(session) = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|value| value.to_str().ok())
            .map(SessionId::from)
        else {
            return;
        };
        let Some(stream) = lock(&self.reconnecting).remove(&(session.clone(), context.id.clone()))
        else {
            return;
        };
        let handle = self.local.sessions.read().await.get(&session).cloned();
        if let Some(handle) = handle
            && let Err(error) = handle.close_sse_stream(stream, Some(RECONNECT_AFTER)).await
        {
            tracing::warn!(%error, "cannot close the test_reconnection stream");
        }
    }
}

/// An SSE stream's messages, as rmcp's session manager wants them.
struct SseMessages(tokio::sync::mpsc::Receiver<ServerSseMessage>);

impl futures_util::Stream for SseMessages {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Everything as [`LocalSessionManager`] does it; `create_stream` also records the stream of a
/// `test_reconnection` call.
impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.local.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<rmcp::model::ServerJsonRpcMessage, Self::Error> {
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        lock(&self.reconnecting).retain(|(session, _), _| session != id);
        self.local.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<
        impl futures_util::Stream<Item = ServerSseMessage> + Send + Sync + 'static,
        Self::Error,
    > {
        let handle = self
            .local
            .sessions
            .read()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        let receiver = handle.establish_request_wise_channel().await?;
        if let (Some(stream), Some(call)) = (receiver.http_request_id, reconnection_call(&message))
        {
            lock(&self.reconnecting).insert((id.clone(), call), stream);
        }
        handle
            .push_message(message, receiver.http_request_id)
            .await?;
        Ok(SseMessages(receiver.inner))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<
        impl futures_util::Stream<Item = ServerSseMessage> + Send + Sync + 'static,
        Self::Error,
    > {
        self.local.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<
        impl futures_util::Stream<Item = ServerSseMessage> + Send + Sync + 'static,
        Self::Error,
    > {
        self.local.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.local.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve_http(listen: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the conformance server has no authentication: listen on a loopback address, not {listen}"
    );
    let stop = CancellationToken::new();
    // rmcp checks Host (loopback names by default); Origin is checked too, and a page may call
    // only from a loopback origin.
    let config = StreamableHttpServerConfig::default()
        .with_allowed_origins(["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"])
        .with_cancellation_token(stop.child_token());
    let sessions = Arc::new(Sessions::default());
    let mcp = StreamableHttpService::new(
        {
            let sessions = sessions.clone();
            move || Ok(ConformanceServer::new(Some(sessions.clone())))
        },
        sessions,
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    #[allow(
        clippy::print_stdout,
        reason = "the address line is this program's output; scripts read it"
    )]
    {
        println!("listening on http://{addr}/mcp");
    }
    mcp_core::http::serve(listener, app, shutdown_signal(), stop)
        .await
        .context("serving HTTP")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().mode {
        Mode::Http { listen } => serve_http(listen).await,
        Mode::Stdio => {
            mcp_core::stdio::serve_stdio(ConformanceServer::new(None), shutdown_signal()).await?;
            Ok(())
        }
    }
}
