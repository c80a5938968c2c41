//! The lab's tables in memory, for `MemorySnapshotStore`: nothing survives a restart.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::Utc;

use super::{
    LabStore, MAX_RUNS_LISTED, NewRun, NewSuite, RunQuery, RunSummary, StoredRun, StoredSuite,
    conflict, new_id, no_suite, summary_of,
};
use crate::{Error, Result, snapshot::MemorySnapshotStore};

#[derive(Debug, Default)]
pub(crate) struct LabTables {
    suites: Mutex<Vec<StoredSuite>>,
    /// In insertion order: newest last.
    runs: Mutex<Vec<StoredRun>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl LabStore for MemorySnapshotStore {
    async fn create_suite(&self, suite: NewSuite) -> Result<StoredSuite> {
        let name = suite.parse()?.name;
        let mut suites = lock(&self.lab.suites);
        if suites.iter().any(|s| s.name == name) {
            return Err(conflict(&name));
        }
        let now = Utc::now();
        let stored = StoredSuite {
            id: new_id(),
            name,
            definition: suite.definition,
            interval: suite.interval,
            created_at: now,
            updated_at: now,
        };
        suites.push(stored.clone());
        Ok(stored)
    }

    async fn update_suite(&self, id: &str, suite: NewSuite) -> Result<StoredSuite> {
        let name = suite.parse()?.name;
        let mut suites = lock(&self.lab.suites);
        if suites.iter().any(|s| s.name == name && s.id != id) {
            return Err(conflict(&name));
        }
        let stored = suites
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| no_suite(id))?;
        stored.name = name;
        stored.definition = suite.definition;
        stored.interval = suite.interval;
        stored.updated_at = Utc::now();
        Ok(stored.clone())
    }

    async fn suite(&self, id: &str) -> Result<Option<StoredSuite>> {
        Ok(lock(&self.lab.suites).iter().find(|s| s.id == id).cloned())
    }

    async fn suites(&self) -> Result<Vec<StoredSuite>> {
        let mut suites = lock(&self.lab.suites).clone();
        suites.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(suites)
    }

    async fn delete_suite(&self, id: &str) -> Result<bool> {
        let mut suites = lock(&self.lab.suites);
        let before = suites.len();
        suites.retain(|s| s.id != id);
        let deleted = suites.len() < before;
        drop(suites);
        if deleted {
            for run in lock(&self.lab.runs).iter_mut() {
                if run.summary.suite_id.as_deref() == Some(id) {
                    run.summary.suite_id = None;
                }
            }
        }
        Ok(deleted)
    }

    async fn insert_run(&self, run: NewRun) -> Result<RunSummary> {
        if let Some(suite_id) = &run.suite_id
            && !lock(&self.lab.suites).iter().any(|s| &s.id == suite_id)
        {
            return Err(Error::NotFound {
                what: format!("suite {suite_id}"),
            });
        }
        let summary = summary_of(new_id(), run.suite_id, &run.report);
        lock(&self.lab.runs).push(StoredRun {
            summary: summary.clone(),
            report: run.report,
        });
        Ok(summary)
    }

    async fn run(&self, id: &str) -> Result<Option<StoredRun>> {
        Ok(lock(&self.lab.runs)
            .iter()
            .find(|r| r.summary.id == id)
            .cloned())
    }

    async fn runs(&self, query: RunQuery) -> Result<Vec<RunSummary>> {
        let limit = query.limit.min(MAX_RUNS_LISTED) as usize;
        let runs = lock(&self.lab.runs);
        let mut out: Vec<RunSummary> = runs
            .iter()
            .filter(|r| {
                query
                    .suite_id
                    .as_deref()
                    .is_none_or(|id| r.summary.suite_id.as_deref() == Some(id))
            })
            .map(|r| r.summary.clone())
            .collect();
        // Newest first by start time; among equal times, the later insert first.
        out.reverse();
        out.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        out.truncate(limit);
        Ok(out)
    }
}
