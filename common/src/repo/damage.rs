//! Damage found in stored files, and what is done about it so that it is never trusted again.
//!
//! A pack whose bytes no longer hash to its id, or whose blobs no longer decrypt to theirs, is
//! damaged for good: no later read makes it sound. Leaving it in the index would let the next
//! backup deduplicate against it (rustic_core's archiver skips every blob the index knows), so a
//! backup made *after* the damage was found would reference it and be just as unrestorable. So,
//! as `restic repair index` and `restic repair packs` do, a damaged pack is taken out:
//!
//! 1. **A finding is recorded first**, at `<repo>/verify/damaged/pack-<id>.json` (one file per
//!    finding, never rewritten by the read-back ledger's last-writer-wins saves). Every ledger
//!    load applies the findings: a "read back sound" record older than a finding does not count
//!    ([`super::ReadBackLedger::load`]). If the steps below are interrupted, the finding alone
//!    already stops the pack being trusted.
//! 2. **The index files naming the pack are rewritten without it** (rustic_core's own
//!    `repair_index`, run on a view of the repository that shows it only those index files and
//!    the packs they name, minus the damaged ones). Only those files change, so a backup writing
//!    new index files meanwhile is not touched. The next backup then finds the pack's blobs
//!    missing and stores them again from the source.
//! 3. **The pack is moved aside** to `<repo>/damaged/data-<id>` (outside restic's layout), kept
//!    for inspection; stock `restic check` then reports the old snapshots' blobs as missing,
//!    which is the truth.
//!
//! A damaged index file (its bytes do not hash to its id, or it does not decrypt) is moved aside
//! the same way and the index rebuilt from the pack headers (rustic_core's `repair_index`, as
//! `restic repair index` does), by [`SnapshotRepo::repair_damaged_index`].
//!
//! Everything here is blocking, like the rest of the module.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use rustic_core::repofile::IndexFile;
use rustic_core::{
    BytesList, Credentials, FileType, Id, ReadBackend, RepairIndexOptions, Repository,
    RepositoryBackends, RepositoryOptions, RusticResult, WriteBackend,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::backend::OpendalBackend;
use super::readback::PackDamage;
use super::{RepoError, SnapshotRepo, map_err};

/// Where findings live, relative to the repository.
const FINDINGS_DIR: &str = "verify/damaged/";

/// Which kind of repository file a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamagedKind {
    Pack,
    Index,
}

impl DamagedKind {
    fn as_str(self) -> &'static str {
        match self {
            DamagedKind::Pack => "pack",
            DamagedKind::Index => "index",
        }
    }
}

/// One damaged file, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageFinding {
    pub kind: DamagedKind,
    /// Full hex id of the file.
    pub id: String,
    /// When the damage was found (ms since the epoch).
    pub found_at_ms: i64,
    /// What was wrong.
    pub problem: String,
}

impl DamageFinding {
    /// Where the finding is stored, relative to the repository.
    fn rel_path(kind: DamagedKind, id: &str) -> String {
        format!("{FINDINGS_DIR}{}-{id}.json", kind.as_str())
    }

    /// Every finding of the repository at `repo_path` (as in `RepoSpec::path`). A finding file
    /// that does not parse is skipped with a warning: findings only ever make the read-back
    /// stricter, so one lost costs at most the trust a damaged pack might regain.
    pub async fn load_all(
        op: &opendal::Operator,
        repo_path: &str,
    ) -> Result<Vec<DamageFinding>, RepoError> {
        let trimmed = repo_path.trim_matches('/');
        let dir = if trimmed.is_empty() {
            FINDINGS_DIR.to_string()
        } else {
            format!("{trimmed}/{FINDINGS_DIR}")
        };
        let storage = |e: opendal::Error| RepoError::Storage {
            location: dir.clone(),
            message: e.to_string(),
        };
        let entries = match op.list(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            if !entry.name().ends_with(".json") {
                continue;
            }
            let bytes = op.read(entry.path()).await.map_err(storage)?;
            match serde_json::from_slice::<DamageFinding>(&bytes.to_vec()) {
                Ok(f) => out.push(f),
                Err(e) => {
                    tracing::warn!(path = entry.path(), error = %e, "unreadable damage finding skipped")
                }
            }
        }
        Ok(out)
    }
}

