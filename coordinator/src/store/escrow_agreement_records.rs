//! Escrow agreements in the store: `escrow/<repo-id>/<id>`, read whole per repository (a
//! repository has a handful) and as retention's windows.

use crate::model::{EscrowRecord, RepoId};

use super::{Store, StoreResult};

impl Store {
    /// The escrow agreements of one repository, or of all.
    pub async fn escrows(&self, repo_id: Option<&RepoId>) -> StoreResult<Vec<EscrowRecord>> {
        match repo_id {
            Some(r) => self.list(&format!("escrow/{r}/")).await,
            None => self.list("escrow/").await,
        }
    }

    /// The repository's escrow agreements as retention sees them.
    pub async fn escrow_windows(
        &self,
        repo_id: &RepoId,
    ) -> StoreResult<Vec<crate::maintenance::retention::EscrowWindow>> {
        Ok(self
            .escrows(Some(repo_id))
            .await?
            .iter()
            .map(EscrowRecord::window)
            .collect())
    }

    /// The repository's active agreement at `now_ms`, if any (the oldest).
    pub async fn active_escrow(
        &self,
        repo_id: &RepoId,
        now_ms: i64,
    ) -> StoreResult<Option<EscrowRecord>> {
        let mut active: Vec<EscrowRecord> = self
            .escrows(Some(repo_id))
            .await?
            .into_iter()
            .filter(|e| e.window().is_active(now_ms))
            .collect();
        active.sort_by_key(|e| e.created_at_ms);
        Ok(active.into_iter().next())
    }
}
