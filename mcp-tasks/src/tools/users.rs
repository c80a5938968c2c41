//! User tools: add_user. Users are never created implicitly, so a mistyped assignee is an error
//! that names close matches rather than a new person.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::respond;
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
    ) -> Result<CallToolResult, McpError> {
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
