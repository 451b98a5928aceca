//! A restore: the snapshot's bare mirror pushed to a new empty plain git repository, or packed
//! as a tar into storage for the CLI to download; forge restores (GitHub: `full_repo` to `new`
//! or `original`, `issues_only`, `wiki_only`, `releases_only`) are in
//! [`super::restore_forge`], `download_zip` in [`super::zip`].

use std::io::Write;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use repovault_common::domain::{Provider, RestoreTarget, RestoreType};
use repovault_common::manifest::{self, Manifest};
use repovault_common::repo::{ByteProgress, RepoError, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::git::{self, Remote};

use super::leased::RestoreWork;
use super::{TaskContext, TaskError, blocking};

pub async fn run(
    ctx: Arc<TaskContext>,
    access: pb::RepoAccess,
    work: RestoreWork,
) -> Result<pb::RestoreResult, TaskError> {
    let spec = &work.spec;
    // A local target only under the allowed roots, checked before the snapshot is read.
    if !spec.target_url.is_empty() {
        ctx.check_local_url(&spec.target_url).await?;
    }
    let scratch = super::fresh_scratch(&ctx, &format!("restore-{}", work.restore_id)).await?;
    let result = restore_in(&ctx, &access, &work, &scratch).await;
    super::discard_scratch(scratch).await;
    result
}

/// Opens the lease's snapshot repository (the coordinator created it; the key is the lease's).
pub(super) async fn open_snapshot_repo(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
) -> Result<Arc<SnapshotRepo>, TaskError> {
    let repo_spec = RepoSpec {
        operator: ctx.storage.clone(),
        path: access.snapshot_path.clone(),
    };
    let password = Secret::new(access.repo_password.clone());
    let master = (!access.master_key.is_empty()).then(|| Secret::new(access.master_key.clone()));
    blocking(move || {
        let key = RepoKey::new(&password, master.as_ref());
        let (repo, _) = SnapshotRepo::open(&repo_spec, key, false)?;
        Ok(Arc::new(repo))
    })
    .await
}

/// Routes a restore: a ZIP; a bare repository pushed to a plain git URL or packed as a tar (here);
/// everything that writes into a forge repository (`restore_forge`). The combination was checked
/// when the lease was decoded.
async fn restore_in(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    restore: &RestoreWork,
    work: &std::path::Path,
) -> Result<pb::RestoreResult, TaskError> {
    let spec = &restore.spec;
    match (restore.restore_type(), restore.target()) {
        (RestoreType::DownloadZip, _) => return super::zip::run(ctx, access, restore, work).await,
        (RestoreType::FullRepo, RestoreTarget::Download) => {}
        (RestoreType::FullRepo, RestoreTarget::New)
            if !restore.target_provider.is_some_and(Provider::is_forge) => {}
        _ => return super::restore_forge::run(ctx, access, restore, work).await,
    }
    ctx.progress.phase(
        "restore",
        format!("reading snapshot {}", restore.snapshot_id.short()),
    );
    let repo = open_snapshot_repo(ctx, access).await?;
    let code = work.join(manifest::CODE_DIR);
    let snapshot_id = restore.snapshot_id.clone();
    let (code2, progress, interrupt) = (
        code.clone(),
        ctx.progress.clone(),
        ctx.lease.interrupt.clone(),
    );
    let manifest = blocking(move || {
        let snapshot = snapshot_id.as_str();
        let manifest = Manifest::from_json(&repo.read_file(snapshot, manifest::MANIFEST_FILE)?)
            .map_err(|e| TaskError::permanent(format!("snapshot {snapshot_id}")).with_source(e))?;
        let report: ByteProgress = Arc::new(move |done, total| progress.update_bytes(done, total));
        repo.restore_reporting(snapshot, manifest::CODE_DIR, &code2, report)
            .map_err(|e| restore_failure(&repo, snapshot, e, &interrupt))?;
        Ok(manifest)
    })
    .await?;

    match restore.target() {
        RestoreTarget::New => {
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
                summary: format!("{} refs pushed", pushed.refs_pushed),
                ..Default::default()
            })
        }
        _ => {
            ctx.progress.phase("package", "packing the bare repository");
            let tar_path = work.join("download.tar");
            let (code, tar_path2) = (code.clone(), tar_path.clone());
            let (bytes, sha) = blocking(move || pack_tar(&code, &tar_path2)).await?;
            ctx.progress
                .phase("upload", format!("uploading {bytes} bytes"));
            super::zip::upload(ctx, &tar_path, &spec.artifact_path, bytes).await?;
            ctx.progress
                .phase("done", format!("{bytes} bytes ready for download"));
            Ok(pb::RestoreResult {
                artifact_path: spec.artifact_path.clone(),
                artifact_bytes: bytes,
                artifact_sha256: sha,
                summary: format!("{bytes} bytes ready for download"),
                ..Default::default()
            })
        }
    }
}

/// Writes a tar of `dir` (entries under `code.git/`) and returns its size and SHA-256.
fn pack_tar(dir: &std::path::Path, out: &std::path::Path) -> Result<(u64, String), TaskError> {
    let io = |e: std::io::Error| TaskError::retryable("packing download").with_source(e);
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

/// A restore out of the snapshot failed. When the error is about the stored data, every pack
/// the snapshot references is read back to find (and take out) the damaged ones, and the
/// failure names them and carries them to the coordinator; such a failure is not retried (the
/// data will not heal). Blocking.
pub(crate) fn restore_failure(
    repo: &SnapshotRepo,
    snapshot_id: &str,
    e: RepoError,
    interrupt: &std::sync::atomic::AtomicBool,
) -> TaskError {
    if !crate::verify::archive::is_data_error(&e) {
        return e.into();
    }
    let how = crate::verify::archive::Reading {
        now_ms: chrono::Utc::now().timestamp_millis(),
        progress: &|_, _| {},
        interrupt,
    };
    let damage = crate::verify::archive::diagnose(repo, snapshot_id, &how);
    let mut err = TaskError::from(e);
    if let Some(d) = damage {
        err.message = format!(
            "{}; reading the snapshot back found damaged packs: {}",
            err.message,
            d.lines.join("; ")
        );
        err.retryable = false;
        err.damage = Some(d);
    }
    err
}
