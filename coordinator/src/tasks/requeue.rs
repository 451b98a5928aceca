//! A task's way back to the queue, or out of it, without a completion: a lease given back
//! (release), a cancel, an expired lease (reap). Each persists the task and its record's status
//! under the queue lock, for the reason `lifecycle.rs` gives for a completion: the change must
//! be durable before another attempt can be leased.

use crate::catalog::reconcile::ForgetRequest;
use crate::error::CoreResult;
use crate::model::{BackupRecord, TaskId, TaskRecord};
use crate::store::Batch;
use crate::tasks::kinds;
use crate::tasks::lease_state::TaskState;
use crate::tasks::lifecycle::{Lease, check_holder, stale};
use crate::tasks::task_queue::TaskQueue;

impl TaskQueue {
    /// Gives a lease back without counting a failure.
    pub async fn release(&self, worker_id: &str, tok: &Lease, reason: &str) -> CoreResult<()> {
        let now = self.clock.now_ms();
        let mut q = self.state.lock().await;
        let current = q
            .active
            .get(&tok.task_id)
            .ok_or_else(|| stale(tok, "the task is no longer active"))?;
        check_holder(current, worker_id, tok)?;
        let mut task = current.clone();
        task.lease.release(tok.attempt, now)?;
        self.persist_requeue(&task).await?;
        q.active.insert(task.clone());
        drop(q);
        self.workers.unassign(worker_id, &task.id);
        tracing::info!(task = %task.id, attempt = tok.attempt, worker = %worker_id, reason, "released");
        self.ready.notify_waiters();
        self.publish_state(&task, tok.attempt, worker_id);
        Ok(())
    }

    /// Cancels an active task: it fails at once with `reason` (no retry) and its lease is
    /// revoked (the holder's next heartbeat or progress event is answered with a revocation, so
    /// its worker stops; its completion is refused as stale). Returns whether it was active.
    pub(crate) async fn cancel_task(&self, task_id: &TaskId, reason: &str) -> CoreResult<bool> {
        let now = self.clock.now_ms();
        let mut q = self.state.lock().await;
        let Some(mut task) = q.active.get(task_id).cloned() else {
            return Ok(false);
        };
        let worker = match &task.lease.state {
            TaskState::Leased { worker_id, .. } => worker_id.clone(),
            _ => String::new(),
        };
        task.lease.state = TaskState::Failed {
            at_ms: now,
            error: reason.to_string(),
        };
        task.lease.last_error = Some(reason.to_string());
        if let Some(b) = self.persist_requeue(&task).await? {
            metrics::counter!("repovault_backups_total", "outcome" => b.status.as_str())
                .increment(1);
        }
        q.lease_started.remove(&task.id);
        q.active.remove(&task.id);
        drop(q);
        if !worker.is_empty() {
            self.workers.unassign(&worker, &task.id);
        }
        tracing::info!(task = %task.id, worker = %worker, reason, "cancelled");
        self.publish_state(&task, task.lease.attempt, &worker);
        Ok(true)
    }

    /// Re-queues expired leases (with backoff) or fails tasks after their last attempt.
    pub async fn reap(&self) -> CoreResult<usize> {
        let now = self.clock.now_ms();
        let mut q = self.state.lock().await;
        let expired: Vec<TaskId> = q
            .active
            .values()
            .filter(|t| t.lease.expires_at_ms().is_some_and(|e| e <= now))
            .map(|t| t.id.clone())
            .collect();
        let mut finished = Vec::new();
        for id in &expired {
            let Some(mut task) = q.active.get(id).cloned() else {
                continue;
            };
            let worker = match &task.lease.state {
                TaskState::Leased { worker_id, .. } => worker_id.clone(),
                _ => String::new(),
            };
            let attempt = task.lease.attempt;
            if q.inherited.remove(id) == Some(attempt) {
                // Its holder never came back after the restart: not the task's failure.
                task.lease.reap_inherited(now, &self.policy);
                tracing::warn!(task = %task.id, attempt, worker = %worker, "inherited lease not taken back; re-queued");
            } else {
                task.lease.reap(now, &self.policy);
                tracing::warn!(task = %task.id, attempt, worker = %worker, "lease expired");
            }
            metrics::counter!("repovault_lease_expiries_total").increment(1);
            if let Some(b) = self.persist_requeue(&task).await? {
                finished.push(b);
            }
            self.workers.unassign(&worker, &task.id);
            q.lease_started.remove(&task.id);
            if task.lease.state.is_terminal() {
                q.active.remove(&task.id);
            } else {
                q.active.insert(task.clone());
            }
            self.publish_state(&task, attempt, &worker);
            // The expired attempt may still write a snapshot; look for it after its write
            // deadline has certainly passed.
            let _ = self.forget_tx.send(ForgetRequest::Repo {
                repo_id: task.repo_id.clone(),
            });
        }
        drop(q);
        for b in finished {
            kinds::after_backup_finished(self, &b).await;
        }
        if !expired.is_empty() {
            self.ready.notify_waiters();
        }
        Ok(expired.len())
    }

    /// Persists a task that went back to the queue or failed without a completion, with its
    /// record's status. Returns the backup record when it became terminal (its catalog object
    /// is the caller's, after the queue lock). Callers hold the queue lock, for the reason
    /// `complete` does: the re-queue must be durable before another attempt can be leased. The
    /// outcome of a verify or drill that failed for good is recorded here too, so also under
    /// the lock (a few store reads and one write; they are rare).
    async fn persist_requeue(&self, task: &TaskRecord) -> CoreResult<Option<BackupRecord>> {
        let now = self.clock.now_ms();
        let status = task.lease.state.status();
        let mut batch = Batch::default();
        batch.task(task);
        let terminal = kinds::requeue(self, task, status, now, &mut batch).await?;
        self.store.apply(batch).await?;
        kinds::after_requeue(self, task, status).await;
        Ok(terminal)
    }
}
