//! Backup tasks: leased only once the snapshot repository exists, alone on their repository,
//! with the source's credential and a share of the fleet's rate budget; their completion is the
//! commit point of a backup (snapshot id, sizes, counts, the automatic verification, a new
//! master key), and a backup that ends writes its catalog object and wakes the forget pass.
//! Enqueueing collapses onto an equal active backup (per repository, type and trigger).

use repovault_common::manifest::{self, Counts};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::catalog::reconcile::ForgetRequest;
use crate::error::{CoreError, CoreResult, not_found};
use crate::ids;
use crate::model::{
    BackupRecord, BackupType, CheckOutcome, OrgRecord, RepoRecord, Status, TaskKind, TaskRecord,
    Trigger, VerifyRun,
};
use crate::secrets::SealContext;
use crate::store::Batch;
use crate::tasks::queue_order::PRIORITY_MANUAL_BACKUP;
use crate::verification::GIT_FSCK;

use super::{Completion, Kind, LeaseCtx};
use crate::core::Core;

/// A pending backup record of `repo` for the task `task_id`.
pub(crate) fn new_backup(
    repo: &RepoRecord,
    backup_type: BackupType,
    trigger: Trigger,
    priority: u8,
    task_id: &str,
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
        task_id: task_id.to_string(),
        attempt: 0,
        bytes_received: 0,
        priority,
        worker_id: None,
        verification: None,
    }
}

pub(crate) struct BackupKind;

impl Kind for BackupKind {
    /// Two backups of one repository would race for its parent and its snapshot fence.
    const EXCLUSIVE: bool = true;

    fn needs_snapshot_repo(repo: &RepoRecord) -> bool {
        repo.sealed_master_key.is_none()
    }

    /// The organisation's credential, unless the repository has its own token.
    async fn credential_org(
        _core: &Core,
        _task: &TaskRecord,
        org: &OrgRecord,
        repo: &RepoRecord,
    ) -> CoreResult<Option<OrgRecord>> {
        Ok(repo.sealed_token.is_none().then(|| org.clone()))
    }

    /// The backup spec (parent snapshot, and whether the parent's mirror failed `git fsck`), the
    /// rate grant, and the backup record marked running at this attempt.
    async fn lease(
        core: &Core,
        l: &LeaseCtx<'_>,
        proto: &mut pb::Task,
        batch: &mut Batch,
    ) -> CoreResult<()> {
        let task = l.task;
        if let (Some(access), Some(lease)) = (&proto.repo, &proto.lease) {
            proto.rate = core.forge.lease_grant(access, lease);
        }
        let mut b = core
            .store
            .backup(&task.repo_id, &task.subject_id)
            .await?
            .ok_or_else(|| not_found("backup", task.subject_id.clone()))?;
        let stats = core.store.stats(&task.repo_id).await?;
        b.status = Status::Running;
        b.started_at_ms.get_or_insert(l.now);
        b.attempt = l.attempt;
        b.worker_id = Some(l.worker_id.to_string());
        b.parent_snapshot_id = stats.last_snapshot_id.clone();
        let parent_mirror_damaged = match &stats.last_success_id {
            Some(id) => core
                .store
                .backup(&task.repo_id, id)
                .await?
                .and_then(|p| p.verification)
                .is_some_and(|v| {
                    v.checks
                        .iter()
                        .any(|c| c.name == GIT_FSCK && c.result == CheckOutcome::Fail)
                }),
            None => false,
        };
        proto.spec = Some(pb::task::Spec::Backup(pb::BackupSpec {
            parent_mirror_damaged,
            backup_id: b.id.clone(),
            backup_type: b.backup_type.into(),
            trigger: b.trigger.into(),
            parent_snapshot_id: stats.last_snapshot_id.unwrap_or_default(),
            parent_backup_id: stats.last_success_id.unwrap_or_default(),
        }));
        batch.backup(&b);
        Ok(())
    }

