//! The audit log: one entry per tool execution through the gateway (MCP or REST), saying who
//! called what, when, how it ended and how long it took. It is queryable at `/api/audit` and
//! each entry is also written to the `audit` tracing target, so a log collector keeps them past
//! the ring's bound and past restarts.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many entries `/api/audit` can show.
pub(crate) const AUDIT_CAPACITY: usize = 10_000;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tool answered with a result.
    Ok,
    /// The tool answered with an error result (`isError`).
    ToolError,
    /// The access rules refused the call; the upstream never saw it.
    Denied,
    /// No tool has that name.
    UnknownTool,
    /// The upstream was not connected.
    Unavailable,
    /// The call took longer than its timeout.
    Timeout,
    /// The caller cancelled it.
    Cancelled,
    /// The upstream failed to answer (it crashed, or broke the protocol).
    Failed,
    /// A fault an operator injected failed it; the upstream never saw it.
    Injected,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub principal: String,
    /// The tool name the caller used.
    pub tool: String,
    /// The upstream it was routed to, when there was one.
    pub server: Option<String>,
    pub outcome: Outcome,
    pub duration_ms: f64,
    /// How the call came in: `mcp` or `rest`.
    pub via: &'static str,
    pub error: Option<String>,
}

/// Which entries a query wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditQuery {
    pub(crate) principal: Option<String>,
    pub(crate) tool: Option<String>,
    pub(crate) server: Option<String>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) limit: usize,
}

#[derive(Default)]
pub(crate) struct AuditLog {
    ring: Mutex<(VecDeque<AuditEntry>, u64)>,
}

/// What an entry records, before it gets its number and time.
pub(crate) struct Record<'a> {
    pub(crate) principal: &'a str,
    pub(crate) tool: &'a str,
    pub(crate) server: Option<&'a str>,
    pub(crate) outcome: Outcome,
    pub(crate) elapsed: Duration,
    pub(crate) via: &'static str,
    pub(crate) error: Option<&'a str>,
}

impl AuditLog {
    pub(crate) fn record(&self, record: Record<'_>) {
        let mut entry = AuditEntry {
            seq: 0,
            at: Utc::now(),
            principal: record.principal.to_owned(),
            tool: record.tool.to_owned(),
            server: record.server.map(str::to_owned),
            outcome: record.outcome,
            duration_ms: record.elapsed.as_secs_f64() * 1000.0,
            via: record.via,
            error: record.error.map(str::to_owned),
        };
        tracing::info!(
            target: "audit",
            principal = %entry.principal,
            tool = %entry.tool,
            server = entry.server.as_deref().unwrap_or("-"),
            outcome = ?entry.outcome,
            duration_ms = entry.duration_ms,
            via = entry.via,
            "tool call"
        );
        // The line is written before the lock is taken: concurrent calls never wait on
        // each other's log output.
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.1 += 1;
        entry.seq = ring.1;
        if ring.0.len() == AUDIT_CAPACITY {
            ring.0.pop_front();
        }
        ring.0.push_back(entry);
    }

    /// The newest `query.limit` matching entries, newest first.
    pub(crate) fn query(&self, query: &AuditQuery) -> Vec<AuditEntry> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.0
            .iter()
            .rev()
            .filter(|e| query.principal.as_deref().is_none_or(|p| p == e.principal))
            .filter(|e| query.tool.as_deref().is_none_or(|t| t == e.tool))
            .filter(|e| query.server.is_none() || query.server.as_deref() == e.server.as_deref())
            .filter(|e| query.outcome.is_none_or(|o| o == e.outcome))
            .filter(|e| query.since.is_none_or(|t| e.at >= t))
            .take(query.limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_newest_first_and_filtered() {
        let log = AuditLog::default();
        for (principal, tool, outcome) in [
            ("key:ci", "echo", Outcome::Ok),
            ("key:ci", "crash", Outcome::Failed),
            ("anonymous", "echo", Outcome::Denied),
        ] {
            log.record(Record {
                principal,
                tool,
                server: Some("a"),
                outcome,
                elapsed: Duration::from_millis(2),
                via: "mcp",
                error: None,
            });
        }
        let all = log.query(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        });
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2, 1]);
        let ci = log.query(&AuditQuery {
            principal: Some("key:ci".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        });
        assert_eq!(ci.len(), 2);
        let denied = log.query(&AuditQuery {
            outcome: Some(Outcome::Denied),
            limit: 10,
            ..AuditQuery::default()
        });
        assert_eq!(denied[0].principal, "anonymous");
        assert!((denied[0].duration_ms - 2.0).abs() < 0.01);
    }
}