/// What [`SnapshotRepo::drop_damaged_packs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DroppedPacks {
    /// Packs taken out of the index (full hex ids, sorted).
    pub packs: Vec<String>,
    /// Index files rewritten without them.
    pub index_files_rewritten: usize,
    /// Packs moved aside to `damaged/` (those still in storage).
    pub moved_aside: usize,
}

/// What [`SnapshotRepo::repair_damaged_index`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexRepair {
    /// The damaged index files moved aside: `(full hex id, what was wrong)`.
    pub damaged: Vec<(String, String)>,
}

/// The body of [`SnapshotRepo::drop_damaged_packs`] (the order of the steps is the module's).
pub(super) fn drop_damaged_packs(
    store: &SnapshotRepo,
    damaged: &[PackDamage],
    now_ms: i64,
) -> Result<DroppedPacks, RepoError> {
    let location = store.location().to_string();
    let mut ids: HashSet<Id> = HashSet::new();
    for d in damaged {
        ids.insert(super::pack_map::parse_pack_id(&d.pack_id)?);
        record_finding(
            store,
            &DamageFinding {
                kind: DamagedKind::Pack,
                id: d.pack_id.clone(),
                found_at_ms: now_ms,
                problem: d.problem.clone(),
            },
        )?;
    }
    if ids.is_empty() {
        return Ok(DroppedPacks::default());
    }

    let repo = store.reopen()?;
    let mut index_files: HashSet<Id> = HashSet::new();
    let mut named: HashSet<Id> = HashSet::new();
    let files = repo
        .stream_files::<IndexFile>()
        .map_err(|e| map_err(e, &location, "reading the index"))?;
    for file in files {
        let (index_id, file) = file.map_err(|e| map_err(e, &location, "reading the index"))?;
        let packs: Vec<Id> = file
            .packs
            .iter()
            .chain(file.packs_to_delete.iter())
            .map(|p| *p.id)
            .collect();
        if packs.iter().any(|p| ids.contains(p)) {
            index_files.insert(*index_id);
            named.extend(packs);
        }
    }

    let rewritten = index_files.len();
    if !index_files.is_empty() {
        let in_storage: HashMap<Id, u32> = store
            .backend
            .list_with_size(FileType::Pack)
            .map_err(|e| map_err(e, &location, "listing packs"))?
            .into_iter()
            .collect();
        let packs = named
            .iter()
            .filter(|p| !ids.contains(p))
            .filter_map(|p| in_storage.get(p).map(|size| (*p, *size)))
            .collect();
        let view = Arc::new(RepairView {
            inner: store.backend.clone(),
            index_files,
            packs,
        });
        let backends = RepositoryBackends::new(view, None);
        let opts = RepositoryOptions::default().no_cache(true);
        Repository::new(&opts, &backends)
            .and_then(|r| r.open(&Credentials::Masterkey(store.key.clone())))
            .and_then(|r| r.repair_index(&RepairIndexOptions::default(), false))
            .map_err(|e| map_err(e, &location, "dropping damaged packs from the index"))?;
    }

    let mut moved = 0;
    let mut hexes: Vec<String> = Vec::with_capacity(ids.len());
    for id in &ids {
        hexes.push(id.to_hex().to_string());
        if store
            .backend
            .quarantine(FileType::Pack, id)
            .map_err(|e| storage_err(store, e))?
        {
            moved += 1;
        }
    }
    hexes.sort_unstable();
    tracing::warn!(%location, packs = ?hexes, index_files = rewritten, "damaged packs dropped from the index and moved aside");
    Ok(DroppedPacks {
        packs: hexes,
        index_files_rewritten: rewritten,
        moved_aside: moved,
    })
}

