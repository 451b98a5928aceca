//! Copying a prefix from one storage location to another and proving the copy by reading it
//! back (the plan is `mirror_plan.rs`). Objects stream through in parts; none is held whole.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use opendal::Operator;
use sha2::{Digest, Sha256};

use repovault_common::storage::{MULTIPART_CONCURRENCY, MULTIPART_PART_SIZE};

use super::mirror_plan::{self, MirrorPlan};
use crate::error::{CoreError, CoreResult};

/// What a mirror pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorReport {
    pub copied: u64,
    pub bytes: u64,
    /// Objects at the destination read back and found equal to what they must be.
    pub verified: u64,
}

/// The files under `prefix` (ending in `/`) with their sizes; an absent prefix is empty.
pub async fn listing(op: &Operator, prefix: &str) -> CoreResult<BTreeMap<String, u64>> {
    let entries = match op.list_with(prefix).recursive(true).await {
        Ok(e) => e,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(storage(format!("listing {prefix}"), e)),
    };
    let mut out = BTreeMap::new();
    for e in entries {
        if e.metadata().is_dir() {
            continue;
        }
        let mut size = e.metadata().content_length();
        if size == 0 {
            // Some services list without sizes.
            size = op
                .stat(e.path())
                .await
                .map_err(|err| storage(format!("stat {}", e.path()), err))?
                .content_length();
        }
        out.insert(e.path().to_string(), size);
    }
    Ok(out)
}

/// What a mirror pass takes and proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mirror {
    /// Everything under the prefix (but temporaries), and every object proven afterwards: a
    /// move, after which the source is deleted.
    Everything,
    /// The restic repository only (config, keys, packs, index, snapshots), and only what this
    /// pass copied proven: a second copy, which adds to what earlier passes proved.
    RepositoryAdded,
}

/// Copies what `prefix` holds at `src` and `dst` lacks, then reads back at `dst` and checks
/// each object `how` says: a restic file's SHA-256 against its name, anything else against the
/// source's bytes. Snapshot files are listed before everything else, and only those are
/// copied: a snapshot is written after the packs and index it needs, so each one copied has
/// them in the second listing, even while a backup writes meanwhile. Idempotent and resumable:
/// a second pass copies nothing new. Fails at the first object that does not verify, naming it.
pub async fn mirror(
    src: &Operator,
    dst: &Operator,
    prefix: &str,
    how: Mirror,
) -> CoreResult<MirrorReport> {
    let snapshots = listing(src, &format!("{prefix}snapshots/")).await?;
    let mut source = listing(src, prefix).await?;
    let committed =
        |p: &str| !p.starts_with(&format!("{prefix}snapshots/")) || snapshots.contains_key(p);
    source.retain(|p, _| {
        committed(p) && (how == Mirror::Everything || mirror_plan::is_repository_file(prefix, p))
    });
    let destination = listing(dst, prefix).await?;
    let MirrorPlan { copies, .. } = mirror_plan::plan(prefix, &source, &destination);
    let mut report = MirrorReport::default();
    for c in &copies {
        copy_object(src, dst, &c.path).await?;
        report.copied += 1;
        report.bytes += c.size;
    }
    let copied_now = listing(dst, prefix).await?;
    let copied: std::collections::HashSet<&str> = copies.iter().map(|c| c.path.as_str()).collect();
    let wanted = source.iter().filter(|(p, _)| {
        !mirror_plan::is_temporary(prefix, p)
            && (how == Mirror::Everything || copied.contains(p.as_str()))
    });
    for (path, size) in wanted {
        if copied_now.get(path) != Some(size) {
            return Err(CoreError::Storage(format!(
                "{path}: {} bytes at the destination, {size} at the source",
                copied_now.get(path).copied().unwrap_or(0)
            )));
        }
        let want = match mirror_plan::content_hash(prefix, path) {
            Some(h) => h,
            None => hash(src, path).await?,
        };
        let got = hash(dst, path).await?;
        if got != want {
            return Err(CoreError::Storage(format!(
                "{path} reads back with SHA-256 {got} at the destination, not {want}"
            )));
        }
        report.verified += 1;
    }
    Ok(report)
}

async fn copy_object(src: &Operator, dst: &Operator, path: &str) -> CoreResult<()> {
    let mut stream = read_stream(src, path).await?;
    let mut w = dst
        .writer_with(path)
        .chunk(MULTIPART_PART_SIZE)
        .concurrent(MULTIPART_CONCURRENCY)
        .await
        .map_err(|e| storage(format!("writing {path}"), e))?;
    while let Some(bytes) = stream
        .try_next()
        .await
        .map_err(|e| CoreError::Storage(format!("reading {path}: {e}")))?
    {
        w.write(bytes)
            .await
            .map_err(|e| storage(format!("writing {path}"), e))?;
    }
    w.close()
        .await
        .map_err(|e| storage(format!("writing {path}"), e))?;
    Ok(())
}

/// The SHA-256 (hex) of the object at `path`, read in parts.
async fn hash(op: &Operator, path: &str) -> CoreResult<String> {
    let mut stream = read_stream(op, path).await?;
    let mut h = Sha256::new();
    while let Some(bytes) = stream
        .try_next()
        .await
        .map_err(|e| CoreError::Storage(format!("reading back {path}: {e}")))?
    {
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// The object at `path` as a stream of parts.
async fn read_stream(op: &Operator, path: &str) -> CoreResult<opendal::FuturesBytesStream> {
    let reader = op
        .reader_with(path)
        .chunk(MULTIPART_PART_SIZE)
        .await
        .map_err(|e| storage(format!("reading {path}"), e))?;
    reader
        .into_bytes_stream(..)
        .await
        .map_err(|e| storage(format!("reading {path}"), e))
}

fn storage(what: String, e: opendal::Error) -> CoreError {
    CoreError::Storage(format!("{what}: {e}"))
}
