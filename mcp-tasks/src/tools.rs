//! The MCP tools agents call, one family per file, registered in one place
//! ([`TasksServer::tools`]). Every tool answers with `structuredContent` matching its output
//! schema plus a short text; a refused call is an `isError` result whose text says what was
//! wrong and what is valid.

mod comments;
mod tasks;
mod users;

use std::sync::Arc;

use rmcp::{
    ErrorData as McpError,
    handler::server::router::tool::ToolRouter,
    model::{CallToolResult, ContentBlock},
    service::{RequestContext, RoleServer},
};
use serde::Serialize;

use crate::{Error, server::TasksServer};

/// The actor recorded when a tool call names none.
const DEFAULT_ACTOR: &str = "ai-agent";

impl TasksServer {
    /// Every tool the server offers.
    pub(crate) fn tools() -> ToolRouter<Self> {
        let mut router = Self::task_tools() + Self::comment_tools() + Self::user_tools();
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

/// The credential behind a tool call: present over HTTP with authentication on (the auth
/// middleware put it in the request, which rmcp hands to the tool), absent over stdio.
fn principal(context: &RequestContext<RoleServer>) -> Option<&mcp_core::auth::Principal> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<mcp_core::auth::Principal>())
}

/// The actor to record for a tool call. With a credential, it is the credential, naming whom
/// the agent says it acts for (`alice@example.com (via key:ci)`), as REST does; without one
/// (stdio, or HTTP without auth) it is what the agent says, or [`DEFAULT_ACTOR`].
fn caller(context: &RequestContext<RoleServer>, claimed: Option<&str>) -> String {
    match principal(context) {
        Some(principal) => principal.actor(claimed),
        None => claimed.unwrap_or(DEFAULT_ACTOR).to_owned(),
    }
}

/// Turns a service result into a tool result: the value as structured content with `text`
/// as its readable summary, or the error as an `isError` result.
fn respond<T: Serialize>(
    result: Result<T, Error>,
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

/// An `isError` result for a failed call. Storage details go to the log only.
pub(crate) fn refusal(error: &Error) -> CallToolResult {
    if let Error::Storage(source) = error {
        tracing::error!(error = %source, "storage failure in a tool call");
    }
    CallToolResult::error(vec![ContentBlock::text(error.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/tools_list.json");

    fn listed() -> Vec<rmcp::model::Tool> {
        let mut tools = TasksServer::tools().list_all();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// What agents see is a reviewed change: refresh with `UPDATE_GOLDEN=1 cargo test`.
    #[test]
    fn tools_list_matches_the_golden_file() {
        let actual = serde_json::to_string_pretty(&listed()).unwrap() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &actual).unwrap();
        }
        let golden = std::fs::read_to_string(GOLDEN).unwrap_or_default();
        assert!(
            golden == actual,
            "tools/list changed; review it and refresh {GOLDEN} with UPDATE_GOLDEN=1"
        );
    }

    /// Every tool definition is sent to the model on every turn: keep them well under 2,000
    /// tokens together, counting a token as 3.5 characters of compact JSON (a conservative
    /// figure for JSON-heavy text).
    #[test]
    fn tools_list_is_cheap_for_an_agent() {
        let compact = serde_json::to_string(&listed()).unwrap();
        let estimated_tokens = compact.len() * 2 / 7;
        assert!(
            estimated_tokens < 1_800,
            "tools/list is {} characters, about {estimated_tokens} tokens",
            compact.len()
        );
    }

    #[test]
    fn the_original_tools_keep_their_parameter_names() {
        let tools = listed();
        let params = |name: &str| -> Vec<String> {
            let tool = tools.iter().find(|t| t.name == name).unwrap();
            let properties = tool.input_schema["properties"].as_object().unwrap();
            properties.keys().cloned().collect()
        };
        for (tool, expected) in [
            (
                "get_tasks",
                &["user_id", "repository", "status", "assignee"][..],
            ),
            (
                "create_task",
                &[
                    "title",
                    "description",
                    "assignee_id",
                    "repository",
                    "priority",
                    "complexity",
                    "created_by",
                ],
            ),
            (
                "update_task_status",
                &["task_id", "new_status", "updated_by", "comment"],
            ),
            ("add_task_comment", &["task_id", "comment", "author"]),
        ] {
            let actual = params(tool);
            for name in expected {
                assert!(
                    actual.iter().any(|a| a == name),
                    "{tool} lacks {name}: {actual:?}"
                );
            }
        }
        for tool in &tools {
            assert!(
                tool.output_schema.is_some(),
                "{} has no output schema",
                tool.name
            );
        }
    }
}
