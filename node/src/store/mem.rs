//! The in-memory backend.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use phase_protocol::Cid;

#[derive(Debug, Default)]
struct State {
    blocks: HashMap<Cid, Bytes>,
}

/// Blocks in a map.
#[derive(Debug, Default)]
pub struct MemStore {
    state: Mutex<State>,
}

impl MemStore {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn put(&self, cid: Cid, data: Bytes) {
        self.lock().blocks.insert(cid, data);
    }

    pub(super) fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.lock().blocks.get(cid).cloned()
    }

    pub(super) fn has(&self, cid: &Cid) -> bool {
        self.lock().blocks.contains_key(cid)
    }

    pub(super) fn delete(&self, cid: &Cid) -> bool {
        self.lock().blocks.remove(cid).is_some()
    }

    pub(super) fn cids(&self) -> Vec<Cid> {
        self.lock().blocks.keys().copied().collect()
    }

    /// Overwrites a block's bytes without checking them (tests of corruption).
    #[cfg(test)]
    pub(super) fn corrupt(&self, cid: &Cid, data: Bytes) {
        self.lock().blocks.insert(*cid, data);
    }
}
