//! The crate's one error type. Messages are what an agent reads in an `isError` result: they
//! say what went wrong and, where there is one, what to do about it.

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is malformed.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// GitHub answered 404: the thing does not exist, or the token may not see it.
    #[error("{what} not found (or the token cannot see it)")]
    NotFound { what: String },
    /// GitHub answered 401.
    #[error("github rejected the token (401 bad credentials): it is invalid, expired or revoked")]
    BadToken,
    /// The primary rate limit is used up until `reset`.
    #[error(
        "github rate limit exhausted{}; it resets at {} ({} s from now)",
        if *.authenticated { "" } else { " (unauthenticated: 60 requests an hour; a token raises it)" },
        .reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (*.reset - Utc::now()).num_seconds().max(0)
    )]
    RateLimited {
        reset: DateTime<Utc>,
        authenticated: bool,
    },
    /// A secondary (abuse) rate limit that asks for a longer wait than we make.
    #[error("github secondary rate limit hit; retry in {retry_after_secs} s")]
    SecondaryRateLimit { retry_after_secs: u64 },
    /// GitHub answered 403 for another reason (missing scope, SSO, blocked).
    #[error("github refused access (403): {message}")]
    Forbidden { message: String },
    /// GitHub could not be reached, or answered 5xx, on every attempt.
    #[error("github unavailable after {attempts} attempt(s): {last_error}")]
    Unavailable { attempts: u32, last_error: String },
    /// Any other refusal, with GitHub's own message (422 for a bad search query, …).
    #[error("github answered {status}: {message}")]
    Api { status: u16, message: String },
    /// GitHub's answer was not what its API documents.
    #[error("unexpected answer from github for {path}: {message}")]
    Decode { path: String, message: String },
    /// The GitHub client cannot be built from its configuration.
    #[error("invalid github configuration: {0}")]
    Config(String),
    /// A push tool was called with no dashboard backend configured.
    #[error(
        "no dashboard backend is configured: set BACKEND_API_URL (and BACKEND_API_TOKEN if the \
         backend requires one) in this server's environment"
    )]
    NoSink,
    /// The dashboard backend refused the push or could not be reached.
    #[error(transparent)]
    Sink(#[from] mcp_core::SinkError),
    /// The MCP transport failed.
    #[error("transport: {0}")]
    Transport(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
