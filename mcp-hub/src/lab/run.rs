//! Running a suite: one session, each step's requests sent by workers that each keep their
//! own histograms (merged at the end, so recording costs no lock), and the step's verdicts.
//! The per-second timeline is shared: each worker keeps only the second it is in and merges
//! it when the next one begins (a lock per worker per second), so memory grows with the
//! step's seconds, not with workers × seconds. A step with chaos also counts outcomes by
//! when they finished, for its recovery time (see `chaos`).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use hdrhistogram::Histogram;
use serde_json::Value;

use super::{
    chaos::{Driver, Outcomes},
    client::{Endpoint, ErrorKind, Failure, Lane, Session},
    report::{
        Bucket, ChaosReport, ErrorSample, Latency, LoadReport, RunReport, Second, SessionReport,
        StepReport, Verdict,
    },
    suite::{Action, Expect, Load, Step, Suite, Target},
};

/// Failures of one kind kept as samples per step.
const SAMPLES_PER_KIND: usize = 3;
/// The longest latency a histogram holds; longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What a running suite has done so far, for a progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    step: Mutex<String>,
    step_index: AtomicU64,
    total: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

/// A moment of a run's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// The step running (empty before the first).
    pub step: String,
    /// Its position, from 1.
    pub step_index: u64,
    /// Requests the step will send, done so far, and failed so far.
    pub total: u64,
    pub done: u64,
    pub errors: u64,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            step: self
                .step
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            step_index: self.step_index.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn start(&self, index: usize, step: &Step) {
        *self
            .step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = step.name.clone();
        self.step_index.store(index as u64 + 1, Ordering::Relaxed);
        // Zero when only the step's duration bounds it.
        self.total
            .store(step.load.calls().unwrap_or(0), Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
    }
}

/// Runs `suite` to the end and reports what it found. A target that cannot be reached is a
/// report too (its session failed, no step ran), so a scheduled or CI run always has a
/// result to keep.
pub async fn run_suite(suite: &Suite, progress: Arc<Progress>) -> RunReport {
    let started_at = Utc::now();
    let started = Instant::now();
    let Target::Server(transport) = &suite.target;
    let target = suite.target.describe();
    let failed = |error: String, initialize_ms: f64| RunReport {
        suite: suite.name.clone(),
        target: target.clone(),
        started_at,
        duration_ms: ms(started.elapsed()),
        session: SessionReport {
            initialize_ms,
            server: None,
            error: Some(error),
        },
        steps: Vec::new(),
        passed: false,
    };
    let endpoint = match Endpoint::new(transport) {
        Ok(endpoint) => Arc::new(endpoint),
        Err(error) => return failed(error, 0.0),
    };
    let opening = Instant::now();
    let (session, server) = match tokio::time::timeout(suite.timeout, endpoint.open()).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(failure)) => return failed(failure.message, ms(opening.elapsed())),
        Err(_) => {
            return failed(
                format!(
                    "initialize not answered within {} ms",
                    suite.timeout.as_millis()
                ),
                ms(opening.elapsed()),
            );
        }
    };
    let initialize_ms = ms(opening.elapsed());
    let mut steps = Vec::with_capacity(suite.steps.len());
    for (index, step) in suite.steps.iter().enumerate() {
        progress.start(index, step);
        let context = StepContext {
            endpoint: &endpoint,
            session: &session,
            target: &suite.target,
            timeout: suite.timeout,
            progress: &progress,
        };
        steps.push(run_step(&context, step).await);
    }
    session.close().await;
    let passed = steps.iter().all(|s| s.passed);
    RunReport {
        suite: suite.name.clone(),
        target,
        started_at,
        duration_ms: ms(started.elapsed()),
        session: SessionReport {
            initialize_ms,
            server: Some(server),
            error: None,
        },
        steps,
        passed,
    }
}

/// What each request of a step does, prepared once.
enum Request {
    /// A fresh session's handshake.
    Initialize,
    Method {
        method: &'static str,
        params: String,
    },
}

