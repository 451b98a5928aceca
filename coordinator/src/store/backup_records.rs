//! Backup records in the store: `backup/<repo-id>/<backup-id>`, a repository's unfinished,
//! newest finished and last successful records (`RECENT_BACKUPS`; the rest of its history is
//! in the catalog objects), and `catalog-pending/`, the outbox of the catalog objects.

use crate::kv::json::put_json_op;
use crate::kv::{KeyRange, KvBackend, Op, Txn};
use crate::model::{BackupId, BackupRecord, RepoId, RepoStats};

use super::{Store, StoreResult, backup_key, stats_key, stored_id};

impl Store {
    pub async fn recent_backups(&self, repo_id: &RepoId) -> StoreResult<Vec<BackupRecord>> {
        self.list(&format!("backup/{repo_id}/")).await
    }

    pub async fn backup(
        &self,
        repo_id: &RepoId,
        id: &BackupId,
    ) -> StoreResult<Option<BackupRecord>> {
        self.get(&backup_key(repo_id, id)).await
    }

    /// Replaces a repository's recent records and stats in one transaction (rebuild-catalog).
    /// Records not in `records` are deleted; a transaction may not both delete and write a key
    /// (etcd's rule), so the deletes name exactly the keys that go.
    pub async fn replace_backups(
        &self,
        repo_id: &RepoId,
        records: &[BackupRecord],
        stats: &RepoStats,
    ) -> StoreResult<()> {
        let keep: std::collections::HashSet<String> =
            records.iter().map(|b| backup_key(repo_id, &b.id)).collect();
        let existing = self
            .kv
            .range(
                KeyRange::prefix(format!("backup/{repo_id}/").into_bytes()),
                None,
            )
            .await?;
        let mut ops = Vec::new();
        for kv in existing {
            if !keep.contains(String::from_utf8_lossy(&kv.key).as_ref()) {
                ops.push(Op::delete(kv.key));
            }
        }
        for b in records {
            ops.push(put_json_op(backup_key(repo_id, &b.id).as_bytes(), b)?);
        }
        ops.push(put_json_op(stats_key(repo_id).as_bytes(), stats)?);
        self.kv.txn(Txn::new().and_then(ops)).await?;
        Ok(())
    }

    /// `(repo id, backup id)` of terminal backups whose catalog object may be unwritten, of one
    /// repository or of all, sorted.
    pub async fn catalog_pending(
        &self,
        repo_id: Option<&RepoId>,
    ) -> StoreResult<Vec<(RepoId, BackupId)>> {
        let prefix = match repo_id {
            Some(r) => format!("catalog-pending/{r}/"),
            None => "catalog-pending/".to_string(),
        };
        let kvs = self
            .kv
            .range(KeyRange::prefix(prefix.into_bytes()), None)
            .await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(&kv.key);
                let rest = key.strip_prefix("catalog-pending/")?;
                let (r, b) = rest.split_once('/')?;
                Some((stored_id(r)?, stored_id(b)?))
            })
            .collect())
    }
}
