//! Finished tasks leave the store: a terminal task record is history that a repository's
//! backup records and catalog objects already hold, and nothing reads it once the task's end
//! is known everywhere. Without this every backup would add a task record for good (about
//! 600 bytes each: 100,000 repositories backed up hourly would add 2.4 million a day), and a
//! starting coordinator reads every task record to rebuild its queue.
//!
//! A record is deleted [`KEEP`] after its task ended: until then a watcher, a worker taking its
//! lease back after a coordinator restart, and the reconciler's sweeps (which keep a snapshot
//! whose task they cannot find, never forgetting one on a missing record) still find it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::CoreResult;
use crate::kv::MAX_TXN_OPS;
use crate::model::{TaskId, TaskRecord};
use crate::periodic::FirstPass;
use crate::store::Batch;
use crate::tasks::lease_state::TaskState;
use crate::tasks::task_queue::TaskQueue;

/// Thirty minutes after its end: three sweeps of the reconciler at its default interval
/// (10 m) have looked for the uncommitted snapshots of the task's attempts by then (an
/// attempt writes its snapshot within its lease), and watchers and workers learn of an end
/// within seconds. Under an hour with [`EVERY`], so that a repository backed up hourly holds
/// one finished task record rather than two: at 100,000 repositories that is 47 MB of etcd's
/// live bytes, the margin of the store's 1 GiB goal (README, Performance).
pub const KEEP: Duration = Duration::from_secs(30 * 60);

/// How often finished tasks are looked for: a tenth of [`KEEP`], so a record outlives it by
/// at most a tenth.
pub const EVERY: Duration = Duration::from_secs(3 * 60);

/// The tasks of `tasks` that ended before `cutoff_ms` (pure).
pub fn ended_before(tasks: &[TaskRecord], cutoff_ms: i64) -> Vec<TaskId> {
    tasks
        .iter()
        .filter(|t| match t.lease.state {
            TaskState::Completed { at_ms } | TaskState::Failed { at_ms, .. } => at_ms < cutoff_ms,
            TaskState::Pending { .. } | TaskState::Leased { .. } => false,
        })
        .map(|t| t.id.clone())
        .collect()
}

impl TaskQueue {
    /// Deletes the records of tasks that ended more than [`KEEP`] ago, [`MAX_TXN_OPS`] a
    /// transaction. Returns how many. A terminal task never becomes active again, so nothing
    /// races with the deletion.
    pub async fn prune_task_history(&self) -> CoreResult<usize> {
        let cutoff = self.clock.now_ms() - i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX);
        let ended = ended_before(&self.store.tasks().await?, cutoff);
        for chunk in ended.chunks(MAX_TXN_OPS) {
            let mut batch = Batch::default();
            for id in chunk {
                batch.delete_task(id);
            }
            self.store.apply(batch).await?;
        }
        Ok(ended.len())
    }
}

/// Prunes every [`EVERY`] until `stop`.
pub async fn prune_loop(queue: std::sync::Arc<TaskQueue>, stop: CancellationToken) {
    crate::periodic::every(EVERY, FirstPass::AtStart, &stop, || async {
        match queue.prune_task_history().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                tasks = n,
                "deleted the records of tasks that ended over half an hour ago"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "pruning finished tasks failed; the next pass retries")
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::coordinator::testing;

    /// Of three records, only the one that ended more than [`KEEP`] ago goes; a pending one
    /// and one that ended half of it ago stay, and a second pass finds nothing.
    #[tokio::test]
    async fn only_records_of_tasks_ended_over_keep_ago_are_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        let now = testing::utc("2026-12-06T12:00:00Z");
        let clock = Arc::new(ManualClock::new(now));
        let c = testing::core_on(dir.path(), clock.clone()).await;
        testing::add_acme_repo(&c, "a").await;
        let pending = c.backups.run_backup("acme/a").await.expect("backup");
        let template = c
            .queue
            .task_status(&pending.task_id)
            .await
            .expect("status")
            .expect("task");
        let ended = |id: &str, state: TaskState| {
            let mut t = template.clone();
            t.id = testing::tid(id);
            t.lease.state = state;
            t
        };
        let keep = i64::try_from(KEEP.as_millis()).expect("ms");
        let old = ended(
            "t-old",
            TaskState::Completed {
                at_ms: now - keep - 1,
            },
        );
        let recent = ended(
            "t-recent",
            TaskState::Failed {
                at_ms: now - keep / 2,
                error: "x".into(),
            },
        );
        let mut batch = Batch::default();
        batch.task(&old).task(&recent);
        c.store.apply(batch).await.expect("write");

        assert_eq!(
            ended_before(&[old.clone(), recent.clone(), template.clone()], now - keep),
            vec![old.id.clone()]
        );
        assert_eq!(c.queue.prune_task_history().await.expect("prune"), 1);
        assert!(c.store.task(&old.id).await.expect("read").is_none());
        assert!(c.store.task(&recent.id).await.expect("read").is_some());
        assert!(
            c.store.task(&template.id).await.expect("read").is_some(),
            "an active task stays"
        );
        assert_eq!(c.queue.prune_task_history().await.expect("prune"), 0);
        // Half of KEEP on, the recent one's time is over too.
        clock.advance(KEEP / 2 + Duration::from_millis(1));
        assert_eq!(c.queue.prune_task_history().await.expect("prune"), 1);
        assert!(c.store.task(&recent.id).await.expect("read").is_none());
    }
}
