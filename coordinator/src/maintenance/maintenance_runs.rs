//! Maintenance: applies the retention plan (`crate::maintenance::retention`) to every
//! repository; the claim that keeps backups of a repository off while it is maintained (also
//! taken by `backup delete` and the purges in `purge_runs.rs`).
//!
//! Per repository, in this order (each step idempotent, so a crash anywhere is finished by the
//! next run, which plans the same drops again): forget the dropped snapshots, delete their
//! catalog objects, then remove their store records (one transaction, together with the
//! maintenance record saying a prune is wanted; a failed attempt since the last prune wants one
//! too, for the packs it left: [`failed_attempt_since_prune`]). Then, when due, prune the
//! snapshot repository:
//! two-phase (rustic_core marks unused packs and deletes them in a later prune, `keep_delete`
//! after marking), at most once per `prune_interval` per repository for the first phase. All of
//! it runs with the repository claimed in the queue (`Queue::maintenance`), so no backup of it is
//! leased meanwhile; a repository whose backup is running is skipped until the next run.
//! Repositories are maintained at most `concurrency` at a time fleet-wide.

use crate::model::RepoId;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use repovault_common::repo::{PruneOutcome, SnapshotRepo};
use repovault_common::storage::catalog_object_path;

use crate::catalog::catalog_objects::Catalog;
use crate::catalog::org_registry::Registry;
use crate::catalog::snapshot_repos::snapshot_op;
use crate::clock::Clock;
use crate::error::{CoreResult, not_found};
use crate::maintenance::retention::{self, BackupState, BackupView, Plan, RepoState};
use crate::model::{BackupRecord, MaintenanceRecord, OrgRecord, RepoRecord, Status};
use crate::periodic::FirstPass;
use crate::store::Batch;
use crate::store::Store;
use crate::tasks::task_queue::TaskQueue;

/// How often the coordinator runs retention: hourly, the finest period a policy can count
/// (`keep_hourly`); the day-granular `days` rule needs no more.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// At most one prune (first phase) per repository per week: a prune rewrites index files and
/// repacks, which costs storage requests out of proportion to what a day's backups add (README,
/// "Maintenance").
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How long packs marked for deletion are kept before a second prune deletes them: restic's and
/// rustic_core's default `keep_delete` (23 h), so a reader holding the old index still finds them.
pub const DEFAULT_KEEP_DELETE: Duration = Duration::from_secs(23 * 60 * 60);
/// Repositories maintained at once fleet-wide: a prune reads the whole index and repacks, so
/// keep it to a couple beside the backups on the same storage (2 cores measured here).
pub const DEFAULT_MAINTENANCE_CONCURRENCY: usize = 2;

#[derive(Debug, Clone)]
pub struct MaintenanceOptions {
    pub prune_interval: Duration,
    pub keep_delete: Duration,
    pub concurrency: usize,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        Self {
            prune_interval: DEFAULT_PRUNE_INTERVAL,
            keep_delete: DEFAULT_KEEP_DELETE,
            concurrency: DEFAULT_MAINTENANCE_CONCURRENCY,
        }
    }
}

/// `[retention]` in the coordinator's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How often retention runs (default 1h, [`DEFAULT_RETENTION_INTERVAL`]).
    pub interval: String,
    /// At most one prune per repository per this (default 7d, [`DEFAULT_PRUNE_INTERVAL`]).
    pub prune_interval: String,
    /// Packs marked for deletion are deleted by a prune this long after (default 23h,
    /// [`DEFAULT_KEEP_DELETE`]).
    pub keep_delete: String,
    /// Repositories maintained at once fleet-wide (default 2).
    pub concurrency: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval: "1h".into(),
            prune_interval: "7d".into(),
            keep_delete: "23h".into(),
            concurrency: DEFAULT_MAINTENANCE_CONCURRENCY,
        }
    }
}

impl RetentionConfig {
    /// The run interval and the maintenance options, validated.
    pub fn resolve(&self) -> Result<(Duration, MaintenanceOptions), crate::config::ConfigError> {
        use crate::config::{ConfigError, parse_duration};
        let interval = parse_duration("retention.interval", &self.interval)?;
        if interval < Duration::from_secs(60) {
            return Err(ConfigError::Invalid(format!(
                "retention.interval {:?} must be at least 1m",
                self.interval
            )));
        }
        let opts = MaintenanceOptions {
            prune_interval: parse_duration("retention.prune_interval", &self.prune_interval)?,
            keep_delete: parse_duration("retention.keep_delete", &self.keep_delete)?,
            concurrency: self.concurrency.max(1),
        };
        Ok((interval, opts))
    }
}

