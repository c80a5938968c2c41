//! The gateway over REST for the dashboard and scripts: upstreams and their control
//! (`/api/servers`, with `kill` and an injected fault for chaos tests), the catalog and tool execution (`/api/tools`), the merged log
//! (`/api/logs`, live at `/api/logs/stream`), every gateway event live (`/api/gateway/stream`),
//! the overall status, per-server and per-tool metrics, and the audit log.

use std::{convert::Infallible, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post, put},
};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use mcp_core::{
    Delivery, EventFilter, EventId,
    auth::Principal,
    http::{ApiError, ApiJson, ApiQuery},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CallError, Caller, GATEWAY_TOPIC, Gateway, State,
    access::Target,
    audit::{AuditQuery, Outcome},
    config::Transport,
    fault::Fault,
    logs::{LogLevel, LogQuery},
    supervisor::Control,
};

/// How often an idle stream gets a comment, so proxies keep it open.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The most entries one `/api/logs` or `/api/audit` answer holds.
const MAX_LIMIT: usize = 1_000;

/// Ends the live streams when the server shuts down.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamShutdown(pub(crate) tokio_util::sync::CancellationToken);

/// The routes, generic over the state of the router they are merged into (they take the
/// gateway from an extension).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/api/servers", get(list_servers))
        .route("/api/servers/{id}", get(server))
        .route(
            "/api/servers/{id}/fault",
            put(set_fault).delete(clear_fault),
        )
        .route("/api/servers/{id}/{action}", post(control))
        .route("/api/tools", get(list_tools))
        .route("/api/tools/{name}", get(tool))
        .route("/api/tools/{name}/execute", post(execute))
        .route("/api/logs", get(logs))
        .route("/api/logs/sources", get(log_sources))
        .route("/api/logs/stream", get(log_stream))
        .route("/api/gateway/stream", get(event_stream))
        .route("/api/status", get(status))
        .route("/api/metrics", get(metrics))
        .route("/api/audit", get(audit))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} found"),
    )
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message.into())
        .with_details(json!({ "field": field }))
}

fn tool_json(route: &super::registry::Route<rmcp::model::Tool>) -> Value {
    let mut tool = serde_json::to_value(&route.item).unwrap_or_default();
    if let Value::Object(map) = &mut tool {
        map.insert("server".to_owned(), json!(route.server));
        map.insert("upstream_name".to_owned(), json!(route.name));
    }
    tool
}

async fn list_servers(Extension(gateway): Extension<Gateway>) -> Json<Value> {
    Json(json!({ "servers": gateway.servers() }))
}

async fn server(
    Extension(gateway): Extension<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let server = gateway
        .core
        .server(&id)
        .ok_or_else(|| not_found(&format!("server {id}")))?;
    let catalog = gateway.core.catalog();
    let tools: Vec<Value> = catalog
        .tools
        .values()
        .filter(|route| route.server == id)
        .map(tool_json)
        .collect();
    let hidden: Vec<_> = catalog.hidden.iter().filter(|h| h.server == id).collect();
    let mut body = serde_json::to_value(server.status()).unwrap_or_default();
    if let Value::Object(map) = &mut body {
        map.insert("tool_list".to_owned(), json!(tools));
        map.insert("hidden".to_owned(), json!(hidden));
        map.insert(
            "prompts".to_owned(),
            json!(
                catalog
                    .prompts
                    .iter()
                    .filter(|(_, r)| r.server == id)
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
            ),
        );
        map.insert(
            "resources".to_owned(),
            json!(
                catalog
                    .resources
                    .iter()
                    .filter(|(_, r)| r.server == id)
                    .map(|(u, _)| u)
                    .collect::<Vec<_>>()
            ),
        );
    }
    Ok(Json(body))
}

