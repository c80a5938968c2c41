//! `TasksServer`: the MCP server agents talk to, over stdio or any other rmcp transport. Tools
//! live in `tools/`; this file holds the server's identity, its `task://{id}` resources and
//! their change subscriptions.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use mcp_core::{Delivery, EventBus, EventFilter, EventId};
use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{
        Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
        ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam, ServerCapabilities,
        ServerConfig, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
    },
    service::{RequestContext, SubscriptionContext, SubscriptionSendError},
    tool_handler,
};
use tokio::task::AbortHandle;

use crate::{
    Error, TaskService,
    service::{ListTasks, TOPIC},
};

const INSTRUCTIONS: &str = "Tasks shared by agents and editors. Name users by id, email or GitHub \
username (register new ones with add_user); repositories as owner/name (registered with their \
first task). Pass a task's version as expected_version to avoid overwriting someone else's change. \
Read task://{id} for a task with comments and history; subscribe to it to hear of changes.";

const URI_PREFIX: &str = "task://";

/// How far back a `subscriptions/listen` starts reading events (see `listen`).
const LISTEN_LOOKBACK_MS: u64 = 2_000;

/// The task MCP server. Cheap to clone; clones share subscriptions.
#[derive(Clone)]
pub struct TasksServer {
    pub(crate) service: Arc<TaskService>,
    tool_router: ToolRouter<Self>,
    /// `resources/subscribe` watchers by URI, each forwarding its task's events to the peer.
    watchers: Arc<Mutex<HashMap<String, AbortHandle>>>,
}

impl std::fmt::Debug for TasksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TasksServer").finish_non_exhaustive()
    }
}

impl Drop for TasksServer {
    fn drop(&mut self) {
        // The last clone gone means the session is over: stop its watchers.
        if Arc::strong_count(&self.watchers) == 1 {
            for (_, watcher) in self.watchers_guard().drain() {
                watcher.abort();
            }
        }
    }
}

impl TasksServer {
    pub fn new(service: Arc<TaskService>) -> Self {
        Self {
            service,
            tool_router: Self::tools(),
            watchers: Arc::default(),
        }
    }

    fn watchers_guard(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.watchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bus subscription for one task's events.
    async fn watch(
        bus: &Arc<dyn EventBus>,
        task_id: &str,
    ) -> Result<mcp_core::Subscription, McpError> {
        bus.subscribe(
            EventFilter::all()
                .topic(TOPIC)
                .subject("task_id", [task_id]),
            None,
        )
        .await
        .map_err(|e| McpError::internal_error(e.to_string(), None))
    }
}

/// The task id a `task://{id}` URI names, checked to be a well-formed id.
fn task_id_of(uri: &str) -> Result<&str, McpError> {
    uri.strip_prefix(URI_PREFIX)
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .ok_or_else(|| {
            McpError::invalid_params(
                format!("{uri:?} is not a task resource; expected task://{{task id}}"),
                None,
            )
        })
}

fn storage_failure(error: &Error) -> McpError {
    if let Error::Storage(source) = error {
        tracing::error!(error = %source, "storage failure reading a resource");
    }
    McpError::internal_error(error.to_string(), None)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TasksServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new(
            "switchboard-tasks",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("task://{id}", "task")
                .with_description("A task with its comments and history")
                .with_mime_type("application/json"),
        ]))
    }

    /// The most recently updated tasks, so clients that browse resources find something.
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let list = self
            .service
            .list_tasks(ListTasks::default())
            .await
            .map_err(|e| storage_failure(&e))?;
        let resources = list
            .tasks
            .iter()
            .map(|task| {
                Resource::new(format!("{URI_PREFIX}{}", task.id), task.title.clone())
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let id = task_id_of(&request.uri)?;
        let detail = match self.service.get_task_detail(id).await {
            Ok(detail) => detail,
            Err(Error::NotFound { .. }) => {
                return Err(McpError::resource_not_found(
                    format!("task {id} not found"),
                    Some(serde_json::json!({ "uri": request.uri })),
                ));
            }
            Err(e) => return Err(storage_failure(&e)),
        };
        let json = serde_json::to_string(&detail)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(json, request.uri).with_mime_type("application/json"),
        ])
        .into())
    }

    /// `resources/subscribe` (sessions opened with `initialize`): forward every event of the
    /// task to the peer as `notifications/resources/updated` until it unsubscribes or leaves.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let id = task_id_of(&request.uri)?.to_owned();
        let mut events = Self::watch(self.service.bus(), &id).await?;
        let peer: Peer<RoleServer> = context.peer;
        let uri = request.uri.clone();
        let watcher = tokio::spawn(async move {
            while let Some(delivery) = events.recv().await {
                if matches!(delivery, Delivery::Event(_) | Delivery::Resync) {
                    let update = ResourceUpdatedNotificationParam::new(uri.clone());
                    if peer.notify_resource_updated(update).await.is_err() {
                        break;
                    }
                }
            }
        });
        if let Some(previous) = self
            .watchers_guard()
            .insert(request.uri, watcher.abort_handle())
        {
            previous.abort();
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Some(watcher) = self.watchers_guard().remove(&request.uri) {
            watcher.abort();
        }
        Ok(())
    }

    /// `subscriptions/listen` (protocol 2026-07-28): accept only well-formed task URIs.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = requested.supported_by(&self.get_info().capabilities);
        if let Some(uris) = accepted.resource_subscriptions.as_mut() {
            uris.retain(|uri| task_id_of(uri).is_ok());
        }
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let ids: Vec<String> = uris
            .iter()
            .filter_map(|uri| task_id_of(uri).ok().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            context.cancelled().await;
            return Ok(());
        }
        // rmcp acknowledges the subscription before calling `listen`, so a change made in between
        // would be missed by a subscription that starts now. Start a little in the past instead:
        // the client may hear once of a change from just before it listened, never miss one after.
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let after = EventId::new(now_ms.saturating_sub(LISTEN_LOOKBACK_MS), 0);
        let mut events = self
            .service
            .bus()
            .subscribe(
                EventFilter::all().topic(TOPIC).subject("task_id", ids),
                Some(after),
            )
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let sink = context.sink().clone();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                delivery = events.recv() => {
                    let targets: Vec<String> = match delivery {
                        Some(Delivery::Event(event)) => event
                            .subject
                            .get("task_id")
                            .map(|id| vec![format!("{URI_PREFIX}{id}")])
                            .unwrap_or_default(),
                        // Events were missed: every subscribed task may have changed.
                        Some(_) => uris.clone(),
                        None => return Ok(()),
                    };
                    for uri in targets {
                        match sink.notify_resource_updated(uri).await {
                            Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                            Err(_) => return Ok(()),
                        }
                    }
                }
            }
        }
    }
}
