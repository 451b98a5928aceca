//! Reads that seek: a page of organisations or repositories in name order through the name
//! indexes (`org-name/<name>`, `repo-name/<org-id>/<name>`), which sort as the names do, so a
//! page decodes only its own records however many there are; and the repositories that have
//! any backup, from keys alone.

use std::collections::BTreeSet;

use super::{Store, StoreResult, stored_id};
use crate::kv::{KeyRange, KvBackend, prefix_end};
use crate::model::{OrgId, OrgRecord, RepoId, RepoRecord};

/// Where a seek in a name index starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seek {
    /// At the first name.
    Start,
    /// At this name, included.
    At(String),
    /// After this name.
    After(String),
}

/// The keys of the index under `prefix` from `seek` on.
fn seek_range(prefix: &str, seek: &Seek) -> KeyRange {
    let end = prefix_end(prefix.as_bytes());
    let start = match seek {
        Seek::Start => prefix.as_bytes().to_vec(),
        Seek::At(name) => format!("{prefix}{name}").into_bytes(),
        // The smallest key after `prefix + name`: the same bytes and a 0 byte.
        Seek::After(name) => {
            let mut k = format!("{prefix}{name}").into_bytes();
            k.push(0);
            k
        }
    };
    KeyRange { start, end }
}

impl Store {
    /// At most `limit` organisations in name order from `seek` on.
    pub async fn orgs_by_name(&self, seek: &Seek, limit: usize) -> StoreResult<Vec<OrgRecord>> {
        let index = self
            .kv
            .range(seek_range("org-name/", seek), Some(limit))
            .await?;
        let mut out = Vec::with_capacity(index.len());
        for kv in &index {
            let Some(id) = stored_id::<OrgId>(&String::from_utf8_lossy(&kv.value)) else {
                continue;
            };
            // An index entry whose record is gone (a purge between the two reads) is skipped.
            if let Some(org) = self.org(&id).await? {
                out.push(org);
            }
        }
        Ok(out)
    }

    /// At most `limit` repositories of the organisation `org_id`, in name order from `seek` on.
    pub async fn repos_by_name(
        &self,
        org_id: &OrgId,
        seek: &Seek,
        limit: usize,
    ) -> StoreResult<Vec<RepoRecord>> {
        let index = self
            .kv
            .range(
                seek_range(&format!("repo-name/{org_id}/"), seek),
                Some(limit),
            )
            .await?;
        let mut out = Vec::with_capacity(index.len());
        for kv in &index {
            let Some(id) = stored_id::<RepoId>(&String::from_utf8_lossy(&kv.value)) else {
                continue;
            };
            if let Some(repo) = self.repo(&id).await? {
                out.push(repo);
            }
        }
        Ok(out)
    }

    /// Every repository that has a backup, by id: those with aggregates (written in the same
    /// transaction as a repository's first terminal backup, before its catalog object, and
    /// kept until the repository is purged; `rebuild-catalog` writes them for every repository)
    /// and those with a backup record in the store (a pending or running one has no aggregates
    /// yet). Read from two key ranges, so a store of 100,000 repositories of which few have
    /// backups is not walked repository by repository.
    pub async fn repos_with_backups(&self) -> StoreResult<BTreeSet<RepoId>> {
        let mut out = BTreeSet::new();
        for prefix in ["repo-stats/", "backup/"] {
            let kvs = self
                .kv
                .range(KeyRange::prefix(prefix.as_bytes()), None)
                .await?;
            for kv in &kvs {
                let key = String::from_utf8_lossy(&kv.key);
                let rest = key.strip_prefix(prefix).unwrap_or_default();
                let id = rest.split('/').next().unwrap_or_default();
                if let Some(id) = stored_id::<RepoId>(id) {
                    out.insert(id);
                }
            }
        }
        Ok(out)
    }
}
