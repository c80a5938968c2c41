//! Comment tools: add_task_comment.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{caller, respond};
use crate::{Comment, server::TasksServer};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AddCommentArgs {
    task_id: String,
    comment: String,
    author: Option<String>,
}

#[tool_router(router = comment_tools, vis = "pub(crate)")]
impl TasksServer {
    #[tool(
        description = "Add a comment to a task.",
        output_schema = schema_for_output::<Comment>()
    )]
    async fn add_task_comment(
        &self,
        Parameters(args): Parameters<AddCommentArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let author = caller(&context, args.author.as_deref());
        let result = self
            .service
            .add_comment(&args.task_id, &args.comment, &author)
            .await;
        respond(result, |comment| {
            format!("Comment {} added to task {}", comment.id, comment.task_id)
        })
    }
}
