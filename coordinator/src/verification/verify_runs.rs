//! Verification of backups: the automatic run's results at backup completion, `backup
//! verify` as a task, the 30-day read-back rotation, and keeping the backup record and its
//! catalog object in step.
//!
//! A verification is a later fact about a backup, not its outcome: unlike the rest of the
//! record it changes after the catalog object is written, so the object is rewritten with it
//! (`rewrite_catalog`).

use crate::model::{BackupId, RepoId, TaskId};
use std::sync::Arc;

use crate::catalog::org_registry::Registry;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::{
    BackupRecord, CheckOutcome, CheckResult, Status, TaskKind, Verification, VerifyMode, VerifyRun,
    VerifyStatus,
};
use crate::periodic::FirstPass;
use crate::store::Store;
use crate::tasks::queue_order::PRIORITY_MANUAL_BACKUP;
use crate::tasks::task_queue::TaskQueue;
use crate::verification as v;
use crate::verification::verify_ledger::VerifyLedger;

use crate::tasks::task_queue::Enqueue;

/// Rotation reads run below scheduled backups (5) and retention (2): they only re-prove what
/// was proven at backup time.
const PRIORITY_ROTATION: u8 = 1;

/// Verification runs: `backup verify` as a task and the read-back rotation; what their outcome writes is the ledger's (`verify_ledger.rs`).
pub struct VerifyRuns {
    pub(crate) queue: Arc<TaskQueue>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Store,
    pub(crate) ledger: Arc<VerifyLedger>,
}

impl VerifyRuns {
    /// `backup verify ID`: queues a verify task that runs every check again, reading back every
    /// pack the snapshot references. Idempotent while one runs: the running one is returned.
    pub async fn verify_backup(&self, id: &BackupId) -> CoreResult<(BackupRecord, TaskId)> {
        let mut b = self.registry.get_backup(id).await?;
        if b.status != Status::Completed {
            return Err(CoreError::FailedPrecondition(format!(
                "backup {id} is {}: only a completed backup can be verified",
                b.status.as_str()
            )));
        }
        let repo = self
            .store
            .repo(&b.repo_id)
            .await?
            .ok_or_else(|| not_found("repository", b.repo_id.clone()))?;
        let key = format!("verify:{id}");
        let task = self
            .queue
            .enqueue(Enqueue::of_existing(
                TaskKind::Verify,
                &repo,
                id.as_str(),
                Some(VerifyMode::Manual),
                PRIORITY_MANUAL_BACKUP,
                key,
            ))
            .await?;
        if task.created {
            let mut ver = b.verification.clone().unwrap_or_else(|| Verification {
                status: VerifyStatus::Pending,
                checks: Vec::new(),
                run: VerifyRun::Manual,
                finished_at_ms: None,
                packs_read: 0,
                bytes_read: 0,
                task_id: None,
            });
            ver.status = VerifyStatus::Pending;
            ver.run = VerifyRun::Manual;
            ver.task_id = Some(task.record.id.clone());
            b.verification = Some(ver);
            self.ledger.save_verification(&b).await?;
        }
        Ok((b, task.record.id))
    }

    /// One pass of the read-back rotation: queues rotation tasks for the repositories whose
    /// last visit is oldest and due, keeping at most `rotation_concurrency` in flight
    /// fleet-wide. Returns how many it queued. Also refreshes the rotation's gauges.
    pub async fn run_rotation_once(&self, now: i64) -> CoreResult<u64> {
        let opts = self.ledger.options.read().clone();
        let repos = self.store.repos().await?;
        let mut due = Vec::new();
        let (mut current, mut overdue) = (0u64, 0u64);
        for repo in &repos {
            let stats = self.store.stats(&repo.id).await?;
            if stats.last_success_id.is_none() {
                continue;
            }
            let m = self.store.maintenance(&repo.id).await?;
            // Backups read back what they add: a repository's packs age from its first backup.
            let last = m.last_readback_at_ms.or(stats.first_backup_at_ms());
            if v::readback_overdue(last, now, opts.readback_max_age) {
                overdue += 1;
            } else {
                current += 1;
            }
            if v::rotation_due(last, now, opts.rotation_every) {
                due.push((last.unwrap_or(0), repo.clone()));
            }
        }
        metrics::gauge!("repovault_readback_repos", "state" => "current").set(current as f64);
        metrics::gauge!("repovault_readback_repos", "state" => "overdue").set(overdue as f64);
        metrics::gauge!("repovault_readback_due_repos").set(due.len() as f64);
        let active: std::collections::HashSet<RepoId> = self
            .queue
            .queue_snapshot()
            .await
            .into_iter()
            .filter(|(t, _)| t.mode == Some(VerifyMode::Rotation))
            .map(|(t, _)| t.repo_id)
            .collect();
        let room = opts.rotation_concurrency.saturating_sub(active.len());
        // A repository being visited is not due twice: the room goes to the next ones.
        due.retain(|(_, r)| !active.contains(&r.id));
        due.sort_by_key(|(last, r)| (*last, r.id.clone()));
        let mut queued = 0;
        for (_, repo) in due.into_iter().take(room) {
            let key = format!("rotation:{}", repo.id);
            let t = self
                .queue
                .enqueue(Enqueue::of_existing(
                    TaskKind::Verify,
                    &repo,
                    // A rotation's subject is its repository (`TaskRecord::subject_id`).
                    repo.id.as_str(),
                    Some(VerifyMode::Rotation),
                    PRIORITY_ROTATION,
                    key,
                ))
                .await?;
            if t.created {
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// The verification of a run that could not check anything: every check skipped as incomplete,
/// naming why, so the backup is not `verified` and the reason is shown.
pub(crate) fn could_not_run(error: &str, now: i64, task_id: &TaskId) -> Verification {
    let checks = v::CHECKS
        .iter()
        .map(|name| CheckResult {
            name: (*name).into(),
            result: CheckOutcome::Skipped,
            detail: format!("the verification could not run: {error}"),
            warning: false,
            incomplete: true,
        })
        .collect();
    Verification {
        status: VerifyStatus::Failed,
        checks,
        run: VerifyRun::Manual,
        finished_at_ms: Some(now),
        packs_read: 0,
        bytes_read: 0,
        task_id: Some(task_id.clone()),
    }
}

/// The rotation loop: a pass every `rotation_interval` until `stop`.
pub async fn rotation_loop(v: Arc<VerifyRuns>, stop: tokio_util::sync::CancellationToken) {
    let interval = v.ledger.options.read().rotation_interval;
    crate::periodic::every(interval, FirstPass::AtStart, &stop, || async {
        match v.run_rotation_once(v.queue.clock.now_ms()).await {
            Ok(n) if n > 0 => tracing::info!(queued = n, "read-back rotation"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "read-back rotation pass failed"),
        }
    })
    .await
}

#[cfg(test)]
#[path = "verify_runs_tests.rs"]
mod tests;
