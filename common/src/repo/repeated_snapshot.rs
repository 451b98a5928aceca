//! A snapshot that repeats its parent's tree: what a backup of an unchanged source writes.
//!
//! Nothing is read from the source and no pack or index is written: the snapshot file names
//! the parent's tree (so `restic ls`, `restic restore` and `restic check` see the parent's
//! files under the new snapshot), with this backup's time, tags and a summary that counts
//! every file as unmodified and nothing added. It is written behind the same commit fence as
//! [`super::SnapshotRepo::backup`].

use super::fenced_backup::{BackupRequest, BackupSummary, new_snapshot, validate_request};
use super::{RepoError, SnapshotRepo, map_err, parse_snapshot_id};

/// Recorded as the snapshot's `command`, as a full backup records its own.
const SNAPSHOT_COMMAND: &str = "repovault backup (unchanged source)";

/// The body of [`SnapshotRepo::repeat_parent`].
pub(super) fn repeat_parent(
    store: &SnapshotRepo,
    parent: &str,
    req: &BackupRequest,
    before_snapshot_write: &dyn Fn() -> Result<(), String>,
) -> Result<BackupSummary, RepoError> {
    validate_request(req)?;
    let parent_id = parse_snapshot_id(parent)?;
    let location = store.location();
    let err = |doing| move |e| map_err(e, location, doing);
    let _one_backup_at_a_time = store.backup_lock.lock();
    if !store.snapshot_exists(&parent_id)? {
        return Err(RepoError::SnapshotNotFound(parent.to_string()));
    }
    let repo = store.reopen()?;
    let previous = repo
        .get_snapshot_from_str(parent, |_| true)
        .map_err(err("reading the parent snapshot"))?;
    let mut snap = new_snapshot(req, SNAPSHOT_COMMAND).map_err(err("preparing the snapshot"))?;
    snap.tree = previous.tree;
    snap.paths = previous.paths.clone();
    snap.parent = Some(previous.id);
    let total_bytes = previous
        .summary
        .as_ref()
        .map_or(0, |s| s.total_bytes_processed);
    if let Some(mut s) = previous.summary.clone() {
        s.files_unmodified = s.total_files_processed;
        (s.files_new, s.files_changed) = (0, 0);
        s.dirs_unmodified = s.total_dirs_processed;
        (s.dirs_new, s.dirs_changed) = (0, 0);
        (s.data_blobs, s.tree_blobs) = (0, 0);
        (s.data_added, s.data_added_packed) = (0, 0);
        (s.data_added_files, s.data_added_files_packed) = (0, 0);
        (s.data_added_trees, s.data_added_trees_packed) = (0, 0);
        s.command = SNAPSHOT_COMMAND.to_string();
        s.backup_start = snap.time.clone();
        s.backup_end = snap.time.clone();
        snap.summary = Some(s);
    }
    let files = snap.summary.as_ref().map_or(0, |s| s.files_unmodified);

    let capture = super::fenced_backup::CaptureGuard::arm(&store.backend);
    let saved = repo.save_snapshots(vec![snap]);
    let held = capture.disarm();
    saved.map_err(err("writing the snapshot"))?;
    let held = held.ok_or_else(|| RepoError::Repository {
        doing: "writing the snapshot",
        message: "rustic wrote no snapshot file".into(),
    })?;
    before_snapshot_write().map_err(RepoError::Fenced)?;
    let snapshot_id = held.id.to_hex().to_string();
    store
        .backend
        .write_held(held)
        .map_err(err("writing the snapshot file"))?;
    Ok(BackupSummary {
        snapshot_id,
        total_bytes,
        data_added: 0,
        data_added_packed: 0,
        files_new: 0,
        files_changed: 0,
        files_unmodified: files,
        parent: Some(parent.to_string()),
    })
}
