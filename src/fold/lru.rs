//! A small LRU of conversation states keyed by the rolling hash of the blocks they cover.

use std::collections::HashMap;
use std::sync::Arc;

/// What an entry weighs against the cache's memory bound.
pub trait Weighed {
    fn approx_bytes(&self) -> usize;
}

impl Weighed for super::state::State {
    fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }
}

pub struct Lru<T> {
    map: HashMap<u64, (Arc<T>, u64)>,
    tick: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<T: Weighed> Lru<T> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Lru<T> {
        Lru { map: HashMap::new(), tick: 0, bytes: 0, max_entries, max_bytes }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// A shared handle, marking the entry as recently used.
    pub fn get(&mut self, key: u64) -> Option<Arc<T>> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&key).map(|(s, used)| {
            *used = t;
            Arc::clone(s)
        })
    }

    /// Takes the entry out, so that extending it needs no copy when nobody else holds it.
    pub fn take(&mut self, key: u64) -> Option<Arc<T>> {
        let (s, _) = self.map.remove(&key)?;
        self.bytes = self.bytes.saturating_sub(s.approx_bytes());
        Some(s)
    }

    pub fn insert(&mut self, key: u64, state: Arc<T>) {
        self.tick += 1;
        self.bytes += state.approx_bytes();
        if let Some((old, _)) = self.map.insert(key, (state, self.tick)) {
            self.bytes = self.bytes.saturating_sub(old.approx_bytes());
        }
        while self.map.len() > 1 && (self.map.len() > self.max_entries || self.bytes > self.max_bytes) {
            // Linear scan: the map is small and evictions are rare next to lookups.
            let Some((&victim, _)) = self.map.iter().filter(|(k, _)| **k != key).min_by_key(|(_, (_, used))| *used)
            else {
                break;
            };
            if let Some((s, _)) = self.map.remove(&victim) {
                self.bytes = self.bytes.saturating_sub(s.approx_bytes());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::state::State;

    #[test]
    fn evicts_least_recently_used() {
        let mut l = Lru::new(2, usize::MAX);
        l.insert(1, Arc::new(State::new(1, Default::default())));
        l.insert(2, Arc::new(State::new(2, Default::default())));
        assert!(l.get(1).is_some());
        l.insert(3, Arc::new(State::new(3, Default::default())));
        assert!(l.contains(1) && l.contains(3) && !l.contains(2));
        assert!(l.take(1).is_some());
        assert_eq!(l.len(), 1);
    }
}
