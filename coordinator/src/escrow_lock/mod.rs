//! Immutable escrow: while an escrow agreement is active, the storage itself refuses to destroy
//! the repository's snapshots, so not even a leaked administrator credential can.
//!
//! On S3 with Object Lock, a pass every [`LOCK_TICK`] locks each object of an escrowed
//! repository's snapshot repository (`config`, `keys/`, `data/`, `index/`, `snapshots/`) in
//! COMPLIANCE mode until the agreement's end (`lock_plan.rs` decides what and until when; the
//! calls are `repovault_common::storage::s3_object_lock`), with the coordinator's maintainer
//! credential, which needs `s3:PutObjectRetention` and `s3:GetBucketObjectLockConfiguration`.
//! The first pass locks everything; later ones lock what backups added since. Each repository's
//! progress is its [`EscrowLockRecord`], shown by `escrow list`.
//!
//! What a locked object means for the rest of repovault: nothing changes. Object Lock buckets
//! are versioned, so a delete (retention's forget, a prune, a purge) succeeds by hiding the
//! object behind a delete marker while the locked version stays until its date, readable by
//! version; only deleting that version, or shortening its lock, is refused. Prune therefore
//! goes on as everywhere and the storage keeps what it locked.
//!
//! Other storage: Azure's version-level immutability policies are not served by Azurite (it
//! answers 501 to `x-ms-immutability-policy-*`), so repovault does not set them: an agreement
//! on an Azure, GCS or file-system location, or on an S3 bucket without Object Lock, is held by
//! repovault alone (retention keeps, `backup delete` refuses) and its record says why the
//! storage is not locked.

pub mod lock_plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use repovault_common::storage::s3_object_lock::S3ObjectLock;
use repovault_common::storage::{StorageKind, snapshot_repo_path};

use crate::clock::Clock;
use crate::error::{CoreError, CoreResult};
use crate::maintenance::retention::EscrowWindow;
use crate::model::{OrgRecord, RepoId, RepoRecord};
use crate::periodic::FirstPass;
use crate::storage_locations::StorageLocations;
use crate::store::Store;

use lock_plan::Pass;
pub use lock_plan::{EscrowLockRecord, LockStatus};

/// How often a pass runs. Our choice, as the second copy's: a new backup of an escrowed
/// repository is locked within a minute or so of finishing, and an idle pass costs a store
/// read per agreement.
pub const LOCK_TICK: Duration = Duration::from_secs(60);

/// Lock calls in flight at once per repository: each is a small metadata request; eight keep a
/// pass over thousands of packs to seconds without a burst S3 would throttle (it allows
/// thousands of writes per second per prefix).
const LOCK_CONCURRENCY: usize = 8;

/// The immutable-escrow component: no state of its own beyond the store's records.
pub struct EscrowLocks {
    store: Store,
    clock: Arc<dyn Clock>,
    locations: Arc<StorageLocations>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LockPassReport {
    /// Repositories whose objects were locked by this pass.
    pub repos_locked: u64,
    pub objects_locked: u64,
    pub failed: u64,
}

impl EscrowLocks {
    pub fn new(store: Store, clock: Arc<dyn Clock>, locations: Arc<StorageLocations>) -> Self {
        Self {
            store,
            clock,
            locations,
        }
    }

    /// One pass over every repository with an agreement. A repository's failure is recorded in
    /// its record and does not stop the others.
    pub async fn run_locks_once(&self) -> CoreResult<LockPassReport> {
        let mut by_repo: std::collections::BTreeMap<RepoId, Vec<EscrowWindow>> = Default::default();
        for e in self.store.escrows(None).await? {
            by_repo
                .entry(e.repo_id.clone())
                .or_default()
                .push(e.window());
        }
        let mut report = LockPassReport::default();
        for (repo_id, windows) in by_repo {
            let now = self.clock.now_ms();
            let wanted = lock_plan::wanted(&windows, now);
            let record = self.store.escrow_lock(&repo_id).await?;
            let last_backup = self.store.stats(&repo_id).await?.last_success_at_ms;
            let pass = lock_plan::plan_pass(wanted, record.as_ref(), last_backup, now);
            if pass == Pass::Nothing {
                continue;
            }
            let Some(repo) = self.store.repo(&repo_id).await? else {
                continue;
            };
            match self.lock_repo(&repo, pass, record.as_ref(), now).await {
                Ok(Some(n)) => {
                    report.repos_locked += 1;
                    report.objects_locked += n;
                }
                Ok(None) => {}
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(repo = %repo.full_name(), error = %e, "escrow lock pass failed");
                    let mut failed = record.clone().unwrap_or_else(|| empty_record(now));
                    failed.status = LockStatus::Failed;
                    failed.detail = Some(e.to_string());
                    failed.checked_at_ms = now;
                    self.store.put_escrow_lock(&repo_id, &failed).await?;
                }
            }
        }
        Ok(report)
    }

