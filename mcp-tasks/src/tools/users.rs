//! User tools: add_user. Users are never created implicitly, so a mistyped assignee is an error
//! that names close matches rather than a new person.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::{CallToolResult, ContentBlock},
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{principal, respond};
use mcp_core::auth::Scope;

use crate::{User, server::TasksServer, service::NewUser};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AddUserArgs {
    email: String,
    name: Option<String>,
    github_username: Option<String>,
}

#[tool_router(router = user_tools, vis = "pub(crate)")]
impl TasksServer {
    #[tool(
        description = "Register a user who can be assigned tasks.",
        output_schema = schema_for_output::<User>()
    )]
    async fn add_user(
        &self,
        Parameters(args): Parameters<AddUserArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        // Who may be assigned work is the admin scope's to decide, over MCP as over REST.
        if let Some(principal) = principal(&context)
            && principal.scope < Scope::Admin
        {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                format!(
                    "adding users needs the admin scope; {} has {:?}",
                    principal.name, principal.scope
                )
                .to_lowercase(),
            )]));
        }
        let input = NewUser {
            email: args.email,
            name: args.name,
            github_username: args.github_username,
        };
        respond(self.service.add_user(input).await, |user| {
            format!("Registered user {} ({})", user.email, user.id)
        })
    }
}
