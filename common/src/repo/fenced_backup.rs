//! Backing up a directory as one snapshot, behind the commit fence.
//!
//! The snapshot file is the commit point: packs and index files are written first, the
//! snapshot file last, and only after the caller's fence allowed it (see
//! [`SnapshotRepo::backup`]). The backend holds the snapshot file back while a capture is
//! armed (`backend.rs`).

use std::path::{Path, PathBuf};

use rustic_core::{
    BackupOptions, Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions,
    ParentOptions, SnapshotGroupCriterion, SnapshotOptions,
};

use super::backend::{HeldSnapshot, OpendalBackend};
use super::rooted_source::{RootedSource, SourceErrors};
use super::{ByteProgress, RepoError, SnapshotRepo, io_err, map_err, parse_snapshot_id, summarise};

/// Recorded as the snapshot's `command`; rustic would otherwise record the process argv.
const SNAPSHOT_COMMAND: &str = "repovault backup";

/// What to back up, and how the snapshot is labelled.
#[derive(Clone, Debug, Default)]
pub struct BackupRequest {
    /// Snapshot hostname; keep it constant per source repository.
    pub host: String,
    /// Snapshot label; keep it constant per source repository.
    pub label: String,
    /// One tag per entry (`"task=<uuid>"`, `"type=full"`); a tag must not contain a comma (restic
    /// splits tag filters on commas) and must not be empty.
    pub tags: Vec<String>,
    /// Full id of the parent snapshot (from the catalog). Files unchanged since the parent (same
    /// size, mtime, ctime, inode) are not re-read. There is no automatic parent search. A parent
    /// that no longer exists is skipped with a warning (the backup then reads everything).
    pub parent: Option<String>,
    /// Absolute path recorded as the snapshot's `paths` (e.g. `"/repovault"`); the tree itself
    /// holds the contents of the source directory at its root.
    pub as_path: String,
    /// Files left out of the snapshot, as paths relative to the source directory
    /// (`code.git/some-file`): bookkeeping of the source's own that is no part of what is
    /// backed up.
    pub exclude: Vec<String>,
}

/// Outcome of a committed backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Full 64-hex snapshot id.
    pub snapshot_id: String,
    /// Logical size of the files in the tree.
    pub total_bytes: u64,
    /// New data, before compression (blobs not already in the repository).
    pub data_added: u64,
    /// New data as stored (compressed, encrypted).
    pub data_added_packed: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    /// The parent actually used (`None` if none was given or it no longer exists).
    pub parent: Option<String>,
}

