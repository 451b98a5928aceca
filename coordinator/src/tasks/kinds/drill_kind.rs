//! Drill tasks: they read storage only, so the lease never carries the source's credential;
//! their outcome goes onto the drill record once the task ends for good, and damage a drill met
//! fails every backup using the damaged packs.

use repovault_common::secret::Secret;

use super::lease_spec::{DrillSpec, LeaseSpec};
use super::outcome::{DrillResult, TaskReport, VerifyResult};
use crate::error::{CoreResult, not_found};
use crate::forge_access::rate_budgets::Grant;
use crate::model::{BackupRecord, Status, TaskRecord};
use crate::store::Batch;
use crate::tasks::lease_access::RepoAccess;

use super::{Completion, Kind, LeaseCtx, check_error};
use crate::tasks::task_queue::TaskQueue;

pub(crate) struct DrillKind;

impl DrillKind {
    /// The task ended for good: record its outcome. Errors are logged: the task's own outcome
    /// is already committed.
    async fn finished(q: &TaskQueue, task: &TaskRecord, req: &TaskReport) {
        let error = check_error(task, req);
        let r = req.drill().filter(|_| req.success);
        if let Err(e) = finish_drill(q, task, r, error.as_deref()).await {
            tracing::warn!(task = %task.id, kind = task.kind.as_str(), error = %e, "recording the outcome failed");
        }
    }
}

impl Kind for DrillKind {
    /// The drill spec and the drill record marked running (see `verification/drills.rs`).
    async fn lease(
        q: &TaskQueue,
        l: &LeaseCtx<'_>,
        access: &mut RepoAccess,
        _rate: &mut Option<Grant>,
        batch: &mut Batch,
    ) -> CoreResult<LeaseSpec> {
        access.source_token = Secret::default();
        let (spec, from_copy) = lease_drill(q, l.task, batch).await?;
        if from_copy {
            // The copy holds the same repository files (the same keys) at the same paths.
            access.storage = q.locations.copy_lease_storage(l.org).await?;
        }
        Ok(LeaseSpec::Drill(spec))
    }

    /// The drill's outcome when the task ended, then the damage it found when it could not
    /// restore.
    async fn after_commit(q: &TaskQueue, c: &Completion<'_>, _finished: Option<BackupRecord>) {
        if c.task.lease.state.is_terminal() {
            Self::finished(q, c.task, c.report).await;
        }
        if let Some(d) = c.report.drill() {
            let found = VerifyResult {
                damaged_snapshot_ids: d.damaged_snapshot_ids.clone(),
                damage: d.damage.clone(),
                ..Default::default()
            };
            q.ledger.fail_damage_found(c.task, &found, c.now).await;
        }
    }

    /// A final failure without a completion (last attempt expired, cancelled) is recorded as a
    /// failed drill.
    async fn after_requeue(q: &TaskQueue, task: &TaskRecord, status: Status) {
        if status.is_terminal() {
            let failure = TaskReport::failed_without_completion(task);
            Self::finished(q, task, &failure).await;
        }
    }
}

/// The lease of a drill task: its spec and whether it reads the second copy; the drill record
/// marked running.
pub(crate) async fn lease_drill(
    q: &TaskQueue,
    task: &TaskRecord,
    batch: &mut Batch,
) -> CoreResult<(DrillSpec, bool)> {
    let mut d = q
        .store
        .drill(&task.org_id, &task.drill_subject()?)
        .await?
        .ok_or_else(|| not_found("drill", task.subject_id.clone()))?;
    d.status = Status::Running;
    batch.drill(&d);
    Ok((
        DrillSpec {
            drill_id: d.id.clone(),
            backup_id: d.backup_id.clone(),
            snapshot_id: d.snapshot_id.clone(),
        },
        d.from_copy,
    ))
}

/// A drill task ended: with the worker's comparison, or (`result` `None`) failed for good.
pub(crate) async fn finish_drill(
    q: &TaskQueue,
    task: &TaskRecord,
    result: Option<&DrillResult>,
    error: Option<&str>,
) -> CoreResult<()> {
    let Some(mut d) = q.store.drill(&task.org_id, &task.drill_subject()?).await? else {
        return Ok(());
    };
    d.finished_at_ms = Some(q.clock.now_ms());
    match result {
        Some(r) => {
            d.status = Status::Completed;
            d.checks = r.checks.clone();
            // A drill passes only when the worker says so and every check agrees.
            d.passed = Some(
                r.passed
                    && !d.checks.is_empty()
                    && d.checks
                        .iter()
                        .all(|c| c.result == crate::model::CheckOutcome::Pass),
            );
            d.summary = (!r.summary.is_empty()).then(|| r.summary.clone());
        }
        None => {
            d.status = Status::Failed;
            d.passed = Some(false);
            d.error = Some(error.unwrap_or("the drill task failed").to_string());
        }
    }
    metrics::counter!("repovault_drills_total", "outcome" => d.outcome().as_str()).increment(1);
    if d.passed == Some(false) {
        tracing::error!(org = %d.org_name, repo = %d.repo_full_name, backup = %d.backup_id, "restore drill failed");
    }
    let mut batch = Batch::default();
    batch.drill(&d);
    q.store.apply(batch).await?;
    Ok(())
}
