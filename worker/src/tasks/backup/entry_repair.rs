//! The backup's cache entry before and during the fetch: the repair of mirrors the last backup
//! found damaged, the seed of an empty entry from the parent snapshot, and the fetch that drops
//! a mirror which is not a repository and clones it afresh.
//!
//! A mirror can be gigabytes: every removal and existence check here runs on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use repovault_common::domain::SnapshotId;
use repovault_common::manifest;
use repovault_common::repo::{RepoError, SnapshotRepo};
use repovault_proto::v1 as pb;

use crate::git::{self, GitError, Remote};
use crate::tasks::{TaskContext, TaskError, blocking, remove_all};
use crate::verify::{Check, Outcome};

/// In a cache entry, beside the mirrors: the last backup found them damaged (its content is
/// git_fsck's finding). The next backup clones them afresh from the source.
const DAMAGED_MARKER: &str = ".mirror-damaged";

/// Phase `repair`: when the entry carries [`DAMAGED_MARKER`], removes its mirrors and the
/// marker so the fetch clones them afresh. Returns whether the entry was repaired.
pub(super) async fn repair(ctx: &TaskContext, entry: &Path) -> Result<bool, TaskError> {
    let marker = entry.join(DAMAGED_MARKER);
    if !tokio::fs::try_exists(&marker).await.unwrap_or(false) {
        return Ok(false);
    }
    ctx.progress.phase(
        "repair",
        "the mirror failed git_fsck at the last backup: cloning it afresh from the source",
    );
    let (code, wiki) = (
        entry.join(manifest::CODE_DIR),
        entry.join(manifest::WIKI_DIR),
    );
    blocking(move || {
        remove_all(&code)?;
        remove_all(&wiki)?;
        std::fs::remove_file(&marker).map_err(|e| {
            TaskError::retryable(format!("removing {}", marker.display())).with_source(e)
        })
    })
    .await?;
    Ok(true)
}

/// Phase `seed`: an entry without a mirror is rebuilt (mirrors and LFS objects) from the parent
/// snapshot before the fetch. `parent` is `None` when there is no parent, or when its mirror
/// failed git_fsck (that damage would be carried on). Never fails the backup on the seed itself:
/// the fetch then takes everything from the source.
pub(super) async fn seed(
    ctx: &TaskContext,
    repo: &Arc<SnapshotRepo>,
    entry: &Path,
    parent: Option<&SnapshotId>,
) -> Result<(), TaskError> {
    let Some(parent) = parent else {
        return Ok(());
    };
    let head = entry.join(manifest::CODE_DIR).join("HEAD");
    if tokio::fs::try_exists(&head).await.unwrap_or(false) {
        return Ok(());
    }
    ctx.progress
        .phase("seed", "rebuilding the mirror from the latest snapshot");
    let (repo, parent, entry) = (repo.clone(), parent.clone(), entry.to_owned());
    let seeded = blocking(move || {
        let mut outcome = Ok(());
        for dir in [manifest::CODE_DIR, manifest::WIKI_DIR, "lfs"] {
            let dest = entry.join(dir);
            remove_all(&dest)?;
            match repo.restore(parent.as_str(), dir, &dest) {
                Ok(_) | Err(RepoError::PathNotFound { .. }) => {}
                Err(e) => outcome = Err(e),
            }
        }
        Ok(outcome)
    })
    .await?;
    if let Err(e) = seeded {
        tracing::warn!(error = %e, "could not seed the cache from the parent snapshot");
    }
    Ok(())
}

/// Mirrors the lease's source into `code`. A mirror that is not a repository (a damaged cache
/// entry) is dropped and cloned afresh; a failure is diagnosed (see [`diagnose`]).
pub(super) async fn fetch(
    ctx: &TaskContext,
    access: &pb::RepoAccess,
    code: PathBuf,
) -> Result<git::FetchOutcome, TaskError> {
    let remote =
        Remote::from_lease(&access.source_url, &access.source_token).with_ca(&access.ca_cert_pem);
    let (progress, interrupt) = (ctx.progress.clone(), ctx.lease.interrupt.clone());
    blocking(move || {
        let report = |p: git::GitProgress| progress.update(p.into());
        match git::mirror(&code, &remote, &report, &interrupt) {
            Ok(o) => Ok(o),
            Err(e @ GitError::NotARepository { .. }) => {
                tracing::warn!(error = %e, "discarding a damaged mirror");
                std::fs::remove_dir_all(&code).map_err(|e| {
                    TaskError::retryable(format!("clearing {}", code.display())).with_source(e)
                })?;
                Ok(git::mirror(&code, &remote, &report, &interrupt)
                    .map_err(|e| diagnose(e, &remote))?)
            }
            Err(e) => Err(diagnose(e, &remote).into()),
        }
    })
    .await
}

/// After a failed git_fsck, writes [`DAMAGED_MARKER`] (holding the finding) into the entry: the
/// next backup repairs the mirror.
pub(super) async fn record_damage(entry: &Path, fsck: &Check) -> Result<(), TaskError> {
    if fsck.result != Outcome::Fail {
        return Ok(());
    }
    let marker = entry.join(DAMAGED_MARKER);
    tokio::fs::write(&marker, fsck.detail.as_bytes())
        .await
        .map_err(|e| TaskError::retryable(format!("writing {}", marker.display())).with_source(e))
}

/// gix sometimes sees only a closed connection where the server said why (git daemon's "access
/// denied or repository not exported" races with its hang-up). Ask the git CLI, which reads the
/// server's message, and keep its verdict when it names the cause.
fn diagnose(e: GitError, remote: &Remote) -> GitError {
    if matches!(
        e,
        GitError::RepositoryNotFound { .. }
            | GitError::Unavailable { .. }
            | GitError::AuthenticationFailed { .. }
            | GitError::InvalidUrl { .. }
            | GitError::Interrupted { .. }
    ) {
        return e;
    }
    let verdict = git::ls_remote(remote);
    tracing::debug!(fetch_error = ?e, ls_remote = ?verdict.as_ref().err(), "diagnosing a fetch failure");
    match verdict {
        Err(
            cause @ (GitError::RepositoryNotFound { .. } | GitError::AuthenticationFailed { .. }),
        ) => cause,
        // git:// has no authentication: a daemon that hangs up on a path it does not serve
        // means the repository is not there (git daemon says nothing more unless started with
        // --informative-errors).
        Err(GitError::Other { detail, .. })
            if remote.url.starts_with("git://") && detail.contains("repository exists") =>
        {
            GitError::RepositoryNotFound {
                url: remote.url.clone(),
                detail: "the git daemon does not serve this repository".into(),
            }
        }
        _ => e,
    }
}
