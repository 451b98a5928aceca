//! The forge's part of a backup: the LFS objects, the metadata export, the wiki and the default
//! branch's commit count, through the forge seam (`repovault_common::forge::Forge`).
//!
//! The metadata export writes into a staging directory (`.export/`) and is swapped into place
//! only when it returned; a failed export leaves the previous export in the entry. An
//! incremental export carries unchanged documents over from the entry, and only when the entry
//! holds exactly the parent backup's export (its `manifest.json` names the parent backup);
//! otherwise the parent's export is restored from the parent snapshot first, and without one the
//! export is full.
//!

use std::path::{Path, PathBuf};
use std::sync::Arc;

use repovault_common::domain::{BackupId, Provider, SnapshotId};
use repovault_common::forge::{Cursors, ExportMode, ExportReport};
use repovault_common::manifest::{self, BranchCount, ComponentStatus, Manifest};
use repovault_common::repo::SnapshotRepo;
use repovault_proto::v1 as pb;

use crate::git::{self, GitError, Remote};
use crate::tasks::{TaskContext, TaskError, blocking, remove_all};

/// The cursors of the parent backup's export (`parent_backup_id`, stored as
/// `parent_snapshot_id`), with its documents in place in `entry`; `None` when the parent holds
/// no export to resume from (the export is then full). Never fails: a
/// parent that cannot be read only costs a full export.
pub(super) async fn previous_export(
    ctx: &TaskContext,
    repo: &Arc<SnapshotRepo>,
    entry: &Path,
    parent_backup_id: &BackupId,
    parent_snapshot_id: &SnapshotId,
) -> Option<Cursors> {
    // The entry's own export is the parent's when its manifest says so: a backup that failed
    // after writing its manifest names another backup, and is never resumed from.
    if let Ok(bytes) = tokio::fs::read(entry.join(manifest::MANIFEST_FILE)).await
        && let Ok(m) = Manifest::from_json(&bytes)
        && m.backup_id == *parent_backup_id
        && let Some(state) = m.export
        && tokio::fs::metadata(entry.join("meta"))
            .await
            .is_ok_and(|m| m.is_dir())
    {
        return Some(state.cursors);
    }
    ctx.progress.phase(
        "seed",
        "restoring the previous metadata export from the latest snapshot",
    );
    let (repo, parent, entry) = (
        repo.clone(),
        parent_snapshot_id.clone(),
        entry.to_path_buf(),
    );
    let restored = blocking(move || {
        let bytes = repo.read_file(parent.as_str(), manifest::MANIFEST_FILE)?;
        let m = Manifest::from_json(&bytes)
            .map_err(|e| TaskError::retryable("parent manifest").with_source(e))?;
        let Some(state) = m.export else {
            return Ok(None);
        };
        for dir in manifest::EXPORT_DIRS {
            let dest = entry.join(dir);
            remove_all(&dest)?;
            if let Err(e) = repo.restore(parent.as_str(), dir, &dest) {
                if dir == "meta" {
                    return Err(e.into());
                }
                // releases/ and attachments/ exist only when something was exported.
                tracing::debug!(dir, error = %e, "parent snapshot has no such directory");
            }
        }
        Ok(Some(state.cursors))
    })
    .await;
    match restored {
        Ok(cursors) => cursors,
        // A full export replaces every export directory, whatever this left behind.
        Err(e) => {
            tracing::warn!(error = %e, "could not restore the parent's export: exporting in full");
            None
        }
    }
}

