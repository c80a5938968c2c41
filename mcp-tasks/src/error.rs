//! The task crate's one error type. Messages are written for the person or agent who made the
//! request: they say what was wrong and what would be valid, and never carry SQL.

/// Everything a task operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field's value is not acceptable.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },

    /// No such task, comment or user id.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },

    /// A user named by id, email or GitHub username that does not exist.
    #[error("unknown user {given:?}{}; register new users with add_user or POST /api/users", suggest(.suggestions))]
    UnknownUser {
        given: String,
        suggestions: Vec<String>,
    },

    /// A repository that has no tasks yet, where one must exist (e.g. a filter).
    #[error("unknown repository {given:?}{}", suggest(.suggestions))]
    UnknownRepository {
        given: String,
        suggestions: Vec<String>,
    },

    /// A write that carried a version other than the task's current one. Nothing was changed.
    #[error(
        "version conflict on task {task_id}: you sent version {expected} but the current version is {current}; read the task again and retry"
    )]
    Conflict {
        task_id: String,
        expected: i64,
        current: i64,
    },

    /// Something that must be unique already exists.
    #[error("{what} already exists")]
    AlreadyExists { what: String },

    /// The database failed. The details go to the log, not to the client.
    #[error("storage error; the operation was not applied")]
    Storage(#[source] BoxError),

    /// The event bus refused an event; the event stays in the outbox.
    #[error(transparent)]
    Bus(#[from] mcp_core::BusError),

    /// The MCP transport failed (e.g. the client went away before `initialize`).
    #[error("mcp transport: {0}")]
    Transport(String),

    /// The database cannot be reached (refused, unknown host, bad credentials).
    #[error("database unavailable: {0}")]
    Unavailable(BoxError),

    /// A migration failed at start.
    #[error("database migration failed: {0}")]
    Migration(BoxError),
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

/// The underlying cause of a storage failure, kept for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_names_close_matches() {
        let err = Error::UnknownUser {
            given: "alice@exmaple.com".into(),
            suggestions: vec!["alice@example.com".into()],
        };
        assert_eq!(
            err.to_string(),
            "unknown user \"alice@exmaple.com\"; did you mean alice@example.com?; register new users with add_user or POST /api/users"
        );
    }
}
