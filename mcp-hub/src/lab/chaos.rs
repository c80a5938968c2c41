//! A step's chaos: the fault it brings on through the REST API of the hub that serves the
//! target (`POST /api/servers/{id}/kill`, `PUT` / `DELETE /api/servers/{id}/fault`), the
//! requests' outcomes by when they finished, and from those the recovery time.
//!
//! Recovery: a fault starts when the lab sends it; a kill is over then, an injected fault
//! when the hub confirms clearing it. The target has recovered at the first request after that which succeeds
//! and after which no request fails for [`STABLE_FOR`] (or until the step's last answer,
//! if that comes sooner); `recovery_ms` is the time from the fault's end to that success.
//! Outcomes are kept in bins of at least a millisecond, so the figure is exact to a bin.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{
    report::{ChaosReport, Window},
    suite::{Chaos, ChaosFault, Target, hub_of},
};

/// How long requests must keep succeeding for the target to count as recovered.
pub(crate) const STABLE_FOR: Duration = Duration::from_secs(1);
/// The most bins a step keeps (two counters each): a long step gets wider bins.
const MAX_BINS: u64 = 100_000;
/// The longest one REST call to the hub may take.
const HUB_TIMEOUT: Duration = Duration::from_secs(10);

/// Successes and failures by when they finished, shared by a step's workers. Only chaos
/// steps keep them; a relaxed atomic add per request is all a worker pays.
pub(crate) struct Outcomes {
    width: Duration,
    ok: Vec<AtomicU32>,
    failed: Vec<AtomicU32>,
}

