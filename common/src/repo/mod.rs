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
//! # Layout: one type, one file per concept
//!
//! [`SnapshotRepo`] holds the state (the open handle, the master key, the backend, the backup
//! lock) and its whole public interface is in this file: each public method states its contract
//! and is one call into the file of its concept, where free functions taking the repository
//! (`store: &SnapshotRepo`) do the work beside that concept's own types and helpers. The callers
//! (coordinator, worker, command line) keep one type with methods and read every contract in
//! one place; each concept keeps its file without the type's methods spreading over all of them.
//! A concept that needs another's work calls that file's function (prune calls
//! `unindexed::remove_unindexed_packs`, which is not a method because nothing outside needs it).
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
mod byte_progress;
#[cfg(test)]
mod byte_progress_tests;
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
mod repeated_snapshot;
#[cfg(test)]
mod repeated_snapshot_tests;
mod repo_error;
#[cfg(test)]
mod repo_tests;
mod rooted_source;
mod serve_overlay;
mod snapshot_read;
mod unindexed;

pub use byte_progress::ByteProgress;
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

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{Credentials, FileType, Id, OpenStatus, Repository};

use crate::secret::Secret;
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
    /// Opens the repository at `spec`, or initialises it (with the password, default restic
    /// version-2 config) when `init_if_missing` and no config file exists.
    ///
    /// Returns the repository and its master key as JSON, for the caller to keep (sealed) and
    /// pass as [`RepoKey::MasterKey`] next time. Uses no local cache. Must run with a tokio
    /// runtime context entered, off the runtime's worker threads (see the module docs).
    ///
    /// Two concurrent first-time `open(.., true)` of the same repository race on `config`: the
    /// caller must serialise initialisation per repository (the coordinator's lease does).
    pub fn open(
        spec: &RepoSpec,
        key: RepoKey<'_>,
        init_if_missing: bool,
    ) -> Result<(Self, Secret), RepoError> {
        open::open(spec, key, init_if_missing)
    }

    /// Adds a key (a restic password) for this repository alone: the repository's master key
    /// encrypted under `password`, written as a new key file. Existing keys stay. Returns the
    /// new key's id (full hex).
    pub fn add_key(&self, password: &Secret) -> Result<String, RepoError> {
        open::add_key(self, password)
    }

    /// Backs up the contents of `source_dir` (which become the snapshot's root tree).
    ///
    /// Commit protocol: data packs and index files are written first; the snapshot file, which
    /// is what makes the backup exist, is held back. Then, in this order: if any source file
    /// could not be walked, opened or read, the backup fails with [`RepoError::SourceRead`];
    /// otherwise `before_snapshot_write` is called (on this thread), and if it returns `Err` the
    /// backup fails with [`RepoError::Fenced`]; otherwise the snapshot file is written
    /// immediately after it returns. In every failure case no snapshot file is written; packs
    /// and indexes written before are harmless orphans that prune removes.
    pub fn backup(
        &self,
        source_dir: &Path,
        req: &BackupRequest,
        before_snapshot_write: &dyn Fn() -> Result<(), String>,
    ) -> Result<BackupSummary, RepoError> {
        fenced_backup::backup(self, source_dir, req, before_snapshot_write, None)
    }

    /// [`SnapshotRepo::backup`], reporting through `progress` the bytes of the source read (or
    /// found unchanged since the parent) of the source's total size.
    pub fn backup_reporting(
        &self,
        source_dir: &Path,
        req: &BackupRequest,
        before_snapshot_write: &dyn Fn() -> Result<(), String>,
        progress: ByteProgress,
    ) -> Result<BackupSummary, RepoError> {
        fenced_backup::backup(self, source_dir, req, before_snapshot_write, Some(progress))
    }

    /// A snapshot of the same tree as `parent` (full id), for a backup whose source has not
    /// changed since: only the snapshot file is written, behind `before_snapshot_write` as
    /// [`SnapshotRepo::backup`] writes its own (with the same guarantees: no snapshot file
    /// unless the fence allowed it). `req.parent` and `req.exclude` are not used. A parent that
    /// no longer exists is [`RepoError::SnapshotNotFound`].
    pub fn repeat_parent(
        &self,
        parent: &str,
        req: &BackupRequest,
        before_snapshot_write: &dyn Fn() -> Result<(), String>,
    ) -> Result<BackupSummary, RepoError> {
        repeated_snapshot::repeat_parent(self, parent, req, before_snapshot_write)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        self.snapshots_matching(|_| true)
    }

    /// Snapshots carrying exactly this tag (one tag entry equal to `tag`), oldest first.
    pub fn snapshots_with_tag(&self, tag: &str) -> Result<Vec<SnapshotInfo>, RepoError> {
        self.snapshots_matching(|s| s.tags.contains(tag))
    }

    /// Restores `path_in_snapshot` (`""` = the whole tree; a directory or a file) of a snapshot
    /// to `dest`, which must not exist. Restores into a temporary sibling of `dest`
    /// (`.<name>.restore-<random>`) and renames it to `dest` only when complete, so `dest` is
    /// either absent or complete; a failed restore removes the temporary. Files get the
    /// restoring process's owner (recorded uid/gid are not applied), recorded modes and mtimes.
    pub fn restore(
        &self,
        snapshot_id: &str,
        path_in_snapshot: &str,
        dest: &Path,
    ) -> Result<RestoreSummary, RepoError> {
        snapshot_read::restore(self, snapshot_id, path_in_snapshot, dest, None)
    }

    /// [`SnapshotRepo::restore`], reporting through `progress` the bytes written of the bytes
    /// to restore.
    pub fn restore_reporting(
        &self,
        snapshot_id: &str,
        path_in_snapshot: &str,
        dest: &Path,
        progress: ByteProgress,
    ) -> Result<RestoreSummary, RepoError> {
        snapshot_read::restore(self, snapshot_id, path_in_snapshot, dest, Some(progress))
    }

    /// The contents of one file in a snapshot (e.g. `manifest.json`), read into memory.
    pub fn read_file(&self, snapshot_id: &str, path: &str) -> Result<Vec<u8>, RepoError> {
        snapshot_read::read_file(self, snapshot_id, path)
    }

    /// Every regular file under the directory `dir` of a snapshot, recursively, with its path
    /// relative to `dir` (`/`-separated), read into memory; sorted by path. For small
    /// documents (the metadata export), not for mirrors.
    pub fn read_files(
        &self,
        snapshot_id: &str,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
        snapshot_read::read_files(self, snapshot_id, dir)
    }

    /// Every regular file under the directory `path` of a snapshot (`""` or `"/"` = the root),
    /// recursively, by path relative to `path` (`/`-separated) to its size. Directories,
    /// symlinks and other special files are not listed. Names that are not UTF-8 are converted
    /// lossily (U+FFFD).
    pub fn list_files(
        &self,
        snapshot_id: &str,
        path: &str,
    ) -> Result<BTreeMap<String, u64>, RepoError> {
        snapshot_read::list_files(self, snapshot_id, path)
    }

    /// Deletes the snapshot files of these snapshots (their data stays until a prune).
    /// Idempotent: ids already gone are fine. Ids must be full 64-hex.
    pub fn forget(&self, snapshot_ids: &[String]) -> Result<(), RepoError> {
        forget_prune::forget(self, snapshot_ids)
    }

    /// Removes the data no snapshot references any more, two-phase as restic does: packs that
    /// become unused are first *marked* for deletion (in the index) and deleted only by a later
    /// prune at least `keep_delete` after they were marked, so a reader that loaded the old index
    /// (a running restore) still finds them. Repacks partly used packs beyond restic's default
    /// 5% unused (rustic_core's `PruneOptions` defaults otherwise). Packs no index lists (a
    /// failed attempt's) are deleted once `keep_delete` old (`unindexed.rs`).
    /// Never run it while a backup of this repository runs: the backup may reuse blobs the prune
    /// deems unused.
    pub fn prune(&self, keep_delete: std::time::Duration) -> Result<PruneOutcome, RepoError> {
        forget_prune::prune(self, keep_delete)
    }

    /// Checks the repository structure (index, packs listed, trees of every snapshot); with
    /// `read_data`, also reads and verifies every pack (without it, corrupt pack contents are
    /// not found). Warnings are logged; errors give [`RepoError::CheckFailed`].
    pub fn check(&self, read_data: bool) -> Result<(), RepoError> {
        readback::check(self, read_data)
    }

    /// The packs holding the snapshot's tree blobs and the data blobs of all its files.
    ///
    /// Walks the whole tree (each distinct tree once). Unknown blobs and unreadable trees are
    /// reported in [`SnapshotPacks::problems`], not as an error; errors are for the snapshot
    /// itself (not found, unreadable) and the index. A panic inside rustic_core while reading a
    /// tree (it has `unwrap`s on some corrupt data) is caught and reported as a problem.
    pub fn snapshot_packs(&self, snapshot_id: &str) -> Result<SnapshotPacks, RepoError> {
        pack_usage::snapshot_packs(self, snapshot_id)
    }

    /// Every live pack the index names (packs a prune marked for deletion are left out: they
    /// are going away and no snapshot needs them), as `(full hex id, size)`, sorted by id.
    /// For the rotation that reads every pack once per period.
    pub fn all_packs(&self) -> Result<Vec<(String, u64)>, RepoError> {
        pack_usage::all_packs(self)
    }

    /// Full ids of the snapshots whose trees reference any of `packs` (full hex ids): the
    /// backups a damaged pack breaks. A blob stored in several packs counts for each of them,
    /// so this errs on the side of naming a snapshot that another copy might still save.
    /// Trees that cannot be read are skipped (the snapshot is then named only if a readable
    /// part references the packs; `snapshot_packs` reports unreadable trees). Sorted.
    pub fn snapshots_using_packs(&self, packs: &HashSet<String>) -> Result<Vec<String>, RepoError> {
        pack_usage::snapshots_using_packs(self, packs)
    }

    /// Whether every tree and data blob the snapshot references is in a live pack of the index.
    /// rustic_core reuses a tree equal to its parent's without asking the index for it, so a
    /// backup whose parent lost a tree (a damaged pack taken out) must not name that parent:
    /// its unchanged directories would point at nothing. Reads the snapshot's trees.
    pub fn snapshot_fully_indexed(&self, snapshot_id: &str) -> Result<bool, RepoError> {
        pack_usage::snapshot_fully_indexed(self, snapshot_id)
    }

    /// Reads each of `packs` (full hex ids) from storage and verifies it: the pack's SHA-256
    /// must equal its id, and every blob the index places in it must decrypt with the
    /// repository key, decompress, and hash to its blob id. A pack the index lists as live but
    /// storage lacks is damage ("missing from storage"). A pack not live in the index (marked
    /// for deletion by a prune, or unknown) is only hashed (noted in [`ReadBackReport::notes`]);
    /// if storage lacks it too it is [`ReadBackReport::vanished`], not damage.
    ///
    /// Reads a few packs at a time (`READ_PARALLELISM` in `readback.rs`), each whole in memory.
    /// `progress(done, total)` is called on this thread after each pack, in bytes (total from
    /// the index sizes). Setting `interrupt` stops at the next pack or blob boundary with
    /// [`RepoError::Interrupted`] (nothing is reported for the packs read so far).
    /// Storage errors other than "not found" do not fail the call: such packs are listed in
    /// [`ReadBackReport::unread`].
    ///
    /// Duplicate ids in `packs` are read once. Malformed ids are [`RepoError::InvalidInput`].
    pub fn read_back(
        &self,
        packs: &[String],
        progress: &dyn Fn(u64, u64),
        interrupt: &AtomicBool,
    ) -> Result<ReadBackReport, RepoError> {
        readback::read_back(self, packs, progress, interrupt)
    }

    /// Takes damaged packs out of the repository so that nothing trusts or deduplicates against
    /// them again: records the findings, rewrites the index files naming them, moves the packs
    /// aside (see `damage.rs` for the order and why). Idempotent: a pack already dropped is
    /// only recorded again. Malformed ids are [`RepoError::InvalidInput`].
    pub fn drop_damaged_packs(
        &self,
        damaged: &[PackDamage],
        now_ms: i64,
    ) -> Result<DroppedPacks, RepoError> {
        damage::drop_damaged_packs(self, damaged, now_ms)
    }

    /// Index files whose stored bytes do not hash to their id, as `(full hex id, problem)`,
    /// sorted. When every hash matches, each index file is also decrypted and parsed (one file
    /// at a time, which costs a listing per file: this only runs once an index read failed), so
    /// a file written damaged is found as well.
    pub fn damaged_index_files(&self) -> Result<Vec<(String, String)>, RepoError> {
        damage::damaged_index_files(self)
    }

    /// Finds damaged index files, moves them aside (recording findings) and rebuilds the index
    /// from the pack headers, as `restic repair index` does. Does nothing when no index file is
    /// damaged. Must not overlap a backup of the same repository (the rebuild lists every pack
    /// and would index a concurrent backup's packs twice): the worker runs it inside a backup.
    pub fn repair_damaged_index(&self, now_ms: i64) -> Result<IndexRepair, RepoError> {
        damage::repair_damaged_index(self, now_ms)
    }

    /// When the snapshot file's stored bytes do not hash to its id, what is wrong (`None`: the
    /// file is sound or absent).
    pub fn damaged_snapshot_file(&self, snapshot_id: &str) -> Result<Option<String>, RepoError> {
        damage::damaged_snapshot_file(self, snapshot_id)
    }

    /// Where the repository is (`<scheme>:<root><path>/`), for messages.
    pub fn location(&self) -> &str {
        self.backend.location_str()
    }

    fn reopen(&self) -> Result<Repository<OpenStatus>, RepoError> {
        self.reopen_reporting(None)
    }

    /// [`SnapshotRepo::reopen`], on a handle of its own whose byte progress goes to `progress`
    /// when there is one (see `byte_progress.rs`).
    fn reopen_reporting(
        &self,
        progress: Option<&ByteProgress>,
    ) -> Result<Repository<OpenStatus>, RepoError> {
        let base = match progress {
            None => self.base.clone(),
            Some(p) => open::handle(&self.backend, byte_progress::Reporting(p.clone()))
                .map_err(|e| map_err(e, self.location(), "creating the repository handle"))?,
        };
        base.open(&Credentials::Masterkey(self.key.clone()))
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

    /// The repository opened with its index (tree ids) and snapshot `snapshot_id` (full hex):
    /// what reading a snapshot's tree needs.
    fn indexed_snapshot(
        &self,
        snapshot_id: &str,
    ) -> Result<(Repository<rustic_core::IndexedIdsStatus>, SnapshotFile), RepoError> {
        let id = parse_snapshot_id(snapshot_id)?;
        let repo = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| map_err(e, self.location(), "reading the index"))?;
        let snap = self.load_snapshot(&repo, &id)?;
        Ok((repo, snap))
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
