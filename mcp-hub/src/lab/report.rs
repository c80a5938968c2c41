//! What a run found, as stored and printed: the JSON result, and the summary table.

use std::{collections::BTreeMap, fmt::Write as _};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{ErrorKind, ServerInfo};

/// One run of a suite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub suite: String,
    pub target: String,
    pub started_at: DateTime<Utc>,
    /// Wall time of the whole run, the session's `initialize` included.
    pub duration_ms: f64,
    /// The session every step but `initialize` steps uses, opened before the first step.
    pub session: SessionReport,
    pub steps: Vec<StepReport>,
    /// Every step ran and met all its expectations.
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionReport {
    /// Connect (or spawn) and `initialize` until its answer, then `notifications/initialized`.
    pub initialize_ms: f64,
    pub server: Option<ServerInfo>,
    /// Why the session could not be opened; no step ran.
    pub error: Option<String>,
}

/// One step's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub name: String,
    pub kind: String,
    pub load: LoadReport,
    /// Requests sent (and answered or failed).
    pub requests: u64,
    pub ok: u64,
    /// Failed requests by kind (every kind present, zero or not).
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first few failures of each kind, as they were reported.
    pub error_samples: Vec<ErrorSample>,
    /// From the first request sent to the last answered.
    pub elapsed_ms: f64,
    /// Requests finished per second over `elapsed_ms`.
    pub throughput: f64,
    /// Every request's latency, failures included. In a fixed-rate step, a request that fell
    /// due while every worker was busy is measured from when it was due (the wait for the
    /// slow answers before it counts); one sent on time is measured from its sending.
    pub latency: Latency,
    /// How late requests were sent behind their due time (fixed-rate steps): the queueing
    /// behind slow answers, and the lab's own timer; large values with a fast server mean
    /// the lab was short of workers (`concurrency`) or CPU.
    pub send_lag_p99_ms: Option<f64>,
    /// Latency counts in logarithmic buckets, for the histogram chart.
    pub histogram: Vec<Bucket>,
    /// One row per second of the step.
    pub timeline: Vec<Second>,
    pub expectations: Vec<Verdict>,
    /// What the step's chaos did and how the target came through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosReport>,
    pub passed: bool,
}

/// A step's chaos: what was done through the hub, when (ms since the step started), the
/// requests that finished before, during and after the fault, and the recovery time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChaosReport {
    /// `kill` or `inject`.
    pub action: String,
    /// The upstream's id, and the hub it was asked of.
    pub server: String,
    pub hub: String,
    /// What was injected (an `inject`).
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub for_ms: Option<f64>,
    /// When it was due.
    pub at_ms: f64,
    /// When the lab sent the kill or the fault; `None` if the hub did not take it.
    pub started_ms: Option<f64>,
    /// When the fault was over: a kill is over once sent (the upstream's recovery is what
    /// follows); an injected fault when the hub confirmed clearing it.
    pub ended_ms: Option<f64>,
    /// The child's pid the hub killed, and the upstream's pid when the step was over.
    pub killed_pid: Option<u32>,
    pub pid_after: Option<u32>,
    /// Requests by when they finished: before the fault started; during it (for a kill, from
    /// the kill until recovery); after.
    pub before: Window,
    pub during: Window,
    pub after: Window,
    /// From the fault's end to the first successful request after which none failed for a
    /// second (or until the step's last answer); `None` when that never happened.
    pub recovery_ms: Option<f64>,
    /// How `recovery_ms` was found, or why it is missing.
    pub note: Option<String>,
    /// A chaos action that failed (the hub unreachable, or refusing); the step fails.
    pub error: Option<String>,
}

/// Requests that finished within a part of a step, and how many of them failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// `count` (a number of calls), `duration` (a closed loop for a time) or `rate`.
    pub mode: String,
    pub concurrency: usize,
    /// The calls the step was to send (none for a `duration` step).
    pub calls: Option<u64>,
    pub rate: Option<f64>,
    pub duration_ms: Option<f64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorSample {
    pub kind: ErrorKind,
    pub message: String,
}

/// Requests whose latency was at most `le_ms` (and above the previous bucket's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub le_ms: f64,
    pub count: u64,
}

/// One second of a step: requests that finished in it, how many failed, and their latency.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Second {
    /// Seconds since the step started.
    pub at_s: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Whether one expectation held.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub expectation: String,
    pub passed: bool,
    pub detail: String,
}

