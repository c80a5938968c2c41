//! The MCP tools, one family per file, registered in one place ([`GitHubServer::tools`]):
//! read tools (issues, pull requests, commits, search) and push tools that send digests to the
//! dashboard. Every tool answers with `structuredContent` matching its output schema plus one
//! line of text; a refused call is an `isError` result saying what was wrong.

mod commits;
mod issues;
mod pulls;
mod push;
mod search;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rmcp::{
    ErrorData as McpError,
    handler::server::router::tool::ToolRouter,
    model::{CallToolResult, ContentBlock},
};
use serde::Serialize;

use crate::{Error, RepoRef, Result, server::GitHubServer};

/// Items a read tool returns unless asked for another number.
const DEFAULT_LIMIT: u32 = 30;
/// The most a read tool returns: listings land in an agent's context.
const MAX_LIMIT: u32 = 100;

impl GitHubServer {
    /// Every tool the server offers.
    pub(crate) fn tools() -> ToolRouter<Self> {
        let mut router = Self::issue_tools()
            + Self::pull_tools()
            + Self::commit_tools()
            + Self::search_tools()
            + Self::push_tools();
        for route in router.map.values_mut() {
            let tool = &mut route.attr;
            tool.input_schema = Arc::new(mcp_core::schema::compact(
                &tool.input_schema,
                mcp_core::schema::Kind::Input,
            ));
            if let Some(output) = &tool.output_schema {
                tool.output_schema = Some(Arc::new(mcp_core::schema::compact(
                    output,
                    mcp_core::schema::Kind::Output,
                )));
            }
        }
        router
    }
}

/// A tool result: the value as structured content with `text` as its one-line summary, or the
/// error as an `isError` result.
fn respond<T: Serialize>(
    result: Result<T>,
    text: impl FnOnce(&T) -> String,
) -> Result<CallToolResult, McpError> {
    match result {
        Ok(value) => {
            let structured = serde_json::to_value(&value).map_err(|e| {
                McpError::internal_error(format!("cannot encode result: {e}"), None)
            })?;
            let mut result = CallToolResult::success(vec![ContentBlock::text(text(&value))]);
            result.structured_content = Some(structured);
            Ok(result)
        }
        Err(error) => Ok(refusal(&error)),
    }
}

/// An `isError` result for a failed call; failures that are not the caller's go to the log too.
fn refusal(error: &Error) -> CallToolResult {
    match error {
        Error::Invalid { .. } | Error::NotFound { .. } | Error::NoSink => {}
        other => tracing::warn!(error = %other, "tool call failed"),
    }
    CallToolResult::error(vec![ContentBlock::text(error.to_string())])
}

fn repo(owner: &str, repo: &str) -> Result<RepoRef> {
    RepoRef::new(owner, repo)
}

/// A limit in 1..=`max`, `default` when absent.
fn limit(value: Option<u32>, default: u32, max: u32) -> Result<usize> {
    match value.unwrap_or(default) {
        0 => Err(Error::Invalid {
            field: "limit",
            message: format!("must be 1 to {max}"),
        }),
        n => Ok(usize::try_from(n.min(max)).unwrap_or(usize::MAX)),
    }
}

/// An ISO 8601 time (`2026-11-30T10:00:00Z`) or date (`2026-11-30`, midnight UTC).
fn time(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    if let Some(midnight) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(Some(midnight.and_utc()));
    }
    Err(Error::Invalid {
        field,
        message: format!(
            "{:?} is not an ISO 8601 time like 2026-11-30T10:00:00Z or a date like 2026-11-30",
            value.chars().take(40).collect::<String>()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/tools_list.json");

    fn listed() -> Vec<rmcp::model::Tool> {
        let mut tools = GitHubServer::tools().list_all();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// What agents see is a reviewed change: refresh with `UPDATE_GOLDEN=1 cargo test`.
    #[test]
    fn tools_list_matches_the_golden_file() {
        let actual = serde_json::to_string_pretty(&listed()).unwrap_or_default() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &actual).unwrap_or_else(|e| panic!("writing {GOLDEN}: {e}"));
        }
        let golden = std::fs::read_to_string(GOLDEN).unwrap_or_default();
        assert!(
            golden == actual,
            "tools/list changed; review it and refresh {GOLDEN} with UPDATE_GOLDEN=1"
        );
    }

    /// Every tool definition is sent to the model on every turn. The issue's budget is 3,000
    /// tokens (characters of compact JSON / 4) for all tools; the official GitHub MCP server
    /// spends about 14,000 on its default set. Held at 2,400 to keep headroom (about 2,200 now;
    /// output schemas are half of it).
    #[test]
    fn tools_list_is_within_the_token_budget() {
        let tools = listed();
        let compact = serde_json::to_string(&tools).unwrap_or_default();
        let tokens = compact.len() / 4;
        // Shown with `cargo test -- --nocapture`; stderr, as the lints want.
        eprintln!(
            "tools/list: {} tools, {} characters, about {tokens} tokens",
            tools.len(),
            compact.len()
        );
        assert_eq!(tools.len(), 10);
        assert!(tokens <= 2_400, "tools/list is about {tokens} tokens");
    }

    #[test]
    fn every_tool_has_an_output_schema_and_the_original_keeps_its_parameters() {
        let tools = listed();
        for tool in &tools {
            assert!(tool.output_schema.is_some(), "{} has none", tool.name);
        }
        let original = tools
            .iter()
            .find(|t| t.name == "send_issues_to_dashboard")
            .map(|t| t.input_schema["properties"].clone())
            .unwrap_or_default();
        for name in ["owner", "repo", "state"] {
            assert!(original.get(name).is_some(), "lacks {name}: {original}");
        }
    }

    #[test]
    fn times_and_limits_are_checked() {
        assert_eq!(
            time("since", Some("2026-11-30")).ok().flatten(),
            "2026-11-30T00:00:00Z".parse().ok()
        );
        assert!(time("since", Some("2026-11-30T10:00:00+01:00")).is_ok());
        assert!(matches!(
            time("since", Some("yesterday")),
            Err(Error::Invalid { field: "since", .. })
        ));
        assert!(matches!(time("since", None), Ok(None)));
        assert_eq!(limit(None, 30, 100).ok(), Some(30));
        assert_eq!(limit(Some(500), 30, 100).ok(), Some(100));
        assert!(limit(Some(0), 30, 100).is_err());
    }
}