/// What every step of a run shares.
struct StepContext<'a> {
    endpoint: &'a Arc<Endpoint>,
    session: &'a Session,
    target: &'a Target,
    timeout: Duration,
    progress: &'a Arc<Progress>,
}

async fn run_step(context: &StepContext<'_>, step: &Step) -> StepReport {
    let StepContext {
        endpoint,
        session,
        target,
        timeout,
        progress,
    } = *context;
    let request = Arc::new(match &step.action {
        Action::Initialize => Request::Initialize,
        Action::ListTools => Request::Method {
            method: "tools/list",
            params: "{}".to_owned(),
        },
        Action::Call { tool, arguments } => Request::Method {
            method: "tools/call",
            params: serde_json::json!({ "name": tool, "arguments": arguments }).to_string(),
        },
    });
    let next = Arc::new(AtomicU64::new(0));
    let calls = step.load.calls().unwrap_or(u64::MAX);
    // Fixed-rate requests are due from a moment shortly ahead, once every worker is ready.
    let start = match step.load {
        Load::Count { .. } | Load::For { .. } => Instant::now(),
        Load::Rate { .. } => Instant::now() + Duration::from_millis(5),
    };
    let workers = step
        .load
        .concurrency()
        .min(usize::try_from(calls).unwrap_or(usize::MAX));
    let timeline = Arc::new(Timeline::new(timeout));
    // Chaos is only allowed on steps bounded by time (checked when the suite is parsed).
    let chaos = step.chaos.as_ref().and_then(|chaos| match step.load {
        Load::Rate { duration, .. } | Load::For { duration, .. } => Some((
            Driver::start(chaos, target, start, duration),
            Arc::new(Outcomes::new(duration, timeout)),
        )),
        Load::Count { .. } => None,
    });
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let worker = Worker {
            lane: session.lane(),
            request: request.clone(),
            next: next.clone(),
            load: step.load,
            start,
            calls,
            timeout,
            expect: step.expect.clone(),
            tally: Tally::new(),
            second: None,
            timeline: timeline.clone(),
            outcomes: chaos.as_ref().map(|(_, outcomes)| outcomes.clone()),
        };
        // Tasks of their own, so the workers spread over the runtime's threads.
        handles.push(tokio::spawn(worker.run(endpoint.clone(), progress.clone())));
    }
    let mut total = Tally::new();
    for handle in handles {
        match handle.await {
            Ok(tally) => total.merge(tally),
            // A worker cannot panic on a server's input; if one did, its requests are
            // missing from the count and the step fails for it.
            Err(error) => tracing::error!(%error, "a lab worker failed"),
        }
    }
    let chaos = match chaos {
        Some((driver, outcomes)) => {
            let last = total.last_finished.unwrap_or_default();
            Some(driver.finish(&outcomes, last).await)
        }
        None => None,
    };
    total.into_report(step, timeline.finish(), chaos)
}

/// A step's per-second rows, merged from its workers as each second passes. Rows older than
/// the longest a request may take (plus two seconds) can no longer change and are kept as
/// their figures only, so a long step holds a few histograms, not one per second.
struct Timeline {
    rows: Mutex<Rows>,
    /// How many seconds a row stays open behind the newest.
    horizon: u64,
}

#[derive(Default)]
struct Rows {
    /// Seconds `0..closed.len()`, done.
    closed: Vec<Second>,
    /// Seconds from `closed.len()` on.
    open: VecDeque<Row>,
}

/// One second of requests: how many finished, how many failed, and their latency.
struct Row {
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
}

impl Row {
    fn new() -> Row {
        Row {
            requests: 0,
            errors: 0,
            latency: histogram(2),
        }
    }

    fn summary(&self, at_s: u64) -> Second {
        Second {
            at_s,
            requests: self.requests,
            errors: self.errors,
            p50_ms: quantile_ms(&self.latency, 0.5),
            p99_ms: quantile_ms(&self.latency, 0.99),
            max_ms: if self.latency.is_empty() {
                0.0
            } else {
                us_to_ms(self.latency.max())
            },
        }
    }
}

