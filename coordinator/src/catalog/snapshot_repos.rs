//! Creating snapshot repositories: only the coordinator does it, once, before the first backup.
//!
//! Why not the worker: restic's init checks for a config file, spends 0.3 s deriving a key, then
//! writes the key and the config without a condition. A worker paused in that window could wake
//! after its lease expired and overwrite the config the next attempt wrote, or leave a stray key
//! that the organisation's password opens but that does not match the config (stock restic then
//! fails). The coordinator creates each repository under one lock, keeps its master key sealed,
//! and workers only ever open existing repositories.

use repovault_common::repo::{RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::storage::snapshot_repo_path;

use crate::error::{CoreError, CoreResult, not_found};
use crate::model::RepoRecord;
use crate::secrets::SealContext;
use crate::store::Batch;

use crate::catalog::catalog_objects::Catalog;

impl Catalog {
    /// Makes sure the repository's snapshot repository exists and its master key is stored.
    /// Idempotent; costs one key derivation the first time.
    pub(crate) async fn ensure_snapshot_repo(&self, repo: &RepoRecord) -> CoreResult<()> {
        if repo.sealed_master_key.is_some() {
            return Ok(());
        }
        let _one_at_a_time = self.init_lock.lock().await;
        let mut current = self
            .store
            .repo(&repo.id)
            .await?
            .ok_or_else(|| not_found("repository", repo.full_name()))?;
        if current.sealed_master_key.is_some() {
            return Ok(());
        }
        let org = self
            .store
            .org(&current.org_id)
            .await?
            .ok_or_else(|| not_found("organisation", current.org_id.clone()))?;
        let password = self
            .secrets
            .open(SealContext::OrgKey(&org.id), &org.sealed_key)?;
        let spec = RepoSpec {
            operator: self.storage.clone(),
            path: snapshot_repo_path(&current.org_id, &current.id),
        };
        let master = tokio::task::spawn_blocking(move || {
            SnapshotRepo::open(&spec, RepoKey::Password(&password), true).map(|(_, key)| key)
        })
        .await
        .map_err(|e| {
            CoreError::Internal(format!("creating the snapshot repository panicked: {e}"))
        })?
        .map_err(|e| {
            CoreError::Storage(format!(
                "creating the snapshot repository of {}: {e}",
                current.full_name()
            ))
        })?;
        current.sealed_master_key = Some(
            self.secrets
                .seal(SealContext::RepoMasterKey(&current.id), &master),
        );
        let mut batch = Batch::default();
        batch.repo(&current);
        self.store.apply(batch).await?;
        tracing::info!(repo = %current.full_name(), "snapshot repository created");
        Ok(())
    }
}
