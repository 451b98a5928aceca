//! The record of a mirror's last sound check ([`FsckRecord`]) and the ids of the objects it
//! found reachable, kept in the mirror's directory beside its objects. Both describe this copy's
//! files, not the repository: snapshots leave them out ([`RECORD_FILES`]), so a mirror seeded
//! from a snapshot has none and is checked in full.
//!
//! Writes are ordered so that a crash at any point leaves either a record that matches its ids
//! or no usable record (the next check is then full): a full record is written after removing
//! the old one, then the ids, then the record; an incremental one appends its new ids first and
//! rewrites the record after, and a record is only used when its reachable count matches the
//! ids file's length.
//!
//! Every function blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use serde::{Deserialize, Serialize};

use super::fsck_plan::{FileStamp, FsckRecord, PackStamp};
use super::git_error::GitError;

/// The record, JSON.
const RECORD_FILE: &str = "repovault-fsck.json";
/// The reachable objects' ids, raw, one after the other.
const IDS_FILE: &str = "repovault-fsck.ids";
/// Where each is written before it is renamed into place.
const RECORD_TMP: &str = "repovault-fsck.json.tmp";
const IDS_TMP: &str = "repovault-fsck.ids.tmp";
/// The files this module keeps in a mirror's directory (names relative to it, a crash's
/// leftovers included): what a snapshot leaves out, and what a comparison of a mirror with its
/// stored copy ignores.
pub const RECORD_FILES: [&str; 4] = [RECORD_FILE, IDS_FILE, RECORD_TMP, IDS_TMP];

/// The record's format; another version is not read (the next check is full and writes this
/// one).
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(flatten)]
    record: FsckRecord,
}

/// The record of the mirror at `dir`, when there is a usable one: readable, of this version, and
/// matching its ids file's length. Anything else is no record (a full check follows).
pub fn load(dir: &Path, hash: gix::hash::Kind) -> Option<FsckRecord> {
    let bytes = std::fs::read(dir.join(RECORD_FILE)).ok()?;
    let on_disk: OnDisk = serde_json::from_slice(&bytes).ok()?;
    if on_disk.version != VERSION {
        return None;
    }
    let ids_len = std::fs::metadata(dir.join(IDS_FILE)).ok()?.len();
    (ids_len == on_disk.record.reachable * hash.len_in_bytes() as u64).then_some(on_disk.record)
}

/// The reachable ids the record counts.
pub fn load_ids(
    dir: &Path,
    hash: gix::hash::Kind,
) -> Result<gix::hashtable::HashSet<ObjectId>, GitError> {
    let path = dir.join(IDS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| GitError::io(describe(&path), e))?;
    let mut ids = gix::hashtable::HashSet::default();
    ids.reserve(bytes.len() / hash.len_in_bytes());
    for chunk in bytes.chunks_exact(hash.len_in_bytes()) {
        ids.insert(ObjectId::from_bytes_or_panic(chunk));
    }
    Ok(ids)
}

/// Replaces the record with one whose reachable objects are `ids` (after a walk from every ref).
pub fn save_full(dir: &Path, record: &FsckRecord, ids: &[ObjectId]) -> Result<(), GitError> {
    forget(dir)?;
    let tmp = dir.join(IDS_TMP);
    write_file(&tmp, &concat(ids))?;
    rename(&tmp, &dir.join(IDS_FILE))?;
    write_record(dir, record)
}

/// Adds `ids` to the reachable ones and replaces the record (whose `reachable` counts them).
pub fn save_incremental(dir: &Path, record: &FsckRecord, ids: &[ObjectId]) -> Result<(), GitError> {
    let path = dir.join(IDS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| GitError::io(describe(&path), e))?;
    f.write_all(&concat(ids))
        .and_then(|()| f.sync_data())
        .map_err(|e| GitError::io(describe(&path), e))?;
    write_record(dir, record)
}