impl Timeline {
    fn new(timeout: Duration) -> Timeline {
        Timeline {
            rows: Mutex::new(Rows::default()),
            horizon: timeout.as_secs() + 2,
        }
    }

    /// Adds a worker's row for second `at`.
    fn merge(&self, at: u64, row: &Row) {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let closed = rows.closed.len() as u64;
        if at < closed {
            // A request that took longer than the horizon: its counts still count; the
            // second's percentiles were taken without it.
            if let Some(second) = usize::try_from(at)
                .ok()
                .and_then(|i| rows.closed.get_mut(i))
            {
                second.requests += row.requests;
                second.errors += row.errors;
                if !row.latency.is_empty() {
                    second.max_ms = second.max_ms.max(us_to_ms(row.latency.max()));
                }
            }
            return;
        }
        let index = usize::try_from(at - closed)
            .unwrap_or(usize::MAX)
            .min(1 << 20);
        while rows.open.len() <= index {
            rows.open.push_back(Row::new());
        }
        let open = &mut rows.open[index];
        open.requests += row.requests;
        open.errors += row.errors;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = open.latency.add(&row.latency);
        while rows.open.len() as u64 > self.horizon + 1 {
            let Some(oldest) = rows.open.pop_front() else {
                break;
            };
            let at_s = rows.closed.len() as u64;
            rows.closed.push(oldest.summary(at_s));
        }
    }

    /// Every second's figures, once the workers are done.
    fn finish(&self) -> Vec<Second> {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = std::mem::take(&mut rows.closed);
        for row in std::mem::take(&mut rows.open) {
            let at_s = out.len() as u64;
            out.push(row.summary(at_s));
        }
        out
    }
}

struct Worker {
    lane: Lane,
    request: Arc<Request>,
    next: Arc<AtomicU64>,
    load: Load,
    start: Instant,
    calls: u64,
    timeout: Duration,
    expect: Expect,
    tally: Tally,
    /// The second this worker's latest answers finished in, not yet merged into `timeline`.
    second: Option<(u64, Row)>,
    timeline: Arc<Timeline>,
    /// A chaos step's outcomes by time.
    outcomes: Option<Arc<Outcomes>>,
}

impl Worker {
    /// Counts one answer in its second, merging the worker's previous second first if this
    /// one is later.
    fn count_in_second(&mut self, since_start: Duration, latency: Duration, failed: bool) {
        let at = since_start.as_secs();
        self.flush_before(at);
        let (_, row) = self.second.get_or_insert_with(|| (at, Row::new()));
        row.requests += 1;
        if failed {
            row.errors += 1;
        }
        row.latency.saturating_record(micros(latency));
    }

    /// Merges the worker's row if it is for a second before `at`, keeping its histogram for
    /// the next one.
    fn flush_before(&mut self, at: u64) {
        if let Some((second, row)) = &mut self.second
            && *second < at
        {
            self.timeline.merge(*second, row);
            row.requests = 0;
            row.errors = 0;
            row.latency.reset();
            *second = at;
        }
    }