/// Phase `export`: exports the repository's metadata into `entry/.export/`, then swaps each
/// export directory into place. `resume`: the parent's cursors, its documents being in `entry`.
///
/// Fails only when the repository itself cannot be read (404, 451, ...: permanent) or the
/// export could not be written; each component's own refusal or failure is in the report.
pub(super) async fn export(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    provider: Provider,
    entry: &Path,
    resume: Option<Cursors>,
) -> Result<ExportReport, TaskError> {
    let forge = crate::forge::source_forge(ctx, access, provider)
        .map_err(|e| crate::forge::task_failure("the source's forge", e))?;
    let staging = entry.join(".export");
    clear(staging.clone()).await?;
    ctx.progress.phase(
        "export",
        format!(
            "exporting issues, pull requests, releases and settings ({})",
            if resume.is_some() {
                "changes since the last backup"
            } else {
                "everything"
            }
        ),
    );
    let previous = resume.is_some().then_some(entry);
    let mode = match resume {
        Some(cursors) => ExportMode::Incremental { cursors },
        None => ExportMode::Full,
    };
    let report = forge
        .export_metadata(
            &access.org_name,
            &access.repo_name,
            &staging,
            previous,
            mode,
        )
        .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            clear(staging).await?;
            let context = format!("repository {}/{}", access.org_name, access.repo_name);
            return Err(crate::forge::task_failure(&context, e));
        }
    };
    let entry = entry.to_owned();
    blocking(move || swap_into_place(&staging, &entry)).await?;
    tracing::info!(
        requests = report.requests,
        issues = report.counts.issues,
        pulls = report.counts.pulls,
        "metadata exported"
    );
    Ok(report)
}

/// Removes a directory tree, on the blocking pool.
async fn clear(dir: PathBuf) -> Result<(), TaskError> {
    blocking(move || remove_all(&dir)).await
}

/// Replaces each export directory of `entry` by the one in `staging` (a directory the export
/// did not write is removed), then removes `staging`. Blocking.
fn swap_into_place(staging: &Path, entry: &Path) -> Result<(), TaskError> {
    for dir in manifest::EXPORT_DIRS {
        let (from, to) = (staging.join(dir), entry.join(dir));
        remove_all(&to)?;
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|e| {
                TaskError::retryable(format!("moving {} to {}", from.display(), to.display()))
                    .with_source(e)
            })?;
        }
    }
    remove_all(staging)
}

/// Whether the exported `meta/repo.json` says the wiki is enabled; `None`: it does not say.
async fn wiki_enabled(entry: &Path) -> Option<bool> {
    tokio::fs::read(entry.join("meta/repo.json"))
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("has_wiki").and_then(serde_json::Value::as_bool))
}

/// Phase `wiki`: mirrors the wiki into `entry/wiki.git` when the repository has one. Returns
/// the component's status and the page count. GitHub answers "not found" for the wiki of a
/// repository whose wiki is enabled but has no page yet: that is an empty wiki, included.
pub(super) async fn wiki(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    entry: &Path,
) -> (ComponentStatus, u64) {
    let dir = entry.join(manifest::WIKI_DIR);
    match wiki_enabled(entry).await {
        Some(true) => {}
        Some(false) => {
            if let Err(e) = clear(dir).await {
                return (ComponentStatus::failed(e.message), 0);
            }
            return (
                ComponentStatus::included(Some("the wiki is disabled on the repository".into())),
                0,
            );
        }
        None => {
            return (
                ComponentStatus::failed("meta/repo.json does not say whether the wiki is enabled"),
                0,
            );
        }
    }
    let url = match access.source_url.strip_suffix(".git") {
        Some(base) => format!("{base}.wiki.git"),
        None => format!("{}.wiki.git", access.source_url),
    };
    ctx.progress.phase("wiki", format!("fetching {url}"));
    // The lease's token may have been replaced (an installation token near its expiry).
    let token = ctx.forge.source_token().await;
    let remote = Remote::from_lease(&url, token.expose()).with_ca(&access.ca_cert_pem);
    let interrupt = ctx.lease.interrupt.clone();
    let result = blocking(move || {
        let outcome = git::mirror(&dir, &remote, &|_| {}, &interrupt);
        Ok(match outcome {
            Ok(_) => git::files_at_head(&dir).map(Some),
            Err(GitError::RepositoryNotFound { .. }) => {
                remove_all(&dir)?;
                Ok(None)
            }
            Err(e) => Err(e),
        })
    })
    .await;
    match result {
        Ok(Ok(Some(pages))) => (ComponentStatus::included(None), pages),
        Ok(Ok(None)) => (
            ComponentStatus::included(Some("the wiki is enabled and has no pages".into())),
            0,
        ),
        Ok(Err(e)) => (ComponentStatus::failed(format!("wiki: {e}")), 0),
        Err(e) => (ComponentStatus::failed(format!("wiki: {}", e.message)), 0),
    }
}

