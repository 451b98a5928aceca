//! Read-only views of the task queue: a task's status, the queue as the CLI shows it, depths for
//! metrics, and the reconciler's verdict on a snapshot of an attempt.

use crate::error::CoreResult;
use crate::model::TaskRecord;
use crate::tasks::lease_state::TaskState;
use crate::tasks::queue_order::Candidate;

use crate::core::Core;

impl Core {
    /// The status of a task as the store and queue know it.
    pub async fn task_status(&self, task_id: &str) -> CoreResult<Option<TaskRecord>> {
        if let Some(t) = self.queue.state.lock().await.active.get(task_id) {
            return Ok(Some(t.clone()));
        }
        Ok(self.store.task(task_id).await?)
    }

    /// The queue as the CLI shows it: every active task, best first.
    pub async fn queue_snapshot(&self) -> Vec<(TaskRecord, u8)> {
        let now = self.now_ms();
        let q = self.queue.state.lock().await;
        let mut v: Vec<(TaskRecord, u8)> = q
            .active
            .values()
            .map(|t| {
                let served = q.org_served.get(&t.org_id).map(|s| s.1);
                let c = Candidate {
                    task_id: t.id.clone(),
                    org_id: t.org_id.clone(),
                    repo_id: t.repo_id.clone(),
                    exclusive: true,
                    priority: t.priority,
                    enqueued_at_ms: t.enqueued_at_ms,
                    seq: t.seq,
                    not_before_ms: 0,
                };
                (
                    t.clone(),
                    crate::tasks::queue_order::effective_priority(&c, served, now),
                )
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.seq.cmp(&b.0.seq)));
        v
    }

    /// Queue depth by priority, for metrics.
    pub async fn queue_depths(&self) -> (std::collections::BTreeMap<u8, u64>, u64, i64) {
        let now = self.now_ms();
        let q = self.queue.state.lock().await;
        let mut depth = std::collections::BTreeMap::new();
        let mut leased = 0;
        let mut oldest = 0;
        for t in q.active.values() {
            match t.lease.state {
                TaskState::Pending { not_before_ms } => {
                    *depth.entry(t.priority).or_insert(0) += 1;
                    if not_before_ms <= now {
                        oldest = oldest.max(now - t.enqueued_at_ms);
                    }
                }
                TaskState::Leased { .. } => leased += 1,
                _ => {}
            }
        }
        (depth, leased, oldest)
    }

    /// Whether a task with this id and attempt was committed, or may still be (for the
    /// reconciler): `Some(true)` keep, `Some(false)` forget, `None` unknown task.
    pub async fn snapshot_verdict(&self, task_id: &str, attempt: u32) -> CoreResult<Option<bool>> {
        if let Some(t) = self.queue.state.lock().await.active.get(task_id) {
            // Active: the current attempt may still be committed; earlier ones never will.
            let write_window_open =
                matches!(t.lease.state, TaskState::Leased { .. }) && t.lease.attempt == attempt;
            return Ok(Some(write_window_open));
        }
        Ok(self
            .store
            .task(task_id)
            .await?
            .map(|t| t.committed_attempt == Some(attempt)))
    }
}
