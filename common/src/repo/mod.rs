//! The snapshot store: the one interface through which the coordinator and the workers reach a
//! restic repository (written and read with rustic_core, on storage through opendal).
//!
//! # Where it sits
//!
//! One [`SnapshotRepo`] is one open restic repository at `<storage root>/<spec.path>/`, on the
//! opendal operator of a [`RepoSpec`]. Which storage that is (local file system, memory, later
//! object stores) is decided once, where a `crate::storage::StorageConfig` becomes an operator;
//! nothing here or in the callers depends on it. What differs between kinds is read from the
//! operator's capabilities (`backend.rs`): with rename, each file is written under `.tmp/` and
//! renamed into place; without, a single put is already all-or-nothing.
//!
//! # Operations
//!
//! - **Open or create** ([`SnapshotRepo::open`], `open.rs`): by password or by the master key a
//!   previous open returned; creates the repository when asked and absent. Concurrent first
//!   creations of one repository race on its config file: the caller serialises them (the
//!   coordinator's lease does). [`SnapshotRepo::add_key`] adds a restic password.
//! - **Backup behind the commit fence** ([`SnapshotRepo::backup`], `fenced_backup.rs`): one
//!   directory becomes one snapshot. Backups of one `SnapshotRepo` run one at a time.
//! - **Restore and read parts** (`snapshot_read.rs`): [`SnapshotRepo::restore`] a path of a
//!   snapshot to a directory that must not exist (complete or absent, never partial);
//!   [`SnapshotRepo::read_file`], [`SnapshotRepo::read_files`] and [`SnapshotRepo::list_files`]
//!   for small documents and listings; [`SnapshotRepo::snapshots`] to list.
//! - **Forget and prune** (`forget_prune.rs`, `unindexed.rs`): [`SnapshotRepo::forget`] deletes
//!   snapshot files; [`SnapshotRepo::prune`] removes the data no snapshot references, in two
//!   phases so a running reader keeps finding what it loaded.
//! - **Read-back** (`pack_usage.rs`, `readback.rs`, `damage.rs`): which packs a snapshot uses,
//!   reading them back and checking every blob, and setting damaged packs and index files
//!   aside; [`SnapshotRepo::check`] is rustic_core's own structural check.
//!
//! # Contract
//!
//! - **Blocking.** Every operation is synchronous and blocking (storage I/O through opendal's
//!   blocking operator, file system, CPU-heavy crypto): call it on the blocking pool
//!   (`tokio::task::spawn_blocking`) or a thread with a multi-thread tokio runtime entered,
//!   never on a runtime worker thread, where opendal's blocking operator panics ("Cannot start
//!   a runtime from within a runtime"). Without any runtime context `open` fails with
//!   [`RepoError::NoRuntime`]. rustic_core can also panic on some corrupt data; the operations
//!   that read snapshot contents catch that as [`RepoError::Damaged`], anything else is the
//!   caller's to catch (a `JoinError` is a failed task).
//! - **A snapshot write is atomic; the snapshot file is the commit point.** A backup writes its
//!   packs and index files first and the snapshot file last, and only if every source file was
//!   read and the caller's fence allowed it right before. A backup that fails anywhere, or a
//!   process that dies, leaves no snapshot: only packs and indexes no snapshot references,
//!   which prune removes. Every file appears under its final name complete or not at all.
//! - **Forget is idempotent**: forgetting a snapshot that is already gone succeeds, so a
//!   retried retention run converges. Prune must not run while a backup of the same repository
//!   runs (the backup may reuse blobs prune deems unused); the coordinator's leases keep them
//!   apart.
//! - **Readers see committed snapshots only**: a snapshot exists exactly when its file does;
//!   listings read the snapshot files at each call, and the operations that need the index
//!   (restore, reading files, the read-back) load it afresh at each call.
//!
//! Format guarantees: snapshots are plain restic snapshots (repository version 2), readable by the
//! stock `restic` and `rustic` tools with the same password; the *contents* of the backed-up
//! directory are the snapshot's root tree, tags are one entry each, ids are full 64-hex strings.

mod backend;
mod damage;
#[cfg(test)]
mod damage_tests;
mod fenced_backup;
mod forget_prune;
mod ledger;
#[cfg(test)]
mod memory_store_tests;
mod open;
mod pack_map;
mod pack_usage;
mod readback;
#[cfg(test)]
mod readback_tests;
mod repo_error;
#[cfg(test)]
mod repo_tests;
mod rooted_source;
mod serve_overlay;
mod snapshot_read;
mod unindexed;

pub use damage::{DamageFinding, DamagedKind, DroppedPacks, IndexRepair};
pub use fenced_backup::{BackupRequest, BackupSummary};
pub use forget_prune::PruneOutcome;
pub use ledger::ReadBackLedger;
pub use open::{RepoKey, RepoSpec};
pub use pack_usage::SnapshotPacks;
pub use readback::{PackDamage, ReadBackReport};
pub use repo_error::RepoError;
use repo_error::{describe, map_err, summarise};
pub use snapshot_read::RestoreSummary;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{Credentials, FileType, Id, OpenStatus, Repository};

