//! Archive integrity: which packs a snapshot needs, and reading packs back from storage.
//!
//! rustic_core's `check --read-data` reads *every* pack of the checked trees and cannot skip
//! packs already verified, so the read-back is done here on rustic_core's public API:
//!
//! - The pack map (blob -> pack, pack sizes) comes from the decrypted index files
//!   (`Repository::stream_files::<IndexFile>`), trees from `Repository::get_tree`.
//! - A pack is read whole through our own backend ([`OpendalBackend`], `FileType::Pack`) and its
//!   SHA-256 compared with its id. Then every blob the index places in it is decrypted and
//!   decompressed by rustic_core (`Repository::cat_blob`, the only public route to the
//!   repository key: rustic_core's `CryptoKey`/`DecryptReadBackend` are private) and its
//!   SHA-256 compared with the blob id. `cat_blob` reads through [`ServeOverlay`], a backend that
//!   answers the pack read with the bytes already in memory, so each pack crosses the network
//!   once and the blob checked is the copy in *this* pack (see [`ServeOverlay`]).
//!
//! Everything is blocking, like the rest of the module.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use bytes::Bytes;
use rustic_core::repofile::{BlobType, IndexFile, Node, SnapshotFile, Tree};
use rustic_core::{
    Credentials, DataId, FileType, Id, IndexedTree, ReadBackend, Repository, RepositoryBackends,
    RepositoryOptions, RusticError, TreeId,
};
use sha2::{Digest, Sha256};

use super::backend::OpendalBackend;
use super::serve_overlay::ServeOverlay;
use super::{RepoError, SnapshotRepo, find_node, map_err, parse_snapshot_id};

/// How many packs are read at once: storage is remote in production, so a few requests in
/// flight hide latency; more would only hold more packs in memory (each is read whole).
const READ_PARALLELISM: usize = 4;

/// At most this many problems are kept per walk (a broken repository can have millions).
const MAX_PROBLEMS: usize = 1000;

/// At most this many blob problems are named per damaged pack.
const MAX_BLOB_PROBLEMS: usize = 10;

/// The packs a snapshot's trees reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotPacks {
    /// `(full hex pack id, size in bytes as recorded in the index)`, sorted by id. A blob stored
    /// in several packs (duplicates left by concurrent backups) brings in every one of them.
    pub packs: Vec<(String, u64)>,
    /// Blobs the index does not know and trees that could not be read (at most
    /// [`MAX_PROBLEMS`] messages, the last one counting the rest). Non-empty means the snapshot
    /// cannot be restored completely whatever the packs contain.
    pub problems: Vec<String>,
}

impl SnapshotPacks {
    /// The pack ids alone, in order.
    pub fn ids(&self) -> Vec<String> {
        self.packs.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Sum of the pack sizes.
    pub fn total_bytes(&self) -> u64 {
        self.packs.iter().map(|(_, size)| size).sum()
    }
}

/// One damaged pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackDamage {
    /// Full hex id.
    pub pack_id: String,
    /// What is wrong, naming the pack, its storage path and the blobs concerned.
    pub problem: String,
}

/// Outcome of [`SnapshotRepo::read_back`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBackReport {
    /// Packs whose bytes were read from storage (sound or damaged).
    pub packs_read: u64,
    /// Bytes read from storage.
    pub bytes_read: u64,
    /// Packs missing from storage or whose content does not match the ids.
    pub damaged: Vec<PackDamage>,
    /// Packs read and sound: the pack hash and every blob the index places in it check out.
    pub ok: Vec<String>,
    /// Packs that could not be read for a reason that says nothing about their content
    /// (storage errors after the operator's retries): neither sound nor damaged; read again later.
    pub unread: Vec<PackDamage>,
    /// Packs neither in storage nor live in the index (pruned after the list was made, or
    /// marked for deletion and since deleted): nothing left to verify, not damage.
    pub vanished: Vec<String>,
    /// What could not be checked in packs reported sound (their content hash matched, so the
    /// bytes are those written): blobs of packs no longer live in the index, duplicate blobs
    /// rustic_core will not decrypt from this pack. Rare; for logs.
    pub notes: Vec<String>,
}