/// The coordinator's retention loop: a first run one interval after start, then every
/// interval, until `stop`.
pub async fn run_loop(
    maintenance: Arc<Maintenance>,
    interval: Duration,
    opts: MaintenanceOptions,
    stop: tokio_util::sync::CancellationToken,
) {
    crate::periodic::every(interval, FirstPass::AfterOnePeriod, &stop, || async {
        match maintenance
            .run_retention_once(maintenance.clock.now_ms(), &opts)
            .await
        {
            Ok(r) if r.backups_removed + r.prunes + r.errors > 0 => {
                tracing::info!(report = ?r, "retention run");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention run failed; the next run retries"),
        }
    })
    .await
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub repos: u64,
    /// Backups whose records (and snapshots) were removed.
    pub backups_removed: u64,
    pub snapshots_forgotten: u64,
    pub prunes: u64,
    pub pruned_bytes: u64,
    /// Repositories skipped because a backup of them was running.
    pub skipped_busy: u64,
    pub errors: u64,
}

/// Whether a prune is due: the second phase once `keep_delete` passed since the first; a first
/// phase when snapshots were forgotten and the last prune is `prune_interval` old.
pub fn prune_due(m: &MaintenanceRecord, now_ms: i64, opts: &MaintenanceOptions) -> bool {
    let since = |d: Duration| {
        m.last_prune_at_ms.is_none_or(|t| {
            now_ms.saturating_sub(t) >= i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        })
    };
    if m.second_phase_due {
        return since(opts.keep_delete);
    }
    m.prune_wanted && since(opts.prune_interval)
}

/// Whether an attempt that may have left data behind ended after the last prune (or ever, before
/// the first): a backup that failed, or one that needed more than one attempt. A failed attempt
/// can leave packs (and indexes) that no snapshot references, or packs no index lists (the disk
/// filled before the index was written); a prune removes both, marked first and deleted
/// `keep_delete` later like every unused pack. Such a pack is safe to remove once its attempt is
/// over: maintenance runs only under a claim (no backup of the repository leased), and an
/// attempt whose lease lapsed stops writing at its write deadline, before its lease expires.
pub fn failed_attempt_since_prune(history: &[BackupRecord], m: &MaintenanceRecord) -> bool {
    history.iter().any(|b| {
        b.status.is_terminal()
            && (b.status == Status::Failed || b.attempt > 1)
            && m.last_prune_at_ms
                .is_none_or(|p| b.finished_at_ms.unwrap_or(b.created_at_ms) > p)
    })
}

/// The repository's maintenance record, wanting a prune when a failed attempt may have left
/// data behind ([`failed_attempt_since_prune`]); not stored (the prune itself clears it).
async fn maintenance_of(
    store: &Store,
    repo_id: &RepoId,
    history: &[BackupRecord],
) -> CoreResult<MaintenanceRecord> {
    let mut m = store.maintenance(repo_id).await?;
    if failed_attempt_since_prune(history, &m) {
        m.prune_wanted = true;
    }
    Ok(m)
}

/// A repository claimed for maintenance; released on drop.
pub(crate) struct Claim {
    queue: Arc<TaskQueue>,
    repo_id: RepoId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        let repo_id = self.repo_id.clone();
        // The queue lock is async; release from a task (the claim only delays leasing).
        tokio::spawn(async move {
            queue.state.lock().await.maintenance.remove(&repo_id);
            queue.ready.notify_waiters();
        });
    }
}

fn view(b: &BackupRecord) -> BackupView {
    BackupView {
        id: b.id.to_string(),
        time_ms: b.finished_at_ms.unwrap_or(b.created_at_ms),
        state: match b.status {
            Status::Completed => BackupState::Succeeded,
            Status::Failed => BackupState::Failed,
            Status::Pending | Status::Running => BackupState::Unfinished,
        },
        verified: b
            .verification
            .as_ref()
            .is_some_and(|v| v.status == crate::model::VerifyStatus::Verified),
    }
}

/// Maintenance of snapshot repositories: retention's forget and prune, backup deletion and purges, each under a claim that keeps the repository's backups off meanwhile. Methods: this file and `purge_runs.rs`.
pub struct Maintenance {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) queue: Arc<TaskQueue>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) locations: Arc<crate::storage_locations::StorageLocations>,
}

