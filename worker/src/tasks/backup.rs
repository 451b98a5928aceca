//! A backup: mirror the source into the cache, export the forge's metadata (GitHub), write the
//! manifest, snapshot the tree.
//!
//! The tree of a snapshot is the cache entry itself (`<cache>/<repo-id>/` holding `code.git/`,
//! `manifest.json` and, for GitHub, `wiki.git/`, `lfs/objects/`, `meta/`, `releases/`,
//! `attachments/`): nothing is copied, and because the mirror is never repacked between backups,
//! a fetch adds one pack and leaves the others byte-identical, so the snapshot of an unchanged
//! repository stores almost nothing.
//!
//! The metadata export writes into a staging directory (`.export/`) and is swapped into place
//! only when it returned; a failed export leaves the previous export in the entry. An
//! incremental export carries unchanged documents over from the entry, and only when the entry
//! holds exactly the parent backup's export (its `manifest.json` names the parent backup);
//! otherwise the parent's export is restored from the parent snapshot first, and without one the
//! export is full.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::path::Path;

use repovault_common::domain::{BackupType, Provider};
use repovault_common::forge::github::{Cursors, ExportMode, ExportReport, ForgeError, export_repo};
use repovault_common::manifest::{
    self, BranchCount, ComponentStatus, Counts, ExportState, Manifest, ManifestSource, SourceState,
};
use repovault_common::repo::{BackupRequest, RepoError, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::git::{self, GitError, Remote};

use super::leased::BackupWork;
use super::{TaskContext, TaskError, blocking, remove_all};

pub async fn run(
    ctx: Arc<TaskContext>,
    access: pb::RepoAccess,
    provider: Provider,
    work: BackupWork,
) -> Result<pb::BackupResult, TaskError> {
    let BackupWork {
        spec,
        backup_type,
        trigger,
    } = work;
    let lease = ctx.lease.token.clone();
    // A local source only under the allowed roots, never the worker's own directories; the
    // wiki's URL derives from this one.
    ctx.check_local_url(&access.source_url).await?;
    let guard = ctx
        .cache
        .acquire(&access.repo_id)
        .await
        .map_err(|e| TaskError::retryable(format!("mirror cache: {e}")))?;
    let entry = guard.dir.clone();
    let code = entry.join(manifest::CODE_DIR);
    let repo_spec = RepoSpec {
        operator: ctx.storage.clone(),
        path: access.snapshot_path.clone(),
    };
    let password = Secret::new(access.repo_password.clone());
    let master = (!access.master_key.is_empty()).then(|| Secret::new(access.master_key.clone()));

    // Open the snapshot repository first (the coordinator created it): a wrong key fails before
    // any fetch.
    ctx.progress
        .phase("open", "opening the snapshot repository");
    let (repo, master_now) = {
        let spec = repo_spec.clone();
        let (password, master) = (password.clone(), master.clone());
        blocking(move || {
            let key = RepoKey::new(&password, master.as_ref());
            Ok(SnapshotRepo::open(&spec, key, false)?)
        })
        .await?
    };
    let repo = Arc::new(repo);

    // The last backup found this entry's mirrors damaged (git_fsck failed; that backup says
    // so): fetching into them would carry the damage on, and so would the parent snapshot.
    // They are cloned afresh from the source.
    let damaged = entry.join(DAMAGED_MARKER);
    let repair = damaged.exists();
    if repair {
        ctx.progress.phase(
            "repair",
            "the mirror failed git_fsck at the last backup: cloning it afresh from the source",
        );
        // Mirrors of gigabytes: removed on the blocking pool.
        let (code, wiki, marker) = (
            code.clone(),
            entry.join(manifest::WIKI_DIR),
            damaged.clone(),
        );
        blocking(move || {
            remove_all(&code)?;
            remove_all(&wiki)?;
            std::fs::remove_file(&marker)
                .map_err(|e| TaskError::retryable(format!("removing {}: {e}", marker.display())))
        })
        .await?;
    }

    // A worker without the cache rebuilds the mirrors and LFS objects from the latest snapshot
    // before fetching: object storage has no rate limit, the source may. Not from a snapshot
    // whose mirror failed git_fsck: that damage would be carried on.
    if !repair
        && !spec.parent_mirror_damaged
        && !code.join("HEAD").exists()
        && !spec.parent_snapshot_id.is_empty()
    {
        ctx.progress
            .phase("seed", "rebuilding the mirror from the latest snapshot");
        let (repo, parent, entry) = (repo.clone(), spec.parent_snapshot_id.clone(), entry.clone());
        let seeded = blocking(move || {
            let mut outcome = Ok(());
            for dir in [manifest::CODE_DIR, manifest::WIKI_DIR, "lfs"] {
                let dest = entry.join(dir);
                remove_all(&dest)?;
                match repo.restore(&parent, dir, &dest) {
                    Ok(_) | Err(RepoError::PathNotFound { .. }) => {}
                    Err(e) => outcome = Err(e),
                }
            }
            Ok(outcome)
        })
        .await?;
        if let Err(e) = seeded {
            // Not fatal: the fetches below then take everything from the source.
            tracing::warn!(error = %e, "could not seed the cache from the parent snapshot");
        }
    }

    // The entry's manifest as the last backup left it: its source figures are reused when the
    // source did not move (a commit count never changes for the same commit).
    let previous_manifest = tokio::fs::read(entry.join(manifest::MANIFEST_FILE))
        .await
        .ok()
        .and_then(|b| Manifest::from_json(&b).ok());
    let github = provider == Provider::Github;
    // Where an incremental export resumes; `None`: a full export.
    let resume = if github && backup_type == BackupType::Incremental {
        previous_export(&ctx, &repo, &entry, &spec).await
    } else {
        None
    };

    ctx.progress
        .phase("fetch", format!("fetching {}", access.source_url));
    let remote =
        Remote::from_lease(&access.source_url, &access.source_token).with_ca(&access.ca_cert_pem);
    let fetched = {
        let (code, progress, interrupt) = (
            code.clone(),
            ctx.progress.clone(),
            ctx.lease.interrupt.clone(),
        );
        blocking(move || {
            let report = |p: git::GitProgress| progress.update(p.bytes, p.objects, 0);
            match git::mirror(&code, &remote, &report, &interrupt) {
                Ok(o) => Ok(o),
                Err(e @ GitError::NotARepository { .. }) => {
                    // A damaged cache entry: drop it and clone afresh.
                    tracing::warn!(error = %e, "discarding a damaged mirror");
                    std::fs::remove_dir_all(&code).map_err(|e| {
                        TaskError::retryable(format!("clearing {}: {e}", code.display()))
                    })?;
                    Ok(git::mirror(&code, &remote, &report, &interrupt)
                        .map_err(|e| diagnose(e, &remote))?)
                }
                Err(e) => Err(diagnose(e, &remote).into()),
            }
        })
        .await?
    };
    let inv = &fetched.inventory;
    let mut components = BTreeMap::from([("git".to_string(), ComponentStatus::included(None))]);
    let mut counts = Counts {
        branches: inv.branches,
        tags: inv.tags,
        commits: inv.commits,
        refs: inv.refs.len() as u64,
        ..Default::default()
    };
    let mut export_state = None;
    if github {
        let (lfs, objects) = lfs(&ctx, &access, &entry).await?;
        components.insert("lfs".into(), lfs);
        counts.lfs_objects = objects;
        let report = export(&ctx, &access, &entry, resume.clone()).await?;
        export_state = Some(ExportState {
            cursors: report.cursors.clone(),
            requests: report.requests,
            mode: if resume.is_some() {
                "incremental"
            } else {
                "full"
            }
            .into(),
        });
        let c = &report.counts;
        counts.issues = c.issues;
        counts.pulls = c.pulls;
        counts.comments = c.comments;
        counts.reviews = c.reviews;
        counts.releases = c.releases;
        counts.release_assets = c.release_assets;
        counts.labels = c.labels;
        counts.milestones = c.milestones;
        counts.workflows = c.workflows;
        counts.attachments = c.attachments;
        components.extend(report.components);
        let (wiki, pages) = wiki(&ctx, &access, &entry).await;
        components.insert("wiki".into(), wiki);
        counts.wiki_pages = pages;
    }
    // Verification, first half: the mirrors are checked before the snapshot, which
    // also gives the reachable object count the manifest records for drills.
    ctx.progress
        .phase("fsck", "checking the mirror's objects and connectivity");
    let (fsck, report) = {
        let (entry, interrupt) = (entry.clone(), ctx.lease.interrupt.clone());
        blocking(move || {
            let (check, report) = crate::verify::git_fsck(&entry, &interrupt);
            match &report {
                // A quarter of the mirror is no longer reachable: the source rewrote or dropped
                // history (or fetches left many duplicate delta bases). gix never repacks, so
                // without this every later backup would carry the old objects, and a source
                // that lost nine tenths of its history would look unchanged in size
                // (size_match could not see it). Earlier backups keep them. A quarter, not any:
                // a repack rewrites every pack, so the next snapshot stores the mirror anew.
                Some(r)
                    if check.result == crate::verify::Outcome::Pass
                        && r.reachable.saturating_mul(4) < r.objects.saturating_mul(3) =>
                {
                    tracing::info!(
                        objects = r.objects,
                        reachable = r.reachable,
                        "compacting the mirror: a quarter of its objects are unreachable"
                    );
                    match git::compact(&entry.join(manifest::CODE_DIR)) {
                        Ok(()) => Ok(crate::verify::git_fsck(&entry, &interrupt)),
                        // The mirror as it was is still a sound backup: carry on with it.
                        Err(e) => {
                            tracing::warn!(error = %e, "could not compact the mirror");
                            Ok((check, report))
                        }
                    }
                }
                _ => Ok((check, report)),
            }
        })
        .await?
    };
    counts.objects = report.map_or(0, |r| r.reachable);
    if fsck.result == crate::verify::Outcome::Fail {
        // Reported by this backup's verification; the next backup repairs the mirror.
        tokio::fs::write(&damaged, fsck.detail.as_bytes())
            .await
            .map_err(|e| TaskError::retryable(format!("writing {}: {e}", damaged.display())))?;
    }
    let source_state = Some(SourceState {
        refs: fetched.advertised.clone(),
        default_branch: if github {
            default_branch_count(&ctx, &access, &fetched, previous_manifest.as_ref()).await
        } else {
            None
        },
    });
    // A walk of the whole mirror: on the blocking pool.
    let code_bytes = {
        let code = code.clone();
        blocking(move || Ok(crate::cache::dir_size(&code))).await?
    };
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        backup_id: spec.backup_id.clone(),
        backup_type,
        trigger,
        task_id: lease.task_id.clone(),
        attempt: lease.attempt,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        source: ManifestSource {
            org_id: access.org_id.clone(),
            org: access.org_name.clone(),
            repo_id: access.repo_id.clone(),
            repo: access.repo_name.clone(),
            url: access.source_url.clone(),
        },
        components,
        refs: inv.refs.clone(),
        head: inv.head.clone(),
        counts,
        sizes: BTreeMap::from([
            ("code_bytes".to_string(), code_bytes),
            ("bytes_received".to_string(), fetched.bytes_received),
        ]),
        export: export_state,
        source_state,
    };
    tokio::fs::write(entry.join(manifest::MANIFEST_FILE), manifest.to_json())
        .await
        .map_err(|e| TaskError::retryable(format!("writing manifest.json: {e}")))?;

    ctx.progress.phase(
        "snapshot",
        format!("storing {} refs, {} commits", inv.refs.len(), inv.commits),
    );
    let request = BackupRequest {
        host: manifest::SNAPSHOT_HOST.to_string(),
        label: access.repo_id.clone(),
        tags: manifest::snapshot_tags(
            &spec.backup_id,
            &lease.task_id,
            lease.attempt,
            backup_type,
            trigger,
        ),
        parent: (!spec.parent_snapshot_id.is_empty()).then(|| spec.parent_snapshot_id.clone()),
        as_path: manifest::SNAPSHOT_PATH.to_string(),
    };
    let summary = {
        let (repo, ctx2, entry) = (repo.clone(), ctx.clone(), entry.clone());
        blocking(move || {
            let fence = || ctx2.confirm_lease();
            match repo.backup(&entry, &request, &fence) {
                Err(e @ RepoError::Repository { doing: "reading the index", .. }) => {
                    // A damaged index file would fail every backup after it: rebuild the index
                    // from the packs (as `restic repair index`) and try once more. Safe here:
                    // this backup is the only writer (backups of a repository are exclusive).
                    let now = chrono::Utc::now().timestamp_millis();
                    let repair = repo.repair_damaged_index(now)?;
                    if repair.damaged.is_empty() {
                        return Err(e.into());
                    }
                    for (_, problem) in &repair.damaged {
                        tracing::warn!(%problem, "damaged index file moved aside; index rebuilt from the packs");
                    }
                    Ok(repo.backup(&entry, &request, &fence)?)
                }
                other => Ok(other?),
            }
        })
        .await?
    };
    // Verification, second half, on the entry just stored (still held: nothing changes it).
    let verification = verify_stored_entry(
        &ctx,
        &access,
        &repo,
        &summary.snapshot_id,
        &entry,
        &manifest,
        fsck,
    )
    .await;
    drop(guard);
    let cache = ctx.cache.clone();
    let _ = blocking(move || {
        cache
            .evict()
            .map_err(|e| TaskError::retryable(e.to_string()))
    })
    .await;
    ctx.progress.phase(
        "done",
        format!(
            "snapshot {}",
            &summary.snapshot_id[..8.min(summary.snapshot_id.len())]
        ),
    );
    Ok(pb::BackupResult {
        snapshot_id: summary.snapshot_id,
        manifest_json: manifest.to_json(),
        size_bytes: summary.total_bytes,
        added_bytes: summary.data_added_packed,
        counts: Some(pb::Counts::from(&manifest.counts)),
        components: manifest::components_to_proto(&manifest.components),
        bytes_received: fetched.bytes_received,
        verification: Some(verification),
        master_key: if master.is_none() {
            master_now.expose().to_string()
        } else {
            String::new()
        },
    })
}

