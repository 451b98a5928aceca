//! Verification of backups: the automatic run's results at backup completion, `backup
//! verify` as a task, the 30-day read-back rotation, and keeping the backup record and its
//! catalog object in step.
//!
//! A verification is a later fact about a backup, not its outcome: unlike the rest of the
//! record it changes after the catalog object is written, so the object is rewritten with it
//! (`rewrite_catalog`).

use std::sync::Arc;

use repovault_proto::v1 as pb;

use crate::error::{CoreError, CoreResult, not_found};
use crate::ids;
use crate::model::{
    BackupRecord, CheckOutcome, CheckResult, RepoRecord, Status, TaskKind, TaskRecord,
    Verification, VerifyMode, VerifyRun, VerifyStatus,
};
use crate::store::Batch;
use crate::tasks::queue_order::PRIORITY_MANUAL_BACKUP;
use crate::verification as v;

use crate::core::Core;

/// Rotation reads run below scheduled backups (5) and retention (2): they only re-prove what
/// was proven at backup time.
const PRIORITY_ROTATION: u8 = 1;

impl Core {
    /// The verification of a backup that just completed, from the checks its worker ran at the
    /// end of the backup, plus `size_match` against `previous_size`. `None` when the worker
    /// sent no checks (a worker older than verification): the backup then shows `pending`.
    pub(crate) fn automatic_verification(
        &self,
        b: &BackupRecord,
        result: Option<&pb::VerifyResult>,
        previous_size: Option<u64>,
        now: i64,
    ) -> CoreResult<Option<Verification>> {
        let Some(result) = result.filter(|r| !r.checks.is_empty()) else {
            return Ok(None);
        };
        let checks = v::checks_from_proto(&result.checks).map_err(CoreError::InvalidArgument)?;
        let size = v::size_match(b.size_bytes, previous_size, self.verification.read().size);
        Ok(Some(v::finished(
            VerifyRun::Automatic,
            checks,
            size,
            result,
            now,
            None,
        )))
    }

    /// The size of the latest successful backup of the repository before `b` (for
    /// `size_match`), from the stats or, for stats written before sizes were kept, the record.
    pub(crate) async fn previous_size(
        &self,
        b: &BackupRecord,
        stats: &crate::model::RepoStats,
    ) -> CoreResult<Option<u64>> {
        if stats.last_success_id.as_deref() == Some(b.id.as_str()) {
            // Re-verifying the latest: compare with the one before it.
            return self.size_before(b).await;
        }
        if let Some(size) = stats.last_success_size_bytes {
            return Ok(Some(size));
        }
        match &stats.last_success_id {
            Some(id) => Ok(self.registry.backup_record(id).await?.map(|p| p.size_bytes)),
            None => Ok(None),
        }
    }

    /// The size of the newest completed backup created before `b`.
    async fn size_before(&self, b: &BackupRecord) -> CoreResult<Option<u64>> {
        let repo = self
            .store
            .repo(&b.repo_id)
            .await?
            .ok_or_else(|| not_found("repository", b.repo_id.clone()))?;
        let mut history = self.catalog.list_catalog(&repo.org_id, &repo.id).await?;
        for r in self.store.recent_backups(&repo.id).await? {
            if !history.iter().any(|h| h.id == r.id) {
                history.push(r);
            }
        }
        Ok(history
            .iter()
            .filter(|p| p.status == Status::Completed && p.id != b.id)
            .filter(|p| (p.created_at_ms, &p.id) < (b.created_at_ms, &b.id))
            .max_by_key(|p| (p.created_at_ms, p.id.clone()))
            .map(|p| p.size_bytes))
    }

