//! The [`Sink`] seam: push one JSON envelope (channel, repository, title, data) somewhere and
//! get a receipt back. [`HttpSink`] POSTs it to a dashboard backend (the hub's
//! `/api/dashboard/sync/{channel}`) with retries and an idempotency key.

mod http;

pub use http::{HttpSink, HttpSinkConfig};

use serde::{Deserialize, Serialize};

/// The longest title a push may carry, in characters (the hub's limit).
pub const MAX_TITLE_CHARS: usize = 200;

/// One payload for a dashboard channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// `^[a-z0-9][a-z0-9_-]{0,63}$`, e.g. `issues`, `pull_requests`, `commits`.
    pub channel: String,
    /// `owner/name` when the payload belongs to one repository.
    pub repository: Option<String>,
    /// At most [`MAX_TITLE_CHARS`] characters.
    pub title: String,
    pub data: serde_json::Value,
}

impl Push {
    /// Checks what the backend would refuse anyway, so a bad push fails before any request.
    pub fn validate(&self) -> Result<(), SinkError> {
        if !is_channel_name(&self.channel) {
            return Err(SinkError::Invalid(format!(
                "channel {:?} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$",
                self.channel.chars().take(80).collect::<String>()
            )));
        }
        let title_chars = self.title.chars().count();
        if title_chars > MAX_TITLE_CHARS {
            return Err(SinkError::Invalid(format!(
                "title is {title_chars} characters; at most {MAX_TITLE_CHARS}"
            )));
        }
        Ok(())
    }
}

/// `^[a-z0-9][a-z0-9_-]{0,63}$` without a regex engine.
pub fn is_channel_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit() => {}
        _ => return false,
    }
    bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// What the backend answered to an accepted push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub channel: String,
    pub repository: Option<String>,
    /// The HTTP status of the accepting response.
    pub status: u16,
    /// The backend's JSON receipt (`event_id`, `received_at`, `duplicate`, `broadcast`);
    /// `null` when it sent no JSON.
    pub body: serde_json::Value,
    /// Requests made, the accepted one included.
    pub attempts: u32,
    /// The `Idempotency-Key` sent with every attempt of this push.
    pub idempotency_key: String,
}

/// Why a push did not land.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The push itself is malformed (channel name, title length, unserializable data).
    #[error("invalid push: {0}")]
    Invalid(String),
    /// The sink cannot be built from its configuration.
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// No attempt was accepted: connection failures, timeouts, 408, 429 or 5xx every time (or
    /// the backend asked to wait longer than the sink waits).
    #[error("dashboard backend at {url} unreachable after {attempts} attempt(s): {last_error}")]
    Unreachable {
        url: String,
        attempts: u32,
        last_error: String,
    },
    /// The backend refused the push (a 4xx other than 408 and 429); retrying would not help.
    #[error("dashboard backend rejected the push with status {status}: {message}")]
    Rejected {
        status: u16,
        /// The `error.code` of the backend's JSON error, when it sent one.
        code: Option<String>,
        message: String,
    },
}

/// Somewhere a [`Push`] can go: a dashboard backend over HTTP, an event bus, stdout.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `push`, retrying as the implementation sees fit, and returns the receipt of the
    /// attempt that was accepted.
    async fn push(&self, push: Push) -> Result<Receipt, SinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_contract() {
        for good in ["issues", "pull_requests", "0", "a-b_c", &"a".repeat(64)] {
            assert!(is_channel_name(good), "{good}");
        }
        for bad in ["", "_x", "-x", "Issues", "a b", "a/b", &"a".repeat(65), "é"] {
            assert!(!is_channel_name(bad), "{bad}");
        }
    }

    #[test]
    fn long_titles_are_refused() {
        let push = Push {
            channel: "issues".into(),
            repository: None,
            title: "x".repeat(201),
            data: serde_json::json!({}),
        };
        assert!(matches!(push.validate(), Err(SinkError::Invalid(_))));
    }
}
