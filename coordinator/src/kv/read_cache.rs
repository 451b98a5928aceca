//! The committer's memory of records that are read far more than written (organisations and
//! repositories: every lease reads both, an admin changes them): a single-key read under a
//! cached prefix is answered from memory once read, which on etcd saves a round to the raft
//! leader under the queue lock.
//!
//! Contract (with [`super::GroupCommitKv`], the only writer it trusts):
//! * **Only this process writes.** The cache is right only while every write of its keys goes
//!   through its own committer: a coordinator's store (one per process on redb, one per term
//!   on a group leader's fenced etcd, whose fence refuses any other writer). A new term starts
//!   with a new store, so with an empty cache.
//! * **No stale entry.** A write joining the committer's queue drops the entries of its keys and
//!   advances the epoch, after its keys are pending and before it can commit. A read takes the
//!   epoch before it checks for pending writes, and keeps what the backend answered only if the
//!   epoch has not moved since: a read that may have seen the value before a write never fills
//!   the cache after that write joined.
//! * **Bounded.** At most [`MAX_ENTRIES`] records. Listings fill it too (the scheduler's and
//!   the rotation's walks of every repository warm it for the leases that follow).

use std::collections::HashMap;

use parking_lot::Mutex;

use super::group_commit::overlaps;
use super::{KeyRange, KeyValue};

/// At most this many records are kept: about 50 MB at a repository record's size (under 1 KB),
/// the leases of 50,000 repositories answered from memory; a larger fleet reads the rest from
/// the store as before.
pub const MAX_ENTRIES: usize = 50_000;

pub(crate) struct ReadCache {
    prefixes: Vec<Vec<u8>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Vec<u8>, KeyValue>,
    /// Advanced by every write (or prefix delete) that touches a cached key.
    epoch: u64,
}

impl ReadCache {
    /// Caches the keys under `prefixes` (none: caches nothing).
    pub(crate) fn new(prefixes: Vec<Vec<u8>>) -> Self {
        Self {
            prefixes,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p))
    }

    /// The epoch a read takes before it looks for pending writes (see the module contract).
    pub(crate) fn epoch(&self) -> u64 {
        self.state.lock().epoch
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Option<KeyValue> {
        self.state.lock().entries.get(key).cloned()
    }

    /// Keeps what a read that took `epoch` found (a single key's value, or a range's values
    /// under the cached prefixes), unless a write of a cached key joined the queue since. When
    /// full, only records already kept are refreshed: the first [`MAX_ENTRIES`] stay rather than
    /// churn on every listing of a larger fleet.
    pub(crate) fn fill(&self, found: &[KeyValue], epoch: u64) {
        if self.prefixes.is_empty() || found.is_empty() {
            return;
        }
        let mut s = self.state.lock();
        if s.epoch != epoch {
            return;
        }
        for kv in found.iter().filter(|kv| self.covers(&kv.key)) {
            if s.entries.len() < MAX_ENTRIES || s.entries.contains_key(&kv.key) {
                s.entries.insert(kv.key.clone(), kv.clone());
            }
        }
    }

    /// Called as a write joins the queue, after its keys are pending: drops what it may change.
    pub(crate) fn invalidate(&self, keys: &[Vec<u8>], prefixes: &[Vec<u8>]) {
        let touches_key = keys.iter().any(|k| self.covers(k));
        let touches_prefix = prefixes.iter().any(|p| {
            self.prefixes
                .iter()
                .any(|c| overlaps(&KeyRange::prefix(p.clone()), &KeyRange::prefix(c.clone())))
        });
        if !touches_key && !touches_prefix {
            return;
        }
        let mut s = self.state.lock();
        s.epoch += 1;
        if touches_prefix {
            s.entries.clear();
        } else {
            for k in keys {
                s.entries.remove(k);
            }
        }
    }
}

#[cfg(test)]
#[path = "read_cache_tests.rs"]
mod tests;
