//! Fault injection for chaos tests: an operator gives an upstream a latency that every call
//! routed to it waits first, and a share of those calls that fail without reaching it,
//! optionally for a limited time (`PUT /api/servers/{id}/fault`). The lab's chaos steps use
//! it to see how a client copes, and how fast it recovers, without touching the upstream.
//!
//! A fault lives with its upstream's supervisor: it is lost when the upstream leaves the
//! configuration or its settings change, and with the hub.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::CallError;

/// The longest latency a fault may add to each call.
pub(crate) const MAX_LATENCY_MS: u64 = 600_000;
/// The longest a fault may be set for (one with no duration lasts until it is cleared).
pub(crate) const MAX_DURATION_MS: u64 = 86_400_000;

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fault {
    /// Every call waits this long before it is sent (or failed).
    pub latency_ms: u64,
    /// The share of calls (0 to 1) that fail with an injected error.
    pub error_rate: f64,
    /// How long the fault lasts; `None` until it is cleared.
    pub duration_ms: Option<u64>,
}

impl Fault {
    /// Reads a `PUT /api/servers/{id}/fault` body. The error names the field and what it
    /// takes, for a 400 answer.
    pub(crate) fn from_json(body: &Value) -> Result<Fault, (&'static str, String)> {
        let Value::Object(map) = body else {
            return Err((
                "body",
                "must be a JSON object: {\"latency_ms\": 200, \"error_rate\": 0.5, \"duration_ms\": 3000}"
                    .to_owned(),
            ));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !["latency_ms", "error_rate", "duration_ms"].contains(&k.as_str()))
        {
            return Err((
                "body",
                format!("unknown field {unknown:?}: use latency_ms, error_rate and duration_ms"),
            ));
        }
        let whole = |field: &'static str,
                     max: u64|
         -> Result<Option<u64>, (&'static str, String)> {
            match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => match value.as_u64() {
                    Some(n) if n <= max => Ok(Some(n)),
                    _ => Err((
                        field,
                        format!(
                            "{field} must be a whole number of milliseconds from 0 to {max}, not {value}"
                        ),
                    )),
                },
            }
        };
        let latency_ms = whole("latency_ms", MAX_LATENCY_MS)?.unwrap_or(0);
        let duration_ms = whole("duration_ms", MAX_DURATION_MS)?;
        if duration_ms == Some(0) {
            return Err((
                "duration_ms",
                "duration_ms must be above 0 (leave it out for a fault that lasts until it is cleared)"
                    .to_owned(),
            ));
        }
        let error_rate = match map.get("error_rate") {
            None | Some(Value::Null) => 0.0,
            Some(value) => match value.as_f64() {
                Some(rate) if (0.0..=1.0).contains(&rate) => rate,
                _ => {
                    return Err((
                        "error_rate",
                        format!("error_rate must be a share of calls from 0 to 1, not {value}"),
                    ));
                }
            },
        };
        if latency_ms == 0 && error_rate == 0.0 {
            return Err((
                "body",
                "a fault needs latency_ms or error_rate above 0 (DELETE clears a fault)".to_owned(),
            ));
        }
        Ok(Fault {
            latency_ms,
            error_rate,
            duration_ms,
        })
    }

    /// The fault as a person reads it, for the log.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.latency_ms > 0 {
            parts.push(format!("{} ms latency", self.latency_ms));
        }
        if self.error_rate > 0.0 {
            parts.push(format!("{:.0} % errors", self.error_rate * 100.0));
        }
        let mut text = parts.join(" and ");
        match self.duration_ms {
            Some(ms) => text.push_str(&format!(" for {ms} ms")),
            None => text.push_str(" until cleared"),
        }
        text
    }
}

/// An upstream's fault as `GET /api/servers/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultStatus {
    #[serde(flatten)]
    pub fault: Fault,
    pub set_at: DateTime<Utc>,
    /// When it ends by itself, if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// Calls it delayed, and calls it failed, so far.
    pub delayed: u64,
    pub failed: u64,
}

struct Active {
    status: FaultStatus,
    expires: Option<Instant>,
    /// Which `set` this is, so an expiry timer ends only the fault it was started for.
    generation: u64,
}

/// What one call is given by the fault in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Injection {
    pub(crate) latency: Duration,
    pub(crate) fail: bool,
}