use backend::OpendalBackend;

/// One snapshot, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Full 64-hex id.
    pub id: String,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub label: String,
    pub paths: Vec<String>,
    /// Sorted, one entry per tag.
    pub tags: Vec<String>,
    /// Full id of the parent, if the backup had one.
    pub parent: Option<String>,
    /// Full id of the root tree.
    pub tree: String,
    /// Logical size of the files (from the snapshot summary; `None` for snapshots without one).
    pub total_bytes: Option<u64>,
}

/// One open repository. Cheap to share behind an `Arc`; methods take `&self`. Backups on one
/// `SnapshotRepo` run one at a time (the commit fence needs that); everything else may overlap.
pub struct SnapshotRepo {
    repo: Repository<OpenStatus>,
    /// The unopened handle and the master key: `Repository<OpenStatus>` is not `Clone`, and
    /// indexing consumes it, so indexed operations re-open from these (one config read, no scrypt).
    base: Repository<()>,
    key: MasterKey,
    backend: Arc<OpendalBackend>,
    backup_lock: Mutex<()>,
}

impl std::fmt::Debug for SnapshotRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotRepo")
            .field("location", &self.backend.location_str())
            .finish()
    }
}

impl SnapshotRepo {
    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        self.snapshots_matching(|_| true)
    }

    /// Snapshots carrying exactly this tag (one tag entry equal to `tag`), oldest first.
    pub fn snapshots_with_tag(&self, tag: &str) -> Result<Vec<SnapshotInfo>, RepoError> {
        self.snapshots_matching(|s| s.tags.contains(tag))
    }

    /// Where the repository is (`<scheme>:<root><path>/`), for messages.
    pub fn location(&self) -> &str {
        self.backend.location_str()
    }

    fn reopen(&self) -> Result<Repository<OpenStatus>, RepoError> {
        self.base
            .clone()
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(|e| map_err(e, self.location(), "opening the repository"))
    }

    fn snapshot_exists(&self, id: &Id) -> Result<bool, RepoError> {
        self.backend
            .exists(FileType::Snapshot, id)
            .map_err(|e| RepoError::Storage {
                location: self.location().to_string(),
                message: e.to_string(),
            })
    }

    fn load_snapshot<S: rustic_core::Open>(
        &self,
        repo: &Repository<S>,
        id: &Id,
    ) -> Result<SnapshotFile, RepoError> {
        let hex = id.to_hex().to_string();
        // Checked first so that "not found" is not confused with a storage or decryption error.
        if !self.snapshot_exists(id)? {
            return Err(RepoError::SnapshotNotFound(hex));
        }
        let mut snaps = repo
            .get_snapshots(&[hex.as_str()])
            .map_err(|e| map_err(e, self.location(), "reading the snapshot"))?;
        snaps.pop().ok_or(RepoError::SnapshotNotFound(hex))
    }

    fn snapshots_matching(
        &self,
        filter: impl FnMut(&SnapshotFile) -> bool,
    ) -> Result<Vec<SnapshotInfo>, RepoError> {
        let mut snaps = self
            .repo
            .get_matching_snapshots(filter)
            .map_err(|e| map_err(e, self.location(), "listing snapshots"))?;
        snaps.sort_unstable_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(snaps.iter().map(snapshot_info).collect())
    }
}

fn snapshot_info(s: &SnapshotFile) -> SnapshotInfo {
    let ts = s.time.timestamp();
    let time = DateTime::from_timestamp(
        ts.as_second(),
        u32::try_from(ts.subsec_nanosecond()).unwrap_or(0),
    )
    .unwrap_or_default();
    SnapshotInfo {
        id: s.id.to_hex().to_string(),
        time,
        hostname: s.hostname.clone(),
        label: s.label.clone(),
        paths: s.paths.iter().cloned().collect(),
        tags: s.tags.iter().cloned().collect(),
        parent: s.parent.map(|p| p.to_hex().to_string()),
        tree: s.tree.to_hex().to_string(),
        total_bytes: s.summary.as_ref().map(|x| x.total_bytes_processed),
    }
}

/// Runs `f`, turning a panic inside rustic_core (which unwraps some errors on damaged data,
/// e.g. a blob whose MAC does not check during a restore) into [`RepoError::Damaged`], so a
/// damaged backup is reported as such instead of taking the calling task down.
fn guard<T>(doing: &'static str, f: impl FnOnce() -> Result<T, RepoError>) -> Result<T, RepoError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "panicked".into());
            Err(RepoError::Damaged { doing, message })
        }
    }
}

fn parse_snapshot_id(s: &str) -> Result<Id, RepoError> {
    // Full ids only: a prefix could match a different snapshot as the repository grows.
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::InvalidInput(format!(
            "{s:?} is not a full 64-hex snapshot id"
        )));
    }
    s.parse::<Id>()
        .map_err(|_| RepoError::InvalidInput(format!("{s:?} is not a full 64-hex snapshot id")))
}

fn io_err(path: &Path, source: std::io::Error) -> RepoError {
    RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}