/// The body of [`SnapshotRepo::damaged_index_files`].
pub(super) fn damaged_index_files(
    store: &SnapshotRepo,
) -> Result<Vec<(String, String)>, RepoError> {
    let location = store.location().to_string();
    let listed = store
        .backend
        .list_with_size(FileType::Index)
        .map_err(|e| map_err(e, &location, "listing index files"))?;
    let mut out = Vec::new();
    for (id, _) in &listed {
        let hex = id.to_hex().to_string();
        let bytes = match store.backend.read_full(FileType::Index, id) {
            Ok(b) => b,
            // Replaced by a concurrent rewrite since the listing: not damage.
            Err(e) if super::pack_map::is_not_found(&e) => continue,
            Err(e) => return Err(map_err(e, &location, "reading an index file")),
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != hex {
            out.push((
                hex.clone(),
                format!("index file index/{hex}: content hash is {digest}, not its id"),
            ));
        }
    }
    if out.is_empty() {
        for (id, _) in &listed {
            let hex = id.to_hex().to_string();
            let plain = super::guard("decrypting an index file", || {
                store
                    .repo
                    .cat_file(FileType::Index, &hex)
                    .map_err(|e| map_err(e, &location, "decrypting an index file"))
            });
            let problem = match plain {
                Ok(plain) => serde_json::from_slice::<IndexFile>(&plain)
                    .err()
                    .map(|e| format!("index file index/{hex} is not a valid index: {e}")),
                Err(RepoError::Storage { .. }) => None,
                Err(e) => Some(format!("index file index/{hex} does not decrypt: {e}")),
            };
            if let Some(problem) = problem {
                out.push((hex, problem));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The body of [`SnapshotRepo::repair_damaged_index`].
pub(super) fn repair_damaged_index(
    store: &SnapshotRepo,
    now_ms: i64,
) -> Result<IndexRepair, RepoError> {
    let location = store.location().to_string();
    let damaged = damaged_index_files(store)?;
    if damaged.is_empty() {
        return Ok(IndexRepair::default());
    }
    for (hex, problem) in &damaged {
        record_finding(
            store,
            &DamageFinding {
                kind: DamagedKind::Index,
                id: hex.clone(),
                found_at_ms: now_ms,
                problem: problem.clone(),
            },
        )?;
        let id: Id = hex.parse().map_err(|_| RepoError::Repository {
            doing: "repairing the index",
            message: format!("listed index id {hex} does not parse"),
        })?;
        store
            .backend
            .quarantine(FileType::Index, &id)
            .map_err(|e| storage_err(store, e))?;
    }
    store
        .reopen()?
        .repair_index(&RepairIndexOptions::default(), false)
        .map_err(|e| map_err(e, &location, "rebuilding the index from the packs"))?;
    tracing::warn!(%location, damaged = damaged.len(), "damaged index files moved aside; index rebuilt from the packs");
    Ok(IndexRepair { damaged })
}

/// The body of [`SnapshotRepo::damaged_snapshot_file`].
pub(super) fn damaged_snapshot_file(
    store: &SnapshotRepo,
    snapshot_id: &str,
) -> Result<Option<String>, RepoError> {
    let id = super::parse_snapshot_id(snapshot_id)?;
    let hex = id.to_hex().to_string();
    let bytes = match store.backend.read_full(FileType::Snapshot, &id) {
        Ok(b) => b,
        Err(e) if super::pack_map::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(map_err(e, store.location(), "reading the snapshot file")),
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    Ok((digest != hex)
        .then(|| format!("snapshot file snapshots/{hex}: content hash is {digest}, not its id")))
}

fn record_finding(store: &SnapshotRepo, finding: &DamageFinding) -> Result<(), RepoError> {
    let json = serde_json::to_vec(finding).map_err(|e| RepoError::Repository {
        doing: "recording a damage finding",
        message: e.to_string(),
    })?;
    store
        .backend
        .write_aside(&DamageFinding::rel_path(finding.kind, &finding.id), json)
        .map_err(|e| storage_err(store, e))
}

fn storage_err(store: &SnapshotRepo, e: opendal::Error) -> RepoError {
    RepoError::Storage {
        location: store.location().to_string(),
        message: e.to_string(),
    }
}

/// The repository as rustic_core's `repair_index` must see it to drop damaged packs and touch
/// nothing else: only the index files naming a damaged pack, and only the other packs those
/// files name (so repair neither rewrites unrelated index files nor re-reads unrelated packs).
/// Reads and writes otherwise go to storage unchanged.
struct RepairView {
    inner: Arc<OpendalBackend>,
    index_files: HashSet<Id>,
    /// `(id, size in storage)` of the packs the view shows.
    packs: Vec<(Id, u32)>,
}

impl ReadBackend for RepairView {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        match tpe {
            FileType::Pack => Ok(self.packs.clone()),
            FileType::Index => Ok(self
                .inner
                .list_with_size(tpe)?
                .into_iter()
                .filter(|(id, _)| self.index_files.contains(id))
                .collect()),
            _ => self.inner.list_with_size(tpe),
        }
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for RepairView {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        self.inner.write_bytes(tpe, id, cacheable, content)
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}
