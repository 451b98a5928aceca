//! LFS pointer files and the local object store: which objects a mirror's blobs name, where an
//! object lives in the store, and whether the stored copy is whole. Every function here is pure
//! or blocking (call those from `spawn_blocking` in async code).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::LfsError;

/// The largest blob that is read as a pointer candidate: git-lfs's `blobSizeCutoff` (1024
/// bytes, its scanner's limit); a pointer is about 130 bytes.
pub const MAX_POINTER_SIZE: u64 = 1024;

/// The first line of every pointer (git-lfs `docs/spec.md`).
const POINTER_VERSION: &str = "version https://git-lfs.github.com/spec/v1";

/// The read buffer of [`stored_and_valid`]: large enough that hashing, not system calls,
/// dominates; small enough for any number of concurrent checks.
const HASH_BUFFER: usize = 64 * 1024;

/// Parses an LFS pointer file (git-lfs `docs/spec.md`): UTF-8 `key value` lines, each ending in
/// `\n`, the first `version https://git-lfs.github.com/spec/v1`, then keys in order with
/// `oid sha256:<64 lowercase hex>` and `size <decimal>` required (extension keys allowed).
/// Returns `(oid, size)`, or `None` for anything else (including the empty pointer of an empty
/// file, which names no object to fetch).
pub fn parse_pointer(data: &[u8]) -> Option<(String, u64)> {
    if data.len() as u64 > MAX_POINTER_SIZE {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let body = text.strip_suffix('\n')?;
    let mut lines = body.split('\n');
    if lines.next()? != POINTER_VERSION {
        return None;
    }
    let (mut oid, mut size) = (None, None);
    let mut last_key = "";
    for line in lines {
        let (key, value) = line.split_once(' ')?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'));
        // Keys after `version` are sorted and unique (the spec); that also refuses duplicates.
        if !key_ok || key <= last_key {
            return None;
        }
        last_key = key;
        match key {
            "oid" => {
                let hex = value.strip_prefix("sha256:")?;
                if !valid_oid(hex) {
                    return None;
                }
                oid = Some(hex.to_string());
            }
            "size" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                size = Some(value.parse::<u64>().ok()?);
            }
            _ => {}
        }
    }
    Some((oid?, size?))
}

/// A SHA-256 in lowercase hex.
pub(super) fn valid_oid(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where the object `oid` lives in `store` (git-lfs's layout). `oid` must be a valid oid.
pub fn object_path(store: &Path, oid: &str) -> PathBuf {
    store.join(&oid[0..2]).join(&oid[2..4]).join(oid)
}

/// Every LFS object (oid → size) named by a pointer among the blob objects of the bare mirror
/// `bare`: all blobs in its object database (packed and loose, reachable or not; a mirror keeps
/// few unreachable objects, and fetching an old pointer's object too is harmless). Only blobs of
/// at most [`MAX_POINTER_SIZE`] bytes are read; the others are judged by their header alone.
/// Blocking: call from `spawn_blocking` in async code.
pub fn find_pointers(bare: &Path) -> Result<BTreeMap<String, u64>, LfsError> {
    let fail = |detail: String| LfsError::Repository {
        path: bare.to_owned(),
        detail,
    };
    let repo = gix::open_opts(bare, gix::open::Options::isolated())
        .map_err(|e| fail(format!("cannot open as a git repository: {e}")))?;
    let ids = repo
        .objects
        .store_ref()
        .iter()
        .map_err(|e| fail(format!("listing objects: {e}")))?;
    let mut found = BTreeMap::new();
    for id in ids {
        let id = id.map_err(|e| fail(format!("listing objects: {e}")))?;
        let header = repo
            .find_header(id)
            .map_err(|e| fail(format!("object {id}: {e}")))?;
        if header.kind() != gix::object::Kind::Blob || header.size() > MAX_POINTER_SIZE {
            continue;
        }
        let blob = repo
            .find_blob(id)
            .map_err(|e| fail(format!("blob {id}: {e}")))?;
        if let Some((oid, size)) = parse_pointer(&blob.data) {
            found.insert(oid, size);
        }
    }
    Ok(found)
}

/// Whether `store` holds `oid` with `size` bytes whose SHA-256 is `oid`, read in
/// [`HASH_BUFFER`] pieces (objects can be gigabytes). A missing or unreadable file is "no" (it
/// is fetched again); blocking.
pub(super) fn stored_and_valid(store: &Path, oid: &str, size: u64) -> bool {
    let path = object_path(store, oid);
    let Ok(mut file) = std::fs::File::open(&path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hex::encode(hasher.finalize()) == oid
}