impl Outcomes {
    /// Bins for a step of `duration`, whose last requests may finish up to `timeout` later.
    pub(crate) fn new(duration: Duration, timeout: Duration) -> Outcomes {
        let span = duration + timeout + Duration::from_secs(1);
        let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
        let width_ms = span_ms.div_ceil(MAX_BINS).max(1);
        let bins = usize::try_from(span_ms.div_ceil(width_ms) + 1).unwrap_or(1);
        Outcomes {
            width: Duration::from_millis(width_ms),
            ok: (0..bins).map(|_| AtomicU32::new(0)).collect(),
            failed: (0..bins).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn bin(&self, since_start: Duration) -> usize {
        let index = since_start.as_nanos() / self.width.as_nanos().max(1);
        usize::try_from(index)
            .unwrap_or(usize::MAX)
            .min(self.ok.len() - 1)
    }

    /// One request that finished `since_start` into the step.
    pub(crate) fn record(&self, since_start: Duration, ok: bool) {
        let bins = if ok { &self.ok } else { &self.failed };
        bins[self.bin(since_start)].fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self, bin: usize) -> (u64, u64) {
        (
            u64::from(self.ok[bin].load(Ordering::Relaxed)),
            u64::from(self.failed[bin].load(Ordering::Relaxed)),
        )
    }

    /// Requests that finished in `[from, to)`.
    fn window(&self, from: Duration, to: Option<Duration>) -> Window {
        let first = self.bin(from);
        let last = to.map_or(self.ok.len(), |to| self.bin(to));
        let mut window = Window::default();
        for bin in first..last {
            let (ok, failed) = self.counts(bin);
            window.requests += ok + failed;
            window.errors += failed;
        }
        window
    }

    /// When (since the step started) the target recovered from a fault that ended at `end`;
    /// `last_answer` is when the step's last request finished.
    fn recovered_at(&self, end: Duration, last_answer: Duration) -> Option<Duration> {
        let first = self.bin(end);
        let last = self.bin(last_answer);
        let stable_bins = usize::try_from(STABLE_FOR.as_nanos() / self.width.as_nanos().max(1))
            .unwrap_or(usize::MAX);
        // The next failure at or after each bin, scanning backwards once.
        let mut next_failure = vec![usize::MAX; last + 2 - first.min(last + 1)];
        let mut upcoming = usize::MAX;
        for bin in (first..=last).rev() {
            if self.counts(bin).1 > 0 {
                upcoming = bin;
            }
            next_failure[bin - first] = upcoming;
        }
        (first..=last)
            .find(|&bin| {
                self.counts(bin).0 > 0
                    && next_failure[bin - first] > bin.saturating_add(stable_bins).min(last)
            })
            .map(|bin| {
                let ends = self.width * u32::try_from(bin + 1).unwrap_or(u32::MAX);
                ends.max(end)
            })
    }
}

/// What the chaos task did, in ms since the step started.
#[derive(Default)]
struct Done {
    started: Option<Duration>,
    ended: Option<Duration>,
    killed_pid: Option<u32>,
    /// An injected fault the hub has not confirmed clearing.
    pending_clear: bool,
    error: Option<String>,
}

/// A step's chaos, running beside its workers.
pub(crate) struct Driver {
    chaos: Chaos,
    hub: Result<Hub, String>,
    start: Instant,
    step_over: CancellationToken,
    task: Option<tokio::task::JoinHandle<Done>>,
}

#[derive(Clone)]
struct Hub {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Driver {
    /// Starts the task that brings the fault on at its time; `start` is the step's start,
    /// `duration` its length.
    pub(crate) fn start(
        chaos: &Chaos,
        target: &Target,
        start: Instant,
        duration: Duration,
    ) -> Driver {
        let from_target = hub_of(target);
        let hub = match (&chaos.hub, from_target) {
            (Some(base), from_target) => Ok(Hub {
                base: base.clone(),
                // The target's token is for the hub it points into, not another.
                token: chaos.token.clone().or_else(|| {
                    from_target
                        .filter(|(b, _)| b == base)
                        .and_then(|(_, token)| token)
                }),
                http: reqwest::Client::new(),
            }),
            (None, Some((base, token))) => Ok(Hub {
                base,
                token: chaos.token.clone().or(token),
                http: reqwest::Client::new(),
            }),
            (None, None) => Err(
                "no hub to ask: give chaos.hub, or a target that is a hub's /mcp URL".to_owned(),
            ),
        };
        let step_over = CancellationToken::new();
        let task = tokio::spawn(run(
            chaos.clone(),
            hub.clone(),
            start,
            duration,
            step_over.clone(),
        ));
        Driver {
            chaos: chaos.clone(),
            hub,
            start,
            step_over,
            task: Some(task),
        }
    }

    /// Ends the chaos once the step's requests are done: clears a fault still in force,
    /// reads the upstream's state, and reports. `last_answer` is when the step's last
    /// request finished.
    pub(crate) async fn finish(
        mut self,
        outcomes: &Outcomes,
        last_answer: Duration,
    ) -> ChaosReport {
        self.step_over.cancel();
        let mut done = match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|error| Done {
                error: Some(format!("the chaos task failed: {error}")),
                ..Done::default()
            }),
            None => Done::default(),
        };
        let mut pid_after = None;
        if let Ok(hub) = &self.hub {
            if done.pending_clear {
                match hub.clear(&self.chaos.server).await {
                    Ok(()) => {
                        done.ended = Some(self.start.elapsed());
                        done.pending_clear = false;
                    }
                    Err(error) => {
                        done.error.get_or_insert(format!(
                            "clearing the fault at the end of the step failed: {error}"
                        ));
                    }
                }
            }
            if done.started.is_some()
                && let Ok(status) = hub.status(&self.chaos.server).await
            {
                pid_after = status
                    .get("pid")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok());
            }
        }
        self.report(done, pid_after, outcomes, last_answer)
    }

