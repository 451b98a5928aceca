//! A backup: mirror the source into the cache, export the forge's metadata (GitHub), write the
//! manifest, snapshot the tree.
//!
//! The tree of a snapshot is the cache entry itself (`<cache>/<repo-id>/` holding `code.git/`,
//! `manifest.json` and, for GitHub, `wiki.git/`, `lfs/objects/`, `meta/`, `releases/`,
//! `attachments/`): nothing is copied, and because the mirror is never repacked between backups,
//! a fetch adds one pack and leaves the others byte-identical, so the snapshot of an unchanged
//! repository stores almost nothing.
//!
//! A backup is a [`BackupJob`]: [`run`] is the list of its phases, each a method that names its
//! progress phase. The phases live beside this file by concept:
//! - `backup/entry_repair.rs`: the cache entry's repair (a mirror the last backup found
//!   damaged), its seed from the parent snapshot, and the fetch that drops a broken mirror;
//! - `backup/forge_export.rs`: the forge's part (LFS objects, the metadata export, the wiki, the
//!   default branch's commit count);
//! - `backup/snapshot_commit.rs`: the manifest and the snapshot behind the commit fence;
//! - `backup/stored_verification.rs`: git_fsck before the snapshot (compacting a sparse
//!   mirror) and the read-back after it;
//! - `backup/unchanged_source.rs`: a source unchanged since the parent, whose snapshot repeats
//!   the parent's tree.
//!
//! Every file system call of a phase runs on the blocking pool or through `tokio::fs`: a
//! mirror can be gigabytes, and its removal or walk must not hold an async runtime thread.

