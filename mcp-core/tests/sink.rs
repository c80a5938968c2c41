//! `HttpSink` against a backend of the test's own on 127.0.0.1: retries with one idempotency
//! key, final 4xx, `Retry-After`, and bounded failure when nothing answers.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test here.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use mcp_core::{HttpSink, HttpSinkConfig, Push, Sink, SinkError};
use serde_json::{Value, json};

/// A request the fake backend received.
#[derive(Debug, Clone)]
struct Seen {
    channel: String,
    key: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
    at: Instant,
}

/// A scripted answer: status, extra headers, JSON body.
type Answer = (StatusCode, Vec<(&'static str, &'static str)>, Value);

#[derive(Default)]
struct Backend {
    seen: Mutex<Vec<Seen>>,
    /// Answers to give, in order; then 200 with a receipt.
    script: Mutex<VecDeque<Answer>>,
}

async fn sync(
    State(backend): State<Arc<Backend>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    backend.seen.lock().unwrap().push(Seen {
        channel: channel.clone(),
        key: header("idempotency-key"),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    let next = backend.script.lock().unwrap().pop_front();
    match next {
        Some((status, extra, body)) => {
            let mut response = (status, axum::Json(body)).into_response();
            for (name, value) in extra {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        None => axum::Json(json!({
            "channel": channel, "repository": "acme/api", "event_id": "1763773200000-0",
            "received_at": "2026-12-02T05:00:00Z", "bytes": body.len(),
            "duplicate": false, "broadcast": true
        }))
        .into_response(),
    }
}

async fn start(script: Vec<Answer>) -> (String, Arc<Backend>) {
    let backend = Arc::new(Backend {
        seen: Mutex::default(),
        script: Mutex::new(script.into()),
    });
    let app = Router::new()
        .route("/api/dashboard/sync/{channel}", post(sync))
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), backend)
}

fn push() -> Push {
    Push {
        channel: "issues".into(),
        repository: Some("acme/api".into()),
        title: "Open issues of acme/api".into(),
        data: json!({"state": "open", "issues": [{"number": 1, "title": "x"}]}),
    }
}

fn config(url: &str) -> HttpSinkConfig {
    let mut config = HttpSinkConfig::new(url).with_token("t0ken");
    config.base_backoff = Duration::from_millis(5);
    config
}

fn error_json(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "details": null}})
}

#[tokio::test]
async fn retries_5xx_with_one_idempotency_key_then_succeeds() {
    let (url, backend) = start(vec![
        (
            StatusCode::SERVICE_UNAVAILABLE,
            vec![],
            error_json("unavailable", "starting"),
        ),
        (StatusCode::BAD_GATEWAY, vec![], Value::Null),
    ])
    .await;
    let sink = HttpSink::new(config(&url)).unwrap();
    let receipt = sink.push(push()).await.unwrap();
    assert_eq!(receipt.attempts, 3);
    assert_eq!(receipt.status, 200);
    assert_eq!(receipt.channel, "issues");
    assert_eq!(receipt.body["event_id"], "1763773200000-0");

    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let key = seen[0].key.clone().unwrap();
    assert_eq!(uuid::Uuid::parse_str(&key).unwrap().get_version_num(), 7);
    assert_eq!(receipt.idempotency_key, key);
    for request in &seen {
        assert_eq!(request.key.as_deref(), Some(key.as_str()));
        assert_eq!(request.channel, "issues");
        assert_eq!(request.authorization.as_deref(), Some("Bearer t0ken"));
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            request.body,
            json!({"repository": "acme/api", "title": "Open issues of acme/api",
                   "data": {"state": "open", "issues": [{"number": 1, "title": "x"}]}})
        );
    }

    // A second push is another key.
    let again = sink.push(push()).await.unwrap();
    assert_ne!(again.idempotency_key, key);
}

#[tokio::test]
async fn a_4xx_is_final_and_carries_the_backends_message() {
    let (url, backend) = start(vec![(
        StatusCode::UNPROCESSABLE_ENTITY,
        vec![],
        error_json("invalid_data", "data.issues must be an array"),
    )])
    .await;
    let sink = HttpSink::new(config(&url)).unwrap();
    let error = sink.push(push()).await.unwrap_err();
    match &error {
        SinkError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!(*status, 422);
            assert_eq!(code.as_deref(), Some("invalid_data"));
            assert_eq!(message, "data.issues must be an array");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(error.to_string().contains("422"), "{error}");
    assert_eq!(backend.seen.lock().unwrap().len(), 1, "no retry on 422");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, backend) = start(vec![(
        StatusCode::TOO_MANY_REQUESTS,
        vec![("retry-after", "1")],
        error_json("rate_limited", "slow down"),
    )])
    .await;
    let sink = HttpSink::new(config(&url)).unwrap();
    let receipt = sink.push(push()).await.unwrap();
    assert_eq!(receipt.attempts, 2);
    let seen = backend.seen.lock().unwrap().clone();
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the 1 s Retry-After"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_bound_ends_the_push() {
    let (url, backend) = start(vec![(
        StatusCode::TOO_MANY_REQUESTS,
        vec![("retry-after", "3600")],
        error_json("rate_limited", "slow down"),
    )])
    .await;
    let sink = HttpSink::new(config(&url)).unwrap();
    let started = Instant::now();
    let error = sink.push(push()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(error, SinkError::Unreachable { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("3600"), "{error}");
    assert_eq!(backend.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_backend_fails_after_bounded_attempts_and_time() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = config(&url);
    config.max_attempts = 3;
    let sink = HttpSink::new(config).unwrap();
    let started = Instant::now();
    let error = sink.push(push()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &error {
        SinkError::Unreachable {
            attempts,
            last_error,
            ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(last_error.contains("connect"), "{last_error}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("unreachable after 3 attempt"), "{message}");
    assert!(!message.contains("t0ken"));
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out_and_is_retried() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            holder.lock().unwrap().push(socket);
        }
    });
    let mut config = config(&url);
    config.max_attempts = 2;
    config.timeout = Duration::from_millis(200);
    let sink = HttpSink::new(config).unwrap();
    let started = Instant::now();
    let error = sink.push(push()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&error, SinkError::Unreachable { attempts: 2, last_error, .. } if last_error.contains("timed out")),
        "{error:?}"
    );
    assert_eq!(held.lock().unwrap().len(), 2, "one connection per attempt");
}

#[tokio::test]
async fn bad_pushes_fail_before_any_request() {
    let (url, backend) = start(vec![]).await;
    let sink = HttpSink::new(config(&url)).unwrap();
    let mut bad = push();
    bad.channel = "Not A Channel".into();
    assert!(matches!(sink.push(bad).await, Err(SinkError::Invalid(_))));
    assert!(backend.seen.lock().unwrap().is_empty());
}
