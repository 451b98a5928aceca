//! Backup tasks: leased only once the snapshot repository exists, alone on their repository,
//! with the source's credential and a share of the fleet's rate budget; their completion is the
//! commit point of a backup (snapshot id, sizes, counts, the automatic verification, a new
//! master key), and a backup that ends writes its catalog object and wakes the forget pass.
//! Enqueueing collapses onto an equal active backup (per repository, type and trigger).

use crate::model::TaskId;
use repovault_common::manifest::Counts;

use crate::catalog::reconcile::ForgetRequest;
use crate::error::{CoreError, CoreResult, not_found};
use crate::ids;
use crate::model::{
    BackupRecord, BackupType, CheckOutcome, OrgRecord, RepoRecord, Status, TaskRecord, Trigger,
    VerifyRun, VerifyStatus,
};
use crate::secrets::SealContext;
use crate::store::Batch;
use crate::verification::GIT_FSCK;

use super::lease_spec::{BackupSpec, LeaseSpec};
use super::{Completion, Kind, LeaseCtx};
use crate::forge_access::rate_budgets::Grant;
use crate::tasks::lease_access::RepoAccess;
use crate::tasks::task_queue::TaskQueue;

/// A pending backup record of `repo` for the task `task_id`.
pub(crate) fn new_backup(
    repo: &RepoRecord,
    backup_type: BackupType,
    trigger: Trigger,
    priority: u8,
    task_id: &TaskId,
    now: i64,
) -> BackupRecord {
    BackupRecord {
        id: ids::new_backup_id(&repo.id, now),
        org_id: repo.org_id.clone(),
        repo_id: repo.id.clone(),
        org_name: repo.org_name.clone(),
        repo_name: repo.name.clone(),
        backup_type,
        trigger,
        status: Status::Pending,
        error: None,
        created_at_ms: now,
        started_at_ms: None,
        finished_at_ms: None,
        size_bytes: 0,
        added_bytes: 0,
        counts: Counts::default(),
        components: Default::default(),
        snapshot_id: None,
        parent_snapshot_id: None,
        task_id: task_id.clone(),
        attempt: 0,
        bytes_received: 0,
        priority,
        worker_id: None,
        verification: None,
        copy: None,
    }
}

pub(crate) struct BackupKind;

impl Kind for BackupKind {
    /// Two backups of one repository would race for its parent and its snapshot fence.
    const EXCLUSIVE: bool = true;
    const USES_MIRROR_CACHE: bool = true;

    fn needs_snapshot_repo(repo: &RepoRecord) -> bool {
        repo.sealed_master_key.is_none()
    }

    /// The organisation's credential, unless the repository has its own token.
    async fn credential_org(
        _q: &TaskQueue,
        _task: &TaskRecord,
        org: &OrgRecord,
        repo: &RepoRecord,
    ) -> CoreResult<Option<OrgRecord>> {
        Ok(repo.sealed_token.is_none().then(|| org.clone()))
    }

    /// The backup spec (parent snapshot, and whether the parent's mirror failed `git fsck`), the
    /// rate grant, and the backup record marked running at this attempt.
    async fn lease(
        q: &TaskQueue,
        l: &LeaseCtx<'_>,
        access: &mut RepoAccess,
        rate: &mut Option<Grant>,
        batch: &mut Batch,
    ) -> CoreResult<LeaseSpec> {
        let task = l.task;
        *rate = q.forge.lease_grant(access, l.lease);
        let mut b = q
            .store
            .backup(&task.repo_id, &task.backup_subject()?)
            .await?
            .ok_or_else(|| not_found("backup", task.subject_id.clone()))?;
        let stats = q.store.stats(&task.repo_id).await?;
        b.status = Status::Running;
        b.started_at_ms.get_or_insert(l.now);
        b.attempt = l.lease.attempt;
        b.worker_id = Some(l.worker_id.to_string());
        b.parent_snapshot_id = stats.last_snapshot_id.clone();
        let parent_verification = match &stats.last_success_id {
            Some(id) => q
                .store
                .backup(&task.repo_id, id)
                .await?
                .and_then(|p| p.verification),
            None => None,
        };
        let parent_mirror_damaged = parent_verification.as_ref().is_some_and(|v| {
            v.checks
                .iter()
                .any(|c| c.name == GIT_FSCK && c.result == CheckOutcome::Fail)
        });
        let parent_verified = parent_verification
            .as_ref()
            .is_some_and(|v| v.status == VerifyStatus::Verified);
        let spec = LeaseSpec::Backup(BackupSpec {
            parent_mirror_damaged,
            parent_verified,
            backup_id: b.id.clone(),
            backup_type: b.backup_type,
            trigger: b.trigger,
            parent_snapshot_id: stats.last_snapshot_id,
            parent_backup_id: stats.last_success_id,
        });
        batch.backup(&b);
        Ok(spec)
    }

