//! A bounded cache of GitHub answers by URL with their `ETag`, so a repeated read can ask with
//! `If-None-Match`: GitHub answers an unchanged resource 304 and does not count it against the
//! rate limit. Eviction is least recently used, by entry count; very large bodies are not kept.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

/// Bodies larger than this are not cached (a page of 100 issues is ~300 KiB from GitHub).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) etag: String,
    pub(super) body: String,
    pub(super) next: Option<String>,
}

#[derive(Debug)]
pub(super) struct EtagCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Cached>,
    /// Least recently used first.
    order: VecDeque<String>,
}

impl Inner {
    fn touch(&mut self, key: &str) {
        if let Some(position) = self.order.iter().position(|k| k == key)
            && let Some(key) = self.order.remove(position)
        {
            self.order.push_back(key);
        }
    }
}

impl EtagCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn get(&self, key: &str) -> Option<Cached> {
        let mut inner = self.lock();
        let cached = inner.entries.get(key).cloned()?;
        inner.touch(key);
        Some(cached)
    }

    pub(super) fn put(&self, key: &str, cached: Cached) {
        if self.capacity == 0 || cached.body.len() > MAX_BODY_BYTES {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.insert(key.to_owned(), cached).is_some() {
            inner.touch(key);
            return;
        }
        inner.order.push_back(key.to_owned());
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.entries.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Cached {
        Cached {
            etag: format!("\"{body}\""),
            body: body.into(),
            next: None,
        }
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let cache = EtagCache::new(2);
        cache.put("a", entry("1"));
        cache.put("b", entry("2"));
        assert!(cache.get("a").is_some());
        cache.put("c", entry("3"));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").map(|c| c.body), Some("1".into()));
        assert!(cache.get("c").is_some());
        cache.put("c", entry("4"));
        assert_eq!(cache.get("c").map(|c| c.body), Some("4".into()));
    }
}
