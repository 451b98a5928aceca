//! The verification ledger: what a verification writes of a backup (its record, the
//! repository's stats, the rewritten catalog object), the automatic verification computed at
//! backup completion, the read-back rotation's visit, and the backups failed by damage a
//! read-back found. It enqueues nothing, so the task kinds write through it when a completion
//! commits and the verification runs (`verify_runs.rs`) enqueue through the task queue.

use crate::model::{BackupId, RepoId};
use std::sync::Arc;

use crate::tasks::kinds::outcome::VerifyResult;

use crate::catalog::catalog_objects::Catalog;
use crate::catalog::org_registry::Registry;
use crate::error::{CoreResult, not_found};
use crate::model::{BackupRecord, Status, TaskRecord, Verification, VerifyRun};
use crate::store::{Batch, Store};
use crate::verification::{self as v, VerificationOptions};

/// See the module documentation.
pub struct VerifyLedger {
    store: Store,
    catalog: Arc<Catalog>,
    registry: Arc<Registry>,
    /// The thresholds and schedules of verification; set from the configuration at start-up.
    pub options: parking_lot::RwLock<VerificationOptions>,
}

impl VerifyLedger {
    pub fn new(store: Store, catalog: Arc<Catalog>, registry: Arc<Registry>) -> Self {
        Self {
            store,
            catalog,
            registry,
            options: Default::default(),
        }
    }

    /// The verification of a backup that just completed, from the checks its worker ran at the
    /// end of the backup, plus `size_match` against `previous_size`. `None` when the worker
    /// sent no checks (a worker older than verification): the backup then shows `pending`.
    pub(crate) fn automatic_verification(
        &self,
        b: &BackupRecord,
        result: Option<&VerifyResult>,
        previous_size: Option<u64>,
        now: i64,
    ) -> Option<Verification> {
        let result = result.filter(|r| !r.checks.is_empty())?;
        let checks = result.checks.clone();
        let size = v::size_match(b.size_bytes, previous_size, self.options.read().size);
        Some(v::finished(
            VerifyRun::Automatic,
            checks,
            size,
            result,
            now,
            None,
        ))
    }

    /// The size of the latest successful backup of the repository before `b` (for
    /// `size_match`), from the stats or, for stats written before sizes were kept, the record.
    pub(crate) async fn previous_size(
        &self,
        b: &BackupRecord,
        stats: &crate::model::RepoStats,
    ) -> CoreResult<Option<u64>> {
        if stats.last_success_id.as_ref() == Some(&b.id) {
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
        if stats.last_success_id.as_ref() == Some(&b.id) {
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

    /// A rotation ended: the visit is recorded, and a damaged pack fails `zip_integrity` of
    /// every backup whose snapshot uses it.
    pub(crate) async fn finish_rotation(
        &self,
        task: &TaskRecord,
        result: Option<&VerifyResult>,
        error: Option<&str>,
        now: i64,
    ) -> CoreResult<()> {
        let mut m = self.store.maintenance(&task.repo_id).await?;
        let Some(r) = result else {
            // Not a visit: the repository stays due and is tried again at the next pass.
            tracing::warn!(repo = %task.repo_id, error = error.unwrap_or(""), "read-back rotation failed");
            return Ok(());
        };
        // Damage a visit found stays reported until the next due visit (`rotation_every`
        // later) finds none. A clean visit sooner is a second one a pass queued as the first
        // finished (planned on a record read before the first was written): the damaged pack
        // is out of the index by then, so it cannot see what the first found.
        let every =
            i64::try_from(self.options.read().rotation_every.as_millis()).unwrap_or(i64::MAX);
        let recent = m
            .last_readback_at_ms
            .is_some_and(|last| now.saturating_sub(last) < every);
        let found = (!r.damage.is_empty()).then(|| r.damage.clone());
        m.readback_damage = match found {
            None if recent => m.readback_damage.take(),
            found => found,
        };
        m.last_readback_at_ms = Some(now);
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
        repo_id: &RepoId,
        result: &VerifyResult,
        except: Option<&BackupId>,
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
        if let Err(e) = self.catalog.take_out_recorded_damage(&repo, now).await {
            tracing::error!(repo = %repo.full_name(), error = %e, "the damaged packs could not be taken out of the index");
        }
        let mut history = self.catalog.list_catalog(&repo.org_id, &repo.id).await?;
        for b in self.store.recent_backups(&repo.id).await? {
            if !history.iter().any(|h| h.id == b.id) {
                history.push(b);
            }
        }
        for mut b in history {
            if Some(&b.id) == except {
                continue;
            }
            let hit = b
                .snapshot_id
                .as_ref()
                .is_some_and(|s| result.damaged_snapshot_ids.iter().any(|d| d == s.as_str()));
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

    /// Damage a restore or a drill found when it could not restore (a backup's and a verify's
    /// come with their verification): every backup using the damaged packs is failed. Errors
    /// are logged: the task's own outcome is already committed.
    pub(crate) async fn fail_damage_found(
        &self,
        task: &TaskRecord,
        found: &VerifyResult,
        now: i64,
    ) {
        if let Err(e) = self
            .fail_damaged_backups(
                &task.repo_id,
                found,
                None,
                VerifyRun::of_task(task.kind),
                now,
            )
            .await
        {
            tracing::error!(task = %task.id, error = %e, "could not mark the backups using damaged packs");
        }
    }
}
