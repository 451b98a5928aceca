//! Live progress of tasks, fanned out to CLI watchers. In memory only: progress is advisory;
//! the outcome is in the store.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use repovault_proto::v1::TaskProgress;

/// Watchers that fall this far behind skip to the newest events.
const CHANNEL_CAPACITY: usize = 256;

#[derive(Default)]
pub struct ProgressHub {
    inner: Mutex<HashMap<String, (TaskProgress, broadcast::Sender<TaskProgress>)>>,
}

impl ProgressHub {
    /// Records and broadcasts an event. Terminal events (`status` completed or failed) stay
    /// readable so a watcher that arrives late still sees the end.
    pub fn publish(&self, p: TaskProgress) {
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
