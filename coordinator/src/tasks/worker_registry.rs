//! The live worker fleet, in memory: workers re-register after a coordinator restart, presenting
//! their previous id to take their running tasks back (`fleet.rs`). Each worker's mirror cache
//! (the repositories it sent with its last acquire) is kept with an index from repository to
//! holders, so placing a backup is a lookup, not a scan of the fleet.

use std::collections::{BTreeSet, HashMap, HashSet};

use parking_lot::Mutex;
use repovault_common::domain::{RepoId, TaskId};

use crate::tasks::queue_order::Placement;

/// One worker pool's share of the fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCapacity {
    pub workers: u64,
    pub slots: u64,
    pub used: u64,
}

#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: String,
    pub name: String,
    pub slots: u32,
    /// The pool whose join token it registered with (`bootstrap`: the configured token).
    pub pool: String,
    /// That token's id; `None` for the configured token.
    pub token_id: Option<String>,
    pub draining: bool,
    pub registered_at_ms: i64,
    pub last_heartbeat_ms: i64,
    pub tasks: BTreeSet<TaskId>,
}

#[derive(Default)]
struct Workers {
    entries: HashMap<String, WorkerEntry>,
    /// Worker -> the repositories its mirror cache holds, as it last said.
    cached: HashMap<String, HashSet<RepoId>>,
    /// Repository -> the workers holding its mirror: the inverse of `cached`, kept in step.
    holders: HashMap<RepoId, HashSet<String>>,
}

impl Workers {
    fn forget_cache(&mut self, id: &str) {
        for repo in self.cached.remove(id).unwrap_or_default() {
            if let Some(h) = self.holders.get_mut(&repo) {
                h.remove(id);
                if h.is_empty() {
                    self.holders.remove(&repo);
                }
            }
        }
    }

    fn insert(&mut self, entry: WorkerEntry) {
        // A (re-)registered worker tells its cache with its next acquire.
        self.forget_cache(&entry.id);
        self.entries.insert(entry.id.clone(), entry);
    }
}

#[derive(Default)]
pub struct WorkerRegistry {
    inner: Mutex<Workers>,
}

impl WorkerRegistry {
    pub fn register(&self, entry: WorkerEntry) {
        self.inner.lock().insert(entry);
    }

    /// Registers `entry` under its id unless a live worker holds that id: one whose last
    /// heartbeat is at most `live_ms` older than `entry.registered_at_ms`. Returns whether it did.
    /// Checked and inserted under one lock, so two processes presenting the same id cannot both
    /// take it.
    pub fn claim(&self, entry: WorkerEntry, live_ms: i64) -> bool {
        let mut m = self.inner.lock();
        let live = m
            .entries
            .get(&entry.id)
            .is_some_and(|w| entry.registered_at_ms - w.last_heartbeat_ms <= live_ms);
        if live {
            return false;
        }
        m.insert(entry);
        true
    }

    /// Records a heartbeat; `false` when the worker is unknown (it must register again).
    pub fn heartbeat(&self, id: &str, draining: bool, now_ms: i64) -> bool {
        match self.inner.lock().entries.get_mut(id) {
            Some(w) => {
                w.last_heartbeat_ms = now_ms;
                w.draining = draining;
                true
            }
            None => false,
        }
    }

    pub fn is_known(&self, id: &str) -> bool {
        self.inner.lock().entries.contains_key(id)
    }

    pub fn is_draining(&self, id: &str) -> bool {
        self.inner
            .lock()
            .entries
            .get(id)
            .is_some_and(|w| w.draining)
    }

    pub fn assign(&self, id: &str, task_id: &TaskId) {
        if let Some(w) = self.inner.lock().entries.get_mut(id) {
            w.tasks.insert(task_id.clone());
        }
    }

    pub fn unassign(&self, id: &str, task_id: &TaskId) {
        if let Some(w) = self.inner.lock().entries.get_mut(id) {
            w.tasks.remove(task_id);
        }
    }

