//! [`Lab`]: the lab inside the hub — its store, and the runs going now (a suite never runs
//! twice at once).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use super::{
    Progress, run_suite,
    store::{LabStore, NewRun, RunSummary},
};
use crate::{Error, Result};

/// The lab as the hub serves it. Cheap to clone.
#[derive(Clone)]
pub struct Lab {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn LabStore>,
    /// Ids of the suites running now.
    running: Mutex<HashSet<String>>,
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
                running: Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn LabStore> {
        &self.inner.store
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
                report,
            })
            .await;
        drop(claim);
        kept
    }
}
