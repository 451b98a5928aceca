//! The append-only audit log: every admin call that changes something (a trigger, a restore, a
//! policy, a credential, escrow, deletion, purge, key export), who made it and how it ended, and
//! every refused call on either service (`service/refusals.rs`, rate-limited per address).
//!
//! Entries are only ever added ([`AuditLog::append`]); nothing in the coordinator updates or
//! removes them. Keys sort newest first (`audit/<i64::MAX - ms>-<uuid>`), so the latest entries
//! are one bounded range read.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kv::json::{decode_json, put_json_op};
use crate::kv::{KeyRange, KvBackend, KvResult, Txn};

const PREFIX: &str = "audit/";

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The token's configured name (`local` without configured tokens).
    pub caller: String,
    pub role: String,
    /// The admin RPC, e.g. `DeleteBackup`.
    pub method: String,
    /// `ok`, `refused: <why>`, or `failed: <gRPC code>`.
    pub outcome: String,
    /// The caller's address (`ip:port`); empty when unknown and in entries written before it
    /// was recorded.
    #[serde(default)]
    pub peer: String,
    /// What the change was, when the handler says ([`AuditDetail`]), e.g. a retention policy's
    /// old and new values; empty otherwise.
    #[serde(default)]
    pub detail: String,
}

/// Set by an admin handler on its response's extensions: the audit entry's `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDetail(pub String);

#[derive(Clone)]
pub struct AuditLog {
    kv: Arc<dyn KvBackend>,
}

impl AuditLog {
    pub fn new(kv: Arc<dyn KvBackend>) -> Self {
        AuditLog { kv }
    }

    /// Adds one entry; never overwrites (each key holds a fresh UUID).
    pub async fn append(&self, entry: &AuditEntry) -> KvResult<()> {
        let key = format!(
            "{PREFIX}{:020}-{}",
            i64::MAX.saturating_sub(entry.at_ms),
            uuid::Uuid::now_v7().simple()
        );
        let mut txn = Txn::default();
        txn.success.push(put_json_op(key.as_bytes(), entry)?);
        self.kv.txn(txn).await?;
        Ok(())
    }

    /// At most `limit` entries with their keys, newest first, after the entry whose key is
    /// `after` (from the newest when `None`): the keys sort newest first, so a page is one
    /// bounded range read.
    pub async fn list_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> KvResult<Vec<(String, AuditEntry)>> {
        let mut range = KeyRange::prefix(PREFIX.as_bytes());
        if let Some(key) = after.filter(|k| k.starts_with(PREFIX)) {
            // The smallest key after `key`: the same bytes and a 0 byte.
            let mut start = key.as_bytes().to_vec();
            start.push(0);
            range.start = start;
        }
        let kvs = self.kv.range(range, Some(limit)).await?;
        kvs.iter()
            .map(|kv| {
                decode_json::<AuditEntry>(kv)
                    .map(|v| (String::from_utf8_lossy(&kv.key).into_owned(), v.value))
            })
            .collect()
    }

    /// The newest `limit` entries, newest first.
    pub async fn list(&self, limit: usize) -> KvResult<Vec<AuditEntry>> {
        let kvs = self
            .kv
            .range(KeyRange::prefix(PREFIX.as_bytes()), Some(limit))
            .await?;
        kvs.iter()
            .map(|kv| decode_json::<AuditEntry>(kv).map(|v| v.value))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    #[tokio::test]
    async fn entries_list_newest_first_and_are_kept() {
        let log = AuditLog::new(Arc::new(MemoryKv::new()));
        for (i, m) in ["AddOrg", "RunBackup", "DeleteBackup"].iter().enumerate() {
            log.append(&AuditEntry {
                at_ms: 1_000 + i as i64,
                caller: "root".into(),
                role: "admin".into(),
                method: (*m).into(),
                outcome: "ok".into(),
                peer: "127.0.0.1:5000".into(),
                detail: String::new(),
            })
            .await
            .unwrap();
        }
        let all = log.list(10).await.unwrap();
        let methods: Vec<&str> = all.iter().map(|e| e.method.as_str()).collect();
        assert_eq!(methods, ["DeleteBackup", "RunBackup", "AddOrg"]);
        assert_eq!(log.list(1).await.unwrap()[0].method, "DeleteBackup");
    }
}
