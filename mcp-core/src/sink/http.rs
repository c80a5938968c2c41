//! [`HttpSink`]: POSTs a push to `{base}/api/dashboard/sync/{channel}` with a bearer token, one
//! `Idempotency-Key` (UUID v7) for all attempts of a push, a timeout per attempt and jittered
//! exponential backoff. Connection failures, timeouts, 408, 429 and 5xx are retried
//! (`Retry-After` honoured up to a bound); any other 4xx is final.
//!
//! The client is hyper-util's over hyper-rustls: rustls with the `ring` provider passed
//! explicitly (no process-wide default is installed or needed) and the system's root
//! certificates. Not reqwest: with its TLS on, every reqwest client in the same build (rmcp's
//! Streamable HTTP client in the hub's gateway, for one) would need a process-wide crypto
//! provider or panic, and reqwest's default `rustls` feature builds aws-lc (cmake, a C
//! toolchain). hyper, hyper-util, hyper-rustls and rustls are already built for octocrab.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};

use super::{Push, Receipt, Sink, SinkError};

/// How to reach the dashboard backend.
#[derive(Clone)]
#[non_exhaustive]
pub struct HttpSinkConfig {
    /// The backend's base URL (`http://127.0.0.1:8090`); a path prefix is kept.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set. Never logged.
    pub token: Option<String>,
    /// Per attempt, connecting included. Default 10 s.
    pub timeout: Duration,
    /// Attempts per push, the first included. Default 4.
    pub max_attempts: u32,
    /// The first retry waits about this long, each later one twice as long (capped at 5 s),
    /// with jitter. Default 250 ms.
    pub base_backoff: Duration,
    /// The longest `Retry-After` the sink waits out; a longer one ends the push. Default 10 s.
    pub max_retry_after: Duration,
}

impl HttpSinkConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: None,
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            base_backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(10),
        }
    }

    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

impl std::fmt::Debug for HttpSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSinkConfig")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("base_backoff", &self.base_backoff)
            .field("max_retry_after", &self.max_retry_after)
            .finish()
    }
}

/// The longest backoff between two attempts when the backend gives no `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How much of an error body goes into an error message.
const MAX_MESSAGE_CHARS: usize = 300;

/// The largest answer read from the backend (a receipt is a few hundred bytes).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A [`Sink`] that POSTs to a dashboard backend.
pub struct HttpSink {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `Bearer …`, marked sensitive.
    authorization: Option<HeaderValue>,
    timeout: Duration,
    /// The base URL without a trailing slash.
    base: String,
    max_attempts: u32,
    base_backoff: Duration,
    max_retry_after: Duration,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("base", &self.base)
            .field("token", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    pub fn new(config: HttpSinkConfig) -> Result<Self, SinkError> {
        let base = config.base_url.trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|e| {
            SinkError::Config(format!(
                "backend url {:?}: {e}",
                without_userinfo(&config.base_url)
            ))
        })?;
        let https = match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => true,
            (Some("http"), Some(_)) => false,
            _ => {
                return Err(SinkError::Config(format!(
                    "backend url {:?} must be http:// or https:// with a host",
                    without_userinfo(&config.base_url)
                )));
            }
        };
        if uri.query().is_some() {
            return Err(SinkError::Config(format!(
                "backend url {:?} must not have a query",
                without_userinfo(&config.base_url)
            )));
        }
        let authorization = match &config.token {
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        SinkError::Config(
                            "the backend token contains characters not allowed in a header".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector(https, config.timeout)?);
        Ok(Self {
            client,
            authorization,
            timeout: config.timeout,
            base: base.to_owned(),
            max_attempts: config.max_attempts.max(1),
            base_backoff: config.base_backoff,
            max_retry_after: config.max_retry_after,
        })
    }

    /// The wait before attempt `attempt + 1`: exponential, capped, with jitter over its upper
    /// half so that many clients retrying together spread out.
    fn backoff(&self, attempt: u32) -> Duration {
        crate::retry::backoff(self.base_backoff, attempt, MAX_BACKOFF)
    }
}

/// What one attempt came to.
enum Attempt {
    Accepted(Receipt),
    /// Worth another try, after at least `wait` when the backend said so.
    Retry {
        error: String,
        wait: Option<Duration>,
    },
    Final(SinkError),
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    #[tracing::instrument(skip_all, fields(channel = %push.channel))]
    async fn push(&self, push: Push) -> Result<Receipt, SinkError> {
        push.validate()?;
        let url = format!("{}/api/dashboard/sync/{}", self.base, push.channel);
        let body: Bytes = serde_json::to_vec(&serde_json::json!({
            "repository": push.repository,
            "title": push.title,
            "data": push.data,
        }))
        .map_err(|e| SinkError::Invalid(format!("data cannot be encoded as JSON: {e}")))?
        .into();
        let key = uuid::Uuid::now_v7().to_string();
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            let outcome = self.attempt(&url, &key, body.clone(), &push, attempt).await;
            let wait = match outcome {
                Attempt::Accepted(receipt) => return Ok(receipt),
                Attempt::Final(error) => return Err(error),
                Attempt::Retry { error, wait } => {
                    tracing::warn!(attempt, %error, "push failed; may retry");
                    last_error = error;
                    wait
                }
            };
            if attempt == self.max_attempts {
                break;
            }
            let delay = match wait {
                Some(wait) if wait > self.max_retry_after => {
                    return Err(SinkError::Unreachable {
                        url: without_userinfo(&url),
                        attempts: attempt,
                        last_error: format!(
                            "{last_error} (asked to retry after {} s, longer than the {} s this \
                             sink waits)",
                            wait.as_secs(),
                            self.max_retry_after.as_secs()
                        ),
                    });
                }
                Some(wait) => wait,
                None => self.backoff(attempt),
            };
            tokio::time::sleep(delay).await;
        }
        Err(SinkError::Unreachable {
            url: without_userinfo(&url),
            attempts: self.max_attempts,
            last_error,
        })
    }
}

