//! Backup requests: a manual backup by repository name, and the enqueue every trigger
//! (manual, schedule, push) goes through.

use std::sync::Arc;

use crate::catalog::org_registry::Registry;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::{BackupRecord, BackupType, RepoRecord, TaskKind, Trigger};
use crate::store::{Batch, Store};
use crate::tasks::queue_order::PRIORITY_MANUAL_BACKUP;
use crate::tasks::task_queue::{Enqueue, NewTask, TaskQueue};

use super::backup_kind::new_backup;

/// Enqueues backups. Owns nothing: the task and its backup record go to the queue and the store
/// together ([`TaskQueue::enqueue`]).
pub struct Backups {
    queue: Arc<TaskQueue>,
    registry: Arc<Registry>,
    store: Store,
}

impl Backups {
    pub fn new(queue: Arc<TaskQueue>, registry: Arc<Registry>, store: Store) -> Self {
        Self {
            queue,
            registry,
            store,
        }
    }

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

    /// [`Self::enqueue_backup`], writing `extra` in the same transaction (the scheduler's
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
        let enqueued = self
            .queue
            .enqueue(backup_enqueue(repo, backup_type, trigger, priority, extra))
            .await?;
        let t = enqueued.record;
        self.store
            .backup(&repo.id, &t.backup_subject()?)
            .await?
            .ok_or_else(|| not_found("backup", t.subject_id.clone()))
    }
}

/// The enqueue of a backup of `repo` with its backup record; `always` is written whether or not
/// it collapses onto an equal active backup (same repository, type and trigger).
pub(crate) fn backup_enqueue(
    repo: &RepoRecord,
    backup_type: BackupType,
    trigger: Trigger,
    priority: u8,
    always: Batch,
) -> Enqueue<'_> {
    Enqueue {
        task: NewTask {
            kind: TaskKind::Backup,
            repo,
            priority,
            key: format!("backup:{}:{backup_type}:{trigger}", repo.id),
            mode: None,
        },
        subject: Box::new(move |task_id, now| {
            let backup = new_backup(repo, backup_type, trigger, priority, task_id, now);
            let mut batch = Batch::default();
            batch.backup(&backup);
            (backup.id.into(), batch)
        }),
        always,
    }
}
