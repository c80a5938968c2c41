//! The merged log of every upstream: their stderr lines, their MCP log messages and the
//! gateway's own notes about them (started, exited, restarting), kept in a bounded ring and
//! announced as `log_entry` events.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::Events;

/// How many entries the gateway keeps for `GET /api/logs`.
pub(crate) const LOG_CAPACITY: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    // MCP logging is deprecated (SEP-2577) but 2025-11-25 servers and clients still use it.
    #[allow(deprecated)]
    pub(crate) fn from_mcp(level: rmcp::model::LoggingLevel) -> Self {
        use rmcp::model::LoggingLevel as L;
        match level {
            L::Debug => Self::Debug,
            L::Info | L::Notice => Self::Info,
            L::Warning => Self::Warning,
            _ => Self::Error,
        }
    }

    /// A stderr line has no level of its own; most servers' log formats put one near the start.
    pub(crate) fn guess(line: &str) -> Self {
        let head: String = line
            .chars()
            .take(48)
            .collect::<String>()
            .to_ascii_uppercase();
        if head.contains("ERROR") || head.contains("FATAL") || head.contains("PANIC") {
            Self::Error
        } else if head.contains("WARN") {
            Self::Warning
        } else if head.contains("DEBUG") || head.contains("TRACE") {
            Self::Debug
        } else {
            Self::Info
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The child's stderr.
    Stderr,
    /// An MCP `notifications/message` from the upstream.
    Mcp,
    /// The gateway, about the upstream.
    Hub,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Increases by one per entry since the hub started.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub server: String,
    pub level: LogLevel,
    pub source: LogSource,
    pub message: String,
}

/// Which entries a query wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogQuery {
    pub(crate) server: Option<String>,
    pub(crate) min_level: Option<LogLevel>,
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) after_seq: Option<u64>,
    pub(crate) limit: usize,
}

impl LogQuery {
    pub(crate) fn matches(&self, entry: &LogEntry) -> bool {
        self.server.as_deref().is_none_or(|s| s == entry.server)
            && self.min_level.is_none_or(|l| entry.level >= l)
            && self.since.is_none_or(|t| entry.at >= t)
            && self.after_seq.is_none_or(|s| entry.seq > s)
    }
}

pub(crate) struct LogBook {
    ring: Mutex<Ring>,
    events: Arc<Events>,
}

struct Ring {
    entries: VecDeque<LogEntry>,
    next: u64,
}

impl LogBook {
    pub(crate) fn new(events: Arc<Events>) -> Self {
        Self {
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(256),
                next: 1,
            }),
            events,
        }
    }

    pub(crate) async fn record(
        &self,
        server: &str,
        level: LogLevel,
        source: LogSource,
        message: String,
    ) {
        let entry = {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            let entry = LogEntry {
                seq: ring.next,
                at: Utc::now(),
                server: server.to_owned(),
                level,
                source,
                message,
            };
            ring.next += 1;
            if ring.entries.len() == LOG_CAPACITY {
                ring.entries.pop_front();
            }
            ring.entries.push_back(entry.clone());
            entry
        };
        let data = serde_json::to_value(&entry).unwrap_or_default();
        self.events.publish("log_entry", server, data).await;
    }

    /// The newest `query.limit` matching entries, oldest first.
    pub(crate) fn query(&self, query: &LogQuery) -> Vec<LogEntry> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<LogEntry> = ring
            .entries
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .take(query.limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }

    /// The servers that have entries, for the page's filter.
    pub(crate) fn sources(&self) -> Vec<String> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut servers: Vec<String> = ring.entries.iter().map(|e| e.server.clone()).collect();
        servers.sort();
        servers.dedup();
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_guessed_from_the_start_of_a_line() {
        assert_eq!(
            LogLevel::guess("2026-12-02T07:00:00Z ERROR boom"),
            LogLevel::Error
        );
        assert_eq!(LogLevel::guess(" WARN  slow"), LogLevel::Warning);
        assert_eq!(LogLevel::guess("debug: x"), LogLevel::Debug);
        assert_eq!(LogLevel::guess("listening on 127.0.0.1"), LogLevel::Info);
        // A level far into the message is its content, not its level.
        let late = format!("{} error", "x".repeat(60));
        assert_eq!(LogLevel::guess(&late), LogLevel::Info);
    }

    #[tokio::test]
    async fn the_ring_keeps_the_newest_entries_and_filters_them() {
        let events = Arc::new(Events::new(Arc::new(mcp_core::MemoryBus::default())));
        let book = LogBook::new(events);
        for n in 0..(LOG_CAPACITY + 10) {
            let (server, level) = if n % 2 == 0 {
                ("a", LogLevel::Info)
            } else {
                ("b", LogLevel::Error)
            };
            book.record(server, level, LogSource::Stderr, format!("line {n}"))
                .await;
        }
        let all = book.query(&LogQuery {
            limit: usize::MAX,
            ..LogQuery::default()
        });
        assert_eq!(all.len(), LOG_CAPACITY);
        assert_eq!(all[0].seq, 11, "the oldest ten were dropped");
        let errors = book.query(&LogQuery {
            min_level: Some(LogLevel::Warning),
            limit: 3,
            ..LogQuery::default()
        });
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.server == "b"));
        assert!(errors[0].seq < errors[2].seq, "oldest first");
        assert_eq!(errors[2].seq, (LOG_CAPACITY + 10) as u64);
        assert_eq!(book.sources(), vec!["a".to_owned(), "b".to_owned()]);
    }
}
