//! Verify tasks (`backup verify`, and the read-back rotation): they read storage only, so the
//! lease never carries the source's credential; their outcome goes onto the backup's
//! verification (or the rotation's record) once the task ends for good.

use repovault_common::secret::Secret;

use super::lease_spec::{LeaseSpec, VerifySpec};
use super::outcome::{TaskReport, VerifyResult};
use crate::error::CoreResult;
use crate::forge_access::rate_budgets::Grant;
use crate::model::{BackupRecord, Status, TaskRecord, VerifyMode, VerifyRun, VerifyStatus};
use crate::store::Batch;
use crate::tasks::lease_access::RepoAccess;
use crate::verification as v;

use super::{Completion, Kind, LeaseCtx, check_error};
use crate::tasks::task_queue::TaskQueue;
use crate::verification::verify_runs::could_not_run;

pub(crate) struct VerifyKind;

impl VerifyKind {
    /// The task ended for good: record its outcome. Errors are logged: the task's own outcome
    /// is already committed.
    async fn finished(q: &TaskQueue, task: &TaskRecord, req: &TaskReport) {
        let error = check_error(task, req);
        let r = req.verify().filter(|_| req.success);
        if let Err(e) = finish_verify(q, task, r, error.as_deref()).await {
            tracing::warn!(task = %task.id, kind = task.kind.as_str(), error = %e, "recording the outcome failed");
        }
    }
}

impl Kind for VerifyKind {
    /// The verify spec; a manual run is marked running on its backup (see `verification/verify_runs.rs`).
    async fn lease(
        q: &TaskQueue,
        l: &LeaseCtx<'_>,
        access: &mut RepoAccess,
        _rate: &mut Option<Grant>,
        batch: &mut Batch,
    ) -> CoreResult<LeaseSpec> {
        access.source_token = Secret::default();
        Ok(LeaseSpec::Verify(lease_verify(q, l.task, batch).await?))
    }

    async fn after_commit(q: &TaskQueue, c: &Completion<'_>, _finished: Option<BackupRecord>) {
        if c.task.lease.state.is_terminal() {
            Self::finished(q, c.task, c.report).await;
        }
    }

    /// A final failure without a completion (last attempt expired, cancelled) is recorded as
    /// a verification that could not run.
    async fn after_requeue(q: &TaskQueue, task: &TaskRecord, status: Status) {
        if status.is_terminal() {
            let failure = TaskReport::failed_without_completion(task);
            Self::finished(q, task, &failure).await;
        }
    }
}

/// The lease of a verify task: its spec, and a manual run marked running in the store (in
/// `batch`, the lease's own transaction; the catalog object follows when it finishes). A
/// backup deleted since the task was queued leases with no snapshot, which the worker
/// refuses for good: the task ends instead of blocking the queue.
pub(crate) async fn lease_verify(
    q: &TaskQueue,
    task: &TaskRecord,
    batch: &mut Batch,
) -> CoreResult<VerifySpec> {
    let max_age = {
        let o = q.ledger.options.read();
        v::rotation_pack_age(o.readback_max_age, o.rotation_every)
    };
    if task.mode == Some(VerifyMode::Rotation) {
        return Ok(VerifySpec::Rotation { max_age });
    }
    let Some(mut b) = q.registry.backup_record(&task.backup_subject()?).await? else {
        return Ok(VerifySpec::Manual {
            backup_id: task.backup_subject()?,
            snapshot_id: None,
        });
    };
    if let Some(ver) = b.verification.as_mut() {
        ver.status = VerifyStatus::Running;
    }
    if q.store.backup(&b.repo_id, &b.id).await?.is_some() {
        batch.backup(&b);
    }
    Ok(VerifySpec::Manual {
        backup_id: b.id.clone(),
        snapshot_id: b.snapshot_id.clone(),
    })
}

/// A verify task ended: with the worker's result, or (`result` `None`) failed for good
/// without one.
pub(crate) async fn finish_verify(
    q: &TaskQueue,
    task: &TaskRecord,
    result: Option<&VerifyResult>,
    error: Option<&str>,
) -> CoreResult<()> {
    let now = q.clock.now_ms();
    if task.mode == Some(VerifyMode::Rotation) {
        return q.ledger.finish_rotation(task, result, error, now).await;
    }
    let Some(mut b) = q.registry.backup_record(&task.backup_subject()?).await? else {
        // Deleted meanwhile (retention, `backup delete`): nothing to record.
        return Ok(());
    };
    let ver = match result {
        Some(r) => {
            let checks = r.checks.clone();
            let stats = q.store.stats(&b.repo_id).await?;
            let previous = q.ledger.previous_size(&b, &stats).await?;
            let size = v::size_match(b.size_bytes, previous, q.ledger.options.read().size);
            v::finished(
                VerifyRun::Manual,
                checks,
                size,
                r,
                now,
                Some(task.id.clone()),
            )
        }
        None => could_not_run(error.unwrap_or("the verify task failed"), now, &task.id),
    };
    metrics::counter!("repovault_verifications_total", "run" => VerifyRun::Manual.as_str(), "status" => ver.status.as_str())
        .increment(1);
    b.verification = Some(ver);
    q.ledger.save_verification(&b).await?;
    match result {
        Some(r) => {
            q.ledger
                .fail_damaged_backups(&b.repo_id, r, Some(&b.id), VerifyRun::Manual, now)
                .await
        }
        None => Ok(()),
    }
}
