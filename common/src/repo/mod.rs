//! The snapshot repository (restic format through rustic_core) on our own opendal operator.
//!
//! One [`SnapshotRepo`] is one open restic repository at `<storage root>/<spec.path>/`. Everything
//! here is **synchronous and blocking**: call it from `tokio::task::spawn_blocking` (or a thread
//! with a multi-thread tokio runtime entered). Calling it on a runtime worker thread panics inside
//! opendal's blocking operator ("Cannot start a runtime from within a runtime"); rustic_core can
//! also panic on some corrupt data. Both are the caller's to catch (a `JoinError` is a failed task).
//!
//! Format guarantees: snapshots are plain restic snapshots (repository version 2), readable by the
//! stock `restic` and `rustic` tools with the same password; the *contents* of the backed-up
//! directory are the snapshot's root tree, tags are one entry each, ids are full 64-hex strings.

mod backend;
mod damage;
#[cfg(test)]
mod damage_tests;
mod error;
mod ledger;
mod readback;
#[cfg(test)]
mod readback_tests;
mod serve_overlay;
mod source;
#[cfg(test)]
mod tests;
mod unindexed;

pub use damage::{DamageFinding, DamagedKind, DroppedPacks, IndexRepair};
pub use error::RepoError;
use error::{describe, map_err, summarise};
pub use ledger::ReadBackLedger;
pub use readback::{PackDamage, ReadBackReport, SnapshotPacks};

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rustic_core::repofile::{MasterKey, Metadata, Node, NodeType, SnapshotFile, SnapshotId};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, Excludes, FileType, Id, KeyOptions,
    LocalDestination, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, LsOptions,
    OpenStatus, ParentOptions, Repository, RepositoryBackends, RepositoryOptions, RestoreOptions,
    SnapshotGroupCriterion, SnapshotOptions,
};

use crate::secret::Secret;
use backend::OpendalBackend;
use source::{RootedSource, SourceErrors};

/// Recorded as the snapshot's `command`; rustic would otherwise record the process argv.
const SNAPSHOT_COMMAND: &str = "repovault backup";

/// Where a repository lives.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// Operator rooted at the storage root (layers such as retry or concurrency limits are ours).
    pub operator: opendal::Operator,
    /// Repository prefix inside the operator, e.g. `"<org-id>/<repo-id>"`; `""` is the root itself.
    pub path: String,
}

/// How to unlock a repository.
#[derive(Clone, Copy, Debug)]
pub enum RepoKey<'a> {
    /// The repository password (scrypt: about 0.3 s per open).
    Password(&'a Secret),
    /// The decrypted master key as JSON, as returned by [`SnapshotRepo::open`] (about 2 ms, no
    /// scrypt). If it is malformed or does not decrypt this repository, `open` falls back to the
    /// password.
    MasterKey {
        json: &'a Secret,
        password: &'a Secret,
    },
}

impl<'a> RepoKey<'a> {
    /// The fast key when one is known, else the password.
    pub fn new(password: &'a Secret, master_key: Option<&'a Secret>) -> Self {
        match master_key {
            Some(json) => Self::MasterKey { json, password },
            None => Self::Password(password),
        }
    }

    fn password(&self) -> &Secret {
        match self {
            Self::Password(p) | Self::MasterKey { password: p, .. } => p,
        }
    }
}

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

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Packs marked earlier and deleted by this run, and their bytes.
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    /// Unused bytes marked for deletion by this run (deleted by a later run).
    pub marked_bytes: u64,
    pub repacked_packs: u64,
    /// Packs marked for deletion and still kept (too recently marked).
    pub still_marked_packs: u64,
    /// Packs no index lists, kept because younger than `keep_delete` (a later prune deletes
    /// them).
    pub young_unindexed_packs: u64,
}

impl PruneOutcome {
    /// Whether a later prune has packs to delete.
    pub fn second_phase_due(&self) -> bool {
        self.marked_bytes > 0
            || self.repacked_packs > 0
            || self.still_marked_packs > 0
            || self.young_unindexed_packs > 0
    }
}