/// Phase `lfs`: fetches the LFS objects the mirror's pointers name into `entry/lfs/objects`
/// (those already there and valid are kept). Returns the component's status and the objects
/// held. A refusal of the batch endpoint skips the component with the reason; objects the
/// server does not have are named in the note (the backup holds all the server has); an
/// interruption fails the task.
pub(super) async fn lfs(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    entry: &Path,
) -> Result<(ComponentStatus, u64), TaskError> {
    use crate::lfs::{LfsError, LfsSource};
    ctx.progress.phase("lfs", "fetching LFS objects");
    let source = LfsSource {
        repo_url: access.source_url.clone(),
        // The lease's token may have been replaced (an installation token near its expiry).
        token: Some(ctx.forge.source_token().await).filter(|t| !t.expose().is_empty()),
        ca_cert_pem: (!access.ca_cert_pem.is_empty()).then(|| access.ca_cert_pem.clone()),
    };
    let progress = ctx.progress.clone();
    let report = crate::lfs::fetch(
        &entry.join(manifest::CODE_DIR),
        &entry.join(manifest::LFS_DIR),
        &source,
        &ctx.lease.interrupt,
        move |_objects, bytes, total| progress.update_bytes(bytes, total),
    )
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e @ LfsError::Interrupted) => {
            return Err(
                TaskError::retryable("interrupted while fetching LFS objects").with_source(e),
            );
        }
        Err(e @ LfsError::Unauthorized { .. }) => {
            return Ok((
                ComponentStatus::skipped(format!("token lacks contents: read ({e})")),
                0,
            ));
        }
        Err(e) => return Ok((ComponentStatus::failed(e.to_string()), 0)),
    };
    let held = report.pointers - report.missing.len() as u64;
    let status = if report.missing.is_empty() {
        ComponentStatus::included(None)
    } else {
        let shown: Vec<String> = report
            .missing
            .iter()
            .take(5)
            .map(|(oid, why)| format!("{oid} ({why})"))
            .collect();
        ComponentStatus::included(Some(format!(
            "the server does not have {} of {} objects the history names: {}{}",
            report.missing.len(),
            report.pointers,
            shown.join(", "),
            if report.missing.len() > 5 {
                ", ..."
            } else {
                ""
            }
        )))
    };
    tracing::info!(
        objects = report.pointers,
        fetched = report.fetched,
        reused = report.reused,
        bytes = report.bytes_fetched,
        "LFS objects fetched"
    );
    Ok((status, held))
}

/// The forge's commit count of the default branch's advertised tip, for `commit_count_match`.
/// Reused from the previous manifest when the tip did not move (no request); `None` when the
/// forge does not say or cannot be asked (the check then compares the tips alone, and says so).
pub(super) async fn default_branch_count(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    provider: Provider,
    fetched: &git::FetchOutcome,
    previous: Option<&Manifest>,
) -> Option<BranchCount> {
    let branch = fetched.inventory.head.clone()?;
    let oid = fetched.advertised.get(&branch)?.clone();
    if let Some(bc) = previous
        .and_then(|m| m.source_state.as_ref())
        .and_then(|s| s.default_branch.as_ref())
        .filter(|bc| bc.branch == branch && bc.oid == oid)
    {
        return Some(bc.clone());
    }
    let forge = match crate::forge::source_forge(ctx, access, provider) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "no forge client for the commit count");
            return None;
        }
    };
    match forge
        .commit_count(&access.org_name, &access.repo_name, &oid)
        .await
    {
        Ok(Some(commits)) => Some(BranchCount {
            branch,
            oid,
            commits,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the forge's commit count could not be read");
            None
        }
    }
}
