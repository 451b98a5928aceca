//! Archive integrity: rustic_core's structural check, and reading packs back from storage.
//!
//! rustic_core's `check --read-data` reads *every* pack of the checked trees and cannot skip
//! packs already verified, so the read-back is done here on rustic_core's public API:
//!
//! - The pack map (blob -> pack, pack sizes) comes from the decrypted index files
//!   (`pack_map.rs`).
//! - A pack is read whole through our own backend ([`OpendalBackend`], `FileType::Pack`) and its
//!   SHA-256 compared with its id. Then every blob the index places in it is decrypted and
//!   decompressed by rustic_core (`Repository::cat_blob`, the only public route to the
//!   repository key: rustic_core's `CryptoKey`/`DecryptReadBackend` are private) and its
//!   SHA-256 compared with the blob id. `cat_blob` reads through [`ServeOverlay`], a backend that
//!   answers the pack read with the bytes already in memory, so each pack crosses the network
//!   once and the blob checked is the copy in *this* pack (see [`ServeOverlay`]).
//!
//! Everything is blocking, like the rest of the module.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use bytes::Bytes;
use rustic_core::repofile::BlobType;
use rustic_core::{
    CheckOptions, Credentials, DataId, FileType, Id, ReadBackend, Repository, RepositoryBackends,
    RepositoryOptions, TreeId,
};
use sha2::{Digest, Sha256};

use super::backend::OpendalBackend;
use super::pack_map::{PackMap, is_not_found, parse_pack_id};
use super::serve_overlay::ServeOverlay;
use super::{RepoError, SnapshotRepo, map_err, summarise};

/// How many packs are read at once: storage is remote in production, so a few requests in
/// flight hide latency; more would only hold more packs in memory (each is read whole).
const READ_PARALLELISM: usize = 4;

/// At most this many blob problems are named per damaged pack.
const MAX_BLOB_PROBLEMS: usize = 10;

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

/// The body of [`SnapshotRepo::check`].
pub(super) fn check(store: &SnapshotRepo, read_data: bool) -> Result<(), RepoError> {
    let results = store
        .repo
        .check(CheckOptions::default().read_data(read_data))
        .map_err(|e| map_err(e, store.location(), "checking"))?;
    if results.is_ok().is_ok() {
        for (level, problem) in &results.0 {
            tracing::warn!(location = store.location(), ?level, %problem, "repository check");
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

/// The body of [`SnapshotRepo::read_back`] (the contract is documented there).
pub(super) fn read_back(
    store: &SnapshotRepo,
    packs: &[String],
    progress: &dyn Fn(u64, u64),
    interrupt: &AtomicBool,
) -> Result<ReadBackReport, RepoError> {
    let location = store.location().to_string();
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
        inner: store.backend.clone(),
    });
    let backends = RepositoryBackends::new(overlay, None);
    let opts = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&opts, &backends)
        .and_then(|r| r.open(&Credentials::Masterkey(store.key.clone())))
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
                (&ids, &next, &stop, &map, &repo, &store.backend);
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

fn blob_type_name(tpe: BlobType) -> &'static str {
    match tpe {
        BlobType::Tree => "tree",
        BlobType::Data => "data",
    }
}

/// The pack's storage path, for messages.
fn pack_path(backend: &OpendalBackend, hex: &str) -> String {
    format!("data/{}/{hex} in {}", &hex[..2], backend.location_str())
}