/// Outcome of a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    /// Bytes written.
    pub bytes: u64,
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
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RepoError::NoRuntime);
        }
        let backend = OpendalBackend::new(spec.operator.clone(), &spec.path).map_err(|e| {
            RepoError::Storage {
                location: spec.path.clone(),
                message: e.to_string(),
            }
        })?;
        let location = backend.location_str().to_string();
        let err = |doing| {
            let location = location.clone();
            move |e| map_err(e, &location, doing)
        };
        let backends = RepositoryBackends::new(backend.clone(), None);
        // No cache: the default is ~/.cache/rustic, shared and unbounded; workers are stateless.
        let opts = RepositoryOptions::default().no_cache(true);
        let repo =
            Repository::new(&opts, &backends).map_err(err("creating the repository handle"))?;

        let base = repo.clone();
        let exists = repo
            .config_id()
            .map_err(err("looking for the config file"))?
            .is_some();
        let repo = if !exists {
            if !init_if_missing {
                return Err(RepoError::NotFound {
                    location: location.clone(),
                });
            }
            repo.init(
                &password_credentials(key.password()),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(err("initialising the repository"))?
        } else {
            match key {
                RepoKey::Password(password) => repo
                    .open(&password_credentials(password))
                    .map_err(err("opening the repository"))?,
                RepoKey::MasterKey { json, password } => {
                    let by_key = match parse_master_key(json) {
                        Some(mk) => repo
                            .clone()
                            .open(&Credentials::Masterkey(mk))
                            .map_err(|e| describe(&e)),
                        None => Err("malformed master key JSON".to_string()),
                    };
                    match by_key {
                        Ok(open) => open,
                        Err(why) => {
                            tracing::warn!(%location, %why, "master key did not open the repository, using the password");
                            repo.open(&password_credentials(password))
                                .map_err(err("opening the repository"))?
                        }
                    }
                }
            }
        };
        let key = repo.key();
        let master_key = serde_json::to_string(&key).map_err(|e| RepoError::Repository {
            doing: "serialising the master key",
            message: e.to_string(),
        })?;
        Ok((
            Self {
                repo,
                base,
                key,
                backend,
                backup_lock: Mutex::new(()),
            },
            Secret::new(master_key),
        ))
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
        validate_request(req)?;
        let source_dir = std::fs::canonicalize(source_dir).map_err(|e| io_err(source_dir, e))?;
        if !source_dir.is_dir() {
            return Err(RepoError::InvalidInput(format!(
                "{} is not a directory",
                source_dir.display()
            )));
        }
        let location = self.location();
        let err = |doing| move |e| map_err(e, location, doing);
        let _one_backup_at_a_time = self.backup_lock.lock();

        let parent = match &req.parent {
            Some(p) => {
                let id = parse_snapshot_id(p)?;
                if self.snapshot_exists(&id)? {
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

        let mut snap = SnapshotOptions::default()
            .host(req.host.clone())
            .label(req.label.clone())
            .command(SNAPSHOT_COMMAND.to_string())
            .to_snapshot()
            .map_err(err("preparing the snapshot"))?;
        // Added one by one: `SnapshotOptions::add_tags` would split on commas.
        for tag in &req.tags {
            snap.tags.add(tag.clone());
        }

        let errors = SourceErrors::default();
        let local = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &Excludes::default(),
            // Defaults: no .gitignore handling, hidden files included, no size limit.
            &LocalSourceFilterOptions::default(),
            &[&source_dir],
        )
        .map_err(err("reading the source directory"))?;
        let src = RootedSource::new(local, source_dir.clone(), errors.clone());

        let repo = self
            .reopen()?
            .to_indexed_ids()
            .map_err(err("reading the index"))?;
        let capture = CaptureGuard::arm(&self.backend);
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
        self.backend
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
        if dest.symlink_metadata().is_ok() {
            return Err(RepoError::DestinationExists(dest.to_path_buf()));
        }
        let name = dest.file_name().ok_or_else(|| {
            RepoError::InvalidInput(format!(
                "restore destination {} has no file name",
                dest.display()
            ))
        })?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let location = self.location();
        let err = |doing| move |e| map_err(e, location, doing);

        let id = parse_snapshot_id(snapshot_id)?;
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(err("reading the index"))?;
        let snap = self.load_snapshot(&repo, &id)?;
        let node = find_node(&repo, &snap, path_in_snapshot)?;

        std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".restore-{:016x}", rand::random::<u64>()));
        let tmp = parent.join(tmp_name);
        std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;

        let restored = if node.is_dir() {
            tmp.clone()
        } else {
            tmp.join(name)
        };
        let run = || -> Result<RestoreSummary, RepoError> {
            let target = restored.to_str().ok_or_else(|| {
                RepoError::InvalidInput(format!("restore path {} is not UTF-8", restored.display()))
            })?;
            let local = LocalDestination::new(target, true, !node.is_dir())
                .map_err(err("preparing the destination"))?;
            let ls = repo
                .ls(&node, &LsOptions::default())
                .map_err(err("listing the snapshot"))?;
            let opts = RestoreOptions::default().no_ownership(true);
            let plan = repo
                .prepare_restore(&opts, ls.clone(), &local, false)
                .map_err(err("planning the restore"))?;
            let summary = RestoreSummary {
                files: plan.stats.files.restore,
                dirs: plan.stats.dirs.restore,
                bytes: plan.restore_size,
            };
            repo.restore(plan, &opts, ls, &local)
                .map_err(err("restoring"))?;
            Ok(summary)
        };
        let result = guard("restoring", run).and_then(|summary| {
            std::fs::rename(&restored, dest).map_err(|e| io_err(dest, e))?;
            Ok(summary)
        });
        // After a successful directory restore `tmp` was renamed away; otherwise clean it up.
        if tmp.symlink_metadata().is_ok()
            && let Err(e) = std::fs::remove_dir_all(&tmp)
        {
            tracing::warn!(path = %tmp.display(), error = %e, "could not remove temporary restore directory");
        }
        result
    }

    /// The contents of one file in a snapshot (e.g. `manifest.json`), read into memory.
    pub fn read_file(&self, snapshot_id: &str, path: &str) -> Result<Vec<u8>, RepoError> {
        let location = self.location();
        let err = |doing| move |e| map_err(e, location, doing);
        let id = parse_snapshot_id(snapshot_id)?;
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(err("reading the index"))?;
        let snap = self.load_snapshot(&repo, &id)?;
        let node = find_node(&repo, &snap, path)?;
        if !node.is_file() {
            return Err(RepoError::InvalidInput(format!(
                "{path:?} in snapshot {snapshot_id} is not a regular file"
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(node.meta.size).unwrap_or(0));
        guard("reading a file", || {
            repo.dump(&node, &mut out).map_err(err("reading the file"))
        })?;
        Ok(out)
    }

    /// Every regular file under the directory `dir` of a snapshot, recursively, with its path
    /// relative to `dir` (`/`-separated), read into memory; sorted by path. For small
    /// documents (the metadata export), not for mirrors.
    pub fn read_files(
        &self,
        snapshot_id: &str,
        dir: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
        let location = self.location();
        let err = |doing| move |e| map_err(e, location, doing);
        let id = parse_snapshot_id(snapshot_id)?;
        let repo = self
            .reopen()?
            .to_indexed()
            .map_err(err("reading the index"))?;
        let snap = self.load_snapshot(&repo, &id)?;
        let node = find_node(&repo, &snap, dir)?;
        if !node.is_dir() {
            return Err(RepoError::InvalidInput(format!(
                "{dir:?} in snapshot {snapshot_id} is not a directory"
            )));
        }
        let mut out = Vec::new();
        for item in repo
            .ls(&node, &LsOptions::default())
            .map_err(err("listing the snapshot"))?
        {
            let (path, file) = item.map_err(err("listing the snapshot"))?;
            if !file.is_file() {
                continue;
            }
            let mut bytes = Vec::with_capacity(usize::try_from(file.meta.size).unwrap_or(0));
            guard("reading a file", || {
                repo.dump(&file, &mut bytes).map_err(err("reading a file"))
            })?;
            let rel = path
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, bytes));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Deletes the snapshot files of these snapshots (their data stays until a prune).
    /// Idempotent: ids already gone are fine. Ids must be full 64-hex.
    pub fn forget(&self, snapshot_ids: &[String]) -> Result<(), RepoError> {
        let ids = snapshot_ids
            .iter()
            .map(|s| parse_snapshot_id(s).map(SnapshotId::from))
            .collect::<Result<Vec<_>, _>>()?;
        self.repo
            .delete_snapshots(&ids)
            .map_err(|e| map_err(e, self.location(), "deleting snapshots"))
    }

    /// Removes the data no snapshot references any more, two-phase as restic does: packs that
    /// become unused are first *marked* for deletion (in the index) and deleted only by a later
    /// prune at least `keep_delete` after they were marked, so a reader that loaded the old index
    /// (a running restore) still finds them. Repacks partly used packs beyond restic's default
    /// 5% unused (rustic_core's `PruneOptions` defaults otherwise). Packs no index lists (a
    /// failed attempt's) are deleted once `keep_delete` old ([`Self::remove_unindexed_packs`]).
    /// Never run it while a backup of this repository runs: the backup may reuse blobs the prune
    /// deems unused.
    pub fn prune(&self, keep_delete: std::time::Duration) -> Result<PruneOutcome, RepoError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let unindexed = self.remove_unindexed_packs(keep_delete, now_ms)?;
        let span = rustic_core::jiff::Span::new()
            .try_seconds(i64::try_from(keep_delete.as_secs()).unwrap_or(i64::MAX))
            .map_err(|e| RepoError::InvalidInput(format!("keep_delete: {e}")))?;
        let opts = rustic_core::PruneOptions::default().keep_delete(span);
        let plan = self
            .repo
            .prune_plan(&opts)
            .map_err(|e| map_err(e, self.location(), "planning a prune"))?;
        let stats = &plan.stats;
        let size = stats.size_sum();
        let outcome = PruneOutcome {
            deleted_packs: stats.packs_to_delete.remove + unindexed.deleted_packs,
            deleted_bytes: stats.size_to_delete.remove + unindexed.deleted_bytes,
            marked_bytes: size.remove + size.repackrm,
            repacked_packs: stats.packs.repack,
            still_marked_packs: stats.packs_to_delete.keep,
            young_unindexed_packs: unindexed.young_packs,
        };
        self.repo
            .prune(&opts, plan)
            .map_err(|e| map_err(e, self.location(), "pruning"))?;
        Ok(outcome)
    }

    /// Adds a key (a restic password) for this repository alone: the repository's master key
    /// encrypted under `password`, written as a new key file. Existing keys stay. Returns the
    /// new key's id (full hex).
    pub fn add_key(&self, password: &Secret) -> Result<String, RepoError> {
        let opts = KeyOptions::default()
            .hostname(Some("repovault".to_string()))
            .username(Some("escrow".to_string()))
            .with_created(true);
        let id = self
            .repo
            .add_key(password.expose(), &opts)
            .map_err(|e| map_err(e, self.location(), "adding a key"))?;
        Ok(id.to_hex().to_string())
    }

    /// Checks the repository structure (index, packs listed, trees of every snapshot); with
    /// `read_data`, also reads and verifies every pack (without it, corrupt pack contents are
    /// not found). Warnings are logged; errors give [`RepoError::CheckFailed`].
    pub fn check(&self, read_data: bool) -> Result<(), RepoError> {
        let results = self
            .repo
            .check(CheckOptions::default().read_data(read_data))
            .map_err(|e| map_err(e, self.location(), "checking"))?;
        if results.is_ok().is_ok() {
            for (level, problem) in &results.0 {
                tracing::warn!(location = self.location(), ?level, %problem, "repository check");
            }
            return Ok(());
        }
        let problems: Vec<String> = results
            .0
            .iter()
            .map(|(level, problem)| format!("{level:?}: {problem}"))
            .collect();
        Err(RepoError::CheckFailed(summarise(&problems)))
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

/// Disarms the backend's snapshot capture even if the archiver panics, so a later backup or
/// a reused repository never finds a stale armed capture.
struct CaptureGuard<'a>(&'a OpendalBackend);

impl<'a> CaptureGuard<'a> {
    fn arm(backend: &'a OpendalBackend) -> Self {
        backend.arm();
        Self(backend)
    }

    fn disarm(self) -> Option<backend::HeldSnapshot> {
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

/// Finds the node at `path` (`""` or `"/"` = the root tree) by walking the trees, so that a
/// missing path is reported as such (rustic's own lookup reports it as an internal error).
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

fn find_node<S: rustic_core::IndexedTree>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    path: &str,
) -> Result<Node, RepoError> {
    let not_found = || RepoError::PathNotFound {
        snapshot: snap.id.to_hex().to_string(),
        path: path.to_string(),
    };
    let mut node = Node::new_node(OsStr::new(""), NodeType::Dir, Metadata::default());
    node.subtree = Some(snap.tree);
    for comp in Path::new(path).components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(name) => name,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RepoError::InvalidInput(format!(
                    "path {path:?} must not contain `..`"
                )));
            }
        };
        let Some(tree_id) = node.subtree else {
            return Err(not_found());
        };
        let tree = repo
            .get_tree(&tree_id)
            .map_err(|e| map_err(e, &repo.name, "reading a tree"))?;
        node = tree
            .nodes
            .into_iter()
            .find(|n| n.name() == name)
            .ok_or_else(not_found)?;
    }
    Ok(node)
}

fn validate_request(req: &BackupRequest) -> Result<(), RepoError> {
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

/// Parses and validates a master key; `None` if malformed. Checks the key lengths because
/// rustic copies them into fixed arrays and would panic on other lengths.
fn parse_master_key(json: &Secret) -> Option<MasterKey> {
    let key: MasterKey = serde_json::from_str(json.expose()).ok()?;
    (key.encrypt.len() == 32 && key.mac.k.len() == 16 && key.mac.r.len() == 16).then_some(key)
}

fn password_credentials(password: &Secret) -> Credentials {
    Credentials::password(password.expose())
}

fn io_err(path: &Path, source: std::io::Error) -> RepoError {
    RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}