mod damaged_parent;
mod entry_repair;
mod forge_export;
mod snapshot_commit;
mod stored_verification;
mod unchanged_source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use repovault_common::domain::{BackupId, BackupType, Provider, SnapshotId, Trigger};
use repovault_common::manifest::{self, ComponentStatus, Counts, ExportState, Manifest};
use repovault_common::repo::{BackupSummary, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::cache::CacheGuard;
use crate::git;
use crate::verify::Check;

use super::leased::{BackupWork, LeaseIds};
use super::{TaskContext, TaskError, blocking};

/// Runs a backup: the phases in order. Each phase method says what it reads and writes.
pub async fn run(
    ctx: Arc<TaskContext>,
    ids: LeaseIds,
    access: pb::RepoAccess,
    provider: Provider,
    work: BackupWork,
) -> Result<pb::BackupResult, TaskError> {
    let job = BackupJob::open(ctx, ids, access, provider, work).await?;
    if !job.repair().await? {
        job.seed().await?;
    }
    let previous_manifest = job.previous_manifest().await;
    let resume = job.resume_point().await;
    let before = stored_verification::PacksBefore::list(&job.entry).await?;
    let fetched = job.fetch().await?;
    metrics::counter!(repovault_common::worker_metrics::FETCHED_BYTES)
        .increment(fetched.bytes_received);
    let mut found = Findings::new(&fetched.inventory);
    if job.exports_metadata() {
        job.lfs(&mut found).await?;
        job.export(resume, &mut found).await?;
        job.wiki(&mut found).await;
    }
    let fsck = job.check(before).await?;
    let fsck = job.compact(fsck).await?;
    job.record_damage(&fsck.check).await?;
    found.counts.objects = fsck.report.as_ref().map_or(0, |r| r.reachable);
    found.counts.commits = job.commits(fsck.report.as_ref()).await;
    let parent_whole = job.parent_whole().await?;
    let repeat = parent_whole
        .then(|| job.repeats_parent(&fetched, &fsck, previous_manifest.as_ref()))
        .flatten();
    let manifest = job
        .manifest(&fetched, found, previous_manifest.as_ref())
        .await?;
    let repeated = match &repeat {
        Some(parent) => job.repeat(parent, &manifest).await?,
        None => None,
    };
    let (summary, verification) = match (repeated, repeat) {
        (Some(summary), Some(parent)) => {
            let verification = unchanged_source::verify(&job, &parent, &manifest, fsck.check).await;
            (summary, verification)
        }
        _ => {
            let summary = job.snapshot(&manifest, parent_whole).await?;
            let verification = job.verify(&summary, &manifest, fsck.check).await;
            (summary, verification)
        }
    };
    metrics::counter!(repovault_common::worker_metrics::STORED_BYTES)
        .increment(summary.data_added_packed);
    Ok(job
        .evict(summary, &manifest, fetched.bytes_received, verification)
        .await)
}

/// What the phases of one backup share.
struct BackupJob {
    ctx: Arc<TaskContext>,
    ids: LeaseIds,
    access: pb::RepoAccess,
    provider: Provider,
    spec: pb::BackupSpec,
    backup_id: BackupId,
    backup_type: BackupType,
    trigger: Trigger,
    parent_backup_id: Option<BackupId>,
    parent_snapshot_id: Option<SnapshotId>,
    /// The repository's cache entry, held for the whole backup: no other task changes it, and
    /// it is not evicted, until [`BackupJob::evict`] lets it go.
    guard: CacheGuard,
    /// `guard`'s directory: the tree the snapshot stores.
    entry: PathBuf,
    repo: Arc<SnapshotRepo>,
    /// The master key the lease carried; `None` when the coordinator does not hold it yet, and
    /// learns it from this backup's result (`master_now`).
    master: Option<Secret>,
    master_now: Secret,
}

/// What the fetch and the export found, gathered for the manifest.
struct Findings {
    components: BTreeMap<String, ComponentStatus>,
    counts: Counts,
    export: Option<ExportState>,
}

impl Findings {
    fn new(inv: &git::Inventory) -> Self {
        Self {
            components: BTreeMap::from([("git".to_string(), ComponentStatus::included(None))]),
            counts: Counts {
                branches: inv.branches,
                tags: inv.tags,
                refs: inv.refs.len() as u64,
                ..Default::default()
            },
            export: None,
        }
    }
}

/// git_fsck's verdict on the entry, and code.git's report (its reachable object count).
struct Fsck {
    check: Check,
    report: Option<git::FsckReport>,
}

impl BackupJob {
    /// Phase `open`: checks the source URL, takes the cache entry and opens the snapshot
    /// repository (the coordinator created it), so a wrong key fails before any fetch.
    async fn open(
        ctx: Arc<TaskContext>,
        ids: LeaseIds,
        access: pb::RepoAccess,
        provider: Provider,
        work: BackupWork,
    ) -> Result<Self, TaskError> {
        let BackupWork {
            spec,
            backup_id,
            backup_type,
            trigger,
            parent_backup_id,
            parent_snapshot_id,
        } = work;
        // A local source only under the allowed roots, never the worker's own directories; the
        // wiki's URL derives from this one.
        ctx.check_local_url(&access.source_url).await?;
        let guard = ctx
            .cache
            .acquire(&ids.repo_id)
            .await
            .map_err(|e| TaskError::retryable("mirror cache").with_source(e))?;
        let entry = guard.dir.clone();
        ctx.progress
            .phase("open", "opening the snapshot repository");
        let repo_spec = RepoSpec {
            operator: ctx.storage.clone(),
            path: access.snapshot_path.clone(),
        };
        let password = Secret::new(access.repo_password.clone());
        let master =
            (!access.master_key.is_empty()).then(|| Secret::new(access.master_key.clone()));
        let (repo, master_now) = {
            let master = master.clone();
            blocking(move || {
                let key = RepoKey::new(&password, master.as_ref());
                Ok(SnapshotRepo::open(&repo_spec, key, false)?)
            })
            .await?
        };
        Ok(Self {
            ctx,
            ids,
            access,
            provider,
            spec,
            backup_id,
            backup_type,
            trigger,
            parent_backup_id,
            parent_snapshot_id,
            guard,
            entry,
            repo: Arc::new(repo),
            master,
            master_now,
        })
    }

    /// Whether this source has forge metadata to export (LFS, issues, releases, the wiki).
    fn exports_metadata(&self) -> bool {
        self.provider.is_forge()
    }

    fn code_dir(&self) -> PathBuf {
        self.entry.join(manifest::CODE_DIR)
    }

    /// Phase `repair`, when the last backup found this entry's mirrors damaged (git_fsck
    /// failed; that backup says so): fetching into them would carry the damage on, and so
    /// would the parent snapshot, so they are removed and cloned afresh by the fetch. Returns
    /// whether it repaired.
    async fn repair(&self) -> Result<bool, TaskError> {
        entry_repair::repair(&self.ctx, &self.entry).await
    }

    /// Phase `seed`: a worker without the cache rebuilds the mirrors and LFS objects from the
    /// latest snapshot before fetching (object storage has no rate limit, the source may).
    /// Not after a repair, nor from a parent whose mirror failed git_fsck.
    async fn seed(&self) -> Result<(), TaskError> {
        let cached = tokio::fs::try_exists(self.entry.join(manifest::CODE_DIR).join("HEAD"))
            .await
            .unwrap_or(false);
        metrics::counter!(
            repovault_common::worker_metrics::CACHE_LOOKUPS,
            "result" => if cached { "hit" } else { "miss" }
        )
        .increment(1);
        let parent = self
            .parent_snapshot_id
            .as_ref()
            .filter(|_| !self.spec.parent_mirror_damaged);
        entry_repair::seed(&self.ctx, &self.repo, &self.entry, parent).await
    }

    /// The parent backup's manifest: its source figures are reused when the source did not
    /// move (a commit count never changes for the same commit). The cache entry's copy when it
    /// is the parent's; else (this worker did not make the parent, or the entry was rebuilt) the
    /// one in the parent's snapshot, so a backup on another worker asks the forge nothing more.
    async fn previous_manifest(&self) -> Option<Manifest> {
        let local = tokio::fs::read(self.entry.join(manifest::MANIFEST_FILE))
            .await
            .ok()
            .and_then(|b| Manifest::from_json(&b).ok());
        let (Some(parent), Some(snapshot)) = (&self.parent_backup_id, &self.parent_snapshot_id)
        else {
            return local;
        };
        if local.as_ref().is_some_and(|m| m.backup_id == *parent) {
            return local;
        }
        let (repo, snapshot) = (self.repo.clone(), snapshot.clone());
        let stored = blocking(move || {
            let bytes = repo.read_file(snapshot.as_str(), manifest::MANIFEST_FILE)?;
            Manifest::from_json(&bytes)
                .map_err(|e| TaskError::retryable("parent manifest").with_source(e))
        })
        .await;
        match stored {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "the parent backup's manifest could not be read; its source figures are asked again");
                local
            }
        }
    }

    /// Where an incremental export resumes (phase `seed` when the parent's export must be
    /// restored first); `None`: a full export.
    async fn resume_point(&self) -> Option<repovault_common::forge::Cursors> {
        if self.exports_metadata() && self.backup_type == BackupType::Incremental {
            let parent = self.parent_backup_id.as_ref()?;
            let snapshot = self.parent_snapshot_id.as_ref()?;
            forge_export::previous_export(&self.ctx, &self.repo, &self.entry, parent, snapshot)
                .await
        } else {
            None
        }
    }

    /// Phase `fetch`: mirrors the source into `code.git` (a mirror that is not a repository is
    /// dropped and cloned afresh).
    async fn fetch(&self) -> Result<git::FetchOutcome, TaskError> {
        self.ctx
            .progress
            .phase("fetch", format!("fetching {}", self.access.source_url));
        entry_repair::fetch(&self.ctx, &self.access, self.code_dir()).await
    }

    /// Phase `lfs`: the LFS objects the mirror's pointers name.
    async fn lfs(&self, found: &mut Findings) -> Result<(), TaskError> {
        let (status, objects) = forge_export::lfs(&self.ctx, &self.access, &self.entry).await?;
        found.components.insert("lfs".into(), status);
        found.counts.lfs_objects = objects;
        Ok(())
    }

    /// Phase `export`: the forge's metadata, resumed from `resume` when there is one.
    async fn export(
        &self,
        resume: Option<repovault_common::forge::Cursors>,
        found: &mut Findings,
    ) -> Result<(), TaskError> {
        let mode = if resume.is_some() {
            "incremental"
        } else {
            "full"
        };
        let report =
            forge_export::export(&self.ctx, &self.access, self.provider, &self.entry, resume)
                .await?;
        found.export = Some(ExportState {
            cursors: report.cursors.clone(),
            requests: report.requests,
            mode: mode.into(),
        });
        let (c, counts) = (&report.counts, &mut found.counts);
        counts.issues = c.issues;
        counts.pulls = c.pulls;
        counts.comments = c.comments;
        counts.reviews = c.reviews;
        counts.releases = c.releases;
        counts.release_assets = c.release_assets;
        counts.labels = c.labels;
        counts.milestones = c.milestones;
        counts.workflows = c.workflows;
        counts.attachments = c.attachments;
        found.components.extend(report.components);
        Ok(())
    }

    /// Phase `wiki`: the wiki's mirror, when the repository has one. Never fails the backup:
    /// a wiki that cannot be fetched is a failed component.
    async fn wiki(&self, found: &mut Findings) {
        let (status, pages) = forge_export::wiki(&self.ctx, &self.access, &self.entry).await;
        found.components.insert("wiki".into(), status);
        found.counts.wiki_pages = pages;
    }

    /// Phase `fsck`, the first half of the verification: the mirrors are checked before the
    /// snapshot (as far as they changed since their last check; `before` are their packs before
    /// the fetch), which also gives the reachable object count the manifest records for drills.
    async fn check(&self, before: stored_verification::PacksBefore) -> Result<Fsck, TaskError> {
        self.ctx
            .progress
            .phase("fsck", "checking what the mirror received");
        stored_verification::fsck(&self.ctx, &self.entry, Some(before)).await
    }

    /// Phase `compact`, when a quarter of the mirror's objects are unreachable: repacks it and
    /// checks it again (see [`stored_verification::compact`]).
    async fn compact(&self, fsck: Fsck) -> Result<Fsck, TaskError> {
        stored_verification::compact(&self.ctx, &self.entry, fsck).await
    }

    /// After a failed git_fsck, marks the entry damaged: this backup's verification reports
    /// it, and the next backup repairs the mirror.
    async fn record_damage(&self, fsck: &Check) -> Result<(), TaskError> {
        entry_repair::record_damage(&self.entry, fsck).await
    }

    /// Phase `manifest`: writes `manifest.json` into the entry.
    async fn manifest(
        &self,
        fetched: &git::FetchOutcome,
        found: Findings,
        previous: Option<&Manifest>,
    ) -> Result<Manifest, TaskError> {
        self.ctx.progress.phase("manifest", "writing the manifest");
        let default_branch = if self.exports_metadata() {
            forge_export::default_branch_count(
                &self.ctx,
                &self.access,
                self.provider,
                fetched,
                previous,
            )
            .await
        } else {
            None
        };
        snapshot_commit::write_manifest(self, fetched, found, default_branch).await
    }

    /// The commits reachable in code.git: git_fsck's count (its walk reads every commit, or
    /// every new one); counted apart only when git_fsck could not run.
    async fn commits(&self, report: Option<&git::FsckReport>) -> u64 {
        if let Some(r) = report {
            return r.commits;
        }
        let code = self.code_dir();
        blocking(move || {
            git::count_all_commits(&code)
                .map_err(|e| TaskError::retryable("counting commits").with_source(e))
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not count the mirror's commits");
            0
        })
    }

    /// Whether the source is unchanged since the parent, so that the snapshot may repeat the
    /// parent's tree (see [`unchanged_source::repeats_parent`]).
    fn repeats_parent(
        &self,
        fetched: &git::FetchOutcome,
        fsck: &Fsck,
        previous: Option<&Manifest>,
    ) -> Option<SnapshotId> {
        unchanged_source::repeats_parent(&unchanged_source::Facts {
            exports_metadata: self.exports_metadata(),
            parent_backup_id: self.parent_backup_id.as_ref(),
            parent_snapshot_id: self.parent_snapshot_id.as_ref(),
            parent_verified: self.spec.parent_verified,
            parent_mirror_damaged: self.spec.parent_mirror_damaged,
            previous,
            fetched,
            fsck: &fsck.check,
            fsck_report: fsck.report.as_ref(),
        })
    }

    /// Phase `snapshot` of an unchanged source: a snapshot file naming the parent's tree,
    /// behind the commit fence; nothing is walked, packed or read back. `None` when the parent
    /// snapshot is gone (the tree is then stored as by [`BackupJob::snapshot`]).
    async fn repeat(
        &self,
        parent: &SnapshotId,
        manifest: &Manifest,
    ) -> Result<Option<BackupSummary>, TaskError> {
        self.ctx.progress.phase(
            "snapshot",
            format!(
                "unchanged since the last backup: repeating its snapshot ({} refs)",
                manifest.refs.len()
            ),
        );
        unchanged_source::repeat(self, parent, snapshot_commit::request(self)).await
    }

    /// Phase `snapshot`: stores the entry as a snapshot, behind the commit fence; from the
    /// parent snapshot only when it is whole ([`Self::parent_whole`]).
    async fn snapshot(
        &self,
        manifest: &Manifest,
        parent_whole: bool,
    ) -> Result<BackupSummary, TaskError> {
        self.ctx.progress.phase(
            "snapshot",
            format!(
                "storing {} refs, {} commits",
                manifest.refs.len(),
                manifest.counts.commits
            ),
        );
        snapshot_commit::snapshot(self, parent_whole).await
    }

    /// Phase `verify`, the second half of the verification, on the entry just stored (still
    /// held: nothing changes it). Never fails the backup.
    async fn verify(
        &self,
        summary: &BackupSummary,
        manifest: &Manifest,
        fsck: Check,
    ) -> pb::VerifyResult {
        self.ctx
            .progress
            .phase("verify", "reading back what this backup stored");
        stored_verification::verify_stored_entry(
            &self.ctx,
            &self.access,
            &self.repo,
            &summary.snapshot_id,
            &self.entry,
            manifest,
            fsck,
        )
        .await
    }

    /// Phase `evict`: lets the entry go and evicts least recently used entries until the cache
    /// fits its cap (a failure only costs space); then the result.
    async fn evict(
        self,
        summary: BackupSummary,
        manifest: &Manifest,
        bytes_received: u64,
        verification: pb::VerifyResult,
    ) -> pb::BackupResult {
        let Self {
            ctx,
            ids,
            guard,
            master,
            master_now,
            ..
        } = self;
        drop(guard);
        ctx.progress
            .phase("evict", "keeping the mirror cache within its cap");
        let cache = ctx.cache.clone();
        let repo_id = ids.repo_id.clone();
        if let Err(e) = blocking(move || {
            // The entry now holds this backup's mirror: say so with the next acquire.
            cache.refresh(&repo_id);
            cache
                .evict()
                .map_err(|e| TaskError::retryable("evicting from the mirror cache").with_source(e))
        })
        .await
        {
            tracing::warn!(error = %e, "could not evict from the mirror cache");
        }
        ctx.progress.phase(
            "done",
            format!(
                "snapshot {}",
                &summary.snapshot_id[..8.min(summary.snapshot_id.len())]
            ),
        );
        pb::BackupResult {
            snapshot_id: summary.snapshot_id,
            manifest_json: manifest.to_json(),
            size_bytes: summary.total_bytes,
            added_bytes: summary.data_added_packed,
            counts: Some(pb::Counts::from(&manifest.counts)),
            components: manifest::components_to_proto(&manifest.components),
            bytes_received,
            verification: Some(verification),
            master_key: if master.is_none() {
                master_now.expose().to_string()
            } else {
                String::new()
            },
        }
    }
}