impl HttpSink {
    async fn attempt(
        &self,
        url: &str,
        key: &str,
        body: Bytes,
        push: &Push,
        attempt: u32,
    ) -> Attempt {
        let mut request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(error) => {
                return Attempt::Final(SinkError::Invalid(format!(
                    "cannot build the request: {error}"
                )));
            }
        };
        // One deadline for connecting, sending and reading the answer.
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                let kind = if error.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                format!("{kind}: {}", crate::retry::error_chain(&error))
            })?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .map_err(|error| format!("reading the answer: {error}"))?;
            Ok::<_, String>((parts, bytes))
        };
        let (parts, bytes) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            // The push may have landed; a retry carries the same key, so it is not doubled.
            Ok(Err(error)) => return Attempt::Retry { error, wait: None },
            Err(_) => {
                return Attempt::Retry {
                    error: format!("timed out after {} ms", self.timeout.as_millis()),
                    wait: None,
                };
            }
        };
        let status = parts.status;
        if status.is_success() {
            return Attempt::Accepted(Receipt {
                channel: push.channel.clone(),
                repository: push.repository.clone(),
                status: status.as_u16(),
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                attempts: attempt,
                idempotency_key: key.to_owned(),
            });
        }
        let (code, message) = error_message(status, &bytes);
        if is_retryable(status) {
            let wait = parts
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Attempt::Retry {
                error: format!("status {}: {message}", status.as_u16()),
                wait,
            };
        }
        if status.is_redirection() {
            let location = parts
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere");
            // A redirected POST would lose its body: say where to point the sink instead.
            return Attempt::Final(SinkError::Rejected {
                status: status.as_u16(),
                code,
                message: format!("redirected to {location}; configure that url instead"),
            });
        }
        Attempt::Final(SinkError::Rejected {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// HTTP, and HTTPS with the system's root certificates (only required when the backend is
/// https: a machine without any still reaches an http:// backend).
fn connector(https: bool, timeout: Duration) -> Result<HttpsConnector<HttpConnector>, SinkError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(builder) => builder,
        Err(error) if https => {
            return Err(SinkError::Config(format!(
                "no usable root certificates for https: {error}"
            )));
        }
        Err(_) => {
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| SinkError::Config(format!("tls: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The backend's `{"error":{"code","message"}}`, or the start of whatever it sent.
fn error_message(status: StatusCode, body: &[u8]) -> (Option<String>, String) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = &value["error"];
        let code = error["code"].as_str().map(str::to_owned);
        if let Some(message) = error["message"].as_str().or(value["message"].as_str()) {
            return (code, truncate(message));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        let reason = status.canonical_reason().unwrap_or("no reason given");
        (None, reason.to_lowercase())
    } else {
        (None, truncate(text))
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    short.push('…');
    short
}

/// `url` without a `user:password@` part, for errors and logs (they reach agents and log files).
fn without_userinfo(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at))
            if at > scheme_end && !url[scheme_end + 3..at].contains('/') =>
        {
            format!("{}{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let sink = HttpSink::new(HttpSinkConfig::new("http://127.0.0.1:1")).unwrap();
        for attempt in 1..10 {
            let wait = sink.backoff(attempt);
            let full = (Duration::from_millis(250) * (1 << (attempt - 1))).min(MAX_BACKOFF);
            assert!(wait >= full / 2 && wait <= full, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn the_token_is_never_printed() {
        let config = HttpSinkConfig::new("http://127.0.0.1:1").with_token("s3cret-token");
        assert!(!format!("{config:?}").contains("s3cret"));
        let sink = HttpSink::new(config).unwrap();
        assert!(!format!("{sink:?}").contains("s3cret"));
    }

    #[test]
    fn bad_urls_are_configuration_errors() {
        for url in ["", "ftp://x", "not a url"] {
            assert!(matches!(
                HttpSink::new(HttpSinkConfig::new(url)),
                Err(SinkError::Config(_))
            ));
        }
    }

    #[test]
    fn error_bodies_become_messages() {
        let body = br#"{"error":{"code":"invalid_data","message":"data.issues must be an array","details":null}}"#;
        assert_eq!(
            error_message(StatusCode::UNPROCESSABLE_ENTITY, body),
            (
                Some("invalid_data".into()),
                "data.issues must be an array".into()
            )
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b""),
            (None, "bad gateway".into())
        );
    }

    #[test]
    fn credentials_in_a_url_are_not_repeated() {
        assert_eq!(
            without_userinfo("https://me:s3cret@hub.example/api"),
            "https://hub.example/api"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:8090"),
            "http://127.0.0.1:8090"
        );
        assert_eq!(
            without_userinfo("http://hub/path@x"),
            "http://hub/path@x",
            "an @ after the authority is not userinfo"
        );
    }
}