/// Removes the record and its ids: the next check is full.
pub fn forget(dir: &Path) -> Result<(), GitError> {
    for name in [RECORD_FILE, IDS_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GitError::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// The stamp of every pack of the mirror at `dir`, by name (`pack-<hash>`): a pack whose index
/// is missing or unreadable has no stamp (the check then finds it).
pub fn pack_stamps(
    dir: &Path,
    hash: gix::hash::Kind,
) -> Result<BTreeMap<String, PackStamp>, GitError> {
    let mut stamps = BTreeMap::new();
    for name in pack_names(dir)? {
        let base = dir.join("objects/pack").join(&name);
        if let Some(stamp) = stamp_of(&base, hash) {
            stamps.insert(name, stamp);
        }
    }
    Ok(stamps)
}

/// The names of the packs (`pack-<hash>`, those with an index) of the mirror at `dir`; none
/// when it has no pack directory.
pub fn pack_names(dir: &Path) -> Result<BTreeSet<String>, GitError> {
    let pack_dir = dir.join("objects/pack");
    let entries = match std::fs::read_dir(&pack_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(GitError::io(describe(&pack_dir), e)),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| GitError::io(describe(&pack_dir), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = name.strip_suffix(".idx") {
            names.insert(base.to_string());
        }
    }
    Ok(names)
}

/// Whether the mirror at `dir` holds loose objects (a directory `objects/xx` with a file in it).
pub fn has_loose_objects(dir: &Path) -> Result<bool, GitError> {
    let objects = dir.join("objects");
    let entries = match std::fs::read_dir(&objects) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(GitError::io(describe(&objects), e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 2
            && name.bytes().all(|b| b.is_ascii_hexdigit())
            && std::fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_some())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The stamp of the pack at `base`.pack / `base`.idx.
fn stamp_of(base: &Path, hash: gix::hash::Kind) -> Option<PackStamp> {
    let (pack, idx) = (base.with_extension("pack"), base.with_extension("idx"));
    let index = gix::odb::pack::index::File::at(&idx, hash).ok()?;
    Some(PackStamp {
        checksum: trailer(&pack, hash).unwrap_or_default(),
        pack: file_stamp(&pack)?,
        index: file_stamp(&idx)?,
        objects: u64::from(index.num_objects()),
    })
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    // Nanoseconds since the epoch fit an i64 until 2262.
    let ns = |secs: i64, nsec: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsec);
    Some(FileStamp {
        size: m.len(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        inode: m.ino(),
    })
}

/// The pack's trailing checksum, hex.
fn trailer(pack: &Path, hash: gix::hash::Kind) -> Option<String> {
    let mut f = std::fs::File::open(pack).ok()?;
    let n = hash.len_in_bytes();
    f.seek(SeekFrom::End(-(n as i64))).ok()?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).ok()?;
    Some(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_record(dir: &Path, record: &FsckRecord) -> Result<(), GitError> {
    let on_disk = OnDisk {
        version: VERSION,
        record: record.clone(),
    };
    let json = serde_json::to_vec(&on_disk).map_err(|e| GitError::Other {
        context: format!("writing the check record of {}", dir.display()),
        detail: e.to_string(),
    })?;
    let tmp = dir.join(RECORD_TMP);
    write_file(&tmp, &json)?;
    rename(&tmp, &dir.join(RECORD_FILE))
}

fn concat(ids: &[ObjectId]) -> Vec<u8> {
    ids.iter()
        .flat_map(|id| id.as_bytes().iter().copied())
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), GitError> {
    let mut f = std::fs::File::create(path).map_err(|e| GitError::io(describe(path), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_data())
        .map_err(|e| GitError::io(describe(path), e))
}

fn rename(from: &Path, to: &PathBuf) -> Result<(), GitError> {
    std::fs::rename(from, to).map_err(|e| GitError::io(format!("renaming {}", from.display()), e))
}

fn describe(path: &Path) -> String {
    path.display().to_string()
}
