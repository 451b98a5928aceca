//! Live progress of tasks, fanned out to CLI watchers. In memory only: progress is advisory;
//! the outcome is in the store.
//!
//! The queue publishes typed [`Progress`]; the hub keeps and broadcasts it as the message the
//! admin service streams (`WatchTask`), encoded once here rather than once per watcher: every
//! watcher receives the same message unchanged, so this fan-out is part of the edge.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use repovault_proto::v1::TaskProgress;

use crate::model::{Status, TaskId};

/// A worker's progress report of a leased task, decoded by the worker service.
#[derive(Debug, Clone, Default)]
pub struct WorkerProgress {
    pub worker_id: String,
    /// Phase name, e.g. "fetch", "snapshot", "restore", "push".
    pub phase: String,
    /// Bytes the phase handled, of `total_bytes` (0 = unknown).
    pub bytes: u64,
    /// The phase's other unit (git objects, files, items), of `total_objects` (0 = unknown).
    pub objects: u64,
    pub total_bytes: u64,
    pub total_objects: u64,
    pub message: String,
}

/// One progress event of a task, as its watchers see it.
#[derive(Debug, Clone)]
pub struct Progress {
    pub task_id: TaskId,
    pub attempt: u32,
    /// Phase name: the worker's, or "leased", "queued", "running", "done", "failed".
    pub phase: String,
    pub status: Status,
    /// The task's last error when it failed or went back to the queue.
    pub error: String,
    /// What the worker reported (default for the queue's own events).
    pub report: WorkerProgress,
}

impl Progress {
    fn to_message(&self) -> TaskProgress {
        TaskProgress {
            task_id: self.task_id.to_string(),
            attempt: self.attempt,
            phase: self.phase.clone(),
            bytes: self.report.bytes,
            objects: self.report.objects,
            total_bytes: self.report.total_bytes,
            total_objects: self.report.total_objects,
            message: self.report.message.clone(),
            status: self.status.into(),
            error: self.error.clone(),
            worker_id: self.report.worker_id.clone(),
        }
    }
}

/// Watchers that fall this far behind skip to the newest events.
const CHANNEL_CAPACITY: usize = 256;

#[derive(Default)]
pub struct ProgressHub {
    inner: Mutex<HashMap<String, (TaskProgress, broadcast::Sender<TaskProgress>)>>,
}

impl ProgressHub {
    /// Records and broadcasts an event. Terminal events (`status` completed or failed) stay
    /// readable so a watcher that arrives late still sees the end.
    pub fn publish(&self, p: &Progress) {
        let p = p.to_message();
        let mut m = self.inner.lock();
        let entry = m
            .entry(p.task_id.clone())
            .or_insert_with(|| (p.clone(), broadcast::channel(CHANNEL_CAPACITY).0));
        entry.0 = p.clone();
        let _no_watchers = entry.1.send(p);
    }

    /// The latest event and a receiver for what follows.
    pub fn subscribe(
        &self,
        task_id: &str,
    ) -> (Option<TaskProgress>, broadcast::Receiver<TaskProgress>) {
        let mut m = self.inner.lock();
        match m.get(task_id) {
            Some((last, tx)) => (Some(last.clone()), tx.subscribe()),
            None => {
                let (tx, rx) = broadcast::channel(CHANNEL_CAPACITY);
                m.insert(
                    task_id.to_string(),
                    (
                        TaskProgress {
                            task_id: task_id.to_string(),
                            ..Default::default()
                        },
                        tx,
                    ),
                );
                (None, rx)
            }
        }
    }

    pub fn latest(&self, task_id: &str) -> Option<TaskProgress> {
        self.inner.lock().get(task_id).map(|(p, _)| p.clone())
    }

    /// Forgets a finished task once nobody watches it.
    pub fn gc(&self, task_id: &str) {
        let mut m = self.inner.lock();
        if m.get(task_id)
            .is_some_and(|(_, tx)| tx.receiver_count() == 0)
        {
            m.remove(task_id);
        }
    }
}