    async fn run(mut self, endpoint: Arc<Endpoint>, progress: Arc<Progress>) -> Tally {
        // The lane's connection is opened before the first request's clock starts; a failure
        // here is left for that request to report.
        let _ = self.lane.connect(self.timeout).await;
        loop {
            let ticket = self.next.fetch_add(1, Ordering::Relaxed);
            if ticket >= self.calls {
                break;
            }
            if let Load::For { duration, .. } = self.load
                && self.start.elapsed() >= duration
            {
                break;
            }
            // A request waits for its due time on the runtime's timer, which may wake it a
            // little late; that lateness is the lab's, not the server's. A request whose
            // worker was still busy when it fell due waited in the lab's queue because the
            // server was slow: that wait counts, so its latency runs from the due time.
            let (due, queued) = match self.load {
                Load::Count { .. } | Load::For { .. } => (None, false),
                Load::Rate { rate, .. } => {
                    #[allow(clippy::cast_precision_loss)] // Tickets stay far below 2^52.
                    let due = self.start + Duration::from_secs_f64(ticket as f64 / rate);
                    let queued = Instant::now() >= due;
                    if !queued {
                        // A worker that waits into a later second hands its row over first,
                        // so a slow rate does not keep a second open for long.
                        self.flush_before(due.saturating_duration_since(self.start).as_secs());
                        tokio::time::sleep_until(due.into()).await;
                    }
                    (Some(due), queued)
                }
            };
            let sent = Instant::now();
            let (outcome, finished) = self.send(&endpoint).await;
            let from = match due {
                Some(due) if queued => due,
                _ => sent,
            };
            let lag = due.map(|due| sent.saturating_duration_since(due));
            let failed = outcome.is_err();
            let latency = finished.saturating_duration_since(from);
            let since_start = finished.saturating_duration_since(self.start);
            self.count_in_second(since_start, latency, failed);
            if let Some(outcomes) = &self.outcomes {
                outcomes.record(since_start, !failed);
            }
            self.tally.record(latency, since_start, lag, outcome);
            progress.done.fetch_add(1, Ordering::Relaxed);
            if failed {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.tally.first_sent.is_none() {
            self.tally.first_sent = Some(self.start);
        }
        if let Some((second, row)) = &self.second {
            self.timeline.merge(*second, row);
        }
        self.tally
    }

    /// One request, and when its answer came; an answer that misses an expectation is a
    /// failure of its own kind.
    async fn send(&mut self, endpoint: &Endpoint) -> (Result<(), Failure>, Instant) {
        if self.tally.first_sent.is_none() {
            self.tally.first_sent = Some(Instant::now());
        }
        if let Request::Initialize = &*self.request {
            let opened = tokio::time::timeout(self.timeout, endpoint.open()).await;
            let answered = Instant::now();
            let outcome = match opened {
                Ok(Ok((session, _))) => {
                    // Ending the session is not part of the handshake's time.
                    session.close().await;
                    Ok(())
                }
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure::new(
                    ErrorKind::Timeout,
                    format!(
                        "initialize not answered within {} ms",
                        self.timeout.as_millis()
                    ),
                )),
            };
            return (outcome, answered);
        }
        let outcome = self.call().await;
        (outcome, Instant::now())
    }

    async fn call(&mut self) -> Result<(), Failure> {
        match &*self.request {
            Request::Initialize => Ok(()),
            Request::Method { method, params } => {
                let message = self.lane.request(method, params, self.timeout).await?;
                message.check()?;
                let is_call = *method == "tools/call";
                if is_call && message.is_tool_error() {
                    return Err(Failure::new(
                        ErrorKind::Tool,
                        tool_error_text(&message.result()?),
                    ));
                }
                // The whole result is parsed only when something looks into it.
                if is_call && self.expect.contains.is_none() && self.expect.json_path.is_none() {
                    return Ok(());
                }
                let result = message.result()?;
                if *method == "tools/list" && !result.get("tools").is_some_and(Value::is_array) {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        "tools/list answered without a tools array",
                    ));
                }
                self.tally.check(&self.expect, &result)
            }
        }
    }
}

fn tool_error_text(result: &Value) -> String {
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .and_then(|content| {
            content
                .iter()
                .find_map(|c| c.get("text").and_then(Value::as_str))
        })
        .unwrap_or("the tool reported an error with no text");
    text.chars().take(300).collect()
}

/// What one worker (or, merged, a step) measured.
struct Tally {
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<ErrorKind, u64>,
    samples: Vec<ErrorSample>,
    /// Failures of `contains` and of `json_path`, which count as expectation errors.
    contains_misses: u64,
    path_misses: u64,
    first_sent: Option<Instant>,
    last_finished: Option<Duration>,
}

