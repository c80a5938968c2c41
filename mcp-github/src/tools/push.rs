//! Push tools: send_issues_to_dashboard (the original design's tool),
//! send_pr_analysis_to_dashboard, send_commit_summary_to_dashboard and send_to_dashboard. Each
//! builds a channel payload in the shape the hub validates, pushes it through the configured
//! [`Sink`](mcp_core::Sink) and answers with what was sent and the backend's receipt.

use chrono::{Duration, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use mcp_core::Push;
use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{repo, respond, time};
use crate::{
    CommitQuery, Error, IssueQuery, PullQuery, RepoRef, Result, StateFilter, digest,
    server::GitHubServer,
};

/// The most open pull requests one analysis covers (each costs five GitHub requests).
const MAX_ANALYSED_PRS: usize = 100;
/// The most issues or commits one push carries (50 pages of 100).
const MAX_PUSHED_ITEMS: usize = 5_000;
/// Pull request details fetched at once.
const CONCURRENT_DETAILS: usize = 6;
/// The longest commit summary, in days.
const MAX_SUMMARY_DAYS: i64 = 366;

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SendIssuesArgs {
    owner: String,
    repo: String,
    /// Default open.
    state: Option<StateFilter>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SendPullsArgs {
    owner: String,
    repo: String,
    /// Stale when not updated for this many days; default 14.
    stale_days: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SendCommitsArgs {
    owner: String,
    repo: String,
    /// Default 7 days ago (ISO 8601 time or date).
    since: Option<String>,
    /// Default now.
    until: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SendArgs {
    /// Lowercase a-z0-9_-, e.g. releases.
    channel: String,
    /// At most 200 characters.
    title: String,
    /// JSON object or array.
    data: serde_json::Value,
    /// owner/name, if about one repository.
    repository: Option<String>,
}

/// What a push tool sent, and what the backend answered.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Sent {
    channel: String,
    repository: Option<String>,
    title: String,
    /// Items sent.
    count: usize,
    /// The tool stopped at its limit (5,000 issues or commits, 100 pull requests): there may
    /// be more on GitHub than were sent.
    limit_reached: bool,
    /// The backend's receipt (event_id, received_at, duplicate, broadcast).
    receipt: serde_json::Value,
    attempts: u32,
    idempotency_key: String,
}

fn sent_line(sent: &Sent) -> String {
    let duplicate = if sent.receipt["duplicate"] == true {
        " (duplicate; nothing re-stored)"
    } else {
        ""
    };
    let limit = if sent.limit_reached {
        " (stopped at the tool's limit: GitHub may have more)"
    } else {
        ""
    };
    format!(
        "Sent {} item(s) to the dashboard channel {}{}{duplicate}{limit}",
        sent.count,
        sent.channel,
        sent.repository
            .as_deref()
            .map(|r| format!(" for {r}"))
            .unwrap_or_default(),
    )
}

impl GitHubServer {
    fn sink(&self) -> Result<&dyn mcp_core::Sink> {
        self.sink.as_deref().ok_or(Error::NoSink)
    }

    /// Pushes `push` of `count` items; `more` when GitHub had more than the tool read.
    async fn send(&self, push: Push, count: usize, more: bool) -> Result<Sent> {
        let receipt = self.sink()?.push(push.clone()).await?;
        Ok(Sent {
            channel: push.channel,
            repository: push.repository,
            title: push.title,
            count,
            limit_reached: more,
            receipt: receipt.body,
            attempts: receipt.attempts,
            idempotency_key: receipt.idempotency_key,
        })
    }

    async fn send_issues(&self, args: SendIssuesArgs) -> Result<Sent> {
        self.sink()?;
        let repo = repo(&args.owner, &args.repo)?;
        let state = args.state.unwrap_or_default();
        let query = IssueQuery {
            state,
            // Every issue, up to what one push carries.
            limit: MAX_PUSHED_ITEMS,
            ..IssueQuery::default()
        };
        let issues = self.github.list_issues(&repo, &query).await?;
        let title = match state {
            StateFilter::Open => format!("Open issues of {repo}"),
            StateFilter::Closed => format!("Closed issues of {repo}"),
            StateFilter::All => format!("Issues of {repo}"),
        };
        let (count, more) = (issues.len(), issues.more);
        let push = Push {
            channel: "issues".into(),
            repository: Some(repo.to_string()),
            title,
            data: json!({"state": state.as_str(), "issues": issues.items}),
        };
        self.send(push, count, more).await
    }

    async fn send_pull_analysis(&self, args: SendPullsArgs) -> Result<Sent> {
        self.sink()?;
        let repo = repo(&args.owner, &args.repo)?;
        let stale_days = args.stale_days.unwrap_or(14);
        let query = PullQuery {
            state: StateFilter::Open,
            limit: MAX_ANALYSED_PRS,
        };
        let pulls = self.github.list_pull_requests(&repo, &query).await?;
        // Owned futures: borrowed ones trip the compiler's higher-ranked lifetime checks inside
        // the tool macro's boxed future.
        let numbers: Vec<u64> = pulls.iter().map(|pr| pr.number).collect();
        let details: Vec<_> = stream::iter(numbers)
            .map(|number| {
                let github = self.github.clone();
                let repo = repo.clone();
                async move { github.get_pull_request(&repo, number).await }
            })
            .buffered(CONCURRENT_DETAILS)
            .try_collect()
            .await?;
        let analysis = digest::analyse_pull_requests(&details, Utc::now(), stale_days);
        let count = analysis.pull_requests.len();
        let push = Push {
            channel: "pull_requests".into(),
            repository: Some(repo.to_string()),
            title: format!("Open pull requests of {repo}"),
            data: serde_json::to_value(&analysis).map_err(|e| Error::Invalid {
                field: "data",
                message: e.to_string(),
            })?,
        };
        self.send(push, count, pulls.more).await
    }

    async fn send_commit_summary(&self, args: SendCommitsArgs) -> Result<Sent> {
        self.sink()?;
        let repo = repo(&args.owner, &args.repo)?;
        let until = time("until", args.until.as_deref())?.unwrap_or_else(Utc::now);
        let since = time("since", args.since.as_deref())?.unwrap_or(until - Duration::days(7));
        if since > until {
            return Err(Error::Invalid {
                field: "since",
                message: "must be before until".into(),
            });
        }
        if (until - since).num_days() > MAX_SUMMARY_DAYS {
            return Err(Error::Invalid {
                field: "since",
                message: format!("a summary covers at most {MAX_SUMMARY_DAYS} days"),
            });
        }
        let query = CommitQuery {
            since: Some(since),
            until: Some(until),
            author: None,
            limit: MAX_PUSHED_ITEMS,
        };
        let commits = self.github.list_commits(&repo, &query).await?;
        let summary = digest::summarise_commits(&commits, since, until);
        let count = summary.total;
        let push = Push {
            channel: "commits".into(),
            repository: Some(repo.to_string()),
            title: format!(
                "Commits of {repo}, {} to {}",
                since.format("%Y-%m-%d"),
                until.format("%Y-%m-%d")
            ),
            data: serde_json::to_value(&summary).map_err(|e| Error::Invalid {
                field: "data",
                message: e.to_string(),
            })?,
        };
        self.send(push, count, commits.more).await
    }

    async fn send_curated(&self, args: SendArgs) -> Result<Sent> {
        self.sink()?;
        let repository = match args.repository.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                let (owner, repo) = name.split_once('/').ok_or_else(|| Error::Invalid {
                    field: "repository",
                    message: format!("{name:?} is not owner/name"),
                })?;
                Some(RepoRef::new(owner, repo)?.to_string())
            }
        };
        let count = match &args.data {
            serde_json::Value::Array(items) => items.len(),
            serde_json::Value::Object(_) => 1,
            _ => {
                return Err(Error::Invalid {
                    field: "data",
                    message: "must be a JSON object or array".into(),
                });
            }
        };
        let push = Push {
            channel: args.channel,
            repository,
            title: args.title,
            data: args.data,
        };
        push.validate()?;
        self.send(push, count, false).await
    }
}

#[tool_router(router = push_tools, vis = "pub(crate)")]
impl GitHubServer {
    #[tool(
        description = "Fetch all issues of a repository (default open) and push them to the dashboard.",
        output_schema = schema_for_output::<Sent>(),
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn send_issues_to_dashboard(
        &self,
        Parameters(args): Parameters<SendIssuesArgs>,
    ) -> Result<CallToolResult, McpError> {
        respond(self.send_issues(args).await, sent_line)
    }

    #[tool(
        description = "Analyse open pull requests (age, size, review, CI, stale) and push it to the dashboard.",
        output_schema = schema_for_output::<Sent>(),
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn send_pr_analysis_to_dashboard(
        &self,
        Parameters(args): Parameters<SendPullsArgs>,
    ) -> Result<CallToolResult, McpError> {
        respond(self.send_pull_analysis(args).await, sent_line)
    }

    #[tool(
        description = "Push commits per author per day (default: last 7 days) to the dashboard.",
        output_schema = schema_for_output::<Sent>(),
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn send_commit_summary_to_dashboard(
        &self,
        Parameters(args): Parameters<SendCommitsArgs>,
    ) -> Result<CallToolResult, McpError> {
        respond(self.send_commit_summary(args).await, sent_line)
    }

    #[tool(
        description = "Push data you curated to a dashboard channel; replaces that channel's latest snapshot.",
        output_schema = schema_for_output::<Sent>(),
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn send_to_dashboard(
        &self,
        Parameters(args): Parameters<SendArgs>,
    ) -> Result<CallToolResult, McpError> {
        respond(self.send_curated(args).await, sent_line)
    }
}