    /// Forgets workers silent for longer than `ttl_ms`; returns their ids.
    pub fn expire(&self, now_ms: i64, ttl_ms: i64) -> Vec<String> {
        let mut m = self.inner.lock();
        let dead: Vec<String> = m
            .entries
            .values()
            .filter(|w| now_ms - w.last_heartbeat_ms > ttl_ms)
            .map(|w| w.id.clone())
            .collect();
        for id in &dead {
            m.entries.remove(id);
            m.forget_cache(id);
        }
        dead
    }

    /// Forgets a worker now (its join token was revoked); its leases are the caller's to
    /// release. Returns whether it was registered.
    pub fn forget(&self, id: &str) -> bool {
        let mut m = self.inner.lock();
        m.forget_cache(id);
        m.entries.remove(id).is_some()
    }

    /// The registered workers that joined with join token `token_id`.
    pub fn joined_with(&self, token_id: &str) -> Vec<WorkerEntry> {
        self.inner
            .lock()
            .entries
            .values()
            .filter(|w| w.token_id.as_deref() == Some(token_id))
            .cloned()
            .collect()
    }

    pub fn list(&self) -> Vec<WorkerEntry> {
        let mut v: Vec<_> = self.inner.lock().entries.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// Total slots and slots in use, for the desired-worker metric.
    pub fn capacity(&self) -> (u64, u64) {
        let m = self.inner.lock();
        m.entries.values().fold((0, 0), |(s, u), w| {
            (s + u64::from(w.slots), u + w.tasks.len() as u64)
        })
    }

    /// Per worker pool: workers, slots and slots in use (pools with no worker are absent).
    pub fn capacity_by_pool(&self) -> std::collections::BTreeMap<String, PoolCapacity> {
        let m = self.inner.lock();
        let mut out = std::collections::BTreeMap::<String, PoolCapacity>::new();
        for w in m.entries.values() {
            let c = out.entry(w.pool.clone()).or_default();
            c.workers += 1;
            c.slots += u64::from(w.slots);
            c.used += w.tasks.len() as u64;
        }
        out
    }

    /// Replaces what a registered worker's mirror cache holds (an unknown worker's is ignored:
    /// it registers first). Cost: proportional to what changed, not to the fleet.
    pub fn set_cached(&self, id: &str, repos: HashSet<RepoId>) {
        let mut m = self.inner.lock();
        if !m.entries.contains_key(id) {
            return;
        }
        let before = m.cached.remove(id).unwrap_or_default();
        for gone in before.difference(&repos) {
            if let Some(h) = m.holders.get_mut(gone) {
                h.remove(id);
                if h.is_empty() {
                    m.holders.remove(gone);
                }
            }
        }
        for new in repos.difference(&before) {
            m.holders
                .entry(new.clone())
                .or_default()
                .insert(id.to_string());
        }
        m.cached.insert(id.to_string(), repos);
    }

    /// Adds one repository to what a registered worker's cache holds (its backup of it just
    /// succeeded); the worker's next acquire replaces the whole set.
    pub fn note_cached(&self, id: &str, repo: &RepoId) {
        let mut m = self.inner.lock();
        if !m.entries.contains_key(id) {
            return;
        }
        m.cached
            .entry(id.to_string())
            .or_default()
            .insert(repo.clone());
        m.holders
            .entry(repo.clone())
            .or_default()
            .insert(id.to_string());
    }

    /// Runs `f` under one look at the fleet with the repositories whose mirrors worker `asking`
    /// holds and a placement function: a repository's mirror, as seen from `asking`, is
    /// [`Placement::Here`] when `asking` holds it (exactly the repositories of the set);
    /// `Elsewhere` (left to the holder until the repository's ready time plus `wait_ms`) when
    /// only other registered workers that are not draining hold it; else `Anywhere`. `f` must
    /// not call back into the registry (its lock is held).
    pub fn with_placement<R>(
        &self,
        asking: &str,
        wait_ms: i64,
        f: impl FnOnce(&HashSet<RepoId>, &dyn Fn(&RepoId, i64) -> Placement) -> R,
    ) -> R {
        let m = self.inner.lock();
        let place = |repo: &RepoId, ready_at_ms: i64| match m.holders.get(repo) {
            None => Placement::Anywhere,
            Some(h) if h.contains(asking) => Placement::Here,
            Some(h) => {
                let holder_ready = h
                    .iter()
                    .any(|w| m.entries.get(w).is_some_and(|e| !e.draining));
                if holder_ready {
                    Placement::Elsewhere {
                        until_ms: ready_at_ms.saturating_add(wait_ms),
                    }
                } else {
                    Placement::Anywhere
                }
            }
        };
        let none = HashSet::new();
        f(m.cached.get(asking).unwrap_or(&none), &place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> WorkerEntry {
        WorkerEntry {
            id: id.into(),
            name: id.into(),
            slots: 1,
            pool: "bootstrap".into(),
            token_id: None,
            draining: false,
            registered_at_ms: 0,
            last_heartbeat_ms: 0,
            tasks: BTreeSet::new(),
        }
    }

    fn repos(ids: &[&str]) -> HashSet<RepoId> {
        ids.iter().map(|r| r.parse().expect("repo id")).collect()
    }

    #[test]
    fn placement_follows_the_last_word_of_each_worker_and_forgets_the_gone() {
        let reg = WorkerRegistry::default();
        reg.register(entry("a"));
        reg.register(entry("b"));
        reg.set_cached("a", repos(&["r1", "r2"]));
        reg.set_cached("b", repos(&["r2", "r3"]));
        // An unknown worker's word changes nothing.
        reg.set_cached("ghost", repos(&["r4"]));
        let ids: Vec<RepoId> = ["r1", "r2", "r3", "r4"]
            .iter()
            .map(|r| r.parse().expect("repo id"))
            .collect();
        let look = |w: &str| {
            reg.with_placement(w, 500, |held, place| {
                let placed: Vec<Placement> = ids.iter().map(|r| place(r, 1000)).collect();
                // The held set is exactly the repositories placed here.
                for (r, p) in ids.iter().zip(&placed) {
                    assert_eq!(held.contains(r), *p == Placement::Here, "{r}");
                }
                placed
            })
        };
        let elsewhere = Placement::Elsewhere { until_ms: 1500 };
        assert_eq!(
            look("a"),
            [
                Placement::Here,
                Placement::Here,
                elsewhere,
                Placement::Anywhere
            ]
        );
        // a no longer holds r1 (evicted): it is nobody's.
        reg.set_cached("a", repos(&["r2"]));
        assert_eq!(look("b")[0], Placement::Anywhere);
        // A backup that succeeded on b adds its repository at once.
        reg.note_cached("b", &ids[0]);
        assert_eq!(look("a")[0], elsewhere);
        // A draining holder is not waited for.
        reg.heartbeat("b", true, 0);
        assert_eq!(look("a")[2], Placement::Anywhere);
        // An expired worker's cache is forgotten with it.
        reg.heartbeat("b", false, 0);
        reg.heartbeat("a", false, 10_000);
        assert_eq!(reg.expire(10_000, 5_000), ["b".to_string()]);
        assert_eq!(look("a")[2], Placement::Anywhere);
        // Registering again starts from an empty cache until the next acquire says otherwise.
        reg.register(entry("a"));
        assert_eq!(look("a")[1], Placement::Anywhere);
    }

    #[test]
    fn capacity_is_counted_per_pool() {
        let reg = WorkerRegistry::default();
        reg.register(entry("a"));
        reg.register(WorkerEntry {
            slots: 4,
            pool: "burst".into(),
            ..entry("b")
        });
        reg.register(WorkerEntry {
            slots: 2,
            pool: "burst".into(),
            ..entry("c")
        });
        let task: TaskId = "t1".parse().expect("task id");
        reg.assign("c", &task);
        let by_pool = reg.capacity_by_pool();
        assert_eq!(
            by_pool.get("burst"),
            Some(&PoolCapacity {
                workers: 2,
                slots: 6,
                used: 1
            })
        );
        assert_eq!(
            by_pool.get("bootstrap"),
            Some(&PoolCapacity {
                workers: 1,
                slots: 1,
                used: 0
            })
        );
        reg.forget("a");
        assert!(!reg.capacity_by_pool().contains_key("bootstrap"));
    }
}
