//! Task tools: get_tasks, get_task, create_task, update_task, update_task_status, delete_task.

use rmcp::{
    ErrorData as McpError,
    handler::server::{tool::schema_for_output, wrapper::Parameters},
    model::CallToolResult,
    service::{RequestContext, RoleServer},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{caller, respond};
use crate::{
    Complexity, Error, Priority, Status, Task, TaskDetail,
    server::TasksServer,
    service::{ListTasks, NewTask, TaskPatch},
    store::{Modified, StatusFilter},
};

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct GetTasksArgs {
    /// Assignee: id, email or GitHub username.
    user_id: Option<String>,
    /// owner/name
    repository: Option<String>,
    /// open = not finished
    status: Option<StatusFilter>,
    /// Same as user_id.
    assignee: Option<String>,
    /// Text search.
    query: Option<String>,
    /// 1-200, default 20.
    limit: Option<u32>,
    /// next_cursor of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct TaskIdArgs {
    task_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CreateTaskArgs {
    title: String,
    description: String,
    /// User id, email or GitHub username.
    assignee_id: String,
    /// owner/name
    repository: String,
    priority: Option<Priority>,
    complexity: Option<Complexity>,
    created_by: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct UpdateStatusArgs {
    task_id: String,
    new_status: Status,
    updated_by: String,
    /// Why, kept in the history.
    comment: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct UpdateTaskArgs {
    task_id: String,
    title: Option<String>,
    description: Option<String>,
    status: Option<Status>,
    priority: Option<Priority>,
    complexity: Option<Complexity>,
    assignee_id: Option<String>,
    /// Refused if the task's version differs.
    expected_version: Option<i64>,
    updated_by: Option<String>,
    comment: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct DeleteTaskArgs {
    task_id: String,
    expected_version: Option<i64>,
    deleted_by: Option<String>,
}

/// A task in a listing.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TaskSummary {
    id: String,
    title: String,
    status: Status,
    priority: Priority,
    complexity: Complexity,
    assignee: String,
    repository: String,
    updated_at: String,
    version: i64,
}

impl From<&Task> for TaskSummary {
    fn from(task: &Task) -> Self {
        Self {
            id: task.id.to_string(),
            title: task.title.clone(),
            status: task.status,
            priority: task.priority,
            complexity: task.complexity,
            assignee: task.assignee.clone(),
            repository: task.repository.clone(),
            updated_at: task.updated_at.to_rfc3339(),
            version: task.version,
        }
    }
}

impl TaskSummary {
    /// One line, enough to act on without another call.
    fn line(&self) -> String {
        format!(
            "{} [{}] {} ({}, {} priority, assigned to {}, v{})",
            self.id,
            self.status,
            self.title,
            self.repository,
            self.priority,
            self.assignee,
            self.version
        )
    }
}

fn summary(result: Result<Task, Error>) -> Result<TaskSummary, Error> {
    result.map(|task| TaskSummary::from(&task))
}

/// The reply to an update, which says so when there was nothing to change.
fn respond_modified(result: Result<Modified, Error>) -> Result<CallToolResult, McpError> {
    let changed = matches!(result, Ok(Modified::Updated(_)));
    let result = result.map(|modified| TaskSummary::from(modified.task()));
    respond(result, |task| {
        if changed {
            format!("Updated {}", task.line())
        } else {
            format!(
                "No change (any comment was added as a comment): {}",
                task.line()
            )
        }
    })
}

/// What delete_task removed.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DeletedTask {
    id: String,
    title: String,
    version: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TaskListing {
    tasks: Vec<TaskSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[tool_router(router = task_tools, vis = "pub(crate)")]
impl TasksServer {
    #[tool(
        description = "List tasks, most recently updated first.",
        output_schema = schema_for_output::<TaskListing>(),
        annotations(read_only_hint = true)
    )]
    async fn get_tasks(
        &self,
        Parameters(args): Parameters<GetTasksArgs>,
    ) -> Result<CallToolResult, McpError> {
        let result = async {
            let assignee = match (args.user_id, args.assignee) {
                (Some(a), Some(b)) if a.trim() != b.trim() => {
                    let (a, b) = (
                        self.service.resolve_user(&a).await?,
                        self.service.resolve_user(&b).await?,
                    );
                    if a.id != b.id {
                        return Err(Error::Invalid {
                            field: "assignee",
                            message: "user_id and assignee name different users; give one".into(),
                        });
                    }
                    Some(a.id.to_string())
                }
                (a, b) => a.or(b),
            };
            let list = self
                .service
                .list_tasks(ListTasks {
                    assignee,
                    repository: args.repository,
                    status: args.status,
                    text: args.query,
                    limit: args.limit,
                    cursor: args.cursor,
                })
                .await?;
            Ok(TaskListing {
                tasks: list.tasks.iter().map(TaskSummary::from).collect(),
                next_cursor: list.next_cursor,
            })
        }
        .await;
        respond(result, |listing| {
            let mut text = match listing.tasks.len() {
                0 => "No tasks match.".to_owned(),
                1 => "1 task:".to_owned(),
                n => format!("{n} tasks:"),
            };
            for task in &listing.tasks {
                text.push('\n');
                text.push_str(&task.line());
            }
            if listing.next_cursor.is_some() {
                text.push_str("\nMore tasks follow: pass next_cursor as cursor.");
            }
            text
        })
    }

    #[tool(
        description = "One task with its comments and history.",
        output_schema = schema_for_output::<TaskDetail>(),
        annotations(read_only_hint = true)
    )]
    async fn get_task(
        &self,
        Parameters(args): Parameters<TaskIdArgs>,
    ) -> Result<CallToolResult, McpError> {
        respond(
            self.service.get_task_detail(&args.task_id).await,
            |detail| {
                let mut text = TaskSummary::from(&detail.task).line();
                if !detail.task.description.is_empty() {
                    text.push_str(&format!("\n{}", detail.task.description));
                }
                for entry in &detail.history {
                    text.push_str(&format!(
                        "\n{} {} {}: {} -> {}{}",
                        entry.at.format("%Y-%m-%d %H:%M"),
                        entry.actor,
                        entry.field,
                        entry.old_value.as_deref().unwrap_or("-"),
                        entry.new_value.as_deref().unwrap_or("-"),
                        entry
                            .comment
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    ));
                }
                for comment in &detail.comments {
                    text.push_str(&format!(
                        "\n{} {} commented: {}",
                        comment.created_at.format("%Y-%m-%d %H:%M"),
                        comment.author,
                        comment.comment
                    ));
                }
                text
            },
        )
    }

    #[tool(
        description = "Create a task. Assignee must be a known user (see add_user).",
        output_schema = schema_for_output::<TaskSummary>()
    )]
    async fn create_task(
        &self,
        Parameters(args): Parameters<CreateTaskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let input = NewTask {
            title: args.title,
            description: args.description,
            assignee: args.assignee_id,
            repository: args.repository,
            priority: args.priority,
            complexity: args.complexity,
        };
        let actor = caller(&context, args.created_by.as_deref());
        let result = self.service.create_task(input, &actor).await;
        respond(summary(result), |task| format!("Created {}", task.line()))
    }

    #[tool(
        description = "Change a task's status; the comment is kept in its history.",
        output_schema = schema_for_output::<TaskSummary>(),
        annotations(idempotent_hint = true)
    )]
    async fn update_task_status(
        &self,
        Parameters(args): Parameters<UpdateStatusArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let actor = caller(&context, Some(&args.updated_by));
        let result = self
            .service
            .update_status(
                &args.task_id,
                args.new_status,
                &actor,
                args.comment.as_deref(),
            )
            .await;
        respond_modified(result)
    }

    #[tool(
        description = "Edit a task's fields; unset fields are kept.",
        output_schema = schema_for_output::<TaskSummary>(),
        annotations(idempotent_hint = true)
    )]
    async fn update_task(
        &self,
        Parameters(args): Parameters<UpdateTaskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let patch = TaskPatch {
            title: args.title,
            description: args.description,
            status: args.status,
            priority: args.priority,
            complexity: args.complexity,
            assignee: args.assignee_id,
        };
        let actor = caller(&context, args.updated_by.as_deref());
        let result = self
            .service
            .update_task(
                &args.task_id,
                patch,
                &actor,
                args.expected_version,
                args.comment.as_deref(),
            )
            .await;
        respond_modified(result)
    }

    #[tool(
        description = "Delete a task and its comments (its history is kept).",
        output_schema = schema_for_output::<DeletedTask>(),
        annotations(destructive_hint = true)
    )]
    async fn delete_task(
        &self,
        Parameters(args): Parameters<DeleteTaskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let actor = caller(&context, args.deleted_by.as_deref());
        let result = self
            .service
            .delete_task(&args.task_id, &actor, args.expected_version)
            .await;
        let result = result.map(|task| DeletedTask {
            id: task.id.to_string(),
            title: task.title,
            version: task.version,
        });
        respond(result, |task| {
            format!("Deleted task {} ({})", task.id, task.title)
        })
    }
}
