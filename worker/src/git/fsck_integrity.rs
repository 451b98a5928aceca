//! The first pass of [`super::fsck`]: every object's hash and every pack's and index's
//! checksums, pack by pack, then the loose objects; and the object count.
//!
//! The store's own `verify_integrity` stops at the first bad pack without saying which, so
//! each pack is checked on its own and every bad one is named. Corruption is a problem in the
//! report, never an error; a panic inside gix on corrupt data is caught and is a problem too.

use std::{
    collections::{BTreeMap, BTreeSet},
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use super::{
    fsck::{Problems, chain},
    fsck_plan::PackStamp,
    git_error::GitError,
};

/// How often the flag a verification gets looks at the caller's interrupt (see
/// [`with_own_flag`]): an interrupt takes effect within this, which nobody notices next to a
/// pack's verification, and the looking costs nothing.
const INTERRUPT_POLL: Duration = Duration::from_millis(20);

/// Which packs [`verify_objects`] checks.
pub(super) enum Packs<'a> {
    All,
    /// Only `hash` (by name, `pack-<hash>`); the others are only counted, from `stamps` (whose
    /// object counts were read from the indexes already) or else from their index.
    Only {
        hash: &'a BTreeSet<String>,
        stamps: &'a BTreeMap<String, PackStamp>,
    },
}

/// Verifies every pack of `packs` against its index (object hashes, CRC32s, checksums,
/// decodable non-blob objects) and every loose object (its hash), and counts the objects as
/// `git count-objects -v` does (`count` + `in-pack`). Corruption goes to `problems`; only an
/// unlistable object directory is an error. gix panicking on corrupt data is a problem too.
/// Returns early, with the count so far, when `interrupt` is set.
pub(super) fn verify_objects(
    dir: &Path,
    hash: gix::hash::Kind,
    packs: Packs<'_>,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) -> Result<u64, GitError> {
    let objects_dir = dir.join("objects");
    let mut n = 0u64;
    for idx in pack_indexes(&objects_dir.join("pack"))? {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(n);
        }
        if let Packs::Only {
            hash: names,
            stamps,
        } = &packs
        {
            let name = idx
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !names.contains(&name) {
                // An unreadable index is the check's to find.
                n += match stamps.get(&name) {
                    Some(stamp) => stamp.objects,
                    None => gix::odb::pack::index::File::at(&idx, hash)
                        .map_or(0, |i| u64::from(i.num_objects())),
                };
                continue;
            }
        }
        let (objects, verified) = verify_pack(&idx, hash, interrupt, problems);
        n += objects;
        if verified == Verified::Interrupted {
            return Ok(n);
        }
    }
    n += count_loose(&objects_dir, hash)?;
    verify_loose(&objects_dir, hash, interrupt, problems);
    Ok(n)
}

/// The entries of the directory `path`.
fn list(path: &Path) -> Result<Vec<std::fs::DirEntry>, GitError> {
    let context = || format!("listing {}", path.display());
    std::fs::read_dir(path)
        .map_err(|e| GitError::io(context(), e))?
        .map(|entry| entry.map_err(|e| GitError::io(context(), e)))
        .collect()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `.idx` files in `pack_dir`, sorted (none when there is no pack directory).
fn pack_indexes(pack_dir: &Path) -> Result<Vec<PathBuf>, GitError> {
    if !pack_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut indexes: Vec<_> = list(pack_dir)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("idx"))
        .collect();
    indexes.sort();
    Ok(indexes)
}

/// How one verification ended, as far as the caller's loop cares.
#[derive(PartialEq, Eq)]
enum Verified {
    /// Sound, or its problems are recorded.
    Done,
    /// The caller's interrupt stopped it.
    Interrupted,
}