    /// Locks what `pass` names in `repo`'s snapshot repository. `Ok(None)`: the storage cannot
    /// be locked (recorded as unavailable, once).
    async fn lock_repo(
        &self,
        repo: &RepoRecord,
        pass: Pass,
        record: Option<&EscrowLockRecord>,
        started_ms: i64,
    ) -> CoreResult<Option<u64>> {
        let org = self
            .store
            .org(&repo.org_id)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", repo.org_id.as_str()))?;
        let lock = match self.object_lock(&org).await? {
            Ok(lock) => lock,
            Err(why) => {
                if record.is_none_or(|r| r.detail.as_deref() != Some(why.as_str())) {
                    tracing::info!(repo = %repo.full_name(), reason = %why, "escrow held by repovault alone: the storage cannot be locked");
                    let mut r = empty_record(started_ms);
                    r.status = LockStatus::Unavailable;
                    r.detail = Some(why);
                    self.store.put_escrow_lock(&repo.id, &r).await?;
                }
                return Ok(None);
            }
        };
        let until_ms = match pass {
            Pass::All { until_ms } | Pass::Since { until_ms, .. } => until_ms,
            Pass::Nothing => return Ok(Some(0)),
        };
        let until = chrono::DateTime::from_timestamp_millis(until_ms)
            .ok_or_else(|| CoreError::Internal(format!("lock date {until_ms} out of range")))?;
        let root = format!(
            "{}/",
            snapshot_repo_path(repo.org_id.as_str(), repo.id.as_str())
        );
        let listed = self.list(&org, &root).await?;
        let paths: Vec<String> = lock_plan::objects_to_lock(&listed, pass)
            .into_iter()
            .map(|rel| format!("{root}{rel}"))
            .collect();
        let n = paths.len() as u64;
        let lock = Arc::new(lock);
        let calls: Vec<_> = paths
            .into_iter()
            .map(move |p| {
                let lock = lock.clone();
                async move { lock.retain_until(&p, until).await }
            })
            .collect();
        let mut calls = futures::stream::iter(calls).buffer_unordered(LOCK_CONCURRENCY);
        while let Some(r) = calls.next().await {
            r.map_err(|e| CoreError::Storage(e.to_string()))?;
        }
        let done = EscrowLockRecord {
            status: LockStatus::Locked,
            detail: None,
            locked_until_ms: Some(until_ms),
            covered_through_ms: Some(started_ms),
            locks_set: record.map_or(0, |r| r.locks_set) + n,
            checked_at_ms: self.clock.now_ms(),
        };
        self.store.put_escrow_lock(&repo.id, &done).await?;
        tracing::info!(repo = %repo.full_name(), objects = n, until = %until.to_rfc3339(), "escrowed objects locked");
        Ok(Some(n))
    }

    /// The Object Lock calls for `org`'s location with the maintainer's credential, or why the
    /// location cannot be locked.
    async fn object_lock(&self, org: &OrgRecord) -> CoreResult<Result<S3ObjectLock, String>> {
        let config = self.locations.maintainer_config(org).await?;
        let location = org.storage.as_deref().unwrap_or("default");
        if config.kind != StorageKind::S3 {
            return Ok(Err(format!(
                "storage location {location:?} is {}: repovault locks objects only through S3 \
                 Object Lock",
                config.kind
            )));
        }
        let lock = S3ObjectLock::new(&config).map_err(|e| CoreError::Storage(e.to_string()))?;
        let enabled = lock
            .bucket_lock_enabled()
            .await
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        if !enabled {
            return Ok(Err(format!(
                "the bucket of storage location {location:?} has no Object Lock (a bucket gets \
                 it when created with Object Lock enabled)"
            )));
        }
        Ok(Ok(lock))
    }

    /// The lockable objects under `root`, relative to it, with their last-modified times.
    async fn list(&self, org: &OrgRecord, root: &str) -> CoreResult<Vec<(String, Option<i64>)>> {
        let op = self.locations.operator(org).await?;
        let entries = op.list_with(root).recursive(true).await?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.metadata().is_dir())
            .filter_map(|e| {
                let rel = e.path().strip_prefix(root)?.to_string();
                lock_plan::is_locked_kind(&rel).then(|| {
                    let modified = e
                        .metadata()
                        .last_modified()
                        .map(|t| t.into_inner().as_millisecond());
                    (rel, modified)
                })
            })
            .collect())
    }
}

fn empty_record(now_ms: i64) -> EscrowLockRecord {
    EscrowLockRecord {
        status: LockStatus::Failed,
        detail: None,
        locked_until_ms: None,
        covered_through_ms: None,
        locks_set: 0,
        checked_at_ms: now_ms,
    }
}

/// The lock loop: a pass every [`LOCK_TICK`] until `stop`.
pub async fn lock_loop(l: Arc<EscrowLocks>, stop: tokio_util::sync::CancellationToken) {
    crate::periodic::every(LOCK_TICK, FirstPass::AtStart, &stop, || async {
        match l.run_locks_once().await {
            Ok(r) if r.objects_locked + r.failed > 0 => {
                tracing::info!(
                    repos = r.repos_locked,
                    objects = r.objects_locked,
                    failed = r.failed,
                    "escrow lock pass"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "escrow lock pass failed"),
        }
    })
    .await
}
