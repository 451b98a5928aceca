//! Creating snapshot repositories: only the coordinator does it, once, before the first backup.
//!
//! Why not the worker: restic's init checks for a config file, spends 0.3 s deriving a key, then
//! writes the key and the config without a condition. A worker paused in that window could wake
//! after its lease expired and overwrite the config the next attempt wrote, or leave a stray key
//! that the organisation's password opens but that does not match the config (stock restic then
//! fails). The coordinator creates each repository under one lock, keeps its master key sealed,
//! and workers only ever open existing repositories.

use crate::model::RepoId;
use repovault_common::repo::{RepoError, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
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
            operator: self.locations.operator(&org).await?,
            path: snapshot_repo_path(current.org_id.as_str(), current.id.as_str()),
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

impl Catalog {
    /// The organisation key and, when known, the repository's master key.
    pub(crate) async fn repo_keys(&self, repo_id: &RepoId) -> CoreResult<(Secret, Option<Secret>)> {
        let repo = self
            .store
            .repo(repo_id)
            .await?
            .ok_or_else(|| not_found("repository", repo_id))?;
        let org = self
            .store
            .org(&repo.org_id)
            .await?
            .ok_or_else(|| not_found("organisation", repo.org_id.clone()))?;
        let password = self
            .secrets
            .open(SealContext::OrgKey(&org.id), &org.sealed_key)?;
        let master = match &repo.sealed_master_key {
            Some(s) => Some(self.secrets.open(SealContext::RepoMasterKey(&repo.id), s)?),
            None => None,
        };
        Ok((password, master))
    }

    /// Opens the repository's snapshot repository; `None` when no backup ever initialised it.
    pub(crate) async fn open_repo(&self, repo_id: &RepoId) -> CoreResult<Option<SnapshotRepo>> {
        let (password, master) = self.repo_keys(repo_id).await?;
        let repo = self
            .store
            .repo(repo_id)
            .await?
            .ok_or_else(|| not_found("repository", repo_id))?;
        let spec = RepoSpec {
            operator: self.locations.operator_for(&repo.org_id).await?,
            path: snapshot_repo_path(repo.org_id.as_str(), repo.id.as_str()),
        };
        snapshot_op(move || {
            let key = RepoKey::new(&password, master.as_ref());
            match SnapshotRepo::open(&spec, key, false) {
                Ok((r, _)) => Ok(Some(r)),
                Err(RepoError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }
}

impl Catalog {
    /// Takes every damaged pack a read-back recorded (`verify/damaged/pack-*.json`) out of the
    /// repository's index and moves it aside, with the maintainer's credential. The worker that
    /// found the damage tries first, but a worker's writer credential may not delete, and a
    /// damaged pack left in the index would be deduplicated against by the next backup; so the
    /// coordinator finishes the job whatever the worker managed. Idempotent (a pack already out
    /// costs a read of the index). Returns the packs dropped.
    pub(crate) async fn take_out_recorded_damage(
        &self,
        repo: &crate::model::RepoRecord,
        now_ms: i64,
    ) -> CoreResult<usize> {
        let operator = self.locations.operator_for(&repo.org_id).await?;
        let path = snapshot_repo_path(repo.org_id.as_str(), repo.id.as_str());
        let findings = repovault_common::repo::DamageFinding::load_all(&operator, &path)
            .await
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        let packs: Vec<repovault_common::repo::PackDamage> = findings
            .into_iter()
            .filter(|f| f.kind == repovault_common::repo::DamagedKind::Pack)
            .map(|f| repovault_common::repo::PackDamage {
                pack_id: f.id,
                problem: f.problem,
            })
            .collect();
        if packs.is_empty() {
            return Ok(0);
        }
        let Some(sr) = self.open_repo(&repo.id).await? else {
            return Ok(0);
        };
        let dropped = snapshot_op(move || sr.drop_damaged_packs(&packs, now_ms)).await?;
        Ok(dropped.packs.len())
    }
}

/// Runs a call on a snapshot repository on the blocking pool (rustic_core is synchronous and
/// may panic: a panic is an error here, not a crash) and leaves the call's own error to the
/// caller, for callers that tell one error from another.
pub(crate) async fn snapshot_call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> CoreResult<Result<T, RepoError>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::Internal(format!("snapshot repository call panicked: {e}")))
}

/// [`snapshot_call`] with the call's error as a storage error.
pub(crate) async fn snapshot_op<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> CoreResult<T> {
    snapshot_call(f)
        .await?
        .map_err(|e| CoreError::Storage(e.to_string()))
}
