//! [`Lab`]: the lab inside the hub — its store, the runs going now (a suite never runs twice
//! at once), the scheduler that runs suites on their interval, and the events of each run:
//! `probe_result` for every run, `system_alert` for every run that failed (one per run).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use mcp_core::{EventBus, NewEvent, Push, Sink};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    Progress, RunReport, run_suite,
    store::{LabStore, NewRun, RunQuery, RunSummary},
};
use crate::{Error, Result};

/// The topic of the lab's events.
pub const LAB_TOPIC: &str = "lab";
/// The channel alerts are pushed to through an alert sink.
pub const ALERT_CHANNEL: &str = "lab_alerts";
/// How often the scheduler looks for suites that are due.
const TICK: Duration = Duration::from_millis(500);

/// The lab as the hub serves it. Cheap to clone.
#[derive(Clone)]
pub struct Lab {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn LabStore>,
    /// Where `probe_result` and `system_alert` go, once given.
    events: OnceLock<Arc<dyn EventBus>>,
    /// Where each failed run's alert is pushed too (a webhook), once given.
    alerts: OnceLock<Arc<dyn Sink>>,
    /// Ids of the suites running now.
    running: Mutex<HashSet<String>>,
    /// When the scheduler last started each suite: a run that could not be stored must not
    /// make the suite due again at every tick.
    scheduled: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").finish_non_exhaustive()
    }
}

/// Marks a suite running until dropped.
struct Running {
    lab: Arc<Inner>,
    suite_id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.lab
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.suite_id);
    }
}

