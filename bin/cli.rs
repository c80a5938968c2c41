//! What the binaries share: logging on stderr, credentials from flags and the environment,
//! redacting database URLs for logs, and the shutdown signal. Each binary includes this file
//! with `mod cli;`.

#![allow(dead_code)] // Each binary uses part of this.

use std::path::Path;

use anyhow::{Context, bail};
use mcp_core::auth::{ApiKey, AuthConfig};

/// Logs to stderr (stdout belongs to MCP on stdio), filtered by the environment variable
/// `filter_var` (default `info`).
pub(crate) fn init_logging(filter_var: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(filter_var)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Credentials from a keys file (`<scope> <key> [name]` per line), a list of the same
/// separated by commas (from `list_source`, named in errors), and an HS256 secret.
pub(crate) fn auth_config(
    keys_file: Option<&Path>,
    keys_list: Option<&str>,
    list_source: &str,
    jwt_secret: Option<String>,
    rate_limit: u32,
) -> anyhow::Result<AuthConfig> {
    let mut api_keys = match keys_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API keys file {}", path.display()))?;
            ApiKey::parse_list(&text, "file")
                .with_context(|| format!("in the API keys file {}", path.display()))?
        }
        None => Vec::new(),
    };
    if let Some(list) = keys_list {
        api_keys.extend(
            ApiKey::parse_list(&list.replace(',', "\n"), "env")
                .with_context(|| format!("in {list_source}"))?,
        );
    }
    let jwt_secret = match jwt_secret {
        Some(secret) if secret.len() < 32 => bail!("JWT_SECRET must be at least 32 bytes"),
        Some(secret) => Some(secret.into_bytes()),
        None => None,
    };
    Ok(AuthConfig {
        api_keys,
        jwt_secret,
        rate_limit: Some(rate_limit).filter(|rate| *rate > 0),
        audience: None,
    })
}

/// A URL without its password, for logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives during start-up is not lost (and does
/// not kill the process with the default action).
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for signals; stop with end of input");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/tasks"),
            "postgres://app:***@db:5432/tasks"
        );
        assert_eq!(redact("postgres://app@db/tasks"), "postgres://app@db/tasks");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