impl Maintenance {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        queue: Arc<TaskQueue>,
        catalog: Arc<Catalog>,
        registry: Arc<Registry>,
        locations: Arc<crate::storage_locations::StorageLocations>,
    ) -> Self {
        Self {
            store,
            clock,
            queue,
            catalog,
            registry,
            locations,
        }
    }
    /// Claims `repo_id` for maintenance unless a backup, restore, verification or drill of it
    /// is running (or it is claimed).
    pub(crate) async fn claim(&self, repo_id: &RepoId) -> Option<Claim> {
        let mut q = self.queue.state.lock().await;
        if q.is_busy(repo_id) || q.active.is_read(repo_id) {
            return None;
        }
        q.maintenance.insert(repo_id.clone());
        Some(Claim {
            queue: self.queue.clone(),
            repo_id: repo_id.clone(),
        })
    }

    /// Every backup of a repository: catalog objects plus the store's unfinished or not yet
    /// cataloged records, newest first.
    pub(crate) async fn repo_history(&self, repo: &RepoRecord) -> CoreResult<Vec<BackupRecord>> {
        let mut history = self.catalog.list_catalog(&repo.org_id, &repo.id).await?;
        for b in self.store.recent_backups(&repo.id).await? {
            if let Some(h) = history.iter_mut().find(|h| h.id == b.id) {
                *h = b;
            } else {
                history.push(b);
            }
        }
        history.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(history)
    }

    /// The retention plan of one repository at `now_ms` (also what `run_retention_once` acts on).
    pub async fn retention_plan(
        &self,
        repo: &RepoRecord,
        now_ms: i64,
    ) -> CoreResult<(Plan, Vec<BackupRecord>)> {
        let org = self
            .store
            .org(&repo.org_id)
            .await?
            .ok_or_else(|| not_found("organisation", repo.org_id.clone()))?;
        let history = self.repo_history(repo).await?;
        let plan = self
            .plan_under(repo, &org, &history, &org.retention, now_ms)
            .await?;
        Ok((plan, history))
    }

    /// The plan of one repository whose history is read, under `policy`: the organisation's
    /// own, or one an operator is about to set (`escrow_holds.rs`, counting what it removes).
    pub(crate) async fn plan_under(
        &self,
        repo: &RepoRecord,
        org: &OrgRecord,
        history: &[BackupRecord],
        policy: &retention::RetentionPolicy,
        now_ms: i64,
    ) -> CoreResult<Plan> {
        let views: Vec<BackupView> = history.iter().map(view).collect();
        let windows = self.store.escrow_windows(&repo.id).await?;
        let state = RepoState {
            deleted_or_archived_at_source: repo.deleted || repo.archived,
            org_disconnected: org.disconnected,
        };
        Ok(retention::plan(&views, policy, &windows, state, now_ms))
    }

    /// One maintenance pass over every repository at `now_ms` (the coordinator's loop calls it
    /// every `retention_interval`; tests call it with a time of their choosing).
    pub async fn run_retention_once(
        &self,
        now_ms: i64,
        opts: &MaintenanceOptions,
    ) -> CoreResult<MaintenanceReport> {
        let repos = self.store.repos().await?;
        let results: Vec<CoreResult<MaintenanceReport>> = futures::stream::iter(repos)
            .map(|r| async move { self.maintain_repo(&r, now_ms, opts).await })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        let mut total = MaintenanceReport::default();
        for r in results {
            total.repos += 1;
            match r {
                Ok(r) => {
                    total.backups_removed += r.backups_removed;
                    total.snapshots_forgotten += r.snapshots_forgotten;
                    total.prunes += r.prunes;
                    total.pruned_bytes += r.pruned_bytes;
                    total.skipped_busy += r.skipped_busy;
                }
                Err(e) => {
                    total.errors += 1;
                    tracing::warn!(error = %e, "retention of a repository failed; the next run retries");
                }
            }
        }
        metrics::counter!("repovault_retention_backups_removed_total")
            .increment(total.backups_removed);
        metrics::counter!("repovault_prunes_total").increment(total.prunes);
        Ok(total)
    }

    async fn maintain_repo(
        &self,
        repo: &RepoRecord,
        now_ms: i64,
        opts: &MaintenanceOptions,
    ) -> CoreResult<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let (plan, history) = self.retention_plan(repo, now_ms).await?;
        let maint = maintenance_of(&self.store, &repo.id, &history).await?;
        if plan.drop.is_empty() && !prune_due(&maint, now_ms, opts) {
            return Ok(report);
        }
        let Some(_claim) = self.claim(&repo.id).await else {
            report.skipped_busy = 1;
            return Ok(report);
        };
        // Planned again under the claim: a backup completed or an agreement made meanwhile
        // counts.
        let (plan, history) = self.retention_plan(repo, now_ms).await?;
        let maint = maintenance_of(&self.store, &repo.id, &history).await?;
        let doomed: Vec<&BackupRecord> = history
            .iter()
            // The retention plan names backups by their ids as strings (`retention::BackupView`).
            .filter(|b| plan.drop.iter().any(|d| d == b.id.as_str()))
            .collect();
        let snapshot_repo =
            if doomed.iter().any(|b| b.snapshot_id.is_some()) || prune_due(&maint, now_ms, opts) {
                self.catalog.open_repo(&repo.id).await?.map(Arc::new)
            } else {
                None
            };
        let (removed, forgotten) = self
            .remove_backups(repo, &doomed, snapshot_repo.clone(), &history)
            .await?;
        report.backups_removed = removed;
        report.snapshots_forgotten = forgotten;
        let maint = maintenance_of(&self.store, &repo.id, &history).await?;
        if let Some(sr) = snapshot_repo
            && prune_due(&maint, now_ms, opts)
        {
            let outcome = self.prune_repo(repo, sr, maint, now_ms, opts).await?;
            report.prunes = 1;
            report.pruned_bytes = outcome.deleted_bytes;
        }
        Ok(report)
    }

    pub(crate) async fn prune_repo(
        &self,
        repo: &RepoRecord,
        sr: Arc<SnapshotRepo>,
        mut maint: MaintenanceRecord,
        now_ms: i64,
        opts: &MaintenanceOptions,
    ) -> CoreResult<PruneOutcome> {
        let keep_delete = opts.keep_delete;
        let outcome = snapshot_op(move || sr.prune(keep_delete)).await?;
        maint.last_prune_at_ms = Some(now_ms);
        maint.prune_wanted = false;
        maint.second_phase_due = outcome.second_phase_due();
        let mut batch = Batch::default();
        batch.maintenance(&repo.id, &maint);
        self.store.apply(batch).await?;
        tracing::info!(repo = %repo.full_name(), deleted_bytes = outcome.deleted_bytes, marked_bytes = outcome.marked_bytes, second_phase_due = maint.second_phase_due, "pruned");
        Ok(outcome)
    }

    /// Forgets the snapshots of `doomed`, deletes their catalog objects, then their store records
    /// (with the maintenance record wanting a prune) and refreshes the repository's latest-backup
    /// fields. Returns (records removed, snapshots forgotten).
    pub(crate) async fn remove_backups(
        &self,
        repo: &RepoRecord,
        doomed: &[&BackupRecord],
        snapshot_repo: Option<Arc<SnapshotRepo>>,
        history: &[BackupRecord],
    ) -> CoreResult<(u64, u64)> {
        if doomed.is_empty() {
            return Ok((0, 0));
        }
        let snapshots: Vec<String> = doomed
            .iter()
            .filter_map(|b| b.snapshot_id.clone().map(String::from))
            .collect();
        let forgotten = snapshots.len() as u64;
        if let Some(sr) = snapshot_repo
            && !snapshots.is_empty()
        {
            snapshot_op(move || sr.forget(&snapshots)).await?;
        }
        let storage = self.locations.operator_for(&repo.org_id).await?;
        for b in doomed {
            let path = catalog_object_path(b.org_id.as_str(), b.repo_id.as_str(), b.id.as_str());
            match storage.delete(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut batch = Batch::default();
        for b in doomed {
            batch.delete_backup(&repo.id, &b.id);
            batch.clear_catalog_pending(&repo.id, &b.id);
        }
        let mut maint = self.store.maintenance(&repo.id).await?;
        if forgotten > 0 {
            maint.prune_wanted = true;
        }
        batch.maintenance(&repo.id, &maint);
        let remaining: Vec<BackupRecord> = history
            .iter()
            .filter(|h| !doomed.iter().any(|d| d.id == h.id))
            .cloned()
            .collect();
        // Everything about the latest and the latest successful backup (its size for the next
        // size_match, its verification, the last full one) is recomputed from what remains;
        // the totals and the first success stay (they count history, not what is kept).
        let old = self.store.stats(&repo.id).await?;
        let stats = crate::model::RepoStats {
            completed_total: old.completed_total,
            failed_total: old.failed_total,
            added_bytes_total: old.added_bytes_total,
            first_success_at_ms: old.first_success_at_ms,
            ..crate::catalog::catalog_objects::stats_from_history(&remaining)
        };
        batch.stats(&repo.id, &stats);
        self.store.apply(batch).await?;
        tracing::info!(repo = %repo.full_name(), backups = ?doomed.iter().map(|b| &b.id).collect::<Vec<_>>(), "backups removed");
        Ok((doomed.len() as u64, forgotten))
    }
}

/// The first line of an agreement text, for messages.
pub(crate) fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or_default();
    match line.char_indices().nth(80) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
#[path = "maintenance_runs_tests.rs"]
mod tests;
