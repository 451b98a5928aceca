//! Download artifacts: links that expire, and deleting artifacts past their expiry.
//!
//! A completed download restore (`download_zip`, or the older `full_repo` to `download` tar)
//! leaves one artifact in storage. Its first link expires `link_ttl` (default 6 h) after the
//! restore completed; `restore link` mints later links. The artifact lives until the latest
//! expiry of any link minted for it ([`artifact_expiry`]); then the expiry loop
//! ([`Downloads::expire_downloads`], every [`EXPIRY_INTERVAL`]) deletes it and marks the record
//! (`artifact_expired`). Links are [`repovault_common::links`] HMAC links served by
//! `GET /downloads/<id>` on the HTTP port (`http.rs`); their key is derived from the master key
//! (context [`LINK_KEY_CONTEXT`]), so it needs no file of its own, survives restarts and any
//! coordinator holding the master key verifies it; rotating the master key invalidates
//! outstanding links.

use crate::model::RestoreId;
use crate::periodic::FirstPass;
use crate::storage_locations::StorageLocations;
use crate::store::Store;
use repovault_common::crypto::MasterKey;
use repovault_common::links::{
    DEFAULT_LINK_TTL, HmacLinker, LINK_KEY_CONTEXT, Link, LinkRefusal, LinkRequest, Linker,
};

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::{RestoreRecord, Status};
use crate::store::Batch;

/// How often the expiry loop looks for expired artifacts. An artifact outlives its last link by
/// at most this; 5 minutes is a sixth of the shortest link lifetime (30 m) and costs one scan of
/// the restore records.
pub const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The downloads component: the link signing key and the base URL links start with, and the
/// store, storage and clock it mints, checks and expires links with. Its lock is its own.
pub struct Downloads {
    key: [u8; 32],
    store: Store,
    locations: Arc<StorageLocations>,
    clock: Arc<dyn Clock>,
    base_url: parking_lot::RwLock<Option<String>>,
    /// Serialises read-modify-write of restore records by `restore link` and the expiry loop.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads")
            .field("key", &"[redacted]")
            .field("base_url", &*self.base_url.read())
            .finish()
    }
}

impl Downloads {
    /// Links signed with a key derived from `master`, records in `store`, artifacts in each
    /// organisation's storage location, expiry on `clock`.
    pub fn new(
        master: &MasterKey,
        store: Store,
        locations: Arc<StorageLocations>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            key: master.derive_key(LINK_KEY_CONTEXT),
            store,
            locations,
            clock,
            base_url: parking_lot::RwLock::new(None),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Sets where links point (`http_public_url`, else `http://<bound HTTP address>`).
    pub fn set_base_url(&self, url: &str) {
        *self.base_url.write() = Some(url.trim_end_matches('/').to_string());
    }

    /// The HMAC linker; `None` when the coordinator serves no HTTP port.
    fn hmac(&self) -> Option<HmacLinker> {
        self.base_url
            .read()
            .as_deref()
            .map(|b| HmacLinker::new(self.key, b))
    }

    /// The coordinator-served linker; `None` when the coordinator serves no HTTP port.
    pub fn linker(&self) -> Option<Linker> {
        self.hmac().map(Linker::Hmac)
    }

    /// A link to artifact `a` of restore `r` valid until `expires_at` (unix seconds): signed by
    /// the storage itself where it can (`storage_links.rs`: S3 and GCS presigned URLs, an Azure
    /// SAS), so the download never passes through the coordinator; else the coordinator-served
    /// HMAC link. `None` when neither exists.
    async fn link(&self, r: &RestoreRecord, path: &str, expires_at: i64) -> Option<Link> {
        let now = self.clock.now_ms().div_euclid(1000);
        match self.locations.writer_config_for(&r.org_id).await {
            Ok(config) => match crate::storage_links::sign(&config, path, now, expires_at).await {
                Ok(Some(link)) => return Some(link),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(restore = %r.id, error = %e, "the storage could not sign a download link; the coordinator serves it");
                }
            },
            Err(e) => {
                tracing::warn!(restore = %r.id, error = %e, "no storage location for a download link; the coordinator serves it");
            }
        }
        self.linker().map(|l| {
            l.link(&LinkRequest {
                restore_id: r.id.as_str(),
                artifact_path: path,
                expires_at,
            })
        })
    }
}

/// A download artifact as the expiry planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub restore_id: RestoreId,
    pub path: String,
    /// Unix milliseconds after which no link to it is valid.
    pub expires_at_ms: i64,
}

