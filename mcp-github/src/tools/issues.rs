//! Issue tools: list_issues, get_issue.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_LIMIT, MAX_LIMIT, limit, repo, respond, time};
use crate::{Issue, IssueDetail, IssueQuery, StateFilter, server::GitHubServer};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListIssuesArgs {
    owner: String,
    repo: String,
    /// Default open.
    state: Option<StateFilter>,
    /// Only issues with all of these labels.
    labels: Option<Vec<String>>,
    /// Updated since (ISO 8601 time or date).
    since: Option<String>,
    /// 1-100, default 30.
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct NumberArgs {
    pub(crate) owner: String,
    pub(crate) repo: String,
    pub(crate) number: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct IssueListing {
    repository: String,
    count: usize,
    issues: Vec<Issue>,
}

#[tool_router(router = issue_tools, vis = "pub(crate)")]
impl GitHubServer {
    #[tool(
        description = "List a repository's issues (pull requests excluded), newest first.",
        output_schema = schema_for_output::<IssueListing>(),
        annotations(read_only_hint = true)
    )]
    async fn list_issues(
        &self,
        Parameters(args): Parameters<ListIssuesArgs>,
    ) -> Result<CallToolResult, McpError> {
        let state = args.state.unwrap_or_default();
        let result = async {
            let repo = repo(&args.owner, &args.repo)?;
            let query = IssueQuery {
                state,
                labels: args.labels.unwrap_or_default(),
                since: time("since", args.since.as_deref())?,
                limit: limit(args.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
            };
            let issues = self.github.list_issues(&repo, &query).await?;
            Ok(IssueListing {
                repository: repo.to_string(),
                count: issues.len(),
                issues: issues.items,
            })
        }
        .await;
        respond(result, |listing| {
            format!(
                "{} {} issue(s) in {}",
                listing.count,
                state.as_str(),
                listing.repository
            )
        })
    }

    #[tool(
        description = "An issue with its description and comments.",
        output_schema = schema_for_output::<IssueDetail>(),
        annotations(read_only_hint = true)
    )]
    async fn get_issue(
        &self,
        Parameters(args): Parameters<NumberArgs>,
    ) -> Result<CallToolResult, McpError> {
        let result = async {
            let repo = repo(&args.owner, &args.repo)?;
            self.github.get_issue(&repo, args.number).await
        }
        .await;
        respond(result, |detail| {
            format!(
                "#{} [{}] {} ({} comment(s))",
                detail.issue.number, detail.issue.state, detail.issue.title, detail.issue.comments
            )
        })
    }
}
