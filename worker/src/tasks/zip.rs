//! The `download_zip` restore: the whole snapshot as one ZIP in storage.
//!
//! Contract of [`run`]: restores every file of the snapshot (`code.git/`, `wiki.git/`,
//! `lfs/objects/`, `meta/`, `releases/`, `attachments/`, `manifest.json`, whichever the backup
//! holds) into `work`, packs it into `work/download.zip` with directory entries (a bare mirror
//! needs its empty `refs/` directories) and [`LISTING_FILE`] last, listing every file entry with
//! its size and SHA-256; JSON is deflated, everything else (packs, LFS objects, assets) stored.
//! Then it reopens the ZIP and checks it: every entry decompresses with a matching CRC-32, and its
//! SHA-256 and size match the listing, which names exactly the file entries. Only a checked ZIP
//! is uploaded, to `spec.artifact_path` via a temporary name in the same directory and a rename,
//! so the artifact path holds a complete ZIP or nothing. Returns its path, size and SHA-256.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use repovault_common::manifest::{self, Manifest};
use repovault_common::repo::{ByteProgress, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use repovault_common::domain::{BackupId, RestoreId, SnapshotId};

use super::leased::RestoreWork;
use super::{TaskContext, TaskError, blocking};

/// The listing inside every download ZIP, written as its last entry.
pub const LISTING_FILE: &str = "repovault-zip.json";

/// Upload chunk: large enough for few storage round trips, small enough to keep memory flat.
const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;

/// `repovault-zip.json`: what the ZIP holds, for a reader to check without repovault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub format_version: u32,
    pub restore_id: RestoreId,
    pub backup_id: BackupId,
    pub snapshot_id: SnapshotId,
    pub repo: String,
    /// Every file entry (not directories, not this listing), by path.
    pub entries: Vec<ListingEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Runs a `download_zip` restore in the scratch directory `work` (see the module documentation).
pub async fn run(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    restore: &RestoreWork,
    work: &Path,
) -> Result<pb::RestoreResult, TaskError> {
    let spec = &restore.spec;
    if spec.artifact_path.is_empty() {
        return Err(TaskError::permanent(
            "download_zip restore carries no artifact path",
        ));
    }
    ctx.progress.phase(
        "restore",
        format!("reading snapshot {}", restore.snapshot_id.short()),
    );
    let repo_spec = RepoSpec {
        operator: ctx.storage.clone(),
        path: access.snapshot_path.clone(),
    };
    let password = Secret::new(access.repo_password.clone());
    let master = (!access.master_key.is_empty()).then(|| Secret::new(access.master_key.clone()));
    let tree = work.join("tree");
    let snapshot_id = restore.snapshot_id.clone();
    let (tree2, progress) = (tree.clone(), ctx.progress.clone());
    let manifest = blocking(move || {
        let key = RepoKey::new(&password, master.as_ref());
        let (repo, _) = SnapshotRepo::open(&repo_spec, key, false)?;
        let snapshot = snapshot_id.as_str();
        let manifest = Manifest::from_json(&repo.read_file(snapshot, manifest::MANIFEST_FILE)?)
            .map_err(|e| TaskError::permanent(format!("snapshot {snapshot_id}")).with_source(e))?;
        let report: ByteProgress = Arc::new(move |done, total| progress.update_bytes(done, total));
        repo.restore_reporting(snapshot, "", &tree2, report)?;
        Ok(manifest)
    })
    .await?;
    if !tokio::fs::metadata(tree.join(manifest::CODE_DIR))
        .await
        .is_ok_and(|m| m.is_dir())
    {
        return Err(TaskError::permanent(format!(
            "snapshot {} holds no {}",
            restore.snapshot_id,
            manifest::CODE_DIR
        )));
    }

    ctx.progress.phase("package", "building the ZIP");
    let zip_path = work.join("download.zip");
    let listing_head = Listing {
        format_version: 1,
        restore_id: restore.restore_id.clone(),
        backup_id: restore.backup_id.clone(),
        snapshot_id: restore.snapshot_id.clone(),
        repo: manifest.source.repo.clone(),
        entries: Vec::new(),
    };
    let (tree2, zip2, progress) = (tree.clone(), zip_path.clone(), ctx.progress.clone());
    let listing = blocking(move || {
        build_zip(&tree2, &zip2, listing_head, &|bytes, _files, total| {
            progress.update_bytes(bytes, total)
        })
    })
    .await?;

    ctx.progress.phase(
        "check",
        format!("checking {} entries", listing.entries.len()),
    );
    let zip2 = zip_path.clone();
    let (bytes, sha) = blocking(move || check_zip(&zip2, &listing)).await?;

    ctx.progress
        .phase("upload", format!("uploading {bytes} bytes"));
    upload(ctx, &zip_path, &spec.artifact_path, bytes).await?;
    ctx.progress
        .phase("done", format!("{bytes} bytes ready for download"));
    Ok(pb::RestoreResult {
        artifact_path: spec.artifact_path.clone(),
        artifact_bytes: bytes,
        artifact_sha256: sha,
        ..Default::default()
    })
}

/// Every file and directory under `root`, as sorted `/`-separated relative paths (directories
/// end with `/`). Symbolic links are refused: a snapshot never holds them.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf, bool)>, TaskError> {
    let io =
        |p: &Path, e: std::io::Error| TaskError::retryable(p.display().to_string()).with_source(e);
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let ty = entry.file_type().map_err(|e| io(&entry.path(), e))?;
            let rel = rel.join(entry.file_name());
            let name = rel
                .to_str()
                .ok_or_else(|| {
                    TaskError::permanent(format!("path {} is not UTF-8", rel.display()))
                })?
                .replace(std::path::MAIN_SEPARATOR, "/");
            if ty.is_dir() {
                out.push((format!("{name}/"), entry.path(), true));
                stack.push(rel);
            } else if ty.is_file() {
                out.push((name, entry.path(), false));
            } else {
                return Err(TaskError::permanent(format!(
                    "snapshot holds {name}, which is neither a file nor a directory"
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies `r` into `w`, returning the bytes copied and their SHA-256.
fn copy_hashed(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<(u64, String)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        hash.update(&buf[..k]);
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
    Ok((n, hex::encode(hash.finalize())))
}

/// Writes the ZIP of `root` to `out` (see the module documentation) and returns the listing it
/// holds. `progress(bytes, files, total_bytes)` is called after every file.
fn build_zip(
    root: &Path,
    out: &Path,
    mut listing: Listing,
    progress: &dyn Fn(u64, u64, u64),
) -> Result<Listing, TaskError> {
    let io = |e: std::io::Error| TaskError::retryable("building the ZIP").with_source(e);
    let zerr = |e: zip::result::ZipError| TaskError::retryable("building the ZIP").with_source(e);
    let entries = walk(root)?;
    let mut total = 0u64;
    for (_, p, is_dir) in &entries {
        if !is_dir {
            total += std::fs::metadata(p).map_err(io)?.len();
        }
    }
    let file = std::fs::File::create(out).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file)).set_auto_large_file();
    let (mut done, mut files) = (0u64, 0u64);
    for (name, path, is_dir) in &entries {
        if name == LISTING_FILE {
            return Err(TaskError::permanent(format!(
                "snapshot holds a file named {LISTING_FILE}"
            )));
        }
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777
        };
        #[cfg(not(unix))]
        let mode = if *is_dir { 0o755 } else { 0o644 };
        if *is_dir {
            zip.add_directory(
                name.as_str(),
                SimpleFileOptions::default().unix_permissions(mode),
            )
            .map_err(zerr)?;
            continue;
        }
        let method = if name.ends_with(".json") {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let opts = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(mode);
        zip.start_file(name.as_str(), opts).map_err(zerr)?;
        let mut f = std::fs::File::open(path).map_err(io)?;
        let (bytes, sha256) = copy_hashed(&mut f, &mut zip).map_err(io)?;
        listing.entries.push(ListingEntry {
            path: name.clone(),
            bytes,
            sha256,
        });
        done += bytes;
        files += 1;
        progress(done, files, total);
    }
    let json = serde_json::to_vec_pretty(&listing)
        .map_err(|e| TaskError::permanent("listing").with_source(e))?;
    zip.start_file(
        LISTING_FILE,
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(0o644),
    )
    .map_err(zerr)?;
    zip.write_all(&json).map_err(io)?;
    let mut w = zip.finish().map_err(zerr)?;
    w.flush().map_err(io)?;
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(listing)
}

/// Reopens the ZIP at `path` and checks it against `expected`: every entry reads back with a
/// matching CRC-32; the listing entry equals `expected`; the file entries are exactly the
/// listed ones, with the listed sizes and SHA-256. Returns the ZIP's size and SHA-256.
pub fn check_zip(path: &Path, expected: &Listing) -> Result<(u64, String), TaskError> {
    let bad = |m: String| TaskError::retryable(format!("ZIP check failed: {m}"));
    fn check_failed(e: impl Into<super::Source>) -> TaskError {
        TaskError::retryable("ZIP check failed").with_source(e)
    }
    let file = std::fs::File::open(path).map_err(check_failed)?;
    let mut archive = zip::ZipArchive::new(file).map_err(check_failed)?;
    let mut found: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut listing: Option<Listing> = None;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(check_failed)?;
        let name = entry.name().map_err(check_failed)?.to_string();
        if entry.enclosed_name().is_none() {
            return Err(bad(format!("entry {name:?} escapes the archive")));
        }
        if entry.is_dir() {
            continue;
        }
        // Reading an entry to its end checks its CRC-32 (the reader fails on a mismatch).
        let mut sink = Vec::new();
        let (bytes, sha) = if name == LISTING_FILE {
            let r = copy_hashed(&mut entry, &mut sink);
            r.map_err(|e| bad(format!("{name}: {e}")))?
        } else {
            copy_hashed(&mut entry, &mut std::io::sink())
                .map_err(|e| bad(format!("{name}: {e}")))?
        };
        if name == LISTING_FILE {
            listing = Some(
                serde_json::from_slice(&sink).map_err(|e| bad(format!("{LISTING_FILE}: {e}")))?,
            );
        } else if found.insert(name.clone(), (bytes, sha)).is_some() {
            return Err(bad(format!("entry {name:?} appears twice")));
        }
    }
    let listing = listing.ok_or_else(|| bad(format!("no {LISTING_FILE}")))?;
    if &listing != expected {
        return Err(bad(format!("{LISTING_FILE} differs from what was written")));
    }
    let listed: BTreeMap<String, (u64, String)> = listing
        .entries
        .iter()
        .map(|e| (e.path.clone(), (e.bytes, e.sha256.clone())))
        .collect();
    if listed != found {
        let missing = listed.keys().find(|k| !found.contains_key(*k));
        let extra = found.keys().find(|k| !listed.contains_key(*k));
        let differs = listed
            .iter()
            .find(|(k, v)| found.get(*k).is_some_and(|f| f != *v));
        return Err(bad(format!(
            "entries differ from the listing (missing {missing:?}, unlisted {extra:?}, changed {:?})",
            differs.map(|(k, _)| k)
        )));
    }
    let mut f = archive.into_inner();
    f.rewind().map_err(check_failed)?;
    copy_hashed(&mut f, &mut std::io::sink()).map_err(check_failed)
}

/// Writes the local file `from` to storage at `to`, streamed in chunks (never whole in memory),
/// so that `to` never holds a partial artifact: on a file system under a temporary sibling
/// name, then renamed; on an object store straight to `to` in parts (a multipart upload, a
/// block list, a resumable upload), which the store shows only once completed. So a worker's
/// writer credential needs no delete. The lease is checked before the first byte and again
/// before the artifact is put in place.
pub(super) async fn upload(
    ctx: &Arc<TaskContext>,
    from: &Path,
    to: &str,
    total: u64,
) -> Result<(), TaskError> {
    use tokio::io::AsyncReadExt;
    let serr = |e: opendal::Error| TaskError::retryable("writing download artifact").with_source(e);
    let rename = ctx.storage.info().capability().rename;
    let tmp = if rename {
        format!("{to}.partial-{}", uuid::Uuid::now_v7().simple())
    } else {
        to.to_string()
    };
    ctx.lease.may_write().map_err(TaskError::retryable)?;
    let mut f = tokio::fs::File::open(from)
        .await
        .map_err(|e| TaskError::retryable(format!("reading {}", from.display())).with_source(e))?;
    let result = async {
        let mut w = ctx
            .storage
            .writer_with(&tmp)
            .chunk(repovault_common::storage::MULTIPART_PART_SIZE)
            .concurrent(repovault_common::storage::MULTIPART_CONCURRENCY)
            .await
            .map_err(serr)?;
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                let k = f.read(&mut buf[filled..]).await.map_err(|e| {
                    TaskError::retryable(format!("reading {}", from.display())).with_source(e)
                })?;
                if k == 0 {
                    break;
                }
                filled += k;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            w.write(buf).await.map_err(serr)?;
            sent += filled as u64;
            ctx.progress.update_bytes(sent, total);
        }
        if !rename {
            // The completion is the moment the artifact appears: only while the lease holds.
            ctx.lease.may_write().map_err(TaskError::retryable)?;
            return w.close().await.map(|_| ()).map_err(serr);
        }
        w.close().await.map_err(serr)?;
        ctx.lease.may_write().map_err(TaskError::retryable)?;
        ctx.storage.rename(&tmp, to).await.map_err(serr)
    }
    .await;
    if result.is_err() && rename {
        let _ = ctx.storage.delete(&tmp).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_zip_checks_and_a_corrupted_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("code.git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(root.join("meta")).expect("mkdir");
        std::fs::write(root.join("code.git/HEAD"), b"ref: refs/heads/main\n").expect("write");
        std::fs::write(root.join("meta/issues.json"), b"[{\"n\":1}]".repeat(100)).expect("write");
        std::fs::write(root.join("manifest.json"), b"{}").expect("write");
        let out = dir.path().join("x.zip");
        let head = Listing {
            format_version: 1,
            restore_id: "s0190c3b2a1f27c3e8d4b5a6978fedcba".parse().expect("id"),
            backup_id: "rk2j9x0a1b2c-lq3k9x2fab1".parse().expect("id"),
            snapshot_id: "ab".repeat(32).parse().expect("id"),
            repo: "o/r".into(),
            entries: Vec::new(),
        };
        let listing = build_zip(&root, &out, head, &|_, _, _| {}).expect("zip");
        let paths: Vec<_> = listing.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["code.git/HEAD", "manifest.json", "meta/issues.json"]
        );
        let (n, sha) = check_zip(&out, &listing).expect("checks");
        let bytes = std::fs::read(&out).expect("read");
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&bytes)));
        let mut a = zip::ZipArchive::new(std::fs::File::open(&out).expect("open")).expect("zip");
        assert!(
            a.by_name("code.git/refs/heads/")
                .expect("dir entry")
                .is_dir()
        );
        assert_eq!(
            a.by_name("meta/issues.json").expect("json").compression(),
            CompressionMethod::Deflated
        );
        assert_eq!(
            a.by_name("code.git/HEAD").expect("head").compression(),
            CompressionMethod::Stored
        );
        drop(a);

        // A listing that does not match the entries is refused.
        let mut other = listing.clone();
        other.entries[0].sha256 = "0".repeat(64);
        assert!(check_zip(&out, &other).is_err());
        // Flipping a byte of the stored HEAD entry breaks its CRC.
        let mut corrupt = bytes.clone();
        let at = bytes
            .windows(b"ref: refs".len())
            .position(|w| w == b"ref: refs")
            .expect("stored HEAD content");
        corrupt[at] ^= 1;
        std::fs::write(&out, corrupt).expect("write");
        let e = check_zip(&out, &listing).expect_err("corrupt");
        assert!(e.message.contains("code.git/HEAD"), "{}", e.message);
    }
}