    fn report(
        &self,
        done: Done,
        pid_after: Option<u32>,
        outcomes: &Outcomes,
        last_answer: Duration,
    ) -> ChaosReport {
        let chaos = &self.chaos;
        let (latency_ms, error_rate, for_ms) = match chaos.fault {
            ChaosFault::Kill => (None, None, None),
            ChaosFault::Inject {
                latency_ms,
                error_rate,
                lasts,
            } => (Some(latency_ms), Some(error_rate), lasts.map(ms)),
        };
        let mut note = None;
        let (before, during, after, recovery) = match (done.started, done.ended) {
            (Some(started), Some(ended)) => {
                let recovered = (ended < last_answer)
                    .then(|| outcomes.recovered_at(ended, last_answer))
                    .flatten();
                if ended >= last_answer {
                    note = Some(
                        "the fault lasted until the step's last answer; give `for` to see the recovery"
                            .to_owned(),
                    );
                } else if recovered.is_none() {
                    note = Some(format!(
                        "no request succeeded with none failing for {} s after it, until the step's last answer",
                        STABLE_FOR.as_secs()
                    ));
                } else {
                    note = Some(format!(
                        "to the first success after which none failed for {} s",
                        STABLE_FOR.as_secs()
                    ));
                }
                // A kill's fault lasts until the upstream is back.
                let fault_over = match chaos.fault {
                    ChaosFault::Kill => recovered,
                    ChaosFault::Inject { .. } => Some(ended),
                };
                (
                    outcomes.window(Duration::ZERO, Some(started)),
                    outcomes.window(started, fault_over),
                    fault_over.map_or_else(Window::default, |over| outcomes.window(over, None)),
                    recovered.map(|r| ms(r.saturating_sub(ended))),
                )
            }
            (Some(started), None) => (
                outcomes.window(Duration::ZERO, Some(started)),
                outcomes.window(started, None),
                Window::default(),
                None,
            ),
            (None, _) => {
                if done.error.is_none() {
                    note = Some("the step ended before the chaos was due".to_owned());
                }
                (
                    outcomes.window(Duration::ZERO, None),
                    Window::default(),
                    Window::default(),
                    None,
                )
            }
        };
        ChaosReport {
            action: chaos.fault.kind().to_owned(),
            server: chaos.server.clone(),
            hub: self
                .hub
                .as_ref()
                .map_or_else(|_| String::new(), |h| h.base.clone()),
            latency_ms,
            error_rate,
            for_ms,
            at_ms: ms(chaos.at),
            started_ms: done.started.map(ms),
            ended_ms: done.ended.map(ms),
            killed_pid: done.killed_pid,
            pid_after,
            before,
            during,
            after,
            recovery_ms: recovery,
            note,
            error: done.error,
        }
    }
}

/// Brings the fault on at its time and, for an injected one with `for`, clears it when that
/// is over; stops early when the step is over.
async fn run(
    chaos: Chaos,
    hub: Result<Hub, String>,
    start: Instant,
    duration: Duration,
    step_over: CancellationToken,
) -> Done {
    let mut done = Done::default();
    let hub = match hub {
        Ok(hub) => hub,
        Err(error) => {
            done.error = Some(error);
            return done;
        }
    };
    tokio::select! {
        () = tokio::time::sleep_until((start + chaos.at).into()) => {}
        () = step_over.cancelled() => return done,
    }
    // A fault cannot act before it is asked for: it starts when it is sent. It ends when
    // the hub confirms it is cleared, since calls may fail until then.
    let sent = start.elapsed();
    match chaos.fault {
        ChaosFault::Kill => match hub.kill(&chaos.server).await {
            Ok(pid) => {
                done.started = Some(sent);
                done.ended = Some(sent);
                done.killed_pid = pid;
            }
            Err(error) => done.error = Some(format!("kill failed: {error}")),
        },
        ChaosFault::Inject {
            latency_ms,
            error_rate,
            lasts,
        } => {
            // The hub ends the fault by itself too, in case this run dies before clearing it.
            let expires = lasts.unwrap_or_else(|| duration.saturating_sub(chaos.at) + HUB_TIMEOUT);
            let body = json!({
                "latency_ms": latency_ms,
                "error_rate": error_rate,
                "duration_ms": u64::try_from(expires.as_millis()).unwrap_or(u64::MAX).max(1),
            });
            match hub.inject(&chaos.server, &body).await {
                Ok(()) => {
                    done.started = Some(sent);
                    done.pending_clear = true;
                }
                Err(error) => {
                    done.error = Some(format!("injecting the fault failed: {error}"));
                    return done;
                }
            }
            if let Some(lasts) = lasts {
                tokio::select! {
                    () = tokio::time::sleep_until((start + chaos.at + lasts).into()) => {}
                    () = step_over.cancelled() => return done,
                }
                match hub.clear(&chaos.server).await {
                    Ok(()) => {
                        done.ended = Some(start.elapsed());
                        done.pending_clear = false;
                    }
                    Err(error) => {
                        done.error = Some(format!("clearing the fault failed: {error}"));
                    }
                }
            }
        }
    }
    done
}

