//! Escrow locks in the store: `escrow-lock/<repo-id>`, how far the storage lock of an escrowed
//! repository has come (`escrow_lock/`). Small, written once per pass that changed something.

use crate::escrow_lock::EscrowLockRecord;
use crate::kv::json::put_json_op;
use crate::kv::{KvBackend, Op, Txn};
use crate::model::RepoId;

use super::{Store, StoreResult};

pub(super) fn escrow_lock_key(repo_id: &RepoId) -> String {
    format!("escrow-lock/{repo_id}")
}

impl Store {
    pub async fn escrow_lock(&self, repo_id: &RepoId) -> StoreResult<Option<EscrowLockRecord>> {
        self.get(&escrow_lock_key(repo_id)).await
    }

    /// Replaces the repository's lock record.
    pub async fn put_escrow_lock(&self, repo_id: &RepoId, r: &EscrowLockRecord) -> StoreResult<()> {
        let op: Op = put_json_op(escrow_lock_key(repo_id).as_bytes(), r)?;
        self.kv.txn(Txn::new().and_then(vec![op])).await?;
        Ok(())
    }
}