impl RunReport {
    /// The summary table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "suite {} against {}", self.suite, self.target);
        match (&self.session.error, &self.session.server) {
            (Some(error), _) => {
                let _ = writeln!(
                    out,
                    "session: FAILED after {:.1} ms: {error}",
                    self.session.initialize_ms
                );
            }
            (None, Some(server)) => {
                let _ = writeln!(
                    out,
                    "session: {} {} (protocol {}), initialize {:.2} ms",
                    server.name,
                    server.version,
                    server.protocol_version,
                    self.session.initialize_ms
                );
            }
            (None, None) => {}
        }
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}  result",
            "step", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for step in &self.steps {
            let errors: u64 = step.errors.values().sum();
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>8} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {}",
                truncate(&step.name, 28),
                step.requests,
                errors,
                step.throughput,
                step.latency.p50,
                step.latency.p95,
                step.latency.p99,
                step.latency.max,
                if step.passed { "pass" } else { "FAIL" }
            );
            for (kind, count) in step.errors.iter().filter(|(_, count)| **count > 0) {
                let sample = step
                    .error_samples
                    .iter()
                    .find(|s| s.kind == *kind)
                    .map(|s| s.message.as_str())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {count} {}: {}",
                    kind.as_str(),
                    truncate(sample, 100)
                );
            }
            for verdict in step.expectations.iter().filter(|v| !v.passed) {
                let _ = writeln!(
                    out,
                    "    expected {}: {}",
                    verdict.expectation, verdict.detail
                );
            }
            if let Some(chaos) = &step.chaos {
                let _ = writeln!(out, "    chaos: {}", chaos.summary());
            }
        }
        let _ = writeln!(
            out,
            "{} in {:.1} s",
            if self.passed { "PASSED" } else { "FAILED" },
            self.duration_ms / 1000.0
        );
        out
    }
}

