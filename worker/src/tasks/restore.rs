//! A restore: the snapshot's bare mirror, pushed to a new empty repository, or packed as a tar
//! into storage for the CLI to download.

use std::io::Write;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use repovault_common::manifest::{self, Manifest};
use repovault_common::repo::{RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::git::{self, Remote};

use super::{TaskContext, TaskError, blocking};

pub async fn run(ctx: Arc<TaskContext>, task: pb::Task) -> Result<pb::RestoreResult, TaskError> {
    let access = task
        .repo
        .clone()
        .ok_or_else(|| TaskError::permanent("task carries no repository"))?;
    let spec = task
        .restore
        .clone()
        .ok_or_else(|| TaskError::permanent("task carries no restore spec"))?;
    let work = ctx.scratch.join(format!("restore-{}", spec.restore_id));
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .map_err(|e| TaskError::retryable(format!("clearing {}: {e}", work.display())))?;
    }
    std::fs::create_dir_all(&work)
        .map_err(|e| TaskError::retryable(format!("scratch {}: {e}", work.display())))?;
    let result = restore_in(&ctx, &access, &spec, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn restore_in(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    spec: &pb::RestoreSpec,
    work: &std::path::Path,
) -> Result<pb::RestoreResult, TaskError> {
    ctx.progress.phase(
        "restore",
        format!(
            "reading snapshot {}",
            &spec.snapshot_id[..8.min(spec.snapshot_id.len())]
        ),
    );
    let repo_spec = RepoSpec {
        operator: ctx.storage.clone(),
        path: access.snapshot_path.clone(),
    };
    let password = Secret::new(access.repo_password.clone());
    let master = (!access.master_key.is_empty()).then(|| Secret::new(access.master_key.clone()));
    let code = work.join(manifest::CODE_DIR);
    let snapshot_id = spec.snapshot_id.clone();
    let (code2, progress) = (code.clone(), ctx.progress.clone());
    let manifest = blocking(move || {
        let key = RepoKey::new(&password, master.as_ref());
        let (repo, _) = SnapshotRepo::open(&repo_spec, key, false)?;
        let manifest = Manifest::from_json(&repo.read_file(&snapshot_id, manifest::MANIFEST_FILE)?)
            .map_err(|e| TaskError::permanent(format!("snapshot {snapshot_id}: {e}")))?;
        let summary = repo.restore(&snapshot_id, manifest::CODE_DIR, &code2)?;
        progress.update(summary.bytes, summary.files, summary.bytes);
        Ok(manifest)
    })
    .await?;

    match spec.target.as_str() {
        "new" => {
            ctx.progress.phase(
                "push",
                format!(
                    "pushing {} refs to {}",
                    manifest.refs.len(),
                    spec.target_url
                ),
            );
            let remote = Remote::from_lease(&spec.target_url, &spec.target_token);
            let pushed = blocking(move || Ok(git::push_mirror(&code, &remote)?)).await?;
            ctx.progress
                .phase("done", format!("{} refs pushed", pushed.refs_pushed));
            Ok(pb::RestoreResult {
                refs_pushed: pushed.refs_pushed,
                ..Default::default()
            })
        }
        "download" => {
            ctx.progress.phase("package", "packing the bare repository");
            let tar_path = work.join("download.tar");
            let (code, tar_path2) = (code.clone(), tar_path.clone());
            let (bytes, sha) = blocking(move || pack_tar(&code, &tar_path2)).await?;
            ctx.progress
                .phase("upload", format!("uploading {bytes} bytes"));
            let data = tokio::fs::read(&tar_path).await.map_err(|e| {
                TaskError::retryable(format!("reading {}: {e}", tar_path.display()))
            })?;
            ctx.lease.may_write().map_err(TaskError::retryable)?;
            ctx.storage
                .write(&spec.artifact_path, data)
                .await
                .map_err(|e| TaskError::retryable(format!("writing download artifact: {e}")))?;
            ctx.progress
                .phase("done", format!("{bytes} bytes ready for download"));
            Ok(pb::RestoreResult {
                artifact_path: spec.artifact_path.clone(),
                artifact_bytes: bytes,
                artifact_sha256: sha,
                ..Default::default()
            })
        }
        other => Err(TaskError::permanent(format!(
            "restore target {other:?} is not supported by this worker"
        ))),
    }
}

/// Writes a tar of `dir` (entries under `code.git/`) and returns its size and SHA-256.
fn pack_tar(dir: &std::path::Path, out: &std::path::Path) -> Result<(u64, String), TaskError> {
    let io = |e: std::io::Error| TaskError::retryable(format!("packing download: {e}"));
    struct Hashing<W> {
        inner: W,
        hash: Sha256,
        n: u64,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hash.update(&buf[..n]);
            self.n += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let f = std::fs::File::create(out).map_err(io)?;
    let mut w = Hashing {
        inner: std::io::BufWriter::new(f),
        hash: Sha256::new(),
        n: 0,
    };
    {
        let mut b = tar::Builder::new(&mut w);
        b.follow_symlinks(false);
        b.append_dir_all(manifest::CODE_DIR, dir).map_err(io)?;
        b.finish().map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok((w.n, hex::encode(w.hash.finalize())))
}
