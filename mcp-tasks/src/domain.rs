//! The task domain: users, repositories, tasks, comments and history, and their enumerations.

use std::{fmt, str::FromStr};

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The current time at the precision every store keeps (microseconds), so a value read back
/// equals the value written whichever store holds it.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in the order they are documented.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(crate::Error::Invalid {
                        field: $what,
                        message: format!(
                            "{s:?} is not one of {}",
                            [$($text),+].join(", ")
                        ),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// Where a task stands.
    Status, "status" {
        NotStarted => "not_started",
        InProgress => "in_progress",
        Blocked => "blocked",
        InReview => "in_review",
        Completed => "completed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// How urgent a task is.
    Priority, "priority" {
        Low => "low",
        Medium => "medium",
        High => "high",
        Urgent => "urgent",
    }
);

string_enum!(
    /// How much work a task is.
    Complexity, "complexity" {
        Low => "low",
        Medium => "medium",
        High => "high",
    }
);

/// A person tasks can be assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_username: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A code repository, named `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Repository {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A task, with its assignee's email and its repository's name resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub complexity: Complexity,
    pub assignee_id: Uuid,
    /// The assignee's email.
    pub assignee: String,
    /// `owner/name`.
    pub repository: String,
    pub created_by: String,
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increases by one on every change; send it back as `expected_version` to update safely.
    pub version: i64,
}

/// A comment on a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Comment {
    pub id: Uuid,
    pub task_id: Uuid,
    pub comment: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// One recorded change of one field of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_value: Option<String>,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// A task with its comments and history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct TaskDetail {
    pub task: Task,
    pub comments: Vec<Comment>,
    pub history: Vec<HistoryEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text_and_json() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().expect("parses"), *status);
            assert_eq!(
                serde_json::to_value(status).expect("serializes"),
                serde_json::Value::from(status.as_str())
            );
        }
        let err = "done".parse::<Status>().expect_err("not a status");
        assert_eq!(
            err.to_string(),
            "invalid status: \"done\" is not one of not_started, in_progress, blocked, in_review, completed, cancelled"
        );
    }
}
