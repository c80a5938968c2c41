//! `MemorySnapshotStore`: snapshots in a map, for embedding and tests; nothing survives a
//! restart.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mcp_core::EventId;

use super::{
    IDEMPOTENCY_WINDOW, NewSnapshot, Put, Snapshot, SnapshotQuery, SnapshotStore, repo_key,
};
use crate::Result;

/// Idempotency keys kept before the expired ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    state: Mutex<State>,
    /// The lab's suites and runs (`LabStore`).
    pub(crate) lab: crate::lab::store::LabTables,
    /// Users and refresh tokens (`UserStore`).
    pub(crate) users: crate::login::UserTables,
}

#[derive(Debug, Default)]
struct State {
    /// By (channel, repository key): ordered, so listing needs no sort.
    snapshots: BTreeMap<(String, String), Snapshot>,
    receipts: HashMap<String, Receipt>,
}

#[derive(Debug)]
struct Receipt {
    key: (String, String),
    revision: i64,
    at: DateTime<Utc>,
}

impl MemorySnapshotStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn put(&self, new: NewSnapshot) -> Result<Put> {
        let now = Utc::now();
        let key = (new.channel.clone(), repo_key(new.repository.as_deref()));
        let mut state = self.state();
        if let Some(idempotency_key) = &new.idempotency_key
            && let Some(receipt) = state.receipts.get(idempotency_key)
            && now - receipt.at < IDEMPOTENCY_WINDOW
            && let Some(current) = state.snapshots.get(&receipt.key)
        {
            return Ok(Put::Duplicate {
                current: current.clone(),
                revision: receipt.revision,
            });
        }
        let previous = state.snapshots.get(&key);
        let revision = previous.map_or(0, |s| s.revision) + 1;
        // Never earlier than the revision it replaces (clients order by revision and time).
        let updated_at = previous.map_or(super::micros(now), |s| {
            super::micros(now).max(s.updated_at + chrono::TimeDelta::microseconds(1))
        });
        let snapshot = Snapshot {
            channel: new.channel,
            repository: new.repository,
            title: new.title,
            data: new.data,
            actor: new.actor,
            updated_at,
            revision,
            event_id: None,
        };
        state.snapshots.insert(key.clone(), snapshot.clone());
        if let Some(idempotency_key) = new.idempotency_key {
            if state.receipts.len() > PRUNE_ABOVE {
                state
                    .receipts
                    .retain(|_, r| now - r.at < IDEMPOTENCY_WINDOW);
            }
            state.receipts.insert(
                idempotency_key,
                Receipt {
                    key,
                    revision,
                    at: now,
                },
            );
        }
        Ok(Put::Stored(snapshot))
    }

    async fn set_event_id(
        &self,
        channel: &str,
        repository: Option<&str>,
        revision: i64,
        id: EventId,
    ) -> Result<()> {
        let mut state = self.state();
        if let Some(snapshot) = state
            .snapshots
            .get_mut(&(channel.to_owned(), repo_key(repository)))
            .filter(|s| s.revision == revision)
        {
            snapshot.event_id = Some(id);
        }
        Ok(())
    }

    async fn get(&self, channel: &str, repository: Option<&str>) -> Result<Option<Snapshot>> {
        Ok(self
            .state()
            .snapshots
            .get(&(channel.to_owned(), repo_key(repository)))
            .cloned())
    }

    async fn list(&self, query: &SnapshotQuery) -> Result<Vec<Snapshot>> {
        let repository = query.repository.as_deref().map(str::to_ascii_lowercase);
        Ok(self
            .state()
            .snapshots
            .iter()
            .filter(|((channel, repo), _)| {
                (query.channels.is_empty() || query.channels.contains(channel))
                    && repository.as_ref().is_none_or(|wanted| wanted == repo)
            })
            .map(|(_, snapshot)| snapshot.clone())
            .collect())
    }

    async fn latest_event_id(&self) -> Result<Option<EventId>> {
        Ok(self
            .state()
            .snapshots
            .values()
            .filter_map(|s| s.event_id)
            .max())
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.state().snapshots.len() as u64)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