/// The body of [`SnapshotRepo::backup`] (the commit protocol is documented there).
pub(super) fn backup(
    store: &SnapshotRepo,
    source_dir: &Path,
    req: &BackupRequest,
    before_snapshot_write: &dyn Fn() -> Result<(), String>,
    progress: Option<ByteProgress>,
) -> Result<BackupSummary, RepoError> {
    validate_request(req)?;
    let source_dir = std::fs::canonicalize(source_dir).map_err(|e| io_err(source_dir, e))?;
    if !source_dir.is_dir() {
        return Err(RepoError::InvalidInput(format!(
            "{} is not a directory",
            source_dir.display()
        )));
    }
    let location = store.location();
    let err = |doing| move |e| map_err(e, location, doing);
    let _one_backup_at_a_time = store.backup_lock.lock();

    let parent = match &req.parent {
        Some(p) => {
            let id = parse_snapshot_id(p)?;
            if store.snapshot_exists(&id)? {
                Some(p.clone())
            } else {
                tracing::warn!(parent = %p, "parent snapshot no longer exists, backing up without a parent");
                None
            }
        }
        None => None,
    };
    let parent_opts = match &parent {
        // An empty grouping criterion: rustic otherwise drops an explicit parent whose host,
        // label or paths differ, silently.
        Some(p) => ParentOptions::default()
            .parents(vec![p.clone()])
            .group_by(Some(SnapshotGroupCriterion::new())),
        // `force` = no parent; without it rustic scans every snapshot for the latest match.
        None => ParentOptions::default().force(true),
    };
    // No `as_path`: RootedSource already places entries at the tree root, and the recorded
    // path comes from the `backup_paths` argument below.
    let opts = BackupOptions::default().parent_opts(parent_opts);

    let snap = new_snapshot(req, SNAPSHOT_COMMAND).map_err(err("preparing the snapshot"))?;

    let errors = SourceErrors::default();
    let local = LocalSource::new(
        LocalSourceSaveOptions::default(),
        &Excludes::default(),
        // Defaults: no .gitignore handling, hidden files included, no size limit.
        &LocalSourceFilterOptions::default(),
        &[&source_dir],
    )
    .map_err(err("reading the source directory"))?;
    let src = RootedSource::new(local, source_dir.clone(), errors.clone())
        .excluding(req.exclude.iter().map(PathBuf::from).collect());

    let repo = store
        .reopen_reporting(progress.as_ref())?
        .to_indexed_ids()
        .map_err(err("reading the index"))?;
    let capture = CaptureGuard::arm(&store.backend);
    let result = repo.archive(&opts, &src, snap, &[PathBuf::from(&req.as_path)]);
    let held = capture.disarm();
    let snap = result.map_err(err("backing up"))?;
    let held = held.ok_or_else(|| RepoError::Repository {
        doing: "backing up",
        message: "rustic finished without writing a snapshot".into(),
    })?;
    if held.id != *snap.id {
        return Err(RepoError::Repository {
            doing: "backing up",
            message: "the held snapshot file is not the snapshot rustic returned".into(),
        });
    }

    let source_errors = std::mem::take(&mut *errors.lock());
    if !source_errors.is_empty() {
        return Err(RepoError::SourceRead(summarise(&source_errors)));
    }
    before_snapshot_write().map_err(RepoError::Fenced)?;
    store
        .backend
        .write_held(held)
        .map_err(err("writing the snapshot file"))?;

    let s = snap.summary.unwrap_or_default();
    Ok(BackupSummary {
        snapshot_id: snap.id.to_hex().to_string(),
        total_bytes: s.total_bytes_processed,
        data_added: s.data_added,
        data_added_packed: s.data_added_packed,
        files_new: s.files_new,
        files_changed: s.files_changed,
        files_unmodified: s.files_unmodified,
        parent,
    })
}

/// A snapshot file labelled as `req` asks (host, label, tags), recording `command`.
pub(super) fn new_snapshot(
    req: &BackupRequest,
    command: &str,
) -> rustic_core::RusticResult<rustic_core::repofile::SnapshotFile> {
    let mut snap = SnapshotOptions::default()
        .host(req.host.clone())
        .label(req.label.clone())
        .command(command.to_string())
        .to_snapshot()?;
    // Added one by one: `SnapshotOptions::add_tags` would split on commas.
    for tag in &req.tags {
        snap.tags.add(tag.clone());
    }
    Ok(snap)
}

/// Disarms the backend's snapshot capture even if the archiver panics, so a later backup or
/// a reused repository never finds a stale armed capture.
pub(super) struct CaptureGuard<'a>(&'a OpendalBackend);

impl<'a> CaptureGuard<'a> {
    pub(super) fn arm(backend: &'a OpendalBackend) -> Self {
        backend.arm();
        Self(backend)
    }

    pub(super) fn disarm(self) -> Option<HeldSnapshot> {
        let held = self.0.disarm();
        std::mem::forget(self);
        held
    }
}

impl Drop for CaptureGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.disarm();
    }
}

pub(super) fn validate_request(req: &BackupRequest) -> Result<(), RepoError> {
    for tag in &req.tags {
        if tag.is_empty() || tag.contains(',') {
            return Err(RepoError::InvalidInput(format!(
                "tag {tag:?} is empty or contains a comma"
            )));
        }
    }
    if !req.as_path.starts_with('/') {
        return Err(RepoError::InvalidInput(format!(
            "as_path {:?} must be absolute",
            req.as_path
        )));
    }
    if req.host.is_empty() {
        return Err(RepoError::InvalidInput("host must not be empty".into()));
    }
    Ok(())
}
