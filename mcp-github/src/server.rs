//! `GitHubServer`: the MCP server agents talk to, over stdio or Streamable HTTP. It holds the
//! [`GitHub`] client and, when a dashboard backend is configured, the [`Sink`] push tools use.
//! Tools live in `tools/`.

use std::sync::Arc;

use mcp_core::Sink;
use rmcp::{
    ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{Implementation, ServerCapabilities, ServerConfig},
    tool_handler,
};

use crate::GitHub;

const INSTRUCTIONS: &str = "Read GitHub issues, pull requests and commits (name repositories by \
owner and repo), and push digests to the user's live dashboard with the send_* tools. Prefer the \
send_* tools over fetching and re-sending data yourself; use send_to_dashboard for a payload you \
curated.";

/// The GitHub MCP server. Cheap to clone; clones share the GitHub client (and its ETag cache).
#[derive(Clone)]
pub struct GitHubServer {
    pub(crate) github: Arc<dyn GitHub>,
    pub(crate) sink: Option<Arc<dyn Sink>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for GitHubServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubServer")
            .field("sink", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl GitHubServer {
    /// Without a sink the push tools answer with an error saying how to configure one.
    pub fn new(github: Arc<dyn GitHub>, sink: Option<Arc<dyn Sink>>) -> Self {
        Self {
            github,
            sink,
            tool_router: Self::tools(),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for GitHubServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "switchboard-github",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }
}

/// Serves the GitHub tools to one MCP client on stdin/stdout until the client closes stdin or
/// `shutdown` completes. Only MCP messages go to stdout; log with a subscriber that writes to
/// stderr.
pub async fn serve_stdio(
    server: GitHubServer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<mcp_core::stdio::Ended> {
    mcp_core::stdio::serve_stdio(server, shutdown)
        .await
        .map_err(|e| crate::Error::Transport(e.to_string()))
}