fn histogram(significant: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: histogram(3),
            lag: histogram(2),
            ok: 0,
            errors: ErrorKind::ALL.iter().map(|k| (*k, 0)).collect(),
            samples: Vec::new(),
            contains_misses: 0,
            path_misses: 0,
            first_sent: None,
            last_finished: None,
        }
    }

    fn record(
        &mut self,
        latency: Duration,
        since_start: Duration,
        lag: Option<Duration>,
        outcome: Result<(), Failure>,
    ) {
        self.latency.saturating_record(micros(latency));
        if let Some(lag) = lag {
            self.lag.saturating_record(micros(lag));
        }
        match outcome {
            Ok(()) => self.ok += 1,
            Err(failure) => {
                *self.errors.entry(failure.kind).or_default() += 1;
                if self
                    .samples
                    .iter()
                    .filter(|s| s.kind == failure.kind)
                    .count()
                    < SAMPLES_PER_KIND
                {
                    self.samples.push(ErrorSample {
                        kind: failure.kind,
                        message: failure.message,
                    });
                }
            }
        }
        self.last_finished = Some(
            self.last_finished
                .map_or(since_start, |l| l.max(since_start)),
        );
    }

    /// A result checked against `contains` and `json_path`.
    fn check(&mut self, expect: &Expect, result: &Value) -> Result<(), Failure> {
        if let Some(text) = &expect.contains
            && !value_contains(result, text)
        {
            self.contains_misses += 1;
            return Err(Failure::new(
                ErrorKind::Expectation,
                format!("the result does not contain {text:?}"),
            ));
        }
        if let Some((path, wanted)) = &expect.json_path {
            let found = path.find(result);
            if found != Some(wanted) {
                self.path_misses += 1;
                let found = found.map_or_else(|| "nothing".to_owned(), truncate_json);
                return Err(Failure::new(
                    ErrorKind::Expectation,
                    format!(
                        "{} is {found}, not {}",
                        path.as_str(),
                        truncate_json(wanted)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        self.ok += other.ok;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        for sample in other.samples {
            if self
                .samples
                .iter()
                .filter(|s| s.kind == sample.kind)
                .count()
                < SAMPLES_PER_KIND
            {
                self.samples.push(sample);
            }
        }
        self.contains_misses += other.contains_misses;
        self.path_misses += other.path_misses;
        self.first_sent = match (self.first_sent, other.first_sent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_finished = match (self.last_finished, other.last_finished) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn into_report(
        self,
        step: &Step,
        timeline: Vec<Second>,
        chaos: Option<ChaosReport>,
    ) -> StepReport {
        let requests = self.latency.len();
        let failed: u64 = self.errors.values().sum();
        let step_start = self.first_sent;
        // From the first send to the last answer; the step's own clock started at `start`.
        let elapsed = match (step_start, self.last_finished) {
            (Some(_), Some(last)) => last,
            _ => Duration::ZERO,
        };
        #[allow(clippy::cast_precision_loss)]
        let throughput = if elapsed.is_zero() {
            0.0
        } else {
            requests as f64 / elapsed.as_secs_f64()
        };
        let latency = latency_of(&self.latency);
        let mut expectations = verdicts(&step.expect, &self, requests, failed, &latency);
        if let Some(chaos) = &chaos {
            // A chaos action that did not happen makes the step's figures meaningless.
            expectations.push(Verdict {
                expectation: format!("chaos: {} {}", chaos.action, chaos.server),
                passed: chaos.error.is_none(),
                detail: chaos.summary(),
            });
        }
        let passed = step.load.calls().is_none_or(|calls| requests == calls)
            && requests > 0
            && expectations.iter().all(|v| v.passed);
        let (mode, rate, duration_ms) = match step.load {
            Load::Count { .. } => ("count", None, None),
            Load::For { duration, .. } => ("duration", None, Some(ms(duration))),
            Load::Rate { rate, duration, .. } => ("rate", Some(rate), Some(ms(duration))),
        };
        StepReport {
            name: step.name.clone(),
            kind: step.action.kind().to_owned(),
            load: LoadReport {
                mode: mode.to_owned(),
                concurrency: step.load.concurrency(),
                calls: step.load.calls(),
                rate,
                duration_ms,
            },
            requests,
            ok: self.ok,
            errors: self.errors,
            error_samples: self.samples,
            elapsed_ms: ms(elapsed),
            throughput,
            latency,
            send_lag_p99_ms: (!self.lag.is_empty())
                .then(|| us_to_ms(self.lag.value_at_quantile(0.99))),
            histogram: buckets(&self.latency),
            timeline,
            expectations,
            chaos,
            passed,
        }
    }
}

fn verdicts(
    expect: &Expect,
    tally: &Tally,
    requests: u64,
    failed: u64,
    latency: &Latency,
) -> Vec<Verdict> {
    let mut out = Vec::new();
    let hard: u64 = tally
        .errors
        .iter()
        .filter(|(kind, _)| **kind != ErrorKind::Expectation)
        .map(|(_, count)| count)
        .sum();
    if expect.no_error {
        out.push(Verdict {
            expectation: "no errors".to_owned(),
            passed: hard == 0,
            detail: format!("{hard} of {requests} requests failed"),
        });
    }
    if let Some(text) = &expect.contains {
        out.push(Verdict {
            expectation: format!("result contains {text:?}"),
            passed: tally.contains_misses == 0,
            detail: format!("{} answers did not", tally.contains_misses),
        });
    }
    if let Some((path, value)) = &expect.json_path {
        out.push(Verdict {
            expectation: format!("{} equals {}", path.as_str(), truncate_json(value)),
            passed: tally.path_misses == 0,
            detail: format!("{} answers did not", tally.path_misses),
        });
    }
    if let Some(limit) = expect.p99_below {
        out.push(Verdict {
            expectation: format!("p99 below {} ms", ms(limit)),
            passed: requests > 0 && latency.p99 < ms(limit),
            detail: format!("p99 was {:.3} ms", latency.p99),
        });
    }
    if let Some(limit) = expect.error_rate_below {
        #[allow(clippy::cast_precision_loss)]
        let rate = if requests == 0 {
            1.0
        } else {
            failed as f64 / requests as f64
        };
        out.push(Verdict {
            expectation: format!("error rate below {limit}"),
            passed: rate < limit,
            detail: format!("{failed} of {requests} failed ({:.4})", rate),
        });
    }
    out
}

/// Whether any string in `value` (or any key) contains `text`.
fn value_contains(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s.contains(text),
        Value::Array(items) => items.iter().any(|v| value_contains(v, text)),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains(text) || value_contains(v, text)),
        other => other.to_string().contains(text),
    }
}

fn truncate_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 80 {
        return text;
    }
    let mut cut: String = text.chars().take(79).collect();
    cut.push('…');
    cut
}

fn latency_of(histogram: &Histogram<u64>) -> Latency {
    if histogram.is_empty() {
        return Latency::default();
    }
    Latency {
        min: us_to_ms(histogram.min()),
        mean: histogram.mean() / 1000.0,
        p50: quantile_ms(histogram, 0.5),
        p90: quantile_ms(histogram, 0.9),
        p95: quantile_ms(histogram, 0.95),
        p99: quantile_ms(histogram, 0.99),
        p999: quantile_ms(histogram, 0.999),
        max: us_to_ms(histogram.max()),
    }
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    us_to_ms(histogram.value_at_quantile(quantile))
}

/// Buckets doubling from 10 µs, up to the largest latency seen.
fn buckets(histogram: &Histogram<u64>) -> Vec<Bucket> {
    let mut out = Vec::new();
    if histogram.is_empty() {
        return out;
    }
    let mut bounds = vec![10u64];
    while bounds
        .last()
        .is_some_and(|b| *b < histogram.max() && *b < MAX_LATENCY_US)
    {
        let next = bounds.last().map_or(10, |b| b.saturating_mul(2));
        bounds.push(next);
    }
    let mut counts = vec![0u64; bounds.len()];
    for value in histogram.iter_recorded() {
        let at = bounds
            .partition_point(|bound| *bound < value.value_iterated_to())
            .min(bounds.len() - 1);
        counts[at] += value.count_at_value();
    }
    for (bound, count) in bounds.into_iter().zip(counts) {
        out.push(Bucket {
            le_ms: us_to_ms(bound),
            count,
        });
    }
    out
}

#[allow(clippy::cast_precision_loss)] // Microseconds stay far below 2^52.
fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
