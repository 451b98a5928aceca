//! The task queue component: the active tasks and the queue's fairness bookkeeping under one
//! lock, the signal that wakes long-polling acquires, and the lease policy. What is done with
//! them (leasing, completing, re-queueing, reaping) is `lifecycle.rs`; which task goes next is
//! `queue_order.rs`; the lease state machine is `lease_state.rs`.

use std::collections::{HashMap, HashSet};

use tokio::sync::{Mutex, Notify};

use repovault_common::timing::Timing;

use crate::model::TaskRecord;
use crate::tasks::lease_state::LeasePolicy;

/// The active (non-terminal) tasks and the fairness bookkeeping of the queue.
#[derive(Default)]
pub(crate) struct Queue {
    /// Pending and leased tasks. Lease expiries here run ahead of the store: heartbeats renew
    /// in memory only.
    pub(crate) active: HashMap<String, TaskRecord>,
    /// Enqueue order, for FIFO among equals.
    pub(crate) next_seq: u64,
    /// Lease order, for "served least recently".
    pub(crate) lease_seq: u64,
    /// Organisation -> (lease_seq, time) of its last lease.
    pub(crate) org_served: HashMap<String, (u64, i64)>,
    /// Repositories under maintenance (forget, prune, purge: `maintenance/`): no backup of
    /// them is leased meanwhile.
    pub(crate) maintenance: HashSet<String>,
    /// Task -> attempt of the leases loaded from the store at start whose holder has not
    /// renewed them with this coordinator yet (`tasks/fleet.rs`). One that expires so was ended by the
    /// restart, not by the task: the reaper re-queues it without counting a failure. Keyed by
    /// attempt too, so an entry left behind never applies to a later lease of the task.
    pub(crate) inherited: HashMap<String, u32>,
}

impl Queue {
    /// Repositories a leased exclusive task (a backup: `kinds::Kind::EXCLUSIVE`) holds, and those
    /// under maintenance: no other exclusive task of them is leased meanwhile.
    pub(crate) fn busy_repos(&self) -> HashSet<String> {
        self.active
            .values()
            .filter(|t| crate::tasks::kinds::exclusive(t.kind) && t.lease.expires_at_ms().is_some())
            .map(|t| t.repo_id.clone())
            .chain(self.maintenance.iter().cloned())
            .collect()
    }

    /// Repositories a leased non-exclusive task (restore, verification, drill) reads:
    /// maintenance waits for them.
    pub(crate) fn read_repos(&self) -> HashSet<String> {
        self.active
            .values()
            .filter(|t| {
                !crate::tasks::kinds::exclusive(t.kind) && t.lease.expires_at_ms().is_some()
            })
            .map(|t| t.repo_id.clone())
            .collect()
    }
}

/// The queue, its lock and its signal.
pub struct TaskQueue {
    /// The queue's state. Held across a store commit where the queue and the store must change
    /// together (leasing, completing, re-queueing, enqueueing: see `lifecycle.rs`).
    pub(crate) state: Mutex<Queue>,
    /// Woken whenever a task may have become ready (enqueue, release, re-queue).
    pub(crate) ready: Notify,
    pub(crate) policy: LeasePolicy,
    /// Attempts a task gets before it fails for good.
    pub(crate) max_attempts: u32,
}

impl TaskQueue {
    /// An empty queue leasing for `timing`'s lease TTL.
    pub fn new(timing: &Timing, max_attempts: u32) -> Self {
        let h = i64::try_from(timing.heartbeat().as_millis()).unwrap_or(i64::MAX);
        let policy = LeasePolicy {
            ttl_ms: i64::try_from(timing.lease_ttl().as_millis()).unwrap_or(i64::MAX),
            // Retry after one heartbeat, doubling, at most 5 minutes: a flapping source is not
            // hammered, and a worker lost to a restart is replaced within seconds.
            backoff_base_ms: h,
            backoff_max_ms: 5 * 60 * 1000,
        };
        Self {
            state: Mutex::new(Queue::default()),
            ready: Notify::new(),
            policy,
            max_attempts,
        }
    }
}
