//! Removing the temporaries of failed writes.
//!
//! Every write to fs storage lands in a temporary first and is renamed into place
//! ([`repovault_common::storage::TMP_DIR`]: `<root>/.tmp/` for the storage service's own atomic
//! writes, `<org>/<repo>/.tmp/` for a snapshot repository's). A write that fails (a full disk)
//! or a process killed mid-write leaves its temporary behind, and nothing else ever removes
//! it: after an out-of-space failure the disk stayed full. The reconciler's periodic pass calls
//! [`Coordinator::sweep_temporaries`], which removes every temporary older than [`max_age`].

use std::time::Duration;

use opendal::{ErrorKind, Operator};

use repovault_common::storage::{TMP_DIR, snapshot_repo_path};
use repovault_common::timing::Timing;

use crate::catalog::reconcile::Reconciler;
use crate::error::CoreResult;

/// The longest a single write may take on a live lease: one file of rustic_core's largest pack
/// size (4076 MiB, `packer::MAX_SIZE`) at 1.2 MB/s, i.e. an hour. Far above any write seen
/// (packs are tens of MiB), far below the time a full disk should stay full.
pub const LONGEST_WRITE: Duration = Duration::from_secs(60 * 60);

/// How old (by last modification) a temporary must be before it is removed: the longest write
/// plus the lease TTL. A write in progress modifies its temporary as it goes and renames it when
/// done; a worker whose lease lapsed stops writing at its write deadline
/// ([`Timing::write_deadline`], shorter than the lease TTL). So a temporary untouched for
/// longer belongs to a write that failed or whose writer is gone.
pub fn max_age(timing: &Timing) -> Duration {
    LONGEST_WRITE + timing.lease_ttl()
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TmpSweep {
    pub removed: u64,
    pub bytes: u64,
    /// Directories that could not be listed or files not removed (logged).
    pub errors: u64,
}

/// Removes the files under `dir` (an operator path ending in `/`) last modified before
/// `cutoff_ms`. A missing directory is nothing to do; one file that cannot be read or removed
/// is counted and the others are still swept.
pub async fn sweep_dir(storage: &Operator, dir: &str, cutoff_ms: i64, out: &mut TmpSweep) {
    let entries = match storage.list_with(dir).recursive(true).await {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => {
            out.errors += 1;
            tracing::warn!(dir, error = %e, "cannot list temporaries");
            return;
        }
    };
    for entry in entries {
        if entry.metadata().is_dir() {
            continue;
        }
        let path = entry.path();
        let meta = match storage.stat(path).await {
            Ok(m) => m,
            // Renamed into place meanwhile: its write succeeded.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                out.errors += 1;
                tracing::warn!(path, error = %e, "cannot read a temporary's age");
                continue;
            }
        };
        let Some(modified) = meta.last_modified() else {
            continue;
        };
        if modified.into_inner().as_millisecond() >= cutoff_ms {
            continue;
        }
        match storage.delete(path).await {
            Ok(()) => {
                out.removed += 1;
                out.bytes += meta.content_length();
            }
            Err(e) => {
                out.errors += 1;
                tracing::warn!(path, error = %e, "cannot remove a stale temporary");
            }
        }
    }
}

impl Reconciler {
    /// Removes the stale temporaries ([`max_age`] old at `now_ms`) of every location's root and
    /// of every repository's snapshot repository. Storage without rename (object stores, whose
    /// uploads are atomic) has none.
    pub async fn sweep_temporaries(&self, now_ms: i64) -> CoreResult<TmpSweep> {
        let mut out = TmpSweep::default();
        let age = i64::try_from(max_age(&self.timing).as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(age);
        for (_, storage) in self.locations.all_operators().await? {
            if storage.info().capability().rename {
                sweep_dir(&storage, &format!("{TMP_DIR}/"), cutoff, &mut out).await;
            }
        }
        for r in self.store.repos().await? {
            let storage = self.locations.operator_for(&r.org_id).await?;
            if !storage.info().capability().rename {
                continue;
            }
            let dir = format!(
                "{}/{TMP_DIR}/",
                snapshot_repo_path(r.org_id.as_str(), r.id.as_str())
            );
            sweep_dir(&storage, &dir, cutoff, &mut out).await;
        }
        metrics::counter!("repovault_temporaries_removed_total").increment(out.removed);
        metrics::counter!("repovault_temporaries_removed_bytes_total").increment(out.bytes);
        if out.removed > 0 {
            tracing::info!(
                removed = out.removed,
                bytes = out.bytes,
                "removed stale temporaries of failed writes"
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::testing;
    use std::time::SystemTime;

    /// Writes `path` (under the storage root) and sets its modification time `age` ago.
    fn temporary(root: &std::path::Path, path: &str, age: Duration) -> std::path::PathBuf {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(&p, vec![7u8; 1000]).expect("write");
        let f = std::fs::File::options().write(true).open(&p).expect("open");
        f.set_modified(SystemTime::now() - age).expect("mtime");
        p
    }

    #[tokio::test]
    async fn stale_temporaries_go_and_fresh_ones_stay() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, r) = testing::core_with_repo(dir.path(), "app").await;
        c.catalog
            .ensure_snapshot_repo(&r)
            .await
            .expect("snapshot repository");
        let repo_dir = snapshot_repo_path(r.org_id.as_str(), r.id.as_str());
        let limit = max_age(&c.timing);
        let hour = Duration::from_secs(3600);
        let stale = [
            temporary(dir.path(), ".tmp/0a1b2c", limit + hour),
            temporary(
                dir.path(),
                &format!("{repo_dir}/.tmp/{}.00ff", "ab".repeat(32)),
                limit + Duration::from_secs(60),
            ),
        ];
        let fresh = [
            temporary(dir.path(), ".tmp/3d4e5f", Duration::ZERO),
            temporary(
                dir.path(),
                &format!("{repo_dir}/.tmp/{}.0100", "cd".repeat(32)),
                limit - Duration::from_secs(60),
            ),
        ];
        let config = dir.path().join(&repo_dir).join("config");
        let now = c.now_ms();
        let swept = c.reconciler.sweep_temporaries(now).await.expect("sweep");
        assert_eq!((swept.removed, swept.bytes, swept.errors), (2, 2000, 0));
        for p in &stale {
            assert!(!p.exists(), "stale {} removed", p.display());
        }
        for p in &fresh {
            assert!(p.exists(), "fresh {} kept", p.display());
        }
        assert!(
            config.is_file(),
            "nothing outside the temporaries is touched"
        );
        assert_eq!(
            c.reconciler
                .sweep_temporaries(now)
                .await
                .expect("sweep")
                .removed,
            0,
            "idempotent"
        );
    }

    #[tokio::test]
    async fn the_reconcilers_periodic_pass_sweeps_them() {
        let dir = tempfile::tempdir().expect("dir");
        let c = testing::core(dir.path()).await;
        let stale = temporary(dir.path(), ".tmp/0a1b2c", max_age(&c.timing) * 2);
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pass = tokio::spawn(c.reconciler.clone().run(rx, Duration::from_millis(50)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stale.exists() {
            assert!(tokio::time::Instant::now() < deadline, "not swept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pass.abort();
    }
}
