//! The committer's memory of records that are read far more than written (organisations and
//! repositories: every lease reads both, an admin changes them): a single-key read under a
//! cached prefix is answered from memory once read or listed, which on etcd saves a round to
//! the raft leader (under the queue lock, for a lease).
//!
//! Contract (with [`super::GroupCommitKv`], the only writer it trusts):
//! * **Only this process writes.** The cache is right only while every write of its keys goes
//!   through its own committer: a coordinator's store (one per process on redb, one per term
//!   on a group leader's fenced etcd, whose fence refuses any other writer). A new term starts
//!   with a new store, so with an empty cache.
//! * **No stale entry.** A write joining the committer's queue drops the entries of its keys and
//!   notes them at a new epoch, after its keys are pending and before it can commit. A read
//!   takes the epoch before it checks for pending writes, and keeps what the backend answered
//!   for a key only if no write of that key joined since: a read that may have seen a value
//!   before a write never fills the cache after that write joined. The last
//!   [`TRACKED_WRITES`] such writes are remembered by key; a read older than all of them, or
//!   than a prefix delete, keeps nothing.
//! * **Bounded.** At most [`MAX_ENTRIES`] records. Listings fill it too (the scheduler's and
//!   the rotation's walks of every repository warm it for the leases that follow); once full,
//!   only records already kept are refreshed.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use super::group_commit::overlaps;
use super::{KeyRange, KeyValue};

/// At most this many records are kept: about 50 MB at a repository record's size (under 1 KB),
/// the leases of 50,000 repositories answered from memory; a larger fleet reads the rest from
/// the store as before.
pub const MAX_ENTRIES: usize = 50_000;

/// Writes of cached keys remembered by key. A read older than the oldest of them fills
/// nothing: at 5,000 writes a second (the control plane's lease rate, each a visit record)
/// that is a read of more than 0.8 s, far longer than a read waits for a commit.
pub const TRACKED_WRITES: usize = 4096;

pub(crate) struct ReadCache {
    prefixes: Vec<Vec<u8>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Vec<u8>, KeyValue>,
    /// Advanced by every write (or prefix delete) that touches a cached key.
    epoch: u64,
    /// The tracked writes, oldest first, and each key's latest among them.
    writes: VecDeque<(u64, Vec<u8>)>,
    written_at: HashMap<Vec<u8>, u64>,
    /// Reads that took an epoch below this fill nothing: what was written before it is no
    /// longer known by key (forgotten, or a prefix delete).
    floor: u64,
}

impl State {
    fn note_write(&mut self, key: &[u8]) {
        self.entries.remove(key);
        self.writes.push_back((self.epoch, key.to_vec()));
        self.written_at.insert(key.to_vec(), self.epoch);
        while self.writes.len() > TRACKED_WRITES {
            let Some((at, old)) = self.writes.pop_front() else {
                break;
            };
            if self.written_at.get(&old) == Some(&at) {
                self.written_at.remove(&old);
            }
            self.floor = at;
        }
    }
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
    /// under the cached prefixes), but no key written since the read took it. When full, only
    /// records already kept are refreshed: the first [`MAX_ENTRIES`] stay rather than churn
    /// on every listing of a larger fleet.
    pub(crate) fn fill(&self, found: &[KeyValue], epoch: u64) {
        if self.prefixes.is_empty() || found.is_empty() {
            return;
        }
        let mut s = self.state.lock();
        if epoch < s.floor {
            return;
        }
        for kv in found.iter().filter(|kv| self.covers(&kv.key)) {
            if s.written_at.get(&kv.key).is_some_and(|at| *at > epoch) {
                continue;
            }
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
            s.floor = s.epoch;
        }
        for k in keys.iter().filter(|k| self.covers(k)) {
            s.note_write(k);
        }
    }
}

#[cfg(test)]
#[path = "read_cache_tests.rs"]
mod tests;
