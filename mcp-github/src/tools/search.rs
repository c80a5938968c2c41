//! Search tools: search_issues.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{DEFAULT_LIMIT, MAX_LIMIT, limit, respond};
use crate::{SearchResults, server::GitHubServer};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SearchArgs {
    /// GitHub search syntax, e.g. "repo:acme/api is:open label:bug".
    query: String,
    /// 1-100, default 30.
    limit: Option<u32>,
}

#[tool_router(router = search_tools, vis = "pub(crate)")]
impl GitHubServer {
    #[tool(
        description = "Search issues and pull requests across GitHub.",
        output_schema = schema_for_output::<SearchResults>(),
        annotations(read_only_hint = true)
    )]
    async fn search_issues(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, McpError> {
        let result = async {
            let limit = limit(args.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
            self.github.search_issues(&args.query, limit).await
        }
        .await;
        respond(result, |results| {
            format!(
                "{} of {} match(es) for {:?}",
                results.items.len(),
                results.total_count,
                args.query
            )
        })
    }
}