/// When `r`'s artifact expires (unix ms): the later of the first link's expiry (completion +
/// `link_ttl`, default 6 h) and the latest minted link's. `None` when there is no live artifact
/// (not a completed download, or already deleted).
pub fn artifact_expiry(r: &RestoreRecord) -> Option<i64> {
    if r.status != Status::Completed
        || r.artifact_path.is_none()
        || r.download.artifact_expired_at_ms.is_some()
    {
        return None;
    }
    let default_ttl = i64::try_from(DEFAULT_LINK_TTL.as_millis()).unwrap_or(i64::MAX);
    let first = r
        .finished_at_ms
        .unwrap_or(r.created_at_ms)
        .saturating_add(r.download.link_ttl_ms.unwrap_or(default_ttl));
    Some(first.max(r.download.links_until_ms.unwrap_or(i64::MIN)))
}

/// The live artifact of `r`, if any.
pub fn artifact(r: &RestoreRecord) -> Option<Artifact> {
    Some(Artifact {
        restore_id: r.id.clone(),
        path: r.artifact_path.clone()?,
        expires_at_ms: artifact_expiry(r)?,
    })
}

/// The artifacts to delete at `now` (unix ms): those whose expiry has passed. Pure, so the
/// policy is tested without storage or clocks.
pub fn expired(artifacts: &[Artifact], now_ms: i64) -> Vec<&Artifact> {
    artifacts
        .iter()
        .filter(|a| a.expires_at_ms < now_ms)
        .collect()
}

/// Why `GET /downloads/<id>` refuses.
#[derive(Debug, thiserror::Error)]
pub enum DownloadRefusal {
    #[error("no such download")]
    NotFound,
    #[error(transparent)]
    Link(#[from] LinkRefusal),
    #[error("the download was deleted at {0}")]
    Deleted(String),
    #[error("{0}")]
    Unavailable(String),
}

impl Downloads {
    /// The current link of a completed download restore: valid until its artifact expires.
    /// `None` for other restores, a deleted artifact, or no way to link (fs storage and a
    /// coordinator without an HTTP port).
    pub async fn download_link(&self, r: &RestoreRecord) -> Option<Link> {
        let a = artifact(r)?;
        self.link(r, &a.path, a.expires_at_ms.div_euclid(1000))
            .await
    }

    /// Mints a link to restore `id`'s artifact valid until `expires_at_ms` (unix ms, rounded
    /// down to a second), and extends the artifact's life to it when later. The caller bounds
    /// the lifetime (30m..=7d for admins); a past expiry is allowed here (tests mint expired
    /// links). Refused unless the restore is a completed download whose artifact still exists.
    pub async fn mint_download_link(
        &self,
        id: &RestoreId,
        expires_at_ms: i64,
    ) -> CoreResult<(RestoreRecord, Link)> {
        let _g = self.lock.lock().await;
        let mut r = self
            .store
            .restore(id)
            .await?
            .ok_or_else(|| not_found("restore", id))?;
        let a = artifact(&r).ok_or_else(|| {
            CoreError::FailedPrecondition(match (&r.download.artifact_expired_at_ms, &r.status) {
                (Some(t), _) => format!(
                    "restore {id}'s download expired and was deleted at {}",
                    crate::clock::format_ms(*t)
                ),
                (None, Status::Completed) => format!("restore {id} has no download artifact"),
                (None, s) => format!(
                    "restore {id} is {}; its link is minted when it is completed",
                    s.as_str()
                ),
            })
        })?;
        let expires_at = expires_at_ms.div_euclid(1000);
        let link = self.link(&r, &a.path, expires_at).await.ok_or_else(|| {
            CoreError::FailedPrecondition(
                "this coordinator serves no HTTP port for links and its storage signs none".into(),
            )
        })?;
        if expires_at * 1000 > a.expires_at_ms {
            r.download.links_until_ms = Some(expires_at * 1000);
            let mut b = Batch::default();
            b.restore(&r);
            self.store.apply(b).await?;
        }
        tracing::info!(restore = %r.id, expires = %repovault_common::links::format_unix(expires_at), "download link minted");
        Ok((r, link))
    }

    /// Checks a presented link at `now_ms` and returns the restore and its artifact path:
    /// the signature (refused as altered), the expiry (refused as expired), then that the
    /// artifact still exists.
    pub async fn open_download(
        &self,
        id: &str,
        expires: &str,
        sig: &str,
        now_ms: i64,
    ) -> Result<(RestoreRecord, String), DownloadRefusal> {
        // The id comes from the link's path: one that is not an id names no restore.
        let id = RestoreId::from_wire(id, "restore id").map_err(|_| DownloadRefusal::NotFound)?;
        let r = self
            .store
            .restore(&id)
            .await
            .map_err(|e| DownloadRefusal::Unavailable(e.to_string()))?
            .ok_or(DownloadRefusal::NotFound)?;
        let path = r.artifact_path.clone().ok_or(DownloadRefusal::NotFound)?;
        let hmac = self
            .hmac()
            .ok_or_else(|| DownloadRefusal::Unavailable("no link base URL".into()))?;
        let expires_at: i64 = expires.parse().map_err(|_| LinkRefusal::Altered)?;
        hmac.verify(
            &LinkRequest {
                restore_id: r.id.as_str(),
                artifact_path: &path,
                expires_at,
            },
            sig,
            now_ms.div_euclid(1000),
        )?;
        if let Some(t) = r.download.artifact_expired_at_ms {
            return Err(DownloadRefusal::Deleted(crate::clock::format_ms(t)));
        }
        if r.status != Status::Completed {
            return Err(DownloadRefusal::NotFound);
        }
        Ok((r, path))
    }