    /// `backup verify ID`: queues a verify task that runs every check again, reading back every
    /// pack the snapshot references. Idempotent while one runs: the running one is returned.
    pub async fn verify_backup(&self, id: &str) -> CoreResult<(BackupRecord, String)> {
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
            .enqueue_task(
                &repo,
                TaskKind::Verify,
                id,
                Some(VerifyMode::Manual),
                PRIORITY_MANUAL_BACKUP,
                key,
            )
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
            self.save_verification(&b).await?;
        }
        Ok((b, task.record.id))
    }

    /// Writes a backup's new verification to its store record (when the store still holds it)
    /// and to its catalog object (when written), and to the stats when it is the latest
    /// successful backup.
    pub(crate) async fn save_verification(&self, b: &BackupRecord) -> CoreResult<()> {
        let mut batch = Batch::default();
        let in_store = self.store.backup(&b.repo_id, &b.id).await?.is_some();
        if in_store {
            batch.backup(b);
        }
        let mut stats = self.store.stats(&b.repo_id).await?;
        if stats.last_success_id.as_deref() == Some(b.id.as_str()) {
            stats.note_verification(b);
            batch.stats(&b.repo_id, &stats);
        }
        self.store.apply(batch).await?;
        // Written even while the object is still pending: the outbox's create-only write then
        // finds it and keeps it, and if the outbox wrote first (from an older record), this
        // replaces it.
        if b.status.is_terminal() {
            self.catalog.rewrite_catalog(b).await?;
        }
        Ok(())
    }

    /// One pass of the read-back rotation: queues rotation tasks for the repositories whose
    /// last visit is oldest and due, keeping at most `rotation_concurrency` in flight
    /// fleet-wide. Returns how many it queued. Also refreshes the rotation's gauges.
    pub async fn run_rotation_once(&self, now: i64) -> CoreResult<u64> {
        let opts = self.verification.read().clone();
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
        let active: std::collections::HashSet<String> = self
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
                .enqueue_task(
                    &repo,
                    TaskKind::Verify,
                    &repo.id,
                    Some(VerifyMode::Rotation),
                    PRIORITY_ROTATION,
                    key,
                )
                .await?;
            if t.created {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// A rotation ended: the visit is recorded, and a damaged pack fails `zip_integrity` of
    /// every backup whose snapshot uses it.
    pub(crate) async fn finish_rotation(
        &self,
        task: &TaskRecord,
        result: Option<&pb::VerifyResult>,
        error: Option<&str>,
        now: i64,
    ) -> CoreResult<()> {
        let mut m = self.store.maintenance(&task.repo_id).await?;
        let Some(r) = result else {
            // Not a visit: the repository stays due and is tried again at the next pass.
            tracing::warn!(repo = %task.repo_id, error = error.unwrap_or(""), "read-back rotation failed");
            return Ok(());
        };
        m.last_readback_at_ms = Some(now);
        m.readback_damage = (!r.damage.is_empty()).then(|| r.damage.clone());
        let mut batch = Batch::default();
        batch.maintenance(&task.repo_id, &m);
        self.store.apply(batch).await?;
        metrics::counter!("repovault_readback_bytes_total").increment(r.bytes_read);
        metrics::counter!("repovault_readback_packs_total").increment(r.packs_read);
        metrics::counter!("repovault_verifications_total", "run" => "rotation", "status" => if r.damage.is_empty() { "verified" } else { "failed" })
            .increment(1);
        self.fail_damaged_backups(&task.repo_id, r, None, VerifyRun::Rotation, now)
            .await
    }

    /// A read-back found damaged packs (`result.damaged_snapshot_ids`): every backup of the
    /// repository whose snapshot uses one fails `zip_integrity`, naming the damage, whichever
    /// run found it (`run`). `except` is the backup whose own verification the caller records.
    /// Idempotent: a backup already failed for the damage is failed again with the same text.
    pub(crate) async fn fail_damaged_backups(
        &self,
        repo_id: &str,
        result: &pb::VerifyResult,
        except: Option<&str>,
        run: VerifyRun,
        now: i64,
    ) -> CoreResult<()> {
        if result.damaged_snapshot_ids.is_empty() {
            return Ok(());
        }
        tracing::error!(repo = %repo_id, run = %run, damage = %result.damage, snapshots = result.damaged_snapshot_ids.len(), "a read-back found damaged packs");
        let repo = self
            .store
            .repo(repo_id)
            .await?
            .ok_or_else(|| not_found("repository", repo_id.to_string()))?;
        let mut history = self.catalog.list_catalog(&repo.org_id, &repo.id).await?;
        for b in self.store.recent_backups(&repo.id).await? {
            if !history.iter().any(|h| h.id == b.id) {
                history.push(b);
            }
        }
        for mut b in history {
            if Some(b.id.as_str()) == except {
                continue;
            }
            let hit = b
                .snapshot_id
                .as_ref()
                .is_some_and(|s| result.damaged_snapshot_ids.contains(s));
            if hit {
                b.verification = Some(v::apply_damage(
                    b.verification.as_ref(),
                    &result.damage,
                    run,
                    now,
                ));
                self.save_verification(&b).await?;
            }
        }
        Ok(())
    }

    /// Queues a task of `kind` on `repo`, or returns the active one with the same key.
    pub(crate) async fn enqueue_task(
        &self,
        repo: &RepoRecord,
        kind: TaskKind,
        subject: &str,
        mode: Option<VerifyMode>,
        priority: u8,
        key: String,
    ) -> CoreResult<Enqueued> {
        // The queue lock is held across the store write: the idempotency check (collapse onto
        // an equal active task) and the enqueue sequence must agree with what the store holds,
        // and a task is durable before any worker can lease it. Cost: queue operations wait for
        // one store commit per enqueue.
        let mut q = self.queue.state.lock().await;
        if let Some(t) = q.active.values().find(|t| t.idempotency_key == key) {
            return Ok(Enqueued {
                record: t.clone(),
                created: false,
            });
        }
        let now = self.now_ms();
        let mut task = self.new_task(
            &mut q,
            ids::new_task_id(),
            kind,
            repo,
            subject,
            priority,
            key,
            now,
        );
        task.mode = mode;
        let mut batch = Batch::default();
        batch.task(&task);
        self.store.apply(batch).await?;
        q.active.insert(task.id.clone(), task.clone());
        drop(q);
        metrics::counter!("repovault_tasks_enqueued_total", "kind" => kind.as_str()).increment(1);
        self.queue.ready.notify_waiters();
        Ok(Enqueued {
            record: task,
            created: true,
        })
    }
}

/// What [`Core::enqueue_task`] did.
pub(crate) struct Enqueued {
    pub record: TaskRecord,
    /// `false`: an equal task was already active.
    pub created: bool,
}

/// The verification of a run that could not check anything: every check skipped as incomplete,
/// naming why, so the backup is not `verified` and the reason is shown.
pub(crate) fn could_not_run(error: &str, now: i64, task_id: &str) -> Verification {
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
        task_id: Some(task_id.into()),
    }
}

/// The rotation loop: a pass every `rotation_interval` until `stop`.
pub async fn rotation_loop(core: Arc<Core>, stop: tokio_util::sync::CancellationToken) {
    let interval = core.verification.read().rotation_interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match core.run_rotation_once(core.now_ms()).await {
            Ok(n) if n > 0 => tracing::info!(queued = n, "read-back rotation"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "read-back rotation pass failed"),
        }
    }
}

#[cfg(test)]
#[path = "verify_runs_tests.rs"]
mod tests;