/// The hub's scope policy matches raw paths, and axum decodes `%73top` to `stop` only after
/// it: operating an upstream checks for `admin` again here, on the principal the guard found
/// (none when authentication is off).
fn require_admin(principal: Option<&Extension<Principal>>) -> Result<(), ApiError> {
    match principal {
        Some(Extension(p)) if p.scope < mcp_core::auth::Scope::Admin => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the admin scope; the credential has {:?}",
                p.scope
            )
            .to_lowercase(),
        )),
        _ => Ok(()),
    }
}

async fn control(
    Extension(gateway): Extension<Gateway>,
    principal: Option<Extension<Principal>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    require_admin(principal.as_ref())?;
    let control = match action.as_str() {
        "start" => Control::Start,
        "stop" => Control::Stop,
        "restart" => Control::Restart,
        "kill" => Control::Kill,
        other => {
            return Err(not_found(&format!(
                "action {other:?} (use start, stop, restart or kill)"
            )));
        }
    };
    let server = gateway
        .core
        .server(&id)
        .ok_or_else(|| not_found(&format!("server {id}")))?;
    if control == Control::Kill {
        return kill(&gateway, &id, &server).await;
    }
    server
        .control(control)
        .map_err(|message| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "server": id, "requested": action, "status": server.status() })),
    )
        .into_response())
}

/// `POST /api/servers/{id}/kill`: SIGKILL to a stdio upstream's child, a crash on purpose.
/// Unlike `stop`, the supervisor treats it as any crash: the upstream is down, then restarted
/// with its backoff.
async fn kill(
    gateway: &Gateway,
    id: &str,
    server: &super::supervisor::Supervised,
) -> Result<Response, ApiError> {
    if !matches!(server.config.transport, Transport::Stdio { .. }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_process",
            format!(
                "upstream {id} is an HTTP server: the hub has no process of it to kill (use stop, or inject a fault)"
            ),
        ));
    }
    let status = server.status();
    let Some(pid) = status.pid else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!(
                "upstream {id} has no running process to kill (it is {})",
                format!("{:?}", status.state).to_lowercase()
            ),
        )
        .with_details(json!({ "state": status.state })));
    };
    server
        .control(Control::Kill)
        .map_err(|message| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message))?;
    gateway
        .core
        .logs
        .record(
            id,
            LogLevel::Warning,
            super::logs::LogSource::Hub,
            format!("killed by an operator (SIGKILL to pid {pid}); it restarts as after a crash"),
        )
        .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "server": id, "requested": "kill", "pid": pid, "status": server.status() })),
    )
        .into_response())
}

/// `PUT /api/servers/{id}/fault`: every call to the upstream waits `latency_ms`, and
/// `error_rate` of them fail, for `duration_ms` (or until `DELETE`).
async fn set_fault(
    Extension(gateway): Extension<Gateway>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    require_admin(principal.as_ref())?;
    if gateway.core.server(&id).is_none() {
        return Err(not_found(&format!("server {id}")));
    }
    let fault = Fault::from_json(&body).map_err(|(field, message)| invalid(field, message))?;
    let status = gateway
        .core
        .set_fault(&id, fault)
        .await
        .ok_or_else(|| not_found(&format!("server {id}")))?;
    Ok(Json(json!({ "server": id, "fault": status })))
}

/// `DELETE /api/servers/{id}/fault`: clears it (done whether or not one was in force).
async fn clear_fault(
    Extension(gateway): Extension<Gateway>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(principal.as_ref())?;
    let cleared = gateway
        .core
        .clear_fault(&id)
        .await
        .ok_or_else(|| not_found(&format!("server {id}")))?;
    Ok(Json(
        json!({ "server": id, "cleared": cleared, "fault": null }),
    ))
}

