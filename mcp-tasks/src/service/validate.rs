//! Input rules shared by every entry point. Each failure says what is wrong and what is valid.

use uuid::Uuid;

use crate::{Error, Result};

pub(crate) const MAX_TITLE: usize = 500;
pub(crate) const MAX_DESCRIPTION: usize = 20_000;
pub(crate) const MAX_COMMENT: usize = 10_000;
const MAX_ACTOR: usize = 255;
/// The longest id, email or GitHub username worth looking up (an email's limit).
pub(crate) const MAX_USER_KEY: usize = 254;

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

/// Trims `value` and checks its length and that it holds no NUL (which PostgreSQL refuses).
fn text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.contains('\0') {
        return Err(invalid(field, "must not contain NUL characters"));
    }
    let length = value.chars().count();
    if length > max {
        return Err(invalid(
            field,
            format!("at most {max} characters (got {length})"),
        ));
    }
    Ok(value.to_owned())
}

fn required(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = text(field, value, max)?;
    if value.is_empty() {
        return Err(invalid(field, "required and must not be blank"));
    }
    Ok(value)
}

/// An optional text; blank counts as absent.
pub(crate) fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>> {
    value
        .map(|v| text(field, v, max))
        .transpose()
        .map(|v| v.filter(|v| !v.is_empty()))
}

pub(crate) fn title(value: &str) -> Result<String> {
    required("title", value, MAX_TITLE)
}

pub(crate) fn description(value: &str) -> Result<String> {
    text("description", value, MAX_DESCRIPTION)
}

pub(crate) fn comment(value: &str) -> Result<String> {
    required("comment", value, MAX_COMMENT)
}

pub(crate) fn actor(value: &str) -> Result<String> {
    required("actor", value, MAX_ACTOR)
}

pub(crate) fn task_id(value: &str) -> Result<Uuid> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        invalid(
            "task_id",
            format!(
                "{:?} is not a task id (ids look like 019a9c4e-6f1b-7c3e-9a51-2b8d0c7e4f10)",
                value.chars().take(64).collect::<String>()
            ),
        )
    })
}

/// Emails are compared and stored lower-case.
pub(crate) fn email(value: &str) -> Result<String> {
    let value = required("email", value, 254)?.to_lowercase();
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !valid {
        return Err(invalid(
            "email",
            format!("{value:?} is not an email address like alice@example.com"),
        ));
    }
    Ok(value)
}

/// GitHub's rules: 1 to 39 letters, digits or single hyphens, not at either end.
pub(crate) fn github_username(value: &str) -> Result<String> {
    let value = value.trim().trim_start_matches('@');
    let valid = (1..=39).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--");
    if !valid {
        return Err(invalid(
            "github_username",
            format!(
                "{:?} is not a GitHub username (1-39 letters, digits or single hyphens)",
                value.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(value.to_owned())
}

/// `owner/name` with GitHub's characters.
pub(crate) fn repository(value: &str) -> Result<String> {
    let value = value.trim();
    let valid = value.split_once('/').is_some_and(|(owner, name)| {
        (1..=39).contains(&owner.len())
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && (1..=100).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && name != "."
            && name != ".."
    });
    if !valid {
        return Err(invalid(
            "repository",
            format!(
                "{:?} is not of the form owner/name, e.g. acme/api",
                value.chars().take(100).collect::<String>()
            ),
        ));
    }
    Ok(value.to_owned())
}

/// Up to three `(candidate, shown)` pairs close to `given`: a case-insensitive edit distance
/// of at most a quarter of its length (at least 2), or one containing the other. Each shown
/// value appears once, closest first.
pub(crate) fn close_matches<'a>(
    given: &str,
    candidates: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let given = given.to_lowercase();
    let given_len = given.chars().count();
    let threshold = (given_len / 4).max(2);
    let mut best: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (candidate, shown) in candidates {
        let candidate = candidate.to_lowercase();
        let contains = given_len >= 3 && (candidate.contains(&given) || given.contains(&candidate));
        // Lengths further apart than the threshold cannot be within it: skip the quadratic work.
        let distance = if given_len.abs_diff(candidate.chars().count()) > threshold {
            usize::MAX
        } else {
            edit_distance(&given, &candidate)
        };
        if distance <= threshold || contains {
            let score = if distance <= threshold {
                distance
            } else {
                threshold + 1
            };
            let entry = best.entry(shown).or_insert(score);
            *entry = (*entry).min(score);
        }
    }
    let mut ranked: Vec<(usize, &str)> = best.into_iter().map(|(shown, d)| (d, shown)).collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(3)
        .map(|(_, shown)| shown.to_owned())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(title("  Fix login  ").unwrap(), "Fix login");
        assert!(title("   ").is_err());
        assert!(title(&"x".repeat(500)).is_ok());
        let err = title(&"é".repeat(501)).unwrap_err().to_string();
        assert_eq!(err, "invalid title: at most 500 characters (got 501)");
        assert!(title("a\0b").is_err());
    }

    #[test]
    fn emails_usernames_and_repositories() {
        assert_eq!(email(" Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert_eq!(github_username("@octo-cat").unwrap(), "octo-cat");
        for bad in ["", "-a", "a-", "a--b", "a_b", &"a".repeat(40)] {
            assert!(github_username(bad).is_err(), "{bad}");
        }
        assert_eq!(repository("acme/api.rs").unwrap(), "acme/api.rs");
        for bad in [
            "acme",
            "acme/",
            "/api",
            "acme/api/x",
            "ac me/api",
            "acme/..",
            "a_b/api",
        ] {
            assert!(repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn close_matches_find_typos_and_fragments() {
        let users = [
            ("alice@example.com", "alice@example.com"),
            ("bob@example.com", "bob@example.com"),
            ("alicat", "alice@example.com"),
        ];
        assert_eq!(
            close_matches("alice@exmaple.com", users.into_iter()),
            ["alice@example.com"]
        );
        assert_eq!(close_matches("bob", users.into_iter()), ["bob@example.com"]);
        assert!(close_matches("zed@nowhere.org", users.into_iter()).is_empty());
        // One user found through two of its names is suggested once.
        let twice = [
            ("alice@example.com", "alice@example.com"),
            ("alice", "alice@example.com"),
        ];
        assert_eq!(
            close_matches("alice@example.co", twice.into_iter()),
            ["alice@example.com"]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