    /// Deletes every download artifact expired at `now_ms` and marks its restore record; returns
    /// the restore ids. Run by the expiry loop every [`EXPIRY_INTERVAL`]. A failed delete is
    /// logged and retried on the next run.
    pub async fn expire_downloads(&self, now_ms: i64) -> CoreResult<Vec<RestoreId>> {
        let _g = self.lock.lock().await;
        let records = self.store.restores().await?;
        let artifacts: Vec<Artifact> = records.iter().filter_map(artifact).collect();
        let mut done = Vec::new();
        for a in expired(&artifacts, now_ms) {
            let Some(org_id) = records
                .iter()
                .find(|r| r.id == a.restore_id)
                .map(|r| r.org_id.clone())
            else {
                continue;
            };
            let deleted = match self.locations.operator_for(&org_id).await {
                Ok(storage) => storage.delete(&a.path).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = deleted {
                tracing::warn!(restore = %a.restore_id, path = %a.path, error = %e, "could not delete an expired download");
                continue;
            }
            let Some(mut r) = self.store.restore(&a.restore_id).await? else {
                continue;
            };
            r.download.artifact_expired_at_ms = Some(now_ms);
            let mut b = Batch::default();
            b.restore(&r);
            self.store.apply(b).await?;
            tracing::info!(restore = %a.restore_id, path = %a.path, "expired download deleted");
            metrics::counter!("repovault_downloads_expired_total").increment(1);
            done.push(a.restore_id.clone());
        }
        Ok(done)
    }
}

/// The expiry loop: [`Downloads::expire_downloads`] every [`EXPIRY_INTERVAL`] (the first run at
/// start-up, which catches artifacts that expired while the coordinator was down).
pub async fn run_expiry(downloads: Arc<Downloads>, stop: tokio_util::sync::CancellationToken) {
    crate::periodic::every(EXPIRY_INTERVAL, FirstPass::AtStart, &stop, || async {
        if let Err(e) = downloads.expire_downloads(downloads.clock.now_ms()).await {
            tracing::warn!(error = %e, "download expiry");
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: &str, exp: i64) -> Artifact {
        Artifact {
            restore_id: id.parse().expect("restore id"),
            path: format!("o/r/downloads/{id}.zip"),
            expires_at_ms: exp,
        }
    }

    #[test]
    fn expired_picks_artifacts_past_their_expiry() {
        let all = [a("old", 100), a("edge", 200), a("new", 300)];
        let ids = |v: Vec<&Artifact>| {
            v.iter()
                .map(|a| a.restore_id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(expired(&all, 200)),
            ["old"],
            "valid up to and including expiry"
        );
        assert_eq!(ids(expired(&all, 201)), ["old", "edge"]);
        assert!(expired(&all, 0).is_empty());
        assert!(expired(&[], 1000).is_empty());
    }

    fn record() -> RestoreRecord {
        serde_json::from_value(serde_json::json!({
            "id": "r1", "backup_id": "b", "org_id": "o", "repo_id": "p",
            "repo_full_name": "o/p", "restore_type": "download_zip", "target": "download",
            "target_url": null, "sealed_target_token": null, "status": "completed",
            "error": null, "created_at_ms": 0, "finished_at_ms": 1000, "refs_pushed": 0,
            "artifact_path": "o/p/downloads/r1.zip", "artifact_bytes": 1,
            "artifact_sha256": null, "task_id": "t"
        }))
        .expect("an older record without download state still reads")
    }

    #[test]
    fn artifact_expiry_follows_the_latest_link() {
        let mut r = record();
        let six_h = 6 * 3600 * 1000;
        assert_eq!(
            artifact_expiry(&r),
            Some(1000 + six_h),
            "default: 6 h after completion"
        );
        r.download.link_ttl_ms = Some(1800 * 1000);
        assert_eq!(artifact_expiry(&r), Some(1000 + 1800 * 1000));
        r.download.links_until_ms = Some(10_000_000);
        assert_eq!(
            artifact_expiry(&r),
            Some(10_000_000),
            "a later link extends it"
        );
        r.download.links_until_ms = Some(5);
        assert_eq!(
            artifact_expiry(&r),
            Some(1000 + 1800 * 1000),
            "an earlier one does not"
        );
        r.download.artifact_expired_at_ms = Some(1);
        assert_eq!(artifact_expiry(&r), None, "deleted");
        let mut r = record();
        r.status = Status::Running;
        assert_eq!(artifact_expiry(&r), None, "not finished");
        let mut r = record();
        r.artifact_path = None;
        assert_eq!(artifact(&r), None, "not a download");
    }
}
