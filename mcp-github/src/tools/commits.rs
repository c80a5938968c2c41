//! Commit tools: list_commits.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_LIMIT, MAX_LIMIT, limit, repo, respond, time};
use crate::{Commit, CommitQuery, server::GitHubServer};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListCommitsArgs {
    owner: String,
    repo: String,
    /// ISO 8601 time or date.
    since: Option<String>,
    /// ISO 8601 time or date.
    until: Option<String>,
    /// GitHub login or email.
    author: Option<String>,
    /// 1-100, default 30.
    limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CommitListing {
    repository: String,
    count: usize,
    commits: Vec<Commit>,
}

#[tool_router(router = commit_tools, vis = "pub(crate)")]
impl GitHubServer {
    #[tool(
        description = "List commits of the default branch, newest first.",
        output_schema = schema_for_output::<CommitListing>(),
        annotations(read_only_hint = true)
    )]
    async fn list_commits(
        &self,
        Parameters(args): Parameters<ListCommitsArgs>,
    ) -> Result<CallToolResult, McpError> {
        let result = async {
            let repo = repo(&args.owner, &args.repo)?;
            let query = CommitQuery {
                since: time("since", args.since.as_deref())?,
                until: time("until", args.until.as_deref())?,
                author: args.author.filter(|a| !a.trim().is_empty()),
                limit: limit(args.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
            };
            let commits = self.github.list_commits(&repo, &query).await?;
            Ok(CommitListing {
                repository: repo.to_string(),
                count: commits.len(),
                commits: commits.items,
            })
        }
        .await;
        respond(result, |listing| {
            format!("{} commit(s) in {}", listing.count, listing.repository)
        })
    }
}
