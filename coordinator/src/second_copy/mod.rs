//! The second copy (`org set ORG --copy-to NAME`): every completed backup of the organisation
//! also lands in another storage location, as its own restic repository with the same key
//! (the same repository files, byte for byte), so stock restic opens the copy alone and a
//! restore can read it (`restore start --from-copy`) when the primary is lost.
//!
//! A pass every [`COPY_TICK`] copies, per repository with backups due (`copy_plan.rs`), what the
//! copy lacks (`storage_move::mirror`, repository files only, snapshot files last), reads back
//! what it added and records each backup's copy as done, or failed with the reason (the next
//! pass tries again). The copy only ever adds: forgetting or pruning at the primary deletes
//! nothing there, so a primary wiped by mistake or malice leaves the copy whole.

pub mod copy_plan;
pub mod copy_state;

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::catalog_objects::Catalog;
use crate::clock::Clock;
use crate::error::CoreResult;
use crate::model::{BackupRecord, OrgRecord, RepoRecord};
use crate::periodic::FirstPass;
use crate::storage_locations::StorageLocations;
use crate::storage_move::mirror::{self, Mirror};
use crate::store::{Batch, Store};

/// How often a pass runs. Our choice: a copy lags its backup by at most a minute plus its
/// transfer, which a 3-2-1 policy (a copy per day is common) tolerates many times over, and an
/// idle pass costs one store read per organisation with a copy.
pub const COPY_TICK: Duration = Duration::from_secs(60);

/// The second-copy component: no state of its own.
pub struct SecondCopy {
    store: Store,
    clock: Arc<dyn Clock>,
    locations: Arc<StorageLocations>,
    catalog: Arc<Catalog>,
}

impl SecondCopy {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        locations: Arc<StorageLocations>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            store,
            clock,
            locations,
            catalog,
        }
    }

    /// One pass over every organisation with a copy; returns the backups whose copy is done.
    pub async fn run_copies_once(&self) -> CoreResult<u64> {
        let mut done = 0;
        for org in self.store.orgs().await? {
            let Some(location) = org.copy_to.clone() else {
                continue;
            };
            for repo in self.store.org_repos(&org.id).await? {
                done += self.copy_repo(&org, &repo, &location).await?;
            }
        }
        Ok(done)
    }

    async fn copy_repo(
        &self,
        org: &OrgRecord,
        repo: &RepoRecord,
        location: &str,
    ) -> CoreResult<u64> {
        let backups = self.store.recent_backups(&repo.id).await?;
        let due: Vec<BackupRecord> = copy_plan::due(&backups, location)
            .into_iter()
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let prefix = format!("{}/{}/", repo.org_id, repo.id);
        let src = self.locations.operator(org).await?;
        let dst = self.locations.named_operator(location).await?;
        let pass = mirror::mirror(&src, &dst, &prefix, Mirror::RepositoryAdded)
            .await
            .map(|r| {
                tracing::info!(repo = %repo.full_name(), location, copied = r.copied, bytes = r.bytes, verified = r.verified, "second copy pass");
            })
            .map_err(|e| e.to_string());
        if let Err(e) = &pass {
            tracing::warn!(repo = %repo.full_name(), location, error = %e, "second copy failed; the next pass tries again");
        }
        let now = self.clock.now_ms();
        let mut done = 0;
        for mut b in due {
            let snapshot = format!(
                "{prefix}snapshots/{}",
                b.snapshot_id
                    .as_ref()
                    .map(|s| s.as_str())
                    .unwrap_or_default()
            );
            let there = pass.is_ok() && dst.exists(&snapshot).await.unwrap_or(false);
            b.copy = Some(copy_plan::outcome(location, &pass, there, now));
            done += u64::from(there);
            self.save(&b).await?;
        }
        Ok(done)
    }

    /// Records a backup's copy state in the store and its catalog object.
    async fn save(&self, b: &BackupRecord) -> CoreResult<()> {
        if self.store.backup(&b.repo_id, &b.id).await?.is_some() {
            let mut batch = Batch::default();
            batch.backup(b);
            self.store.apply(batch).await?;
        }
        self.catalog.rewrite_catalog(b).await
    }
}

/// The copy loop: a pass every [`COPY_TICK`] until `stop`.
pub async fn copy_loop(c: Arc<SecondCopy>, stop: tokio_util::sync::CancellationToken) {
    crate::periodic::every(COPY_TICK, FirstPass::AtStart, &stop, || async {
        match c.run_copies_once().await {
            Ok(n) if n > 0 => tracing::info!(copied = n, "second copies"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "second copy pass failed"),
        }
    })
    .await
}
