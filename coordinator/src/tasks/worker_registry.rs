//! The live worker fleet, in memory: workers re-register after a coordinator restart, presenting
//! their previous id to take their running tasks back (`fleet.rs`).

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use repovault_common::domain::TaskId;

#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: String,
    pub name: String,
    pub slots: u32,
    pub draining: bool,
    pub registered_at_ms: i64,
    pub last_heartbeat_ms: i64,
    pub tasks: BTreeSet<TaskId>,
}

#[derive(Default)]
pub struct WorkerRegistry {
    inner: Mutex<HashMap<String, WorkerEntry>>,
}

impl WorkerRegistry {
    pub fn register(&self, entry: WorkerEntry) {
        self.inner.lock().insert(entry.id.clone(), entry);
    }

    /// Registers `entry` under its id unless a live worker holds that id: one whose last
    /// heartbeat is at most `live_ms` older than `entry.registered_at_ms`. Returns whether it did.
    /// Checked and inserted under one lock, so two processes presenting the same id cannot both
    /// take it.
    pub fn claim(&self, entry: WorkerEntry, live_ms: i64) -> bool {
        let mut m = self.inner.lock();
        let live = m
            .get(&entry.id)
            .is_some_and(|w| entry.registered_at_ms - w.last_heartbeat_ms <= live_ms);
        if live {
            return false;
        }
        m.insert(entry.id.clone(), entry);
        true
    }

    /// Records a heartbeat; `false` when the worker is unknown (it must register again).
    pub fn heartbeat(&self, id: &str, draining: bool, now_ms: i64) -> bool {
        match self.inner.lock().get_mut(id) {
            Some(w) => {
                w.last_heartbeat_ms = now_ms;
                w.draining = draining;
                true
            }
            None => false,
        }
    }

    pub fn is_known(&self, id: &str) -> bool {
        self.inner.lock().contains_key(id)
    }

    pub fn is_draining(&self, id: &str) -> bool {
        self.inner.lock().get(id).is_some_and(|w| w.draining)
    }

    pub fn assign(&self, id: &str, task_id: &TaskId) {
        if let Some(w) = self.inner.lock().get_mut(id) {
            w.tasks.insert(task_id.clone());
        }
    }

    pub fn unassign(&self, id: &str, task_id: &TaskId) {
        if let Some(w) = self.inner.lock().get_mut(id) {
            w.tasks.remove(task_id);
        }
    }

    /// Forgets workers silent for longer than `ttl_ms`; returns their ids.
    pub fn expire(&self, now_ms: i64, ttl_ms: i64) -> Vec<String> {
        let mut m = self.inner.lock();
        let dead: Vec<String> = m
            .values()
            .filter(|w| now_ms - w.last_heartbeat_ms > ttl_ms)
            .map(|w| w.id.clone())
            .collect();
        for id in &dead {
            m.remove(id);
        }
        dead
    }

    pub fn list(&self) -> Vec<WorkerEntry> {
        let mut v: Vec<_> = self.inner.lock().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// Total slots and slots in use, for the desired-worker metric.
    pub fn capacity(&self) -> (u64, u64) {
        let m = self.inner.lock();
        m.values().fold((0, 0), |(s, u), w| {
            (s + u64::from(w.slots), u + w.tasks.len() as u64)
        })
    }
}