impl Injection {
    /// Waits the injected latency (the call's cancellation and timeout end the wait), then
    /// fails the call if it drew an error; `Ok` lets it go on to the upstream.
    pub(crate) async fn apply(
        self,
        server: &str,
        tool: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), CallError> {
        if !self.latency.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.latency.min(timeout)) => {}
                () = cancel.cancelled() => return Err(CallError::Cancelled),
            }
            if self.latency >= timeout {
                return Err(CallError::Timeout {
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                    after: timeout,
                });
            }
        }
        if self.fail {
            return Err(CallError::Injected {
                server: server.to_owned(),
            });
        }
        Ok(())
    }
}

/// One upstream's fault, if it has one.
#[derive(Default)]
pub(crate) struct FaultSlot {
    /// Whether a fault may be in force: calls to an upstream without one take no lock.
    armed: AtomicBool,
    active: Mutex<Option<Active>>,
    generations: AtomicU64,
}

impl FaultSlot {
    /// Sets `fault` in place of any other; its generation, for [`FaultSlot::expire`].
    pub(crate) fn set(&self, fault: Fault) -> (FaultStatus, u64) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Utc::now();
        let lasts = fault.duration_ms.map(Duration::from_millis);
        let status = FaultStatus {
            fault,
            set_at: now,
            expires_at: lasts
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| now + d),
            delayed: 0,
            failed: 0,
        };
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(Active {
            status: status.clone(),
            expires: lasts.map(|d| Instant::now() + d),
            generation,
        });
        self.armed.store(true, Ordering::Release);
        (status, generation)
    }

    /// Clears the fault in force; what it was, if there was one.
    pub(crate) fn clear(&self) -> Option<FaultStatus> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        self.armed.store(false, Ordering::Release);
        active.take().map(|a| a.status)
    }

    /// Clears the fault of `generation` if it is still the one in force.
    pub(crate) fn expire(&self, generation: u64) -> Option<FaultStatus> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.as_ref().is_some_and(|a| a.generation == generation) {
            self.armed.store(false, Ordering::Release);
            return active.take().map(|a| a.status);
        }
        None
    }

    /// The fault in force, if any (one whose time is over is not).
    pub(crate) fn status(&self) -> Option<FaultStatus> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active
            .as_ref()
            .filter(|a| a.expires.is_none_or(|e| Instant::now() < e))
            .map(|a| a.status.clone())
    }

    /// What the fault in force does to one call, counted; `None` without one.
    pub(crate) fn draw(&self) -> Option<Injection> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut guard = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let active = guard.as_mut()?;
        if active.expires.is_some_and(|e| Instant::now() >= e) {
            return None;
        }
        let fault = active.status.fault;
        let fail = fault.error_rate > 0.0 && fastrand::f64() < fault.error_rate;
        if fault.latency_ms > 0 {
            active.status.delayed += 1;
        }
        if fail {
            active.status.failed += 1;
        }
        Some(Injection {
            latency: Duration::from_millis(fault.latency_ms),
            fail,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_are_checked_field_by_field() {
        let ok = Fault::from_json(&json!({ "latency_ms": 200, "duration_ms": 1000 })).unwrap();
        assert_eq!(
            ok,
            Fault {
                latency_ms: 200,
                error_rate: 0.0,
                duration_ms: Some(1000)
            }
        );
        for (body, field) in [
            (json!({ "error_rate": 1.5 }), "error_rate"),
            (json!({ "error_rate": "half" }), "error_rate"),
            (json!({ "latency_ms": -1 }), "latency_ms"),
            (json!({ "latency_ms": 1.5 }), "latency_ms"),
            (json!({ "latency_ms": 10, "duration_ms": 0 }), "duration_ms"),
            (json!({ "latency_ms": 10, "lag": 1 }), "body"),
            (json!({}), "body"),
            (json!([1]), "body"),
        ] {
            let (named, message) = Fault::from_json(&body).unwrap_err();
            assert_eq!(named, field, "{body}: {message}");
        }
    }

    #[test]
    fn a_fault_counts_what_it_does_and_expires_by_generation() {
        let slot = FaultSlot::default();
        assert!(slot.draw().is_none());
        let (_, first) = slot.set(Fault {
            latency_ms: 0,
            error_rate: 1.0,
            duration_ms: None,
        });
        assert!(slot.draw().is_some_and(|i| i.fail));
        assert_eq!(slot.status().map(|s| s.failed), Some(1));
        let (_, second) = slot.set(Fault {
            latency_ms: 5,
            error_rate: 0.0,
            duration_ms: None,
        });
        assert!(slot.expire(first).is_none(), "an older timer ends nothing");
        assert!(slot.draw().is_some_and(|i| !i.fail));
        assert!(slot.expire(second).is_some());
        assert!(slot.status().is_none() && slot.draw().is_none());
    }
}
