//! Users in memory, for `MemorySnapshotStore`: nothing survives a restart.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Role, StoredUser, User, UserChange, UserStore, no_user, user_conflict};
use crate::{Result, snapshot::MemorySnapshotStore};

#[derive(Debug, Default)]
pub(crate) struct UserTables {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<String, StoredUser>,
    /// Digest → (user name, expiry).
    refresh: HashMap<String, (String, DateTime<Utc>)>,
}

impl UserTables {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl UserStore for MemorySnapshotStore {
    async fn create_user(&self, username: &str, role: Role, password_hash: &str) -> Result<User> {
        let mut state = self.users.lock();
        if state.users.contains_key(username) {
            return Err(user_conflict(username));
        }
        let now = crate::snapshot::micros(Utc::now());
        let user = User {
            username: username.to_owned(),
            role,
            created_at: now,
            updated_at: now,
        };
        state.users.insert(
            username.to_owned(),
            StoredUser {
                user: user.clone(),
                password_hash: password_hash.to_owned(),
            },
        );
        Ok(user)
    }

    async fn user(&self, username: &str) -> Result<Option<StoredUser>> {
        Ok(self.users.lock().users.get(username).cloned())
    }

    async fn users(&self) -> Result<Vec<User>> {
        Ok(self
            .users
            .lock()
            .users
            .values()
            .map(|stored| stored.user.clone())
            .collect())
    }

    async fn update_user(&self, username: &str, change: UserChange) -> Result<User> {
        let mut state = self.users.lock();
        let stored = state
            .users
            .get_mut(username)
            .ok_or_else(|| no_user(username))?;
        if let Some(role) = change.role {
            stored.user.role = role;
        }
        let revoke = change.password_hash.is_some();
        if let Some(hash) = change.password_hash {
            stored.password_hash = hash;
        }
        stored.user.updated_at = crate::snapshot::micros(Utc::now());
        let user = stored.user.clone();
        if revoke {
            state.refresh.retain(|_, (name, _)| name != username);
        }
        Ok(user)
    }

    async fn delete_user(&self, username: &str) -> Result<bool> {
        let mut state = self.users.lock();
        state.refresh.retain(|_, (name, _)| name != username);
        Ok(state.users.remove(username).is_some())
    }

    async fn insert_refresh_token(
        &self,
        digest: &str,
        username: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut state = self.users.lock();
        if !state.users.contains_key(username) {
            return Err(no_user(username));
        }
        let now = Utc::now();
        state.refresh.retain(|_, (_, expiry)| *expiry > now);
        state
            .refresh
            .insert(digest.to_owned(), (username.to_owned(), expires_at));
        Ok(())
    }

    async fn take_refresh_token(&self, digest: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        Ok(self.users.lock().refresh.remove(digest))
    }
}
