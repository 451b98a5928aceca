//! What repovault relies on from a storage kind, as one suite every kind passes: the unit tests
//! run it on `fs` and `memory`, the end-to-end tests on S3 (moto), Azure Blob (Azurite) and GCS
//! (the emulator). A new kind is done when this passes against a real server of that kind.
//!
//! Each check works under its own `scratch` prefix and removes what it wrote, so the suite can
//! run against a bucket that holds real data.

use std::time::Duration;

use opendal::{ErrorKind, Operator};

use super::{MULTIPART_CONCURRENCY, MULTIPART_PART_SIZE};

/// What a server under test is known not to do, each named so the gap stays visible where the
/// suite runs. Real services have none.
#[derive(Clone, Copy, Debug, Default)]
pub struct KnownGaps {
    /// The server accepts a create-if-absent over an existing object (fake-gcs-server 1.54
    /// ignores `ifGenerationMatch=0` on uploads): the refusal is not checked, the create of a new
    /// object still is.
    pub ignores_conditional_create: bool,
}

/// Runs every check under `scratch/`, stopping at the first that fails with what was expected
/// and what happened. `large` is the size of the multipart upload to try: at least
/// [`MULTIPART_PART_SIZE`] plus one byte makes a two-part upload.
pub async fn run(
    op: &Operator,
    scratch: &str,
    large: usize,
    gaps: KnownGaps,
) -> Result<(), String> {
    let dir = format!("{}/", scratch.trim_matches('/'));
    let result = checks(op, &dir, large, gaps).await;
    let _ = op.delete_with(&dir).recursive(true).await;
    result
}

async fn checks(op: &Operator, dir: &str, large: usize, gaps: KnownGaps) -> Result<(), String> {
    write_read_stat(op, dir).await?;
    listing(op, dir).await?;
    conditional_create(op, dir, gaps).await?;
    multipart(op, dir, large).await?;
    deletion(op, dir).await?;
    presign(op, dir).await
}

