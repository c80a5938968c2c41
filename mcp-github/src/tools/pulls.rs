//! Pull request tools: list_pull_requests, get_pull_request.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_LIMIT, MAX_LIMIT, issues::NumberArgs, limit, repo, respond};
use crate::{PullQuery, PullRequest, PullRequestDetail, StateFilter, server::GitHubServer};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListPullsArgs {
    owner: String,
    repo: String,
    /// Default open.
    state: Option<StateFilter>,
    /// 1-100, default 30.
    limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PullListing {
    repository: String,
    count: usize,
    pull_requests: Vec<PullRequest>,
}

#[tool_router(router = pull_tools, vis = "pub(crate)")]
impl GitHubServer {
    #[tool(
        description = "List a repository's pull requests, newest first.",
        output_schema = schema_for_output::<PullListing>(),
        annotations(read_only_hint = true)
    )]
    async fn list_pull_requests(
        &self,
        Parameters(args): Parameters<ListPullsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let state = args.state.unwrap_or_default();
        let result = async {
            let repo = repo(&args.owner, &args.repo)?;
            let query = PullQuery {
                state,
                limit: limit(args.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
            };
            let pull_requests = self.github.list_pull_requests(&repo, &query).await?;
            Ok(PullListing {
                repository: repo.to_string(),
                count: pull_requests.len(),
                pull_requests: pull_requests.items,
            })
        }
        .await;
        respond(result, |listing| {
            format!(
                "{} {} pull request(s) in {}",
                listing.count,
                state.as_str(),
                listing.repository
            )
        })
    }

    #[tool(
        description = "A pull request with size, files, review state and CI checks.",
        output_schema = schema_for_output::<PullRequestDetail>(),
        annotations(read_only_hint = true)
    )]
    async fn get_pull_request(
        &self,
        Parameters(args): Parameters<NumberArgs>,
    ) -> Result<CallToolResult, McpError> {
        let result = async {
            let repo = repo(&args.owner, &args.repo)?;
            self.github.get_pull_request(&repo, args.number).await
        }
        .await;
        respond(result, |detail| {
            let pr = &detail.pull_request;
            format!(
                "#{} [{}] {} (+{} -{}, review {}, ci {})",
                pr.number,
                pr.state,
                pr.title,
                detail.additions,
                detail.deletions,
                detail.review_state.as_str(),
                detail.ci_state.as_str(),
            )
        })
    }
}