async fn list_tools(
    Extension(gateway): Extension<Gateway>,
    principal: Option<Extension<Principal>>,
) -> Json<Value> {
    // The whole catalog (a read-only dashboard shows it all), each tool saying whether this
    // caller may call it; MCP clients list only what they may call.
    let caller = Caller::from_principal(principal.as_ref().map(|Extension(p)| p));
    let catalog = gateway.core.catalog();
    let tools: Vec<Value> = catalog
        .tools
        .iter()
        .map(|(name, route)| {
            let mut tool = tool_json(route);
            if let Value::Object(map) = &mut tool {
                map.insert(
                    "callable".to_owned(),
                    json!(
                        gateway
                            .core
                            .may_see(&caller, Target::tool(&route.server, name, &route.name))
                    ),
                );
            }
            tool
        })
        .collect();
    Json(json!({ "tools": tools, "hidden": catalog.hidden }))
}

async fn tool(
    Extension(gateway): Extension<Gateway>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let catalog = gateway.core.catalog();
    let route = catalog
        .tools
        .get(&name)
        .ok_or_else(|| not_found(&format!("tool {name}")))?;
    let mut body = tool_json(route);
    if let Value::Object(map) = &mut body {
        let metrics = gateway.core.stats.report();
        if let Some(series) = metrics.tools.into_iter().find(|t| t.tool == name) {
            map.insert("metrics".to_owned(), json!(series.series));
        }
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    #[serde(default)]
    arguments: Option<serde_json::Map<String, Value>>,
}

async fn execute(
    Extension(gateway): Extension<Gateway>,
    principal: Option<Extension<Principal>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = Caller::from_principal(principal.as_ref().map(|Extension(p)| p));
    let started = std::time::Instant::now();
    match gateway.call_tool(&caller, &name, body.arguments).await {
        Ok(result) => Ok(Json(json!({
            "result": result,
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))),
        Err(error) => Err(call_error(error)),
    }
}

fn call_error(error: CallError) -> ApiError {
    let message = error.to_string();
    match error {
        CallError::UnknownTool(name) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            .with_details(json!({ "tool": name })),
        CallError::Denied(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
        CallError::Unavailable { server, state, .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            message,
        )
        .with_details(json!({ "server": server, "state": state })),
        CallError::Timeout { server, .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
                .with_details(json!({ "server": server }))
        }
        CallError::Upstream { server, .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_failed", message)
                .with_details(json!({ "server": server }))
        }
        CallError::Refused {
            server, code, data, ..
        } => ApiError::new(StatusCode::BAD_GATEWAY, "upstream_refused", message)
            .with_details(json!({ "server": server, "code": code, "data": data })),
        CallError::Cancelled => ApiError::new(StatusCode::BAD_REQUEST, "cancelled", message),
        CallError::Injected { server } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "fault_injected", message)
                .with_details(json!({ "server": server }))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    server: Option<String>,
    level: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    last_event_id: Option<String>,
    /// Read by the auth middleware (browsers cannot set headers on an EventSource).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

fn log_query(params: &LogParams) -> Result<LogQuery, ApiError> {
    let min_level = params
        .level
        .as_deref()
        .map(|l| {
            LogLevel::parse(l).ok_or_else(|| {
                invalid(
                    "level",
                    format!("level {l:?}: use debug, info, warning or error"),
                )
            })
        })
        .transpose()?;
    Ok(LogQuery {
        server: params.server.clone(),
        min_level,
        since: parse_since(params.since.as_deref())?,
        after_seq: None,
        limit: params.limit.unwrap_or(200).clamp(1, MAX_LIMIT),
    })
}

fn parse_since(since: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    since
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        "since",
                        format!("since {s:?}: give an RFC 3339 time, e.g. 2026-12-02T07:00:00Z"),
                    )
                })
        })
        .transpose()
}