fn fail(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

async fn write_read_stat(op: &Operator, dir: &str) -> Result<(), String> {
    let path = format!("{dir}a/object");
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    op.write(&path, body.clone())
        .await
        .map_err(|e| fail("write", e))?;
    let read = op.read(&path).await.map_err(|e| fail("read", e))?.to_vec();
    if read != body {
        return Err(format!(
            "read back {} bytes unlike the {} written",
            read.len(),
            body.len()
        ));
    }
    let part = op
        .read_with(&path)
        .range(100..200)
        .await
        .map_err(|e| fail("ranged read", e))?
        .to_vec();
    if part != body[100..200] {
        return Err("a ranged read returned other bytes than the range".into());
    }
    let meta = op.stat(&path).await.map_err(|e| fail("stat", e))?;
    if meta.content_length() != body.len() as u64 {
        return Err(format!(
            "stat says {} bytes, {} were written",
            meta.content_length(),
            body.len()
        ));
    }
    match op.stat(&format!("{dir}a/missing")).await {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => Err(format!(
            "stat of a missing object: expected NotFound, got {other:?}"
        )),
    }
}

async fn listing(op: &Operator, dir: &str) -> Result<(), String> {
    let names = ["l/x/1", "l/x/2", "l/y/3", "l/z"];
    for n in names {
        op.write(&format!("{dir}{n}"), n.as_bytes().to_vec())
            .await
            .map_err(|e| fail("write for listing", e))?;
    }
    let mut deep: Vec<String> = op
        .list_with(&format!("{dir}l/"))
        .recursive(true)
        .await
        .map_err(|e| fail("recursive list", e))?
        .into_iter()
        .filter(|e| !e.metadata().is_dir())
        .map(|e| e.path().trim_start_matches(dir).to_string())
        .collect();
    deep.sort();
    if deep != names {
        return Err(format!(
            "a recursive list found {deep:?}, expected {names:?}"
        ));
    }
    let mut shallow: Vec<String> = op
        .list(&format!("{dir}l/"))
        .await
        .map_err(|e| fail("list", e))?
        .into_iter()
        .map(|e| e.path().trim_start_matches(dir).to_string())
        .filter(|p| p != "l/")
        .collect();
    shallow.sort();
    let expected = ["l/x/", "l/y/", "l/z"];
    if shallow != expected {
        return Err(format!(
            "a one-level list found {shallow:?}, expected {expected:?}"
        ));
    }
    Ok(())
}

/// A create that must not replace: repository files are named by their content, and a worker
/// that may not overwrite relies on it.
async fn conditional_create(op: &Operator, dir: &str, gaps: KnownGaps) -> Result<(), String> {
    if !op.info().capability().write_with_if_not_exists {
        return Ok(());
    }
    let path = format!("{dir}c/once");
    op.write_with(&path, "first")
        .if_not_exists(true)
        .await
        .map_err(|e| fail("conditional create of a new object", e))?;
    if gaps.ignores_conditional_create {
        return Ok(());
    }
    match op.write_with(&path, "second").if_not_exists(true).await {
        Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {}
        other => {
            return Err(format!(
                "a conditional create over an existing object: expected ConditionNotMatch, got {other:?}"
            ));
        }
    }
    let kept = op.read(&path).await.map_err(|e| fail("read", e))?.to_vec();
    if kept != b"first" {
        return Err("a refused conditional create replaced the object".into());
    }
    Ok(())
}

/// A large upload in parts, made as the snapshot repository makes them: create-if-absent where
/// the service can (on GCS that is a resumable upload, otherwise the XML multipart API).
async fn multipart(op: &Operator, dir: &str, large: usize) -> Result<(), String> {
    let path = format!("{dir}m/large");
    let body: Vec<u8> = (0..large).map(|i| (i % 251) as u8).collect();
    let mut w = op
        .writer_with(&path)
        .chunk(MULTIPART_PART_SIZE)
        .concurrent(MULTIPART_CONCURRENCY)
        .if_not_exists(op.info().capability().write_with_if_not_exists)
        .await
        .map_err(|e| fail("start a multipart upload", e))?;
    // Written in uneven pieces: the writer, not the caller, cuts the parts.
    for piece in body.chunks(3 * 1024 * 1024 + 7) {
        w.write(piece.to_vec())
            .await
            .map_err(|e| fail("multipart upload", e))?;
    }
    w.close()
        .await
        .map_err(|e| fail("complete a multipart upload", e))?;
    let meta = op.stat(&path).await.map_err(|e| fail("stat", e))?;
    if meta.content_length() != large as u64 {
        return Err(format!(
            "a multipart upload stored {} of {large} bytes",
            meta.content_length()
        ));
    }
    let tail = op
        .read_with(&path)
        .range((large as u64 - 1000)..large as u64)
        .await
        .map_err(|e| fail("read the end of a multipart upload", e))?
        .to_vec();
    if tail != body[large - 1000..] {
        return Err("the end of a multipart upload reads back wrong".into());
    }
    Ok(())
}

async fn deletion(op: &Operator, dir: &str) -> Result<(), String> {
    let path = format!("{dir}d/gone");
    op.write(&path, "x").await.map_err(|e| fail("write", e))?;
    op.delete(&path).await.map_err(|e| fail("delete", e))?;
    if op.exists(&path).await.map_err(|e| fail("exists", e))? {
        return Err("a deleted object is still there".into());
    }
    // Deleting what is gone succeeds: removal is idempotent.
    op.delete(&path)
        .await
        .map_err(|e| fail("delete of a missing object", e))
}

/// A presigned read fetches exactly the object with no credentials, where the kind presigns.
async fn presign(op: &Operator, dir: &str) -> Result<(), String> {
    if !op.info().capability().presign_read {
        return Ok(());
    }
    let path = format!("{dir}p/link");
    op.write(&path, "presigned")
        .await
        .map_err(|e| fail("write", e))?;
    let req = op
        .presign_read(&path, Duration::from_secs(300))
        .await
        .map_err(|e| fail("presign a read", e))?;
    let mut get = reqwest::Client::new().get(req.uri().to_string());
    for (name, value) in req.header() {
        get = get.header(name, value);
    }
    let resp = get
        .send()
        .await
        .map_err(|e| fail("fetch a presigned link", e))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| fail("read a presigned link", e))?;
    if !status.is_success() || body.as_ref() != b"presigned" {
        return Err(format!(
            "a presigned link answered {status} with {} bytes",
            body.len()
        ));
    }
    Ok(())
}
