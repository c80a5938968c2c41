//! The gateway's own MCP server: one per downstream session (stdio, or a Streamable HTTP
//! session at `/mcp`). It lists the catalog and routes each request to the upstream that owns
//! the name, passing progress, log messages, cancellation and errors through.

// MCP logging is deprecated (SEP-2577), but 2025-11-25 clients still set levels.
#![allow(deprecated)]

use std::{borrow::Cow, sync::Arc};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
        GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, Reference,
        ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
        UnsubscribeRequestParams,
    },
    service::{NotificationContext, RequestContext},
};

use super::{
    Caller, Core, Downstream,
    access::{Decision, Target},
};

const INSTRUCTIONS: &str = "Switchboard hub: the tools, prompts and resources of several MCP \
servers in one place. A tool named `server__tool` belongs to that upstream server; a call to an \
upstream that is down fails at once with an error naming it.";

/// The MCP server one downstream client talks to.
#[derive(Clone)]
pub struct GatewayServer {
    core: Arc<Core>,
    session: u64,
}

impl std::fmt::Debug for GatewayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayServer")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl GatewayServer {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        let session = core.next_session();
        Self { core, session }
    }
}

/// The authenticated principal of an HTTP request (`/mcp` sits behind the hub's auth guard);
/// stdio sessions have none.
fn caller(context: &RequestContext<RoleServer>) -> Caller {
    let principal = context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<mcp_core::auth::Principal>());
    Caller::from_principal(principal)
}

fn upstream_error(server: &str, error: &rmcp::ServiceError) -> McpError {
    match error {
        // The upstream's own JSON-RPC error passes through as it is.
        rmcp::ServiceError::McpError(error) => error.clone(),
        other => McpError::internal_error(format!("upstream {server} failed: {other}"), None),
    }
}

/// Waits for an upstream's answer to a request other than `tools/call`: at most the server's
/// call timeout, and no longer than the client wants it.
async fn forward<T>(
    server: &str,
    timeout: std::time::Duration,
    cancelled: &tokio_util::sync::CancellationToken,
    answer: impl std::future::Future<Output = Result<T, rmcp::ServiceError>>,
) -> Result<T, McpError> {
    tokio::select! {
        answer = tokio::time::timeout(timeout, answer) => match answer {
            Ok(answer) => answer.map_err(|e| upstream_error(server, &e)),
            Err(_) => Err(McpError::internal_error(
                format!("upstream {server} did not answer within {} ms", timeout.as_millis()),
                None,
            )),
        },
        () = cancelled.cancelled() => Err(McpError::internal_error("cancelled", None)),
    }
}

impl GatewayServer {
    /// The id of the upstream that serves `uri`.
    fn resource_owner(&self, uri: &str) -> Result<String, McpError> {
        self.core
            .catalog()
            .resource_server(uri)
            .map(str::to_owned)
            .ok_or_else(|| McpError::resource_not_found(format!("no upstream serves {uri}"), None))
    }

    fn resource_upstream(
        &self,
        uri: &str,
    ) -> Result<
        (
            Arc<super::supervisor::Supervised>,
            rmcp::Peer<rmcp::RoleClient>,
        ),
        McpError,
    > {
        self.connected(&self.resource_owner(uri)?)
    }

    /// Upstream `id` and its session.
    fn connected(
        &self,
        id: &str,
    ) -> Result<
        (
            Arc<super::supervisor::Supervised>,
            rmcp::Peer<rmcp::RoleClient>,
        ),
        McpError,
    > {
        let server = self.core.server(id).ok_or_else(|| unavailable(id))?;
        let peer = server.peer().ok_or_else(|| unavailable(id))?;
        Ok((server, peer))
    }

    /// The access check of a request for a prompt or resource: a denied one is answered with
    /// the reason (an invalid request) and never reaches the upstream.
    fn allow(&self, caller: &Caller, target: Target<'_>) -> Result<(), McpError> {
        match self.core.check(caller, target) {
            Decision::Allowed => Ok(()),
            Decision::Denied { reason } => Err(McpError::invalid_request(reason, None)),
        }
    }
}

fn unavailable(server: &str) -> McpError {
    McpError::internal_error(format!("upstream {server} is not connected"), None)
}

impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_completions()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "switchboard-hub",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    /// Sessions opened with `initialize` only: the gateway tells clients about catalog changes
    /// with `list_changed` notifications.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25).to_vec())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let http_session = super::direct::http_session_of(&context.extensions);
        self.core
            .add_downstream(self.session, context.peer, http_session);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.core.settle_at_start().await;
        let caller = caller(&context);
        let catalog = self.core.catalog();
        let tools = catalog
            .tools
            .iter()
            .filter(|(name, route)| {
                self.core
                    .may_see(&caller, Target::tool(&route.server, name, &route.name))
            })
            .map(|(_, route)| route.item.clone())
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&context);
        let downstream = Downstream {
            session: self.session,
            peer: context.peer.clone(),
            progress: context.meta.get_progress_token(),
            notes: None,
        };
        match self
            .core
            .call(
                &caller,
                request,
                Some(downstream),
                context.ct.clone(),
                "mcp",
            )
            .await
        {
            Ok(response) => Ok(response),
            Err(error) => error.into_mcp().map(Into::into),
        }
    }

    /// Like `tools/list`, only what the caller may get.
    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.core.settle_at_start().await;
        let caller = caller(&context);
        let prompts = self
            .core
            .catalog()
            .prompts
            .iter()
            .filter(|(name, route)| {
                self.core
                    .may_see(&caller, Target::prompt(&route.server, name, &route.name))
            })
            .map(|(_, route)| route.item.clone())
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let Some(route) = self.core.catalog().prompts.get(&request.name).cloned() else {
            return Err(McpError::invalid_params(
                format!("no prompt is called {}", request.name),
                None,
            ));
        };
        self.allow(
            &caller(&context),
            Target::prompt(&route.server, &request.name, &route.name),
        )?;
        let (server, peer) = self.connected(&route.server)?;
        request.name = route.name;
        let timeout = server.config.call_timeout;
        forward(
            &server.id,
            timeout,
            &context.ct,
            peer.get_prompt_once(request),
        )
        .await
    }

    /// Like `tools/list`, only what the caller may read.
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.core.settle_at_start().await;
        let caller = caller(&context);
        let resources = self
            .core
            .catalog()
            .resources
            .values()
            .filter(|route| {
                self.core
                    .may_see(&caller, Target::resource(&route.server, &route.name))
            })
            .map(|route| route.item.clone())
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    /// The templates the caller may read through, by their URI templates.
    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let caller = caller(&context);
        let templates = self
            .core
            .catalog()
            .templates
            .iter()
            .filter(|route| {
                self.core
                    .may_see(&caller, Target::resource(&route.server, &route.name))
            })
            .map(|route| route.item.clone())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let owner = self.resource_owner(&request.uri)?;
        self.allow(&caller(&context), Target::resource(&owner, &request.uri))?;
        let (server, peer) = self.connected(&owner)?;
        let timeout = server.config.call_timeout;
        forward(
            &server.id,
            timeout,
            &context.ct,
            peer.read_resource_once(request),
        )
        .await
    }

    /// Subscriptions go to the upstream that serves the URI (once, however many clients
    /// subscribe); its updates come back to every subscribed client. Subscribing needs the
    /// access a read needs.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let owner = self.resource_owner(&request.uri)?;
        self.allow(&caller(&context), Target::resource(&owner, &request.uri))?;
        let (server, peer) = self.connected(&owner)?;
        if self
            .core
            .relay
            .subscribe(&server.id, &request.uri, self.session, context.peer.clone())
            && let Err(error) = forward(
                &server.id,
                server.config.call_timeout,
                &context.ct,
                peer.subscribe(request.clone()),
            )
            .await
        {
            self.core
                .relay
                .unsubscribe(&server.id, &request.uri, self.session);
            return Err(error);
        }
        Ok(())
    }

    /// Not checked: it only drops this session's own subscription (the upstream hears of it
    /// when no session is left), so a caller whose access was taken away can still end one.
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let (server, peer) = self.resource_upstream(&request.uri)?;
        if self
            .core
            .relay
            .unsubscribe(&server.id, &request.uri, self.session)
        {
            let timeout = server.config.call_timeout;
            forward(&server.id, timeout, &context.ct, peer.unsubscribe(request)).await?;
        }
        Ok(())
    }

    /// Completions go to the upstream of the prompt (under its own name) or resource template,
    /// for a caller who may get that prompt or read that resource.
    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let caller = caller(&context);
        let catalog = self.core.catalog();
        let server = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let route = catalog.prompts.get(&prompt.name).ok_or_else(|| {
                    McpError::invalid_params(format!("no prompt is called {}", prompt.name), None)
                })?;
                self.allow(
                    &caller,
                    Target::prompt(&route.server, &prompt.name, &route.name),
                )?;
                prompt.name.clone_from(&route.name);
                route.server.clone()
            }
            Reference::Resource(resource) => {
                let server = catalog
                    .resource_server(&resource.uri)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        McpError::invalid_params(
                            format!("no upstream serves {}", resource.uri),
                            None,
                        )
                    })?;
                self.allow(&caller, Target::resource(&server, &resource.uri))?;
                server
            }
            _ => return Ok(CompleteResult::default()),
        };
        let (server, peer) = self.connected(&server)?;
        let timeout = server.config.call_timeout;
        forward(&server.id, timeout, &context.ct, peer.complete(request)).await
    }

    /// Sets the level on every upstream the caller may use (see [`Core::may_use_server`];
    /// admin: every upstream), best effort: an upstream without logging ignores it. A caller
    /// who may use none of the configured upstreams is refused.
    ///
    /// The level is not per client: the gateway's session with an upstream is shared by
    /// every client, so the level set last is what that upstream sends to all of them (log
    /// messages go to every client with a call in flight on it). Making it per client would
    /// mean filtering log messages per downstream session in the relay instead of passing
    /// the level on; until then, a client can change only the upstreams it may use.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // What a caller may use is read from the catalog, which upstreams that are still
        // starting have not filled yet.
        self.core.settle_at_start().await;
        let caller = caller(&context);
        let all = self.core.servers_snapshot();
        let configured = !all.is_empty();
        let servers: Vec<_> = all
            .into_iter()
            .filter(|server| self.core.may_use_server(&caller, &server.id))
            .collect();
        if configured && servers.is_empty() {
            return Err(McpError::invalid_request(
                format!(
                    "`{}` may not set the log level: it may use no upstream's tools, prompts or resources",
                    caller.name
                ),
                None,
            ));
        }
        for server in servers {
            server.set_log_level(request.level).await;
        }
        Ok(())
    }
}
