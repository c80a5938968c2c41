//! What a push must look like: channel names, repositories, titles, and the shape of the data of
//! the channels the dashboard draws (`issues`, `pull_requests`, `commits`, `tasks`). Every check
//! names the field and what is valid; a push that fails one changes nothing.

// Titles are limited as sinks check them before they send.
use mcp_core::MAX_TITLE_CHARS;
use serde_json::Value;

use crate::{Error, Result};

/// Longest idempotency key.
pub(crate) const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// Names that are paths of the API, not channels.
const RESERVED: &[&str] = &["ws", "stream", "sync", "sync-issues"];

/// The channels whose data has a shape the page relies on.
pub const KNOWN_CHANNELS: &[&str] = &["issues", "pull_requests", "commits", "tasks"];

pub(crate) fn channel(name: &str) -> Result<()> {
    let invalid = |message: String| Error::Invalid {
        field: "channel",
        message,
    };
    // The same rule sinks check before they send (`mcp_core::is_channel_name`).
    if !mcp_core::is_channel_name(name) {
        return Err(invalid(format!(
            "{:?} is not a channel name: use 1-64 of a-z, 0-9, _ and -, starting with a letter or digit",
            truncate(name, 80)
        )));
    }
    if RESERVED.contains(&name) {
        return Err(invalid(format!(
            "{name:?} is reserved; choose another name"
        )));
    }
    Ok(())
}

/// `owner/name`, GitHub's characters.
pub(crate) fn repository(name: &str) -> Result<()> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match name.split_once('/') {
        Some((owner, repo)) if part_ok(owner) && part_ok(repo) => Ok(()),
        _ => Err(Error::Invalid {
            field: "repository",
            message: format!(
                "{:?} is not owner/name (letters, digits, -, _ and . on each side)",
                truncate(name, 80)
            ),
        }),
    }
}

pub(crate) fn title(title: &str) -> Result<()> {
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Error::Invalid {
            field: "title",
            message: format!("at most {MAX_TITLE_CHARS} characters"),
        });
    }
    if title.contains('\0') {
        return Err(Error::Invalid {
            field: "title",
            message: "must not contain NUL characters".into(),
        });
    }
    Ok(())
}

pub(crate) fn idempotency_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::Invalid {
            field: "Idempotency-Key",
            message: format!("1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        });
    }
    Ok(())
}

/// The data of a push to `channel`: an object or an array, and for the known channels the
/// fields the page draws.
pub(crate) fn data(channel: &str, data: &Value) -> Result<()> {
    let schema = |message: String| Error::Schema {
        channel: channel.to_owned(),
        message,
    };
    if !data.is_object() && !data.is_array() {
        return Err(schema("data must be a JSON object or array".into()));
    }
    // PostgreSQL's JSONB cannot hold U+0000, so no store may accept it.
    if let Some(path) = nul_at(data, &mut String::from("data")) {
        return Err(schema(format!("{path} contains a NUL character (U+0000)")));
    }
    match channel {
        "issues" => items(
            data,
            "issues",
            &[("number", Kind::Integer), ("title", Kind::String)],
        ),
        "pull_requests" => items(
            data,
            "pull_requests",
            &[("number", Kind::Integer), ("title", Kind::String)],
        ),
        "commits" => items(
            data,
            "days",
            &[("date", Kind::Date), ("total", Kind::Integer)],
        ),
        "tasks" => items(
            data,
            "tasks",
            &[
                ("id", Kind::String),
                ("title", Kind::String),
                ("status", Kind::String),
            ],
        ),
        _ => Ok(()),
    }
    .map_err(schema)
}

/// Where in `value` a string (or a key) holds a NUL character, as `data.a[2].b`. Depth is
/// bounded by the JSON parser's recursion limit.
fn nul_at(value: &Value, path: &mut String) -> Option<String> {
    match value {
        Value::String(text) if text.contains('\0') => Some(path.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            let length = path.len();
            path.push_str(&format!("[{index}]"));
            let found = nul_at(item, path);
            path.truncate(length);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let length = path.len();
            path.push('.');
            path.push_str(&key.replace('\0', "\\u0000"));
            let found = if key.contains('\0') {
                Some(path.clone())
            } else {
                nul_at(item, path)
            };
            path.truncate(length);
            found
        }),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    String,
    /// `YYYY-MM-DD`.
    Date,
}

/// `data.<list>` is an array of objects, each with `fields` of the given kinds.
fn items(data: &Value, list: &str, fields: &[(&str, Kind)]) -> std::result::Result<(), String> {
    let Some(items) = data.get(list) else {
        return Err(format!("data.{list} is required (an array)"));
    };
    let Some(items) = items.as_array() else {
        return Err(format!("data.{list} must be an array"));
    };
    for (index, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(format!("data.{list}[{index}] must be an object"));
        }
        for (field, kind) in fields {
            let value = item.get(*field);
            let ok = match kind {
                Kind::Integer => value.is_some_and(|v| v.is_i64() || v.is_u64()),
                Kind::String => value.is_some_and(Value::is_string),
                Kind::Date => value
                    .and_then(Value::as_str)
                    .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()),
            };
            if !ok {
                let expected = match kind {
                    Kind::Integer => "an integer",
                    Kind::String => "a string",
                    Kind::Date => "a date like 2026-12-01",
                };
                return Err(format!("data.{list}[{index}].{field} must be {expected}"));
            }
        }
    }
    Ok(())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn channel_names() {
        for good in ["issues", "pull_requests", "my-report", "q4"] {
            assert!(channel(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Issues",
            "-x",
            "_x",
            "a b",
            "ws",
            "stream",
            "sync-issues",
            &"x".repeat(65),
        ] {
            assert!(channel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repositories() {
        assert!(repository("acme/api").is_ok());
        assert!(repository("Acme-Corp/api.rs_2").is_ok());
        for bad in [
            "acme",
            "/api",
            "acme/",
            "acme/api/x",
            "ac me/api",
            "acme/a<b",
        ] {
            assert!(repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_channels_have_shapes() {
        assert!(data("issues", &json!({"issues": [{"number": 1, "title": "x"}]})).is_ok());
        assert!(data("issues", &json!({"issues": []})).is_ok());
        let error = data(
            "issues",
            &json!({"issues": [{"number": "1", "title": "x"}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("data.issues[0].number must be an integer"),
            "{error}"
        );
        assert!(data("issues", &json!({})).is_err());
        assert!(
            data(
                "commits",
                &json!({"days": [{"date": "2026-12-01", "total": 3}]})
            )
            .is_ok()
        );
        assert!(
            data(
                "commits",
                &json!({"days": [{"date": "yesterday", "total": 3}]})
            )
            .is_err()
        );
        assert!(data("custom", &json!([1, 2])).is_ok());
        assert!(data("custom", &json!("text")).is_err());
        assert!(data("custom", &json!(null)).is_err());
        let error = data(
            "custom",
            &json!({"rows": [{"ok": "x"}, {"bad": "a\u{0}b"}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("data.rows[1].bad contains a NUL"), "{error}");
        assert!(data("custom", &json!({"a\u{0}": 1})).is_err());
    }
}