    /// The backup record with the attempt's outcome; on success its snapshot (a full 64-hex id,
    /// else the completion is refused), sizes, counts, components, automatic verification and
    /// the repository's master key when the worker created it; when terminal, the stats and the
    /// catalog object's pending mark.
    async fn commit(
        core: &Core,
        c: &Completion<'_>,
        batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        let (task, req, status, now) = (c.task, c.req, c.status, c.now);
        let mut b = core
            .store
            .backup(&task.repo_id, &task.subject_id)
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
            let r = req.backup_result().cloned().unwrap_or_default();
            if r.snapshot_id.len() != 64 {
                return Err(CoreError::InvalidArgument(format!(
                    "completion carries snapshot id {:?}, not a full 64-hex id",
                    r.snapshot_id
                )));
            }
            b.snapshot_id = Some(r.snapshot_id.clone());
            b.size_bytes = r.size_bytes;
            b.added_bytes = r.added_bytes;
            b.bytes_received = r.bytes_received;
            b.counts = Counts::from(&r.counts.unwrap_or_default());
            b.components = manifest::components_from_proto(&r.components)
                .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
            let stats = core.store.stats(&task.repo_id).await?;
            let previous = core.previous_size(&b, &stats).await?;
            b.verification =
                core.automatic_verification(&b, r.verification.as_ref(), previous, now)?;
            if let Some(ver) = &b.verification {
                metrics::counter!("repovault_verifications_total", "run" => VerifyRun::Automatic.as_str(), "status" => ver.status.as_str())
                    .increment(1);
            }
            if !r.master_key.is_empty()
                && let Some(mut repo) = core.store.repo(&task.repo_id).await?
            {
                repo.sealed_master_key = Some(core.secrets.seal(
                    SealContext::RepoMasterKey(&repo.id),
                    &Secret::new(r.master_key.clone()),
                ));
                batch.repo(&repo);
            }
        }
        let mut finished = None;
        if status.is_terminal() {
            b.finished_at_ms = Some(now);
            let mut stats = core.store.stats(&task.repo_id).await?;
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
    async fn after_commit(core: &Core, c: &Completion<'_>, finished: Option<BackupRecord>) {
        let Some(b) = finished else {
            return;
        };
        core.after_backup_finished(&b).await;
        if let Some(r) = c.req.backup_result().and_then(|r| r.verification.as_ref())
            && let Err(e) = core
                .fail_damaged_backups(&b.repo_id, r, Some(&b.id), VerifyRun::Automatic, c.now)
                .await
        {
            tracing::error!(backup = %b.id, error = %e, "could not mark the backups using damaged packs");
        }
    }

    /// The backup record with the task's status and last error; when terminal, the stats and
    /// the catalog object's pending mark.
    async fn requeue(
        core: &Core,
        task: &TaskRecord,
        status: Status,
        now: i64,
        batch: &mut Batch,
    ) -> CoreResult<Option<BackupRecord>> {
        let Some(mut b) = core.store.backup(&task.repo_id, &task.subject_id).await? else {
            return Ok(None);
        };
        b.status = status;
        b.error = task.lease.last_error.clone();
        let mut terminal = None;
        if status.is_terminal() {
            b.finished_at_ms = Some(now);
            let mut stats = core.store.stats(&task.repo_id).await?;
            stats.record(&b);
            batch.catalog_pending(&b.repo_id, &b.id);
            batch.stats(&task.repo_id, &stats);
            terminal = Some(b.clone());
        }
        batch.backup(&b);
        Ok(terminal)
    }
}

impl Core {
    /// A manual backup: full, priority 8.
    pub async fn run_backup(&self, full_name: &str) -> CoreResult<BackupRecord> {
        self.run_backup_of_type(full_name, BackupType::Full).await
    }

    /// A manual backup of `backup_type` (`full`, or `incremental` when an operator asks for
    /// one), priority 8. A repository without a successful backup gets a full one.
    pub async fn run_backup_of_type(
        &self,
        full_name: &str,
        backup_type: BackupType,
    ) -> CoreResult<BackupRecord> {
        let repo = self.registry.repo_named(full_name).await?;
        if repo.deleted {
            return Err(CoreError::FailedPrecondition(format!(
                "repository {full_name} was deleted on its forge: its backups are kept, it is not backed up any more"
            )));
        }
        let backup_type = match self.store.stats(&repo.id).await?.last_success_id {
            Some(_) => backup_type,
            None => BackupType::Full,
        };
        self.enqueue_backup(&repo, backup_type, Trigger::Manual, PRIORITY_MANUAL_BACKUP)
            .await
    }

    /// Enqueues a backup of `repo`, or returns the equal backup already pending or running
    /// (idempotent per repository, type and trigger while that task is active).
    pub async fn enqueue_backup(
        &self,
        repo: &RepoRecord,
        backup_type: BackupType,
        trigger: Trigger,
        priority: u8,
    ) -> CoreResult<BackupRecord> {
        self.enqueue_backup_with(repo, backup_type, trigger, priority, Batch::default())
            .await
    }

    /// [`Core::enqueue_backup`], writing `extra` in the same transaction (the scheduler's
    /// last materialised slot); when the backup collapses onto an active one, `extra` is
    /// written alone.
    pub(crate) async fn enqueue_backup_with(
        &self,
        repo: &RepoRecord,
        backup_type: BackupType,
        trigger: Trigger,
        priority: u8,
        extra: Batch,
    ) -> CoreResult<BackupRecord> {
        let key = format!("backup:{}:{backup_type}:{trigger}", repo.id);
        // The queue lock is held across the store write: the idempotency check (collapse onto
        // an equal active task) and the enqueue sequence must agree with what the store holds,
        // and a task is durable before any worker can lease it. Cost: queue operations wait for
        // one store commit per enqueue.
        let mut q = self.queue.state.lock().await;
        if let Some(t) = q.active.values().find(|t| t.idempotency_key == key) {
            let existing = self.store.backup(&repo.id, &t.subject_id).await?;
            if let Some(b) = existing {
                self.store.apply(extra).await?;
                return Ok(b);
            }
        }
        let now = self.now_ms();
        let task_id = ids::new_task_id();
        let backup = new_backup(repo, backup_type, trigger, priority, &task_id, now);
        let task = self.new_task(
            &mut q,
            task_id,
            TaskKind::Backup,
            repo,
            &backup.id,
            priority,
            key,
            now,
        );
        let mut batch = Batch::default();
        batch.task(&task).backup(&backup).extend(extra);
        self.store.apply(batch).await?;
        q.active.insert(task.id.clone(), task);
        drop(q);
        metrics::counter!("repovault_tasks_enqueued_total", "kind" => "backup").increment(1);
        self.queue.ready.notify_waiters();
        Ok(backup)
    }

    /// Every terminal backup passes here once: completion, final failure, lease expiry. Writes
    /// its catalog object and wakes the forget pass of its repository.
    pub(crate) async fn after_backup_finished(&self, b: &BackupRecord) {
        metrics::counter!("repovault_backups_total", "outcome" => b.status.as_str()).increment(1);
        let result = self.catalog.finish_catalog(&b.repo_id).await;
        if let Err(e) = result {
            // The record stays in the store until its object is written (start-up repair).
            tracing::warn!(backup = %b.id, error = %e, "catalog object not written yet");
        }
        let _ = self.forget_tx.send(ForgetRequest::Repo {
            repo_id: b.repo_id.clone(),
        });
    }
}
