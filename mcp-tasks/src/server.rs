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

/// The task MCP server for one session. Cheap to clone (clones share the session's resource
/// subscriptions); build a new one with [`TasksServer::new`] for each session.
#[derive(Clone)]
pub struct TasksServer {
    pub(crate) service: Arc<TaskService>,
    tool_router: ToolRouter<Self>,
    watchers: Arc<Watchers>,
}

impl std::fmt::Debug for TasksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TasksServer").finish_non_exhaustive()
    }
}

/// The session's `resources/subscribe` watchers by URI, each forwarding its task's events to
/// the peer. Dropped with the last clone of the server, which stops them all.
#[derive(Default)]
struct Watchers(Mutex<HashMap<String, AbortHandle>>);

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for (_, watcher) in self.lock().drain() {
            watcher.abort();
        }
    }
}

/// How many tasks one session may subscribe to at once.
const MAX_SUBSCRIPTIONS: usize = 1_000;

impl TasksServer {
    pub fn new(service: Arc<TaskService>) -> Self {
        Self {
            service,
            tool_router: Self::tools(),
            watchers: Arc::default(),
        }
    }
}

/// The task a `task://{id}` URI names. Any spelling of the id is accepted; use
/// [`task_uri`] for the canonical URI.
fn task_id_of(uri: &str) -> Result<uuid::Uuid, McpError> {
    uri.strip_prefix(URI_PREFIX)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "{:?} is not a task resource; expected task://{{task id}}",
                    uri.chars().take(100).collect::<String>()
                ),
                None,
            )
        })
}

fn task_uri(id: uuid::Uuid) -> String {
    format!("{URI_PREFIX}{id}")
}

fn task_filter(id: uuid::Uuid) -> EventFilter {
    EventFilter::all()
        .topic(TOPIC)
        .subject("task_id", [id.to_string()])
}

/// Forwards one task's events to the peer as `notifications/resources/updated` for `uri` (as
/// the client spelled it) until the peer goes away. After missed events (`Resync`) it notifies
/// once and subscribes afresh. `first` is subscribed before `resources/subscribe` is answered,
/// so a change the client makes right after its subscription is acknowledged is not missed.
async fn watch_task(
    bus: Arc<dyn EventBus>,
    id: uuid::Uuid,
    uri: String,
    peer: Peer<RoleServer>,
    first: mcp_core::Subscription,
) {
    let mut first = Some(first);
    loop {
        let mut events = match first.take() {
            Some(events) => events,
            None => match bus.subscribe(task_filter(id), None).await {
                Ok(events) => events,
                Err(_) => return,
            },
        };
        while let Some(_delivery) = events.recv().await {
            let update = ResourceUpdatedNotificationParam::new(uri.clone());
            if peer.notify_resource_updated(update).await.is_err() {
                return;
            }
        }
        // The bus ended this subscription (the watcher fell behind): start a new one.
    }
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
        let detail = match self.service.get_task_detail(&id.to_string()).await {
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
        let id = task_id_of(&request.uri)?;
        match self.service.get_task(&id.to_string()).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                return Err(McpError::resource_not_found(
                    format!("task {id} not found"),
                    Some(serde_json::json!({ "uri": request.uri })),
                ));
            }
            Err(e) => return Err(storage_failure(&e)),
        }
        // Subscribed before answering, so nothing after the acknowledgement is missed.
        let first = self
            .service
            .bus()
            .subscribe(task_filter(id), None)
            .await
            .map_err(|e| McpError::internal_error(format!("cannot watch the task: {e}"), None))?;
        let key = task_uri(id);
        let mut watchers = self.watchers.lock();
        if watchers.contains_key(&key) {
            return Ok(());
        }
        if watchers.len() >= MAX_SUBSCRIPTIONS {
            return Err(McpError::invalid_params(
                format!(
                    "at most {MAX_SUBSCRIPTIONS} subscriptions per session; unsubscribe from some first"
                ),
                None,
            ));
        }
        let watcher = tokio::spawn(watch_task(
            self.service.bus().clone(),
            id,
            request.uri,
            context.peer,
            first,
        ));
        watchers.insert(key, watcher.abort_handle());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(id) = task_id_of(&request.uri)
            && let Some(watcher) = self.watchers.lock().remove(&task_uri(id))
        {
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
        // Task id (canonical) -> the URIs the client wrote for it: notifications must use the
        // client's spelling, which is what the subscription accepted.
        let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
        for uri in context.accepted().resource_subscriptions.iter().flatten() {
            if let Ok(id) = task_id_of(uri) {
                by_id.entry(id.to_string()).or_default().push(uri.clone());
            }
        }
        if by_id.is_empty() {
            context.cancelled().await;
            return Ok(());
        }
        let filter = EventFilter::all()
            .topic(TOPIC)
            .subject("task_id", by_id.keys().cloned());
        // rmcp acknowledges the subscription before calling `listen`, so a change made in between
        // would be missed by a subscription that starts now. Start a little in the past instead:
        // the client may hear once of a change from just before it listened, never miss one after.
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let mut after = Some(EventId::new(now_ms.saturating_sub(LISTEN_LOOKBACK_MS), 0));
        let sink = context.sink().clone();
        loop {
            let mut events = self
                .service
                .bus()
                .subscribe(filter.clone(), after.take())
                .await
                .map_err(|e| McpError::internal_error(e.to_string(), None))?;
            loop {
                let delivery = tokio::select! {
                    () = context.cancelled() => return Ok(()),
                    delivery = events.recv() => delivery,
                };
                let targets: Vec<&String> = match &delivery {
                    Some(Delivery::Event(event)) => event
                        .subject
                        .get("task_id")
                        .and_then(|id| by_id.get(id))
                        .map(|uris| uris.iter().collect())
                        .unwrap_or_default(),
                    // Events were missed: every subscribed task may have changed.
                    Some(_) => by_id.values().flatten().collect(),
                    // The bus ended this subscription (it fell behind): subscribe afresh.
                    None => break,
                };
                for uri in targets {
                    match sink.notify_resource_updated(uri.clone()).await {
                        Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                        Err(_) => return Ok(()),
                    }
                }
            }
        }
    }
}

/// Serves the task tools to one MCP client on stdin/stdout until the client closes stdin or
/// `shutdown` completes. Only MCP messages go to stdout; log with a subscriber that writes to
/// stderr.
pub async fn serve_stdio(
    service: Arc<TaskService>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<mcp_core::stdio::Ended> {
    mcp_core::stdio::serve_stdio(TasksServer::new(service), shutdown)
        .await
        .map_err(|e| crate::Error::Transport(e.to_string()))
}