impl Lab {
    pub fn new(store: Arc<dyn LabStore>) -> Lab {
        Lab {
            inner: Arc::new(Inner {
                store,
                events: OnceLock::new(),
                alerts: OnceLock::new(),
                running: Mutex::new(HashSet::new()),
                scheduled: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Announces every run's result (`probe_result`) and every failed run (`system_alert`)
    /// on `bus`, topic [`LAB_TOPIC`]. The first bus given is kept.
    pub fn with_events(self, bus: Arc<dyn EventBus>) -> Lab {
        let _ = self.inner.events.set(bus);
        self
    }

    /// Pushes every failed run's alert to `sink` as well, on channel [`ALERT_CHANNEL`] (with
    /// an `HttpSink`: a POST to `{base}/api/dashboard/sync/lab_alerts`, retried). The first
    /// sink given is kept.
    pub fn with_alert_sink(self, sink: Arc<dyn Sink>) -> Lab {
        let _ = self.inner.alerts.set(sink);
        self
    }

    pub fn store(&self) -> &Arc<dyn LabStore> {
        &self.inner.store
    }

    /// The bus the lab announces on, once given.
    pub(crate) fn events(&self) -> Option<&Arc<dyn EventBus>> {
        self.inner.events.get()
    }

    /// Whether the suite is running now.
    pub fn is_running(&self, suite_id: &str) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(suite_id)
    }

    fn claim(&self, suite_id: &str) -> Result<Running> {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !running.insert(suite_id.to_owned()) {
            return Err(Error::Conflict {
                message: format!("suite {suite_id} is running already; wait for its run to end"),
            });
        }
        Ok(Running {
            lab: self.inner.clone(),
            suite_id: suite_id.to_owned(),
        })
    }

    /// Runs a stored suite to its end and keeps the run. A suite that is running already is
    /// a conflict (nothing is started).
    pub async fn run(&self, suite_id: &str) -> Result<RunSummary> {
        let (claim, suite) = self.prepare(suite_id).await?;
        self.finish(claim, suite).await
    }

    /// Starts a run of a stored suite in the background; what is wrong with the suite, or that
    /// it is running already, is an error at once.
    pub async fn start(&self, suite_id: &str) -> Result<()> {
        let (claim, suite) = self.prepare(suite_id).await?;
        let lab = self.clone();
        tokio::spawn(async move {
            if let Err(error) = lab.finish(claim, suite).await {
                tracing::error!(%error, "a lab run could not be kept");
            }
        });
        Ok(())
    }

    async fn prepare(&self, suite_id: &str) -> Result<(Running, super::Suite)> {
        let stored = self
            .inner
            .store
            .suite(suite_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("suite {suite_id}"),
            })?;
        let claim = self.claim(suite_id)?;
        let suite = super::store::NewSuite {
            definition: stored.definition,
            interval: stored.interval,
        }
        .parse()?;
        Ok((claim, suite))
    }

    async fn finish(&self, claim: Running, suite: super::Suite) -> Result<RunSummary> {
        let report = run_suite(&suite, Arc::new(Progress::default())).await;
        let kept = self
            .inner
            .store
            .insert_run(NewRun {
                suite_id: Some(claim.suite_id.clone()),
                report: report.clone(),
            })
            .await;
        drop(claim);
        let summary = kept?;
        self.announce(&summary, &report).await;
        Ok(summary)
    }

    async fn announce(&self, run: &RunSummary, report: &RunReport) {
        let suite_id = run.suite_id.clone().unwrap_or_default();
        let alert = json!({
            "severity": "warning",
            "source": "lab",
            "run_id": run.id,
            "suite_id": run.suite_id,
            "suite": run.suite,
            "target": run.target,
            "started_at": run.started_at,
            "message": failure_text(report),
        });
        if let Some(bus) = self.inner.events.get() {
            let steps: Vec<_> = report
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name, "requests": s.requests, "ok": s.ok,
                        "throughput": s.throughput, "p50_ms": s.latency.p50,
                        "p99_ms": s.latency.p99, "passed": s.passed,
                    })
                })
                .collect();
            let result = NewEvent::new(LAB_TOPIC, "probe_result", "hub:lab")
                .with_subject("suite", suite_id.clone())
                .with_data(json!({
                    "run_id": run.id, "suite_id": run.suite_id, "suite": run.suite,
                    "target": run.target, "passed": run.passed,
                    "duration_ms": run.duration_ms, "steps": steps,
                }));
            if let Err(error) = bus.publish(result).await {
                tracing::warn!(%error, "could not announce a lab result");
            }
            if !run.passed {
                let event = NewEvent::new(LAB_TOPIC, "system_alert", "hub:lab")
                    .with_subject("suite", suite_id)
                    .with_data(alert.clone());
                if let Err(error) = bus.publish(event).await {
                    tracing::warn!(%error, "could not announce a lab alert");
                }
            }
        }
        if run.passed {
            return;
        }
        if let Some(sink) = self.inner.alerts.get() {
            let title: String = alert["message"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(mcp_core::MAX_TITLE_CHARS)
                .collect();
            let push = Push {
                channel: ALERT_CHANNEL.to_owned(),
                repository: None,
                title,
                data: alert,
            };
            if let Err(error) = sink.push(push).await {
                tracing::warn!(%error, run = %run.id, "could not push a lab alert");
            }
        }
    }

    /// Runs every suite that has an interval when it is due (its last run's start plus the
    /// interval; at once when it never ran), until `shutdown`. A suite still running when it
    /// falls due again starts once that run ends, never alongside it.
    pub fn schedule(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let lab = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(error) = lab.start_due().await {
                    tracing::warn!(%error, "the lab scheduler could not read its suites");
                }
            }
        })
    }

    async fn start_due(&self) -> Result<()> {
        let now = chrono::Utc::now();
        let suites = self.inner.store.suites().await?;
        self.inner
            .scheduled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| suites.iter().any(|s| &s.id == id));
        for suite in suites {
            let Some(interval) = suite.interval else {
                continue;
            };
            if self.is_running(&suite.id) {
                continue;
            }
            let last = self
                .inner
                .store
                .runs(RunQuery {
                    suite_id: Some(suite.id.clone()),
                    limit: 1,
                })
                .await?;
            let interval = chrono::TimeDelta::from_std(interval).unwrap_or(chrono::TimeDelta::MAX);
            let started_here = self
                .inner
                .scheduled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&suite.id)
                .copied();
            let due = last
                .first()
                .map(|run| run.started_at)
                .into_iter()
                .chain(started_here)
                .all(|started| started + interval <= now);
            if !due {
                continue;
            }
            match self.start(&suite.id).await {
                Ok(()) => {
                    self.inner
                        .scheduled
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(suite.id.clone(), now);
                }
                // Started meanwhile by someone else.
                Err(Error::Conflict { .. }) => {}
                Err(error) => {
                    tracing::warn!(suite = %suite.name, %error, "a scheduled lab run could not start");
                }
            }
        }
        Ok(())
    }
}

/// What failed in a run, in a line.
pub(crate) fn failure_text(report: &RunReport) -> String {
    if let Some(error) = &report.session.error {
        return format!("suite {}: the session failed: {error}", report.suite);
    }
    let failed: Vec<String> = report
        .steps
        .iter()
        .filter(|s| !s.passed)
        .map(|s| {
            let why: Vec<&str> = s
                .expectations
                .iter()
                .filter(|v| !v.passed)
                .map(|v| v.expectation.as_str())
                .collect();
            format!("step {:?} ({})", s.name, why.join(", "))
        })
        .collect();
    format!("suite {} failed: {}", report.suite, failed.join("; "))
}
