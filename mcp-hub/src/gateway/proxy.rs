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

use super::{CallError, Caller, Core, Downstream};

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

impl GatewayServer {
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
        let catalog = self.core.catalog();
        let id = catalog.resource_server(uri).ok_or_else(|| {
            McpError::resource_not_found(format!("no upstream serves {uri}"), None)
        })?;
        let server = self.core.server(id).ok_or_else(|| unavailable(id))?;
        let peer = server.peer().ok_or_else(|| unavailable(id))?;
        Ok((server, peer))
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
        self.core.add_downstream(self.session, context.peer);
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
            .filter(|(name, _)| self.core.may_see(&caller, name))
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
            Err(CallError::UnknownTool(name)) => Err(McpError::invalid_params(
                format!("no tool is called {name}; list the tools to see what there is"),
                None,
            )),
            // Every other failure is the agent's to read, naming the upstream.
            Err(error) => Ok(error.into_result().into()),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.core.settle_at_start().await;
        let prompts = self
            .core
            .catalog()
            .prompts
            .values()
            .map(|route| route.item.clone())
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
        let peer = self
            .core
            .server(&route.server)
            .and_then(|s| s.peer())
            .ok_or_else(|| unavailable(&route.server))?;
        request.name = route.name;
        tokio::select! {
            answer = peer.get_prompt_once(request) => answer.map_err(|e| upstream_error(&route.server, &e)),
            () = context.ct.cancelled() => Err(McpError::internal_error("cancelled", None)),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.core.settle_at_start().await;
        let resources = self
            .core
            .catalog()
            .resources
            .values()
            .map(|route| route.item.clone())
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let templates = self
            .core
            .catalog()
            .templates
            .iter()
            .map(|route| route.item.clone())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let catalog = self.core.catalog();
        let Some(server) = catalog.resource_server(&request.uri) else {
            return Err(McpError::resource_not_found(
                format!("no upstream serves {}", request.uri),
                None,
            ));
        };
        let peer = self
            .core
            .server(server)
            .and_then(|s| s.peer())
            .ok_or_else(|| unavailable(server))?;
        tokio::select! {
            answer = peer.read_resource_once(request) => answer.map_err(|e| upstream_error(server, &e)),
            () = context.ct.cancelled() => Err(McpError::internal_error("cancelled", None)),
        }
    }

    /// Subscriptions go to the upstream that serves the URI (once, however many clients
    /// subscribe); its updates come back to every subscribed client.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let (server, peer) = self.resource_upstream(&request.uri)?;
        if self
            .core
            .relay
            .subscribe(&server.id, &request.uri, self.session, context.peer.clone())
            && let Err(error) = peer.subscribe(request.clone()).await
        {
            self.core
                .relay
                .unsubscribe(&server.id, &request.uri, self.session);
            return Err(upstream_error(&server.id, &error));
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let (server, peer) = self.resource_upstream(&request.uri)?;
        if self
            .core
            .relay
            .unsubscribe(&server.id, &request.uri, self.session)
        {
            peer.unsubscribe(request)
                .await
                .map_err(|e| upstream_error(&server.id, &e))?;
        }
        Ok(())
    }

    /// Completions go to the upstream of the prompt (under its own name) or resource template.
    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let catalog = self.core.catalog();
        let server = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let route = catalog.prompts.get(&prompt.name).ok_or_else(|| {
                    McpError::invalid_params(format!("no prompt is called {}", prompt.name), None)
                })?;
                prompt.name.clone_from(&route.name);
                route.server.clone()
            }
            Reference::Resource(resource) => catalog
                .resource_server(&resource.uri)
                .map(str::to_owned)
                .ok_or_else(|| {
                    McpError::invalid_params(format!("no upstream serves {}", resource.uri), None)
                })?,
            _ => return Ok(CompleteResult::default()),
        };
        let peer = self
            .core
            .server(&server)
            .and_then(|s| s.peer())
            .ok_or_else(|| unavailable(&server))?;
        peer.complete(request)
            .await
            .map_err(|e| upstream_error(&server, &e))
    }

    /// The level applies to every upstream that accepts it (best effort: an upstream without
    /// logging ignores it).
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        for server in self.core.servers_snapshot() {
            if let Some(peer) = server.peer() {
                let _ = peer.set_level(request.clone()).await;
            }
        }
        Ok(())
    }
}