async fn logs(
    Extension(gateway): Extension<Gateway>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Json<Value>, ApiError> {
    let query = log_query(&params)?;
    Ok(Json(json!({ "logs": gateway.core.logs.query(&query) })))
}

async fn log_sources(Extension(gateway): Extension<Gateway>) -> Json<Value> {
    let mut sources: Vec<String> = gateway.servers().into_iter().map(|s| s.id).collect();
    for source in gateway.core.logs.sources() {
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    Json(json!({ "sources": sources }))
}

/// `log_entry` events as SSE, filtered like `/api/logs`; it starts with the recent entries
/// that match (or, resuming with `Last-Event-ID`, with the ones after it the bus still holds).
async fn log_stream(
    Extension(gateway): Extension<Gateway>,
    shutdown: Option<Extension<StreamShutdown>>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Response, ApiError> {
    let query = log_query(&params)?;
    let cursor = cursor(&headers, params.last_event_id.as_deref())?;
    let mut filter = EventFilter::all().topic(GATEWAY_TOPIC).types(["log_entry"]);
    if let Some(server) = &query.server {
        filter = filter.subject("server", [server.clone()]);
    }
    // Subscribe before reading the recent entries, so none falls between the two; an entry in
    // both is sent once (entries carry their sequence number).
    let subscription = subscribe(&gateway, filter, cursor).await?;
    let recent = if cursor.is_none() {
        gateway.core.logs.query(&query)
    } else {
        Vec::new()
    };
    let sent_up_to = recent.last().map_or(0, |e| e.seq);
    let first: Vec<SseEvent> = recent
        .iter()
        .map(|entry| {
            SseEvent::default()
                .event("log_entry")
                .data(json!({ "type": "log_entry", "data": entry }).to_string())
        })
        .collect();
    let min_level = query.min_level;
    Ok(stream_events(subscription, first, shutdown, move |event| {
        let level = event
            .data
            .get("level")
            .and_then(|l| serde_json::from_value::<LogLevel>(l.clone()).ok());
        let seq = event
            .data
            .get("seq")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        seq > sent_up_to && min_level.is_none_or(|min| level.is_some_and(|l| l >= min))
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    /// Comma-separated event types (`server_status,tool_update,log_entry`); default all.
    types: Option<String>,
    last_event_id: Option<String>,
    /// Read by the auth middleware (browsers cannot set headers on an EventSource).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Every gateway event as SSE; it starts with one `server_status` per upstream, so a page that
/// connects (or reconnects) knows the state at once.
async fn event_stream(
    Extension(gateway): Extension<Gateway>,
    shutdown: Option<Extension<StreamShutdown>>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Response, ApiError> {
    let cursor = cursor(&headers, params.last_event_id.as_deref())?;
    let mut filter = EventFilter::all().topic(GATEWAY_TOPIC);
    let mut wants_status = true;
    if let Some(types) = params.types.as_deref() {
        let types: Vec<String> = types
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        for kind in &types {
            if !["server_status", "tool_update", "log_entry"].contains(&kind.as_str()) {
                return Err(invalid(
                    "types",
                    format!(
                        "unknown event type {kind:?}: use server_status, tool_update or log_entry"
                    ),
                ));
            }
        }
        wants_status = types.iter().any(|t| t == "server_status");
        filter = filter.types(types);
    }
    // Subscribe before reading the statuses, so no change falls between the two.
    let subscription = subscribe(&gateway, filter, cursor).await?;
    let first: Vec<SseEvent> = if wants_status && cursor.is_none() {
        gateway
            .servers()
            .iter()
            .map(|status| {
                SseEvent::default()
                    .event("server_status")
                    .data(json!({ "type": "server_status", "data": status }).to_string())
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(stream_events(subscription, first, shutdown, |_| true))
}

fn cursor(headers: &HeaderMap, query: Option<&str>) -> Result<Option<EventId>, ApiError> {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .or(query)
        .map(|text| {
            text.parse::<EventId>()
                .map_err(|_| invalid("last_event_id", format!("{text:?} is not an event id")))
        })
        .transpose()
}

async fn subscribe(
    gateway: &Gateway,
    filter: EventFilter,
    after: Option<EventId>,
) -> Result<mcp_core::Subscription, ApiError> {
    gateway
        .core
        .events
        .bus()
        .subscribe(filter, after)
        .await
        .map_err(|e| ApiError::unavailable(&e))
}

pub(crate) fn stream_events(
    subscription: mcp_core::Subscription,
    first: Vec<SseEvent>,
    shutdown: Option<Extension<StreamShutdown>>,
    keep: impl Fn(&mcp_core::Event) -> bool + Send + 'static,
) -> Response {
    let stop = shutdown.map(|Extension(s)| s.0).unwrap_or_default();
    let hello = SseEvent::default()
        .retry(Duration::from_secs(2))
        .comment("connected");
    let live = stream::unfold(
        subscription,
        move |mut subscription: mcp_core::Subscription| async move {
            match subscription.recv().await {
                Some(Delivery::Event(event)) => Some((Some(event), subscription)),
                // Missed events: the client reloads what it shows (a `resync` event says so).
                Some(_) => Some((None, subscription)),
                None => None,
            }
        },
    )
    .filter_map(move |event| {
        let out = match event {
            Some(event) if keep(&event) => Some(
                SseEvent::default()
                    .id(event.id.to_string())
                    .event(event.kind.clone())
                    .data(serde_json::to_string(&*event).unwrap_or_default()),
            ),
            Some(_) => None,
            None => Some(SseEvent::default().event("resync").data("{}")),
        };
        std::future::ready(out)
    });
    let body = stream::once(async move { hello })
        .chain(stream::iter(first))
        .chain(live)
        .take_until(async move { stop.cancelled_owned().await })
        .map(Ok::<_, Infallible>);
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The overall state: `ok` when every enabled upstream is healthy, `degraded` when some are
/// not, `down` when none is.
async fn status(Extension(gateway): Extension<Gateway>) -> Json<Value> {
    let servers = gateway.servers();
    let count = |state: State| servers.iter().filter(|s| s.state == state).count();
    let enabled = servers.iter().filter(|s| s.state != State::Stopped).count();
    let healthy = count(State::Healthy);
    let overall = if enabled == 0 || healthy == enabled {
        "ok"
    } else if healthy == 0 && count(State::Degraded) == 0 {
        "down"
    } else {
        "degraded"
    };
    let catalog = gateway.core.catalog();
    Json(json!({
        "status": overall,
        "uptime_s": gateway.core.started.elapsed().as_secs(),
        "servers": {
            "total": servers.len(),
            "starting": count(State::Starting),
            "healthy": healthy,
            "degraded": count(State::Degraded),
            "down": count(State::Down),
            "stopped": count(State::Stopped),
        },
        "tools": catalog.tools.len(),
        "prompts": catalog.prompts.len(),
        "resources": catalog.resources.len(),
        "hidden": catalog.hidden.len(),
    }))
}

async fn metrics(Extension(gateway): Extension<Gateway>) -> Json<Value> {
    Json(json!(gateway.core.stats.report()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    principal: Option<String>,
    tool: Option<String>,
    server: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    Extension(gateway): Extension<Gateway>,
    principal: Option<Extension<Principal>>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    require_admin(principal.as_ref())?;
    let outcome = params
        .outcome
        .as_deref()
        .map(|o| {
            serde_json::from_value::<Outcome>(json!(o)).map_err(|_| {
                invalid(
                    "outcome",
                    format!("outcome {o:?}: use ok, tool_error, denied, unknown_tool, unavailable, timeout, cancelled, failed or injected"),
                )
            })
        })
        .transpose()?;
    let query = AuditQuery {
        principal: params.principal,
        tool: params.tool,
        server: params.server,
        outcome,
        since: parse_since(params.since.as_deref())?,
        limit: params.limit.unwrap_or(200).clamp(1, MAX_LIMIT),
    };
    Ok(Json(json!({ "entries": gateway.core.audit.query(&query) })))
}
