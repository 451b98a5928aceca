//! The catalog objects: one create-only JSON document per backup outcome, beside the
//! repository's snapshots. They are the full history; the store keeps only recent records, and
//! `rebuild` recovers the store's view from them alone.

use crate::model::{BackupId, OrgId, RepoId};
use futures::TryStreamExt;

use repovault_common::storage::catalog_object_path;

use crate::error::CoreResult;
use crate::model::{BackupRecord, RepoStats};
use crate::store::RECENT_BACKUPS;

use std::sync::Arc;

use crate::secrets::Secrets;
use crate::storage_locations::StorageLocations;
use crate::store::Store;

/// Bumped when the catalog document changes incompatibly.
const CATALOG_FORMAT: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct CatalogDoc {
    catalog_format: u32,
    #[serde(flatten)]
    backup: BackupRecord,
}

/// The catalog component: backup outcomes as catalog objects beside the snapshots, and the
/// snapshot repositories themselves (`snapshot_repos.rs`). Owns the lock that serialises
/// snapshot repository creation; reads and writes the store, and each organisation's storage
/// location through `locations`.
pub struct Catalog {
    pub(crate) store: Store,
    pub(crate) locations: Arc<StorageLocations>,
    pub(crate) secrets: Arc<Secrets>,
    /// Serialises snapshot repository creation (`snapshot_repos.rs`).
    pub(crate) init_lock: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// The catalog over `store` and the storage `locations`, opening organisation keys with
    /// `secrets`.
    pub fn new(store: Store, locations: Arc<StorageLocations>, secrets: Arc<Secrets>) -> Self {
        Self {
            store,
            locations,
            secrets,
            init_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes the catalog object of a terminal backup. Create-only: an object that exists is left
    /// as it is (the outcome of a backup never changes once written; its verification does, see
    /// [`Catalog::rewrite_catalog`]).
    pub(crate) async fn write_catalog(&self, b: &BackupRecord) -> CoreResult<()> {
        debug_assert!(b.status.is_terminal());
        let path = catalog_object_path(b.org_id.as_str(), b.repo_id.as_str(), b.id.as_str());
        let storage = self.locations.operator_for(&b.org_id).await?;
        if storage.exists(&path).await? {
            return Ok(());
        }
        storage.write(&path, catalog_bytes(b)?).await?;
        Ok(())
    }

    /// Rewrites the catalog object of a terminal backup whose verification changed (the
    /// only part of a backup's record that changes after it finished). A whole-object write:
    /// readers see the old or the new document, never a mix.
    pub(crate) async fn rewrite_catalog(&self, b: &BackupRecord) -> CoreResult<()> {
        debug_assert!(b.status.is_terminal());
        let path = catalog_object_path(b.org_id.as_str(), b.repo_id.as_str(), b.id.as_str());
        let storage = self.locations.operator_for(&b.org_id).await?;
        storage.write(&path, catalog_bytes(b)?).await?;
        Ok(())
    }

    pub(crate) async fn read_catalog(
        &self,
        org_id: &OrgId,
        repo_id: &RepoId,
        backup_id: &BackupId,
    ) -> CoreResult<Option<BackupRecord>> {
        let path = catalog_object_path(org_id.as_str(), repo_id.as_str(), backup_id.as_str());
        let storage = self.locations.operator_for(org_id).await?;
        match storage.read(&path).await {
            Ok(buf) => Ok(Some(parse_doc(&path, &buf.to_vec())?)),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every catalog object of a repository, newest first.
    pub(crate) async fn list_catalog(
        &self,
        org_id: &OrgId,
        repo_id: &RepoId,
    ) -> CoreResult<Vec<BackupRecord>> {
        let dir = format!("{org_id}/{repo_id}/catalog/");
        let mut out = Vec::new();
        let storage = self.locations.operator_for(org_id).await?;
        let mut lister = match storage.lister(&dir).await {
            Ok(l) => l,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = lister.try_next().await? {
            if !entry.path().ends_with(".json") {
                continue;
            }
            let buf = storage.read(entry.path()).await?;
            out.push(parse_doc(entry.path(), &buf.to_vec())?);
        }
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Writes every catalog object a crash left unwritten. The store commits a terminal backup
    /// together with a `catalog-pending` marker (an outbox); the marker goes when the object is
    /// written, so start-up reads only the markers, not every repository. Failures are logged and
    /// retried at the next start or the repository's next finished backup.
    pub(crate) async fn repair_catalog(&self) {
        let pending = match self.store.catalog_pending(None).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "catalog repair: cannot read the pending markers");
                return;
            }
        };
        let mut repos: Vec<&RepoId> = pending.iter().map(|(r, _)| r).collect();
        repos.dedup();
        for repo_id in repos {
            if let Err(e) = self.finish_catalog(repo_id).await {
                tracing::warn!(repo = %repo_id, error = %e, "catalog repair failed");
            }
        }
    }

    /// Writes the catalog objects of the repository's pending terminal records, clears their
    /// markers, and trims the store to the records [`stays_in_store`] keeps (never one whose
    /// object is not written yet).
    pub(crate) async fn finish_catalog(&self, repo_id: &RepoId) -> CoreResult<()> {
        let pending: std::collections::HashSet<BackupId> = self
            .store
            .catalog_pending(Some(repo_id))
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let last_success = self.store.stats(repo_id).await?.last_success_id;
        let copy_to = self.copy_location(repo_id).await?;
        let mut recent = self.store.recent_backups(repo_id).await?;
        recent.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        let mut batch = crate::store::Batch::default();
        for (i, b) in recent.iter().filter(|b| b.status.is_terminal()).enumerate() {
            if pending.contains(&b.id) {
                self.write_catalog(b).await?;
                batch.clear_catalog_pending(repo_id, &b.id);
            }
            if !stays_in_store(i, b, last_success.as_ref(), copy_to.as_deref()) {
                batch.delete_backup(repo_id, &b.id);
            }
        }
        // A marker whose record is gone (never expected) must not keep start-up busy.
        for id in pending
            .iter()
            .filter(|id| !recent.iter().any(|b| &b.id == *id))
        {
            batch.clear_catalog_pending(repo_id, id);
        }
        self.store.apply(batch).await?;
        Ok(())
    }

    /// The second-copy location of the repository's organisation, if it has one.
    async fn copy_location(&self, repo_id: &RepoId) -> CoreResult<Option<String>> {
        let Some(repo) = self.store.repo(repo_id).await? else {
            return Ok(None);
        };
        Ok(self.store.org(&repo.org_id).await?.and_then(|o| o.copy_to))
    }

    /// Rebuilds every repository's recent records and stats from the catalog objects alone.
    /// Returns (repositories, backups) seen.
    pub async fn rebuild_catalog(&self) -> CoreResult<(u64, u64)> {
        let mut backups = 0u64;
        let repos = self.store.repos().await?;
        for r in &repos {
            let history = self.list_catalog(&r.org_id, &r.id).await?;
            backups += history.len() as u64;
            // Tasks still pending or running have no catalog object yet: keep them.
            let mut records: Vec<BackupRecord> = self
                .store
                .recent_backups(&r.id)
                .await?
                .into_iter()
                .filter(|b| !b.status.is_terminal())
                .collect();
            let stats = stats_from_history(&history);
            let copy_to = self.copy_location(&r.id).await?;
            records.extend(
                history
                    .iter()
                    .enumerate()
                    .filter(|(i, b)| {
                        stays_in_store(*i, b, stats.last_success_id.as_ref(), copy_to.as_deref())
                    })
                    .map(|(_, b)| b.clone()),
            );
            self.store.replace_backups(&r.id, &records, &stats).await?;
        }
        Ok((repos.len() as u64, backups))
    }
}

/// Whether the finished record `b`, the `newest`-th newest finished one of its repository
/// (from 0), stays in the store once its catalog object is written: the newest
/// [`RECENT_BACKUPS`], the last successful one (the next backup's lease reads its
/// verification), and a completed one whose second copy to `copy_to` is not done yet (the copy
/// pass finds its work in the store, and records the outcome there and in the catalog).
pub fn stays_in_store(
    newest: usize,
    b: &BackupRecord,
    last_success: Option<&BackupId>,
    copy_to: Option<&str>,
) -> bool {
    newest < RECENT_BACKUPS
        || last_success == Some(&b.id)
        || copy_to.is_some_and(|l| {
            !crate::second_copy::copy_plan::due(std::slice::from_ref(b), l).is_empty()
        })
}

/// The catalog document of a backup.
fn catalog_bytes(b: &BackupRecord) -> CoreResult<Vec<u8>> {
    let doc = CatalogDoc {
        catalog_format: CATALOG_FORMAT,
        backup: b.clone(),
    };
    serde_json::to_vec_pretty(&doc).map_err(|e| crate::error::CoreError::Internal(e.to_string()))
}

fn parse_doc(path: &str, bytes: &[u8]) -> CoreResult<BackupRecord> {
    let doc: CatalogDoc = serde_json::from_slice(bytes).map_err(|e| {
        crate::error::CoreError::Storage(format!("catalog object {path} is not valid: {e}"))
    })?;
    Ok(doc.backup)
}

/// The aggregates of a repository, from its full history (newest first).
pub fn stats_from_history(history: &[BackupRecord]) -> RepoStats {
    let mut s = RepoStats::default();
    for b in history.iter().rev().filter(|b| b.status.is_terminal()) {
        s.record(b);
    }
    s
}

#[cfg(test)]
#[path = "recent_records_tests.rs"]
mod recent_records_tests;