impl ChaosReport {
    /// What was done, when, and the recovery, on one line.
    pub fn summary(&self) -> String {
        let what = match self.action.as_str() {
            "kill" => format!(
                "kill {}{}",
                self.server,
                self.killed_pid
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            ),
            _ => {
                let mut parts = Vec::new();
                if let Some(ms) = self.latency_ms.filter(|ms| *ms > 0) {
                    parts.push(format!("+{ms} ms"));
                }
                if let Some(rate) = self.error_rate.filter(|r| *r > 0.0) {
                    parts.push(format!("{:.0} % errors", rate * 100.0));
                }
                format!("inject {} into {}", parts.join(", "), self.server)
            }
        };
        let when = match (self.started_ms, self.ended_ms) {
            (Some(start), Some(end)) if end > start => {
                format!("from {:.0} to {:.0} ms", start, end)
            }
            (Some(start), _) => format!("at {start:.0} ms"),
            (None, _) => format!("due at {:.0} ms", self.at_ms),
        };
        if let Some(error) = &self.error {
            return format!("{what} {when}: FAILED: {error}");
        }
        let recovery = match self.recovery_ms {
            Some(ms) => format!("recovered in {ms:.0} ms"),
            None => format!(
                "did not recover{}",
                self.note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        };
        format!(
            "{what} {when}; errors {}/{} before, {}/{} during, {}/{} after; {recovery}",
            self.before.errors,
            self.before.requests,
            self.during.errors,
            self.during.requests,
            self.after.errors,
            self.after.requests
        )
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How one step changed from a baseline run to a new one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepComparison {
    pub step: String,
    pub verdict: Change,
    /// New over baseline (1.1 = 10 % more); `None` where the baseline is zero.
    pub throughput_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub baseline_error_rate: f64,
    pub error_rate: f64,
    /// What decided the verdict.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Regressed,
    Unchanged,
    Improved,
    /// In only one of the two runs.
    Missing,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Regressed => "REGRESSED",
            Change::Unchanged => "unchanged",
            Change::Improved => "improved",
            Change::Missing => "missing",
        }
    }
}

/// Latency changes smaller than this (in ms) are noise, whatever their ratio.
const LATENCY_FLOOR_MS: f64 = 0.1;

/// Compares each step of `new` with the step of the same name in `baseline`. A step regressed
/// when its throughput (of a counted step) fell, or its p50 or p99 rose, by more than
/// `tolerance` (0.1 = 10 %; latency moves under 0.1 ms are ignored), or its error rate rose by
/// more than `tolerance` percentage points (0.1: from 1 % to over 1.1 %); it improved when
/// one of them moved as far the other way and none regressed.
pub fn compare(baseline: &RunReport, new: &RunReport, tolerance: f64) -> Vec<StepComparison> {
    let mut out = Vec::new();
    for step in &new.steps {
        let Some(before) = baseline.steps.iter().find(|s| s.name == step.name) else {
            out.push(missing(&step.name, "not in the baseline"));
            continue;
        };
        out.push(compare_step(before, step, tolerance));
    }
    for before in &baseline.steps {
        if !new.steps.iter().any(|s| s.name == before.name) {
            out.push(missing(&before.name, "not in the new run"));
        }
    }
    out
}

fn missing(step: &str, why: &str) -> StepComparison {
    StepComparison {
        step: step.to_owned(),
        verdict: Change::Missing,
        throughput_ratio: None,
        p50_ratio: None,
        p99_ratio: None,
        baseline_error_rate: 0.0,
        error_rate: 0.0,
        reasons: vec![why.to_owned()],
    }
}

fn ratio(new: f64, old: f64) -> Option<f64> {
    (old > 0.0).then(|| new / old)
}

#[allow(clippy::cast_precision_loss)] // Request counts stay far below 2^52.
fn error_rate(step: &StepReport) -> f64 {
    if step.requests == 0 {
        return 0.0;
    }
    step.errors.values().sum::<u64>() as f64 / step.requests as f64
}

fn compare_step(before: &StepReport, after: &StepReport, tolerance: f64) -> StepComparison {
    let mut worse = Vec::new();
    let mut better = Vec::new();
    let throughput_ratio = ratio(after.throughput, before.throughput);
    // A fixed-rate step's throughput is the rate asked for; only a closed loop's says how fast
    // the server is.
    if after.load.mode != "rate"
        && let Some(r) = throughput_ratio
    {
        if r < 1.0 - tolerance {
            worse.push(format!(
                "throughput {:.0}/s → {:.0}/s",
                before.throughput, after.throughput
            ));
        } else if r > 1.0 + tolerance {
            better.push(format!(
                "throughput {:.0}/s → {:.0}/s",
                before.throughput, after.throughput
            ));
        }
    }
    let mut latency = |name: &str, old: f64, new: f64| {
        if (new - old).abs() < LATENCY_FLOOR_MS {
            return;
        }
        let text = format!("{name} {old:.3} ms → {new:.3} ms");
        if new > old * (1.0 + tolerance) {
            worse.push(text);
        } else if new < old * (1.0 - tolerance) {
            better.push(text);
        }
    };
    latency("p50", before.latency.p50, after.latency.p50);
    latency("p99", before.latency.p99, after.latency.p99);
    let (old_rate, new_rate) = (error_rate(before), error_rate(after));
    // Error rates are compared in points: from 0.1 % to 0.2 % is not a regression at 10 %.
    if new_rate > old_rate + tolerance / 100.0 {
        worse.push(format!(
            "error rate {:.3} % → {:.3} %",
            old_rate * 100.0,
            new_rate * 100.0
        ));
    } else if new_rate + tolerance / 100.0 < old_rate {
        better.push(format!(
            "error rate {:.3} % → {:.3} %",
            old_rate * 100.0,
            new_rate * 100.0
        ));
    }
    let verdict = if !worse.is_empty() {
        Change::Regressed
    } else if !better.is_empty() {
        Change::Improved
    } else {
        Change::Unchanged
    };
    StepComparison {
        step: after.name.clone(),
        verdict,
        throughput_ratio,
        p50_ratio: ratio(after.latency.p50, before.latency.p50),
        p99_ratio: ratio(after.latency.p99, before.latency.p99),
        baseline_error_rate: old_rate,
        error_rate: new_rate,
        reasons: if worse.is_empty() { better } else { worse },
    }
}

/// The comparison as a table.
pub fn comparison_table(comparisons: &[StepComparison]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>10} {:>9} {:>9} {:>13}  verdict",
        "step", "req/s ×", "p50 ×", "p99 ×", "errors %"
    );
    let show = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    for c in comparisons {
        let _ = writeln!(
            out,
            "{:<28} {:>10} {:>9} {:>9} {:>13}  {}{}",
            truncate(&c.step, 28),
            show(c.throughput_ratio),
            show(c.p50_ratio),
            show(c.p99_ratio),
            format!(
                "{:.2}→{:.2}",
                c.baseline_error_rate * 100.0,
                c.error_rate * 100.0
            ),
            c.verdict.as_str(),
            if c.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", c.reasons.join("; "))
            }
        );
    }
    out
}