/// Verifies the pack beside the index `idx`; returns the index's object count (0 when the
/// index cannot be read) and how the verification ended.
fn verify_pack(
    idx: &Path,
    hash: gix::hash::Kind,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) -> (u64, Verified) {
    let pack = idx.with_extension("pack");
    let index = match gix::odb::pack::index::File::at(idx, hash) {
        Ok(index) => index,
        Err(e) => {
            problems.push(format!(
                "The pack index {} cannot be read: {}.",
                idx.display(),
                chain(&e)
            ));
            return (0, Verified::Done);
        }
    };
    let objects = u64::from(index.num_objects());
    let data = match gix::odb::pack::data::File::at(&pack, hash) {
        Ok(data) => data,
        Err(e) => {
            problems.push(format!(
                "The pack {} cannot be read: {}.",
                pack.display(),
                chain(&e)
            ));
            return (objects, Verified::Done);
        }
    };
    let verified = with_own_flag(interrupt, |flag| {
        index.verify_integrity(
            Some(gix::odb::pack::index::verify::PackContext {
                data: &data,
                options: gix::odb::pack::index::verify::integrity::Options {
                    // Decoding every non-blob object proves it parses; re-encoding it too
                    // (gix's default) would also flag objects git itself accepts (odd
                    // headers in old commits), which is no corruption of the backup.
                    verify_mode: gix::odb::pack::index::verify::Mode::HashCrc32Decode,
                    traversal: Default::default(),
                    thread_limit: None,
                    make_pack_lookup_cache: || gix::odb::pack::cache::Never,
                },
            }),
            &mut gix::progress::Discard,
            flag,
        )
    });
    match verified {
        Ok(Ok(_)) => {}
        Ok(Err(_)) if interrupt.load(Ordering::Relaxed) => return (objects, Verified::Interrupted),
        // gix does not always say which of the two files is bad (an index's own checksum
        // is reported as the "pack file checksum"): name both.
        Ok(Err(e)) => problems.push(format!(
            "The pack {} or its index {} is corrupt: {}.",
            pack.display(),
            idx.display(),
            chain(&e)
        )),
        Err(_) => problems.push(format!(
            "The pack {} or its index {} is corrupt: gix panicked verifying them.",
            pack.display(),
            idx.display()
        )),
    }
    (objects, Verified::Done)
}

/// The number of loose objects under `objects_dir` (files named by the rest of an object id
/// in directories named by its first two hex digits).
fn count_loose(objects_dir: &Path, hash: gix::hash::Kind) -> Result<u64, GitError> {
    let loose_name_len = hash.len_in_hex() - 2;
    let mut n = 0u64;
    for entry in list(objects_dir)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !is_hex(&name) {
            continue;
        }
        for object in list(&entry.path())? {
            let file = object.file_name();
            let file = file.to_string_lossy();
            if file.len() == loose_name_len && is_hex(&file) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Verifies every loose object's hash; corruption goes to `problems`.
fn verify_loose(
    objects_dir: &Path,
    hash: gix::hash::Kind,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) {
    let loose = with_own_flag(interrupt, |flag| {
        gix::odb::loose::Store::at(objects_dir, hash)
            .verify_integrity(&mut gix::progress::Discard, flag)
    });
    match loose {
        Ok(Ok(_)) => {}
        Ok(Err(_)) if interrupt.load(Ordering::Relaxed) => {}
        Ok(Err(e)) => problems.push(format!(
            "The loose objects in {} are corrupt: {}.",
            objects_dir.display(),
            chain(&e)
        )),
        Err(_) => problems.push(format!(
            "The loose objects in {} are corrupt: gix panicked verifying them.",
            objects_dir.display()
        )),
    }
}

/// Runs `verify` (catching a panic) with an interrupt flag of its own that follows
/// `interrupt`: gix's pack verification sets the flag it is given when it finds corruption (to
/// stop its other threads), which must not look like the caller's interrupt or leak into the
/// next pack's check.
fn with_own_flag<T>(
    interrupt: &AtomicBool,
    verify: impl FnOnce(&AtomicBool) -> T,
) -> std::thread::Result<T> {
    let own = AtomicBool::new(interrupt.load(Ordering::Relaxed));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if interrupt.load(Ordering::Relaxed) {
                    own.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(INTERRUPT_POLL);
            }
        });
        let result = catch_unwind(AssertUnwindSafe(|| verify(&own)));
        done.store(true, Ordering::Relaxed);
        result
    })
}