/// In a cache entry, beside the mirrors: the last backup found them damaged (its content is
/// git_fsck's finding). The next backup clones them afresh from the source.
const DAMAGED_MARKER: &str = ".mirror-damaged";

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

/// The cursors of the parent backup's export, with its documents in place in `entry`; `None`
/// when there is no parent export to resume from (the export is then full). Never fails: a
/// parent that cannot be read only costs a full export.
async fn previous_export(
    ctx: &Arc<super::TaskContext>,
    repo: &Arc<SnapshotRepo>,
    entry: &Path,
    spec: &pb::BackupSpec,
) -> Option<Cursors> {
    if spec.parent_backup_id.is_empty() || spec.parent_snapshot_id.is_empty() {
        return None;
    }
    // The entry's own export is the parent's when its manifest says so: a backup that failed
    // after writing its manifest names another backup, and is never resumed from.
    if let Ok(bytes) = std::fs::read(entry.join(manifest::MANIFEST_FILE))
        && let Ok(m) = Manifest::from_json(&bytes)
        && m.backup_id == spec.parent_backup_id
        && let Some(state) = m.export
        && entry.join("meta").is_dir()
    {
        return Some(state.cursors);
    }
    ctx.progress.phase(
        "seed",
        "restoring the previous metadata export from the latest snapshot",
    );
    let (repo, parent, entry) = (
        repo.clone(),
        spec.parent_snapshot_id.clone(),
        entry.to_path_buf(),
    );
    let restored = super::blocking(move || {
        let bytes = repo.read_file(&parent, manifest::MANIFEST_FILE)?;
        let m = Manifest::from_json(&bytes)
            .map_err(|e| super::TaskError::retryable(format!("parent manifest: {e}")))?;
        let Some(state) = m.export else {
            return Ok(None);
        };
        for dir in manifest::EXPORT_DIRS {
            let dest = entry.join(dir);
            remove_all(&dest)?;
            if let Err(e) = repo.restore(&parent, dir, &dest) {
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

/// Exports the repository's metadata into `entry/.export/`, then swaps each export directory
/// into place. `resume`: the parent's cursors, its documents being in `entry`.
///
/// Fails only when the repository itself cannot be read (404, 451, ...: permanent) or the
/// export could not be written; each component's own refusal or failure is in the report.
async fn export(
    ctx: &Arc<super::TaskContext>,
    access: &pb::RepoAccess,
    entry: &Path,
    resume: Option<Cursors>,
) -> Result<ExportReport, TaskError> {
    let client = crate::forge::github_client(ctx, access)
        .map_err(|e| TaskError::permanent(format!("GitHub client: {e}")))?;
    let staging = entry.join(".export");
    remove_all(&staging)?;
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
    let mode = match &resume {
        Some(cursors) => ExportMode::Incremental {
            cursors: cursors.clone(),
        },
        None => ExportMode::Full,
    };
    let previous = resume.is_some().then_some(entry);
    let report = export_repo(
        &client,
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
            remove_all(&staging)?;
            return Err(forge_failure(&access.org_name, &access.repo_name, e));
        }
    };
    for dir in manifest::EXPORT_DIRS {
        let (from, to) = (staging.join(dir), entry.join(dir));
        remove_all(&to)?;
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|e| {
                TaskError::retryable(format!(
                    "moving {} to {}: {e}",
                    from.display(),
                    to.display()
                ))
            })?;
        }
    }
    remove_all(&staging)?;
    tracing::info!(
        requests = report.requests,
        issues = report.counts.issues,
        pulls = report.counts.pulls,
        "metadata exported"
    );
    Ok(report)
}

/// A repository the forge will not serve fails its task for good (a retry gets the same
/// answer); anything else (5xx after retries, transport) may pass on another attempt.
fn forge_failure(owner: &str, name: &str, e: ForgeError) -> TaskError {
    let message = format!("GitHub repository {owner}/{name}: {e}");
    match e.status() {
        Some(401 | 403 | 404 | 410 | 451) => TaskError::permanent(message),
        _ => TaskError::retryable(message),
    }
}

/// Mirrors the wiki into `entry/wiki.git` when the repository has one. Returns the
/// component's status and the page count. GitHub answers "not found" for the wiki of a
/// repository whose wiki is enabled but has no page yet: that is an empty wiki, included.
async fn wiki(
    ctx: &Arc<super::TaskContext>,
    access: &pb::RepoAccess,
    entry: &Path,
) -> (ComponentStatus, u64) {
    let dir = entry.join(manifest::WIKI_DIR);
    let has_wiki = std::fs::read(entry.join("meta/repo.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("has_wiki").and_then(serde_json::Value::as_bool));
    match has_wiki {
        Some(true) => {}
        Some(false) => {
            if let Err(e) = remove_all(&dir) {
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
    let (interrupt, d) = (ctx.lease.interrupt.clone(), dir.clone());
    let result = super::blocking(move || {
        let outcome = git::mirror(&d, &remote, &|_| {}, &interrupt);
        Ok(match outcome {
            Ok(_) => git::files_at_head(&d).map(Some),
            Err(GitError::RepositoryNotFound { .. }) => {
                if d.exists() {
                    std::fs::remove_dir_all(&d).map_err(|e| {
                        TaskError::retryable(format!("clearing {}: {e}", d.display()))
                    })?;
                }
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

/// Fetches the LFS objects the mirror's pointers name into `entry/lfs/objects` (those already
/// there and valid are kept). Returns the component's status and the objects held. A refusal of
/// the batch endpoint skips the component with the reason; objects the server does not have
/// are named in the note (the backup holds all the server has); an interruption fails the task.
async fn lfs(
    ctx: &Arc<super::TaskContext>,
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
        move |objects, bytes, total| progress.update(bytes, objects, total),
    )
    .await;
    let report = match report {
        Ok(r) => r,
        Err(LfsError::Interrupted) => {
            return Err(TaskError::retryable(
                "interrupted while fetching LFS objects",
            ));
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
async fn default_branch_count(
    ctx: &Arc<super::TaskContext>,
    access: &pb::RepoAccess,
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
    let client = match crate::forge::github_client(ctx, access) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no GitHub client for the commit count");
            return None;
        }
    };
    match repovault_common::forge::github::commit_count(
        &client,
        &access.org_name,
        &access.repo_name,
        &oid,
    )
    .await
    {
        Ok(Some(commits)) => Some(BranchCount {
            branch,
            oid,
            commits,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "GitHub's commit count could not be read");
            None
        }
    }
}

/// The checks at the end of a backup: `zip_integrity` over the packs this backup added (and the
/// stored listing of code.git against the entry), then the tree checks on the entry. Never
/// fails the backup: what cannot be checked is reported as such, so the backup is not verified.
async fn verify_stored_entry(
    ctx: &Arc<super::TaskContext>,
    access: &pb::RepoAccess,
    repo: &Arc<SnapshotRepo>,
    snapshot_id: &str,
    entry: &Path,
    manifest: &Manifest,
    fsck: crate::verify::Check,
) -> pb::VerifyResult {
    use crate::verify::{self, Check, Selection};
    ctx.progress
        .phase("verify", "reading back what this backup stored");
    let mut ledger =
        repovault_common::repo::ReadBackLedger::load(&ctx.storage, &access.snapshot_path)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "read-back ledger unreadable: starting a new one");
                repovault_common::repo::ReadBackLedger::new()
            });
    let now = chrono::Utc::now().timestamp_millis();
    let (repo2, snapshot, code, progress, interrupt) = (
        repo.clone(),
        snapshot_id.to_string(),
        entry.join(manifest::CODE_DIR),
        ctx.progress.clone(),
        ctx.lease.interrupt.clone(),
    );
    let read = blocking(move || {
        let report = |done: u64, total: u64| progress.update(done, 0, total);
        let how = verify::archive::Reading {
            now_ms: now,
            progress: &report,
            interrupt: &interrupt,
        };
        let r = verify::archive::zip_integrity(
            &repo2,
            &snapshot,
            &mut ledger,
            Selection::Unread,
            Some(&code),
            &how,
        );
        Ok((r, ledger))
    })
    .await;
    let (zip, stats) = match read {
        Ok((Ok((check, stats)), ledger)) => {
            if let Err(e) = ledger.save(&ctx.storage, &access.snapshot_path).await {
                tracing::warn!(error = %e, "could not save the read-back ledger");
            }
            (check, stats)
        }
        Ok((Err(e), _)) => (
            Check::skipped(
                verify::ZIP_INTEGRITY,
                format!("the read-back could not run: {e}"),
                true,
            ),
            Default::default(),
        ),
        Err(e) => (
            Check::skipped(
                verify::ZIP_INTEGRITY,
                format!("the read-back could not run: {}", e.message),
                true,
            ),
            Default::default(),
        ),
    };
    let (entry, manifest) = (entry.to_path_buf(), manifest.clone());
    let tree = blocking(move || Ok(verify::local_checks(&entry, &manifest, fsck))).await;
    let mut checks = vec![zip];
    match tree {
        Ok(c) => checks.extend(c),
        Err(e) => {
            for name in [
                verify::GIT_FSCK,
                verify::METADATA_VALID,
                verify::COMMIT_COUNT_MATCH,
            ] {
                checks.push(Check::skipped(
                    name,
                    format!("could not run: {}", e.message),
                    true,
                ));
            }
        }
    }
    for c in checks.iter().filter(|c| c.result == verify::Outcome::Fail) {
        tracing::error!(check = c.name, detail = %c.detail, "backup verification failed");
    }
    pb::VerifyResult {
        checks: checks.iter().map(Check::to_proto).collect(),
        packs_read: stats.packs_read,
        bytes_read: stats.bytes_read,
        damaged_snapshot_ids: stats.damage.snapshots.clone(),
        damage: stats.damage.lines.join("; "),
        ..Default::default()
    }
}