/// Where the index places blobs, from the decrypted index files.
struct PackMap {
    /// Live packs (not marked for deletion): id -> (size, blobs).
    packs: HashMap<Id, PackEntry>,
    /// Packs marked for deletion by a prune (two-phase prune deletes them later).
    marked: HashMap<Id, PackEntry>,
    /// Blob -> the pack holding it; live packs win over marked ones.
    blobs: HashMap<Id, Id>,
    /// Further packs holding the same blob (duplicates), rare.
    duplicates: HashMap<Id, Vec<Id>>,
}

struct PackEntry {
    size: u64,
    blobs: Vec<rustic_core::repofile::IndexBlob>,
}

impl PackMap {
    fn load<S: rustic_core::Open>(repo: &Repository<S>, location: &str) -> Result<Self, RepoError> {
        let mut map = PackMap {
            packs: HashMap::new(),
            marked: HashMap::new(),
            blobs: HashMap::new(),
            duplicates: HashMap::new(),
        };
        let mut marked_packs = Vec::new();
        let files = repo
            .stream_files::<IndexFile>()
            .map_err(|e| map_err(e, location, "reading the index"))?;
        for file in files {
            let (_, file) = file.map_err(|e| map_err(e, location, "reading the index"))?;
            for pack in file.packs {
                map.packs.insert(
                    *pack.id,
                    PackEntry {
                        size: u64::from(pack.pack_size()),
                        blobs: pack.blobs,
                    },
                );
            }
            marked_packs.extend(file.packs_to_delete);
        }
        for pack in marked_packs {
            // A pack can be live in one index file and marked in another while a prune runs;
            // live wins.
            if !map.packs.contains_key(&*pack.id) {
                map.marked.insert(
                    *pack.id,
                    PackEntry {
                        size: u64::from(pack.pack_size()),
                        blobs: pack.blobs,
                    },
                );
            }
        }
        // Live packs first so that a blob maps to a live copy when there is one.
        let mut ids: Vec<(bool, Id)> = map
            .packs
            .keys()
            .map(|id| (false, *id))
            .chain(map.marked.keys().map(|id| (true, *id)))
            .collect();
        ids.sort_unstable();
        for (marked, pack_id) in ids {
            let entry = if marked {
                &map.marked[&pack_id]
            } else {
                &map.packs[&pack_id]
            };
            for blob in &entry.blobs {
                let blob_id = *blob.id;
                match map.blobs.get(&blob_id) {
                    None => {
                        map.blobs.insert(blob_id, pack_id);
                    }
                    Some(first) if *first != pack_id => {
                        map.duplicates.entry(blob_id).or_default().push(pack_id);
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(map)
    }

    /// Every pack holding `blob`.
    fn packs_of(&self, blob: &Id) -> impl Iterator<Item = &Id> {
        self.blobs
            .get(blob)
            .into_iter()
            .chain(self.duplicates.get(blob).into_iter().flatten())
    }

    /// Adds the packs holding `blob` to `packs`; returns what is wrong if it is in no pack, or
    /// only in packs a prune marked for deletion (rustic_core's index ignores those, so a
    /// restore would not find the blob; restic's next prune would keep the pack).
    fn locate(&self, blob: &Id, packs: &mut HashSet<Id>) -> Option<String> {
        let mut any = false;
        let mut live = false;
        for pack in self.packs_of(blob) {
            packs.insert(*pack);
            any = true;
            live |= self.packs.contains_key(pack);
        }
        match (any, live) {
            (false, _) => Some("is in no pack of the index".to_string()),
            (true, false) => Some("is only in packs a prune marked for deletion".to_string()),
            (true, true) => None,
        }
    }

    fn size(&self, pack: &Id) -> Option<u64> {
        self.packs
            .get(pack)
            .or_else(|| self.marked.get(pack))
            .map(|p| p.size)
    }
}

/// Bounded list of problems.
#[derive(Default)]
struct Problems {
    kept: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, p: String) {
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(p);
        } else {
            self.more += 1;
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.kept.push(format!("and {} more problems", self.more));
        }
        self.kept
    }
}

impl SnapshotRepo {
    /// The packs holding the snapshot's tree blobs and the data blobs of all its files.
    ///
    /// Walks the whole tree (each distinct tree once). Unknown blobs and unreadable trees are
    /// reported in [`SnapshotPacks::problems`], not as an error; errors are for the snapshot
    /// itself (not found, unreadable) and the index. A panic inside rustic_core while reading a
    /// tree (it has `unwrap`s on some corrupt data) is caught and reported as a problem.
    pub fn snapshot_packs(&self, snapshot_id: &str) -> Result<SnapshotPacks, RepoError> {
        let location = self.location();
        let id = parse_snapshot_id(snapshot_id)?;
        let repo = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| map_err(e, location, "reading the index"))?;
        let snap = self.load_snapshot(&repo, &id)?;
        let map = PackMap::load(&repo, location)?;

        let mut packs: HashSet<Id> = HashSet::new();
        let mut problems = Problems::default();
        walk_trees(&repo, &snap, &mut problems, |path, tree_id, tree| {
            let mut problems = Vec::new();
            if let Some(p) = map.locate(&tree_id, &mut packs) {
                problems.push(format!(
                    "tree blob {} of {} {p}",
                    tree_id.to_hex().as_str(),
                    display_path(path)
                ));
            }
            let Some(tree) = tree else { return problems };
            for node in &tree.nodes {
                for blob in node.content.iter().flatten() {
                    if let Some(p) = map.locate(blob, &mut packs) {
                        problems.push(format!(
                            "data blob {} of {} {p}",
                            blob.to_hex().as_str(),
                            display_path(&path.join(node.name()))
                        ));
                    }
                }
            }
            problems
        });

        let mut packs: Vec<(String, u64)> = packs
            .into_iter()
            .map(|p| (p.to_hex().to_string(), map.size(&p).unwrap_or(0)))
            .collect();
        packs.sort_unstable();
        Ok(SnapshotPacks {
            packs,
            problems: problems.into_vec(),
        })
    }

    /// Every live pack the index names (packs a prune marked for deletion are left out: they
    /// are going away and no snapshot needs them), as `(full hex id, size)`, sorted by id.
    /// For the rotation that reads every pack once per period.
    pub fn all_packs(&self) -> Result<Vec<(String, u64)>, RepoError> {
        let map = PackMap::load(&self.repo, self.location())?;
        let mut out: Vec<(String, u64)> = map
            .packs
            .iter()
            .map(|(id, p)| (id.to_hex().to_string(), p.size))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Full ids of the snapshots whose trees reference any of `packs` (full hex ids): the
    /// backups a damaged pack breaks. A blob stored in several packs counts for each of them,
    /// so this errs on the side of naming a snapshot that another copy might still save.
    /// Trees that cannot be read are skipped (the snapshot is then named only if a readable
    /// part references the packs; `snapshot_packs` reports unreadable trees). Sorted.
    pub fn snapshots_using_packs(&self, packs: &HashSet<String>) -> Result<Vec<String>, RepoError> {
        let location = self.location();
        let wanted: HashSet<Id> = packs.iter().filter_map(|p| p.parse::<Id>().ok()).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let repo = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| map_err(e, location, "reading the index"))?;
        let map = PackMap::load(&repo, location)?;
        let snaps = repo
            .get_all_snapshots()
            .map_err(|e| map_err(e, location, "listing snapshots"))?;
        let hits = |blob: &Id| map.packs_of(blob).any(|p| wanted.contains(p));

        // Memo over all snapshots: consecutive backups share most trees.
        let mut memo: HashMap<TreeId, bool> = HashMap::new();
        let mut out = Vec::new();
        for snap in &snaps {
            if tree_uses(&repo, snap.tree, &hits, &mut memo) {
                out.push(snap.id.to_hex().to_string());
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
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
        let location = self.location();
        let id = parse_snapshot_id(snapshot_id)?;
        let repo = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| map_err(e, location, "reading the index"))?;
        let snap = self.load_snapshot(&repo, &id)?;
        let node = find_node(&repo, &snap, path)?;
        let Some(root) = node.subtree.filter(|_| node.is_dir()) else {
            return Err(RepoError::InvalidInput(format!(
                "{path:?} in snapshot {snapshot_id} is not a directory"
            )));
        };
        let mut out = BTreeMap::new();
        let mut stack: Vec<(String, TreeId)> = vec![(String::new(), root)];
        while let Some((prefix, tree_id)) = stack.pop() {
            let tree = read_tree(&repo, &tree_id).map_err(|message| RepoError::Repository {
                doing: "listing the snapshot",
                message: format!(
                    "tree {} at {prefix:?}: {message}",
                    tree_id.to_hex().as_str()
                ),
            })?;
            for node in tree.nodes {
                let name = node.name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                if node.is_dir() {
                    if let Some(sub) = node.subtree {
                        stack.push((rel, sub));
                    }
                } else if node.is_file() {
                    out.insert(rel, node.meta.size);
                }
            }
        }
        Ok(out)
    }

    /// Reads each of `packs` (full hex ids) from storage and verifies it: the pack's SHA-256
    /// must equal its id, and every blob the index places in it must decrypt with the
    /// repository key, decompress, and hash to its blob id. A pack the index lists as live but
    /// storage lacks is damage ("missing from storage"). A pack not live in the index (marked
    /// for deletion by a prune, or unknown) is only hashed (noted in [`ReadBackReport::notes`]);
    /// if storage lacks it too it is [`ReadBackReport::vanished`], not damage.
    ///
    /// Reads [`READ_PARALLELISM`] packs at a time, each whole in memory. `progress(done,
    /// total)` is called on this thread after each pack, in bytes (total from the index sizes).
    /// Setting `interrupt` stops at the next pack or blob boundary with
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
        let location = self.location().to_string();
        let mut ids: Vec<Id> = Vec::with_capacity(packs.len());
        let mut seen = HashSet::new();
        for p in packs {
            let id = parse_pack_id(p)?;
            if seen.insert(id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Ok(ReadBackReport::default());
        }

        // A second handle on the same storage whose pack reads are served from memory; opening
        // by master key costs a config read, no scrypt. The whole index is loaded because
        // `cat_blob` needs it (`IndexedFull`).
        let overlay = Arc::new(ServeOverlay {
            inner: self.backend.clone(),
        });
        let backends = RepositoryBackends::new(overlay, None);
        let opts = RepositoryOptions::default().no_cache(true);
        let repo = Repository::new(&opts, &backends)
            .and_then(|r| r.open(&Credentials::Masterkey(self.key.clone())))
            .map_err(|e| map_err(e, &location, "opening the repository"))?
            .to_indexed()
            .map_err(|e| map_err(e, &location, "reading the index"))?;
        let map = PackMap::load(&repo, &location)?;

        let total: u64 = ids.iter().map(|id| map.size(id).unwrap_or(0)).sum();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(Id, PackOutcome)>();
        let mut report = ReadBackReport::default();
        let mut done = 0u64;
        let workers = READ_PARALLELISM.min(ids.len());

        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (ids, next, stop, map, repo, backend) =
                    (&ids, &next, &stop, &map, &repo, &self.backend);
                scope.spawn(move || {
                    loop {
                        if stop.load(Ordering::Relaxed) || interrupt.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(pack) = ids.get(i) else { return };
                        let outcome = catch_unwind(AssertUnwindSafe(|| {
                            verify_pack(repo, backend, map, pack, interrupt)
                        }))
                        .unwrap_or_else(|_| {
                            PackOutcome::Unread(format!(
                                "pack {} could not be checked: the check panicked",
                                pack.to_hex().as_str()
                            ))
                        });
                        if tx.send((*pack, outcome)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            for (pack, outcome) in rx {
                let hex = pack.to_hex().to_string();
                match outcome {
                    PackOutcome::Sound { bytes, notes } => {
                        report.notes.extend(notes);
                        report.packs_read += 1;
                        report.bytes_read += bytes;
                        report.ok.push(hex);
                        done += bytes;
                    }
                    PackOutcome::Damaged { bytes, problem } => {
                        if let Some(bytes) = bytes {
                            report.packs_read += 1;
                            report.bytes_read += bytes;
                        }
                        done += map.size(&pack).unwrap_or(0);
                        report.damaged.push(PackDamage {
                            pack_id: hex,
                            problem,
                        });
                    }
                    PackOutcome::Unread(problem) => {
                        done += map.size(&pack).unwrap_or(0);
                        report.unread.push(PackDamage {
                            pack_id: hex,
                            problem,
                        });
                    }
                    PackOutcome::Vanished => report.vanished.push(hex),
                    PackOutcome::Interrupted => stop.store(true, Ordering::Relaxed),
                }
                progress(done.min(total), total);
            }
        });

        if interrupt.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            return Err(RepoError::Interrupted {
                doing: "reading packs back",
            });
        }
        report.ok.sort_unstable();
        report
            .damaged
            .sort_unstable_by(|a, b| a.pack_id.cmp(&b.pack_id));
        report
            .unread
            .sort_unstable_by(|a, b| a.pack_id.cmp(&b.pack_id));
        report.vanished.sort_unstable();
        Ok(report)
    }
}

enum PackOutcome {
    Sound {
        bytes: u64,
        notes: Vec<String>,
    },
    /// `bytes` is `None` when nothing could be read (missing).
    Damaged {
        bytes: Option<u64>,
        problem: String,
    },
    Unread(String),
    Vanished,
    Interrupted,
}

/// Reads one pack and checks it. rustic_core panics inside a blob's decryption are caught
/// per blob; the caller catches anything else.
fn verify_pack<S: rustic_core::IndexedFull>(
    repo: &Repository<S>,
    backend: &OpendalBackend,
    map: &PackMap,
    pack: &Id,
    interrupt: &AtomicBool,
) -> PackOutcome {
    let hex = pack.to_hex();
    let hex = hex.as_str();
    let path = pack_path(backend, hex);
    let live = map.packs.get(pack);

    let bytes = match backend.read_full(FileType::Pack, pack) {
        Ok(bytes) => bytes,
        Err(e) if is_not_found(&e) => {
            return if live.is_some() {
                PackOutcome::Damaged {
                    bytes: None,
                    problem: format!("pack {hex} ({path}) is missing from storage"),
                }
            } else {
                // Not live in the index: pruned (or marked and since deleted), not damage.
                PackOutcome::Vanished
            };
        }
        Err(e) => {
            return PackOutcome::Unread(format!(
                "pack {hex} ({path}) could not be read: {}",
                super::describe(&e)
            ));
        }
    };
    let len = bytes.len() as u64;
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    let digest = hex::encode(Sha256::digest(&bytes));
    if digest != hex {
        problems.push(format!(
            "pack {hex} ({path}): content hash is {digest}, not the pack id"
        ));
    }
    if let Some(entry) = live {
        if entry.size != len {
            problems.push(format!(
                "pack {hex} ({path}): {len} bytes in storage, the index says {}",
                entry.size
            ));
        }
        let mut damaged = Vec::new();
        for blob in &entry.blobs {
            if interrupt.load(Ordering::Relaxed) {
                return PackOutcome::Interrupted;
            }
            let what = || {
                format!(
                    "{} blob {} at offset {} of pack {hex} ({path})",
                    blob_type_name(blob.tpe),
                    blob.id.to_hex().as_str(),
                    blob.location.offset,
                )
            };
            match verify_blob(repo, &bytes, blob) {
                BlobCheck::Sound => {}
                BlobCheck::Damaged(why) => damaged.push(format!("{}: {why}", what())),
                BlobCheck::Unverifiable(why) => notes.push(format!("{}: {why}", what())),
            }
        }
        if !damaged.is_empty() {
            let n = damaged.len();
            let mut shown: Vec<String> = damaged.into_iter().take(MAX_BLOB_PROBLEMS).collect();
            if n > MAX_BLOB_PROBLEMS {
                shown.push(format!("and {} more damaged blobs", n - MAX_BLOB_PROBLEMS));
            }
            problems.push(shown.join("; "));
        }
    } else {
        // Marked for deletion (rustic_core's index leaves such packs out, so `cat_blob` cannot
        // decrypt their blobs) or unknown to the index: the pack hash is all there is to check.
        notes.push(format!(
            "pack {hex} ({path}) is not live in the index: only its content hash was checked"
        ));
    }
    if problems.is_empty() {
        PackOutcome::Sound { bytes: len, notes }
    } else {
        PackOutcome::Damaged {
            bytes: Some(len),
            problem: problems.join("; "),
        }
    }
}

enum BlobCheck {
    Sound,
    Damaged(String),
    /// Could not be checked through rustic_core's public API; says nothing about the bytes.
    Unverifiable(String),
}

/// Decrypts (and decompresses) the copy of `blob` at its place in `pack` and checks its hash.
fn verify_blob<S: rustic_core::IndexedFull>(
    repo: &Repository<S>,
    pack: &Bytes,
    blob: &rustic_core::repofile::IndexBlob,
) -> BlobCheck {
    let loc = blob.location;
    let start = loc.offset as usize;
    let end = start.saturating_add(loc.length as usize);
    if end > pack.len() {
        return BlobCheck::Damaged(format!(
            "lies beyond the end of the pack ({} bytes at offset {start}, pack has {})",
            loc.length,
            pack.len()
        ));
    }
    // rustic decrypts the copy its own index prefers. For a duplicate blob that may be another
    // pack; serving our bytes instead is only right when it would decompress them the same way.
    let preferred = match blob.tpe {
        BlobType::Tree => repo.get_index_entry(&TreeId::from(*blob.id)),
        BlobType::Data => repo.get_index_entry(&DataId::from(*blob.id)),
    };
    let preferred = match preferred {
        Ok(entry) => entry,
        // The index changed between rustic's load and ours (a prune rewrote it): not damage.
        Err(e) => {
            return BlobCheck::Unverifiable(format!(
                "not in rustic_core's index: {}",
                super::describe(&e)
            ));
        }
    };
    if preferred.location.uncompressed_length != loc.uncompressed_length {
        return BlobCheck::Unverifiable(format!(
            "a duplicate in pack {} is stored {}compressed, and rustic_core only decrypts the \
             copy it prefers",
            preferred.pack.to_hex().as_str(),
            if preferred.location.uncompressed_length.is_some() {
                ""
            } else {
                "un"
            }
        ));
    }
    let plain = ServeOverlay::serving(pack.slice(start..end), || {
        catch_unwind(AssertUnwindSafe(|| {
            repo.cat_blob(blob.tpe, blob.id.to_hex().as_str())
        }))
    });
    let plain = match plain {
        Ok(Ok(plain)) => plain,
        Ok(Err(e)) => {
            return BlobCheck::Damaged(format!("does not decrypt: {}", super::describe(&e)));
        }
        Err(_) => return BlobCheck::Damaged("does not decrypt (rustic_core panicked)".into()),
    };
    let digest = hex::encode(Sha256::digest(&plain));
    if digest != blob.id.to_hex().as_str() {
        return BlobCheck::Damaged(format!("content hash is {digest}, not the blob id"));
    }
    BlobCheck::Sound
}

/// Walks every distinct tree of `snap`; `visit(path, id, tree)` gets `None` for a tree that
/// could not be read (the failure is recorded first) and returns problems to record.
fn walk_trees<S: IndexedTree>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    problems: &mut Problems,
    mut visit: impl FnMut(&Path, TreeId, Option<&Tree>) -> Vec<String>,
) {
    let mut seen: HashSet<TreeId> = HashSet::new();
    let mut stack: Vec<(PathBuf, TreeId)> = vec![(PathBuf::from("/"), snap.tree)];
    while let Some((path, id)) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let tree = match read_tree(repo, &id) {
            Ok(tree) => Some(tree),
            Err(why) => {
                problems.push(format!(
                    "tree {} of {} cannot be read: {why}",
                    id.to_hex().as_str(),
                    display_path(&path)
                ));
                None
            }
        };
        for p in visit(&path, id, tree.as_ref()) {
            problems.push(p);
        }
        let Some(tree) = tree else { continue };
        for node in tree.nodes {
            if let Some(sub) = node.subtree {
                stack.push((path.join(node.name()), sub));
            }
        }
    }
}

/// Whether the tree `id` or anything under it has a blob for which `hits` is true. Memoised;
/// unreadable trees count as not using the packs. Recursion depth is the directory depth.
fn tree_uses<S: IndexedTree>(
    repo: &Repository<S>,
    id: TreeId,
    hits: &dyn Fn(&Id) -> bool,
    memo: &mut HashMap<TreeId, bool>,
) -> bool {
    if let Some(known) = memo.get(&id) {
        return *known;
    }
    // Provisional answer: guards against a (corrupt) cycle of trees.
    memo.insert(id, false);
    let mut uses = hits(&id);
    if !uses && let Ok(tree) = read_tree(repo, &id) {
        uses = tree
            .nodes
            .iter()
            .any(|n: &Node| n.content.iter().flatten().any(|b| hits(b)));
        if !uses {
            uses = tree
                .nodes
                .iter()
                .filter_map(|n| n.subtree)
                .any(|sub| tree_uses(repo, sub, hits, memo));
        }
    }
    memo.insert(id, uses);
    uses
}

/// `get_tree`, with rustic_core panics turned into errors.
fn read_tree<S: IndexedTree>(repo: &Repository<S>, id: &TreeId) -> Result<Tree, String> {
    match catch_unwind(AssertUnwindSafe(|| repo.get_tree(id))) {
        Ok(Ok(tree)) => Ok(tree),
        Ok(Err(e)) => Err(super::describe(&e)),
        Err(_) => Err("rustic_core panicked reading it".to_string()),
    }
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn blob_type_name(tpe: BlobType) -> &'static str {
    match tpe {
        BlobType::Tree => "tree",
        BlobType::Data => "data",
    }
}

pub(super) fn parse_pack_id(s: &str) -> Result<Id, RepoError> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::InvalidInput(format!(
            "{s:?} is not a full 64-hex pack id"
        )));
    }
    s.parse::<Id>()
        .map_err(|_| RepoError::InvalidInput(format!("{s:?} is not a full 64-hex pack id")))
}

/// The pack's storage path, for messages.
fn pack_path(backend: &OpendalBackend, hex: &str) -> String {
    format!("data/{}/{hex} in {}", &hex[..2], backend.location_str())
}

/// Whether a storage error is opendal's "not found" (anywhere in the error chain).
pub(super) fn is_not_found(err: &RusticError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(od) = e.downcast_ref::<opendal::Error>() {
            return od.kind() == opendal::ErrorKind::NotFound;
        }
        cause = e.source();
    }
    false
}
