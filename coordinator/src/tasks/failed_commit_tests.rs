//! A lease or completion whose store commit fails: staged under the queue lock and awaited
//! after it (group commit), the queue's memory has already moved on when the failure comes back,
//! and must return to the store's record.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::clock::SystemClock;
use crate::coordinator::testing::{SNAPSHOT, add_acme_repo, core_on_kv, one_slot_worker, tid};
use crate::kv::faulty_kv::FaultyKv;
use crate::model::Status;
use crate::tasks::kinds::outcome::{BackupResult, TaskReport, TaskResult};
use crate::tasks::lease_state::TaskState;
use crate::tasks::lifecycle::CompletionOutcome;

#[tokio::test]
async fn a_lease_or_completion_that_is_not_committed_leaves_the_task_as_the_store_has_it() {
    let dir = tempfile::tempdir().expect("dir");
    let kv = FaultyKv::new();
    let c = core_on_kv(dir.path(), Arc::new(SystemClock), kv.clone()).await;
    add_acme_repo(&c, "a").await;
    let worker_id = one_slot_worker(&c, "w").await;
    let acquire = || {
        c.queue
            .acquire(&worker_id, Default::default(), std::time::Duration::ZERO)
    };
    let run = c.backups.run_backup("acme/a").await.expect("backup");
    let status = || async {
        c.queue
            .task_status(&run.task_id)
            .await
            .expect("status")
            .expect("task")
    };
    // The snapshot repository is created before the lease (outside the queue lock).
    assert!(acquire().await.expect("probe").is_some());
    let held = status().await;
    let lease = crate::tasks::lifecycle::Lease {
        task_id: held.id.clone(),
        attempt: held.lease.attempt,
    };
    c.queue
        .release(&worker_id, &lease, "test: start over")
        .await
        .expect("release");

    // A lease whose commit fails is not given out, and the task is pending again.
    kv.refusing.store(true, Ordering::SeqCst);
    assert!(acquire().await.is_err(), "the lease was not durable");
    let t = status().await;
    assert!(matches!(t.lease.state, TaskState::Pending { .. }), "{t:?}");
    assert_eq!(
        t,
        c.store
            .task(&run.task_id)
            .await
            .expect("read")
            .expect("record")
    );

    kv.refusing.store(false, Ordering::SeqCst);
    let leased = acquire().await.expect("acquire").expect("a lease");
    assert_eq!(leased.lease.attempt, lease.attempt + 1);

    // A completion whose commit fails is refused and the lease is still held: the worker's
    // retry commits it.
    let report = TaskReport {
        worker_id: worker_id.clone(),
        success: true,
        result: Some(TaskResult::Backup(Box::new(BackupResult {
            snapshot_id: Some(tid(SNAPSHOT)),
            ..Default::default()
        }))),
        ..Default::default()
    };
    kv.refusing.store(true, Ordering::SeqCst);
    assert!(c.queue.complete(&leased.lease, &report).await.is_err());
    let t = status().await;
    assert!(
        matches!(&t.lease.state, TaskState::Leased { worker_id: holder, .. } if *holder == worker_id),
        "{t:?}"
    );
    assert_eq!(t.committed_attempt, None);
    kv.refusing.store(false, Ordering::SeqCst);
    assert_eq!(
        c.queue
            .complete(&leased.lease, &report)
            .await
            .expect("retry"),
        CompletionOutcome::Committed
    );
    let t = c
        .store
        .task(&run.task_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(t.committed_attempt, Some(leased.lease.attempt));
    assert_eq!(t.lease.state.status(), Status::Completed);
}