    /// The backup record with the attempt's outcome; on success its snapshot (a full 64-hex id,
    /// else the completion is refused), sizes, counts, components, automatic verification and
    /// the repository's master key when the worker created it; when terminal, the stats and the
    /// catalog object's pending mark.
    async fn commit(
        q: &TaskQueue,
        c: &Completion<'_>,
        batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        let (task, req, status, now) = (c.task, c.report, c.status, c.now);
        let mut b = q
            .store
            .backup(&task.repo_id, &task.backup_subject()?)
            .await?
            .ok_or_else(|| not_found("backup", task.subject_id.clone()))?;
        b.status = status;
        b.attempt = c.attempt;
        b.error = task
            .lease
            .last_error
            .clone()
            .filter(|_| status != Status::Completed);
        if req.success {
            let r = req.backup().cloned().unwrap_or_default();
            b.snapshot_id = Some(r.snapshot_id.clone().ok_or_else(|| {
                CoreError::InvalidArgument(
                    "result.backup.snapshot_id: a successful backup names the snapshot it wrote"
                        .into(),
                )
            })?);
            b.size_bytes = r.size_bytes;
            b.added_bytes = r.added_bytes;
            b.bytes_received = r.bytes_received;
            b.counts = r.counts;
            b.components = r.components.clone();
            let stats = q.store.stats(&task.repo_id).await?;
            let previous = q.ledger.previous_size(&b, &stats).await?;
            b.verification =
                q.ledger
                    .automatic_verification(&b, r.verification.as_ref(), previous, now);
            if let Some(ver) = &b.verification {
                metrics::counter!("repovault_verifications_total", "run" => VerifyRun::Automatic.as_str(), "status" => ver.status.as_str())
                    .increment(1);
            }
            if let Some(master_key) = &r.master_key
                && let Some(mut repo) = q.store.repo(&task.repo_id).await?
            {
                repo.sealed_master_key = Some(
                    q.secrets
                        .seal(SealContext::RepoMasterKey(&repo.id), master_key),
                );
                batch.repo(&repo);
            }
        }
        let mut finished = None;
        if status.is_terminal() {
            b.finished_at_ms = Some(now);
            let mut stats = q.store.stats(&task.repo_id).await?;
            stats.record(&b);
            batch.catalog_pending(&b.repo_id, &b.id);
            batch.stats(&task.repo_id, &stats);
            finished = Some(b.clone());
        } else {
            b.status = Status::Pending;
        }
        batch.backup(&b);
        Ok(finished)
    }

    /// A backup that ended: its catalog object, and the backups using packs its read-back found
    /// damaged (packs it shares with older backups).
    async fn after_commit(q: &TaskQueue, c: &Completion<'_>, finished: Option<BackupRecord>) {
        let Some(b) = finished else {
            return;
        };
        after_backup_finished(q, &b).await;
        if let Some(r) = c.report.backup().and_then(|r| r.verification.as_ref())
            && let Err(e) = q
                .ledger
                .fail_damaged_backups(&b.repo_id, r, Some(&b.id), VerifyRun::Automatic, c.now)
                .await
        {
            tracing::error!(backup = %b.id, error = %e, "could not mark the backups using damaged packs");
        }
    }

    /// The backup record with the task's status and last error; when terminal, the stats and
    /// the catalog object's pending mark.
    async fn requeue(
        q: &TaskQueue,
        task: &TaskRecord,
        status: Status,
        now: i64,
        batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        let Some(mut b) = q
            .store
            .backup(&task.repo_id, &task.backup_subject()?)
            .await?
        else {
            return Ok(None);
        };
        b.status = status;
        b.error = task.lease.last_error.clone();
        let mut terminal = None;
        if status.is_terminal() {
            b.finished_at_ms = Some(now);
            let mut stats = q.store.stats(&task.repo_id).await?;
            stats.record(&b);
            batch.catalog_pending(&b.repo_id, &b.id);
            batch.stats(&task.repo_id, &stats);
            terminal = Some(b.clone());
        }
        batch.backup(&b);
        Ok(terminal)
    }
}

/// Every terminal backup passes here once: completion, final failure, lease expiry. Writes
/// its catalog object and, when an attempt of it may have left a snapshot that was not
/// committed, wakes the forget pass of its repository.
pub(crate) async fn after_backup_finished(q: &TaskQueue, b: &BackupRecord) {
    metrics::counter!("repovault_backups_total", "outcome" => b.status.as_str()).increment(1);
    let result = q.catalog.finish_catalog(&b.repo_id).await;
    if let Err(e) = result {
        // The record stays in the store until its object is written (start-up repair).
        tracing::warn!(backup = %b.id, error = %e, "catalog object not written yet");
    }
    if may_leave_uncommitted(b) {
        let _ = q.forget_tx.send(ForgetRequest::Repo {
            repo_id: b.repo_id.clone(),
        });
    }
}

/// Whether a terminal backup may have left an uncommitted snapshot behind: any that did not
/// complete, and any that took more than one attempt. A backup completed by its first attempt
/// had no other attempt to write one, so sweeping its repository (a listing and a read of every
/// snapshot file) would find nothing; the periodic sweep still covers every repository.
fn may_leave_uncommitted(b: &BackupRecord) -> bool {
    b.status != Status::Completed || b.attempt > 1
}