impl Hub {
    fn url(&self, server: &str, tail: &str) -> String {
        format!("{}/api/servers/{server}{tail}", self.base)
    }

    /// One REST call; the JSON answer of a 2xx, or what went wrong as a sentence.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), url).timeout(HUB_TIMEOUT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {}", mcp_core::retry::error_chain(&e)))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
        let hint = match status.as_u16() {
            401 => " (give chaos.token: a credential with the admin scope)",
            403 => " (chaos.token needs the admin scope)",
            404 => " (is chaos.server an upstream of that hub, and does the hub run the gateway?)",
            _ => "",
        };
        Err(format!("{method} {url}: {status}: {message}{hint}"))
    }

    async fn kill(&self, server: &str) -> Result<Option<u32>, String> {
        let answer = self
            .send(reqwest::Method::POST, &self.url(server, "/kill"), None)
            .await?;
        Ok(answer
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()))
    }

    async fn inject(&self, server: &str, body: &Value) -> Result<(), String> {
        self.send(
            reqwest::Method::PUT,
            &self.url(server, "/fault"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    async fn clear(&self, server: &str) -> Result<(), String> {
        self.send(reqwest::Method::DELETE, &self.url(server, "/fault"), None)
            .await
            .map(|_| ())
    }

    async fn status(&self, server: &str) -> Result<Value, String> {
        self.send(reqwest::Method::GET, &self.url(server, ""), None)
            .await
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn recovery_is_the_first_success_that_lasts() {
        let outcomes = Outcomes::new(at(10_000), at(1_000));
        // Fault over at 2 s: a lone success at 2.1 s is followed by a failure at 2.5 s, so it
        // does not count; successes from 3 s on do.
        for t in [100, 500, 1_000] {
            outcomes.record(at(t), true);
        }
        outcomes.record(at(2_100), true);
        outcomes.record(at(2_500), false);
        for t in (3_000..6_000).step_by(100) {
            outcomes.record(at(t), true);
        }
        let recovered = outcomes.recovered_at(at(2_000), at(5_900)).unwrap();
        assert_eq!(recovered, at(3_001));
        let window = outcomes.window(at(2_000), Some(at(3_000)));
        assert_eq!((window.requests, window.errors), (2, 1));
        // Near the end of the step, a success with no failure after it until the last answer
        // counts.
        let late = Outcomes::new(at(4_000), at(1_000));
        late.record(at(3_500), false);
        late.record(at(3_800), true);
        assert_eq!(late.recovered_at(at(3_000), at(3_800)), Some(at(3_801)));
        // Failures to the end: no recovery.
        let never = Outcomes::new(at(4_000), at(1_000));
        never.record(at(3_500), true);
        never.record(at(3_800), false);
        assert_eq!(never.recovered_at(at(3_000), at(3_800)), None);
    }

    #[test]
    fn a_long_step_gets_wider_bins_not_more() {
        let outcomes = Outcomes::new(Duration::from_secs(24 * 3600), at(10_000));
        assert!(outcomes.ok.len() as u64 <= MAX_BINS + 2);
        outcomes.record(Duration::from_secs(90_000), true);
    }
}
