//! A backup: mirror the source into the cache, write the manifest, snapshot the tree.
//!
//! The tree of a snapshot is the cache entry itself (`<cache>/<repo-id>/` holding `code.git/` and
//! `manifest.json`): the mirror is never copied, and because it is never repacked between
//! backups, a fetch adds one pack and leaves the others byte-identical, so the snapshot of an
//! unchanged repository stores almost nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use repovault_common::manifest::{self, ComponentStatus, Counts, Manifest, ManifestSource};
use repovault_common::repo::{BackupRequest, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::git::{self, GitError, Remote};

use super::{TaskContext, TaskError, blocking};

pub async fn run(ctx: Arc<TaskContext>, task: pb::Task) -> Result<pb::BackupResult, TaskError> {
    let access = task
        .repo
        .clone()
        .ok_or_else(|| TaskError::permanent("task carries no repository"))?;
    let spec = task
        .backup
        .clone()
        .ok_or_else(|| TaskError::permanent("task carries no backup spec"))?;
    let lease = task.lease.clone().unwrap_or_default();
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

    // A worker without the cache rebuilds the mirror from the latest snapshot before fetching:
    // object storage has no rate limit, the source may.
    if !code.join("HEAD").exists() && !spec.parent_snapshot_id.is_empty() {
        ctx.progress
            .phase("seed", "rebuilding the mirror from the latest snapshot");
        let (repo, parent, code) = (repo.clone(), spec.parent_snapshot_id.clone(), code.clone());
        let seeded = blocking(move || {
            if code.exists() {
                std::fs::remove_dir_all(&code).map_err(|e| {
                    TaskError::retryable(format!("clearing {}: {e}", code.display()))
                })?;
            }
            Ok(repo.restore(&parent, manifest::CODE_DIR, &code))
        })
        .await?;
        if let Err(e) = seeded {
            // Not fatal: the fetch below then clones from the source.
            tracing::warn!(error = %e, "could not seed the mirror from the parent snapshot");
        }
    }

    ctx.progress
        .phase("fetch", format!("fetching {}", access.source_url));
    let remote = Remote::from_lease(&access.source_url, &access.source_token);
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
    let code_bytes = crate::cache::dir_size(&code);
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        backup_id: spec.backup_id.clone(),
        backup_type: spec.backup_type.clone(),
        trigger: spec.trigger.clone(),
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
        components: BTreeMap::from([(
            "code".to_string(),
            ComponentStatus {
                status: "included".into(),
                reason: None,
            },
        )]),
        refs: inv.refs.clone(),
        head: inv.head.clone(),
        counts: Counts {
            branches: inv.branches,
            tags: inv.tags,
            commits: inv.commits,
            refs: inv.refs.len() as u64,
            ..Default::default()
        },
        sizes: BTreeMap::from([
            ("code_bytes".to_string(), code_bytes),
            ("bytes_received".to_string(), fetched.bytes_received),
        ]),
    };
    std::fs::write(entry.join(manifest::MANIFEST_FILE), manifest.to_json())
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
            &spec.backup_type,
            &spec.trigger,
        ),
        parent: (!spec.parent_snapshot_id.is_empty()).then(|| spec.parent_snapshot_id.clone()),
        as_path: manifest::SNAPSHOT_PATH.to_string(),
    };
    let summary = {
        let (repo, ctx2, entry) = (repo.clone(), ctx.clone(), entry.clone());
        blocking(move || {
            let fence = || ctx2.confirm_lease();
            Ok(repo.backup(&entry, &request, &fence)?)
        })
        .await?
    };
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
        master_key: if master.is_none() {
            master_now.expose().to_string()
        } else {
            String::new()
        },
    })
}

/// gix sometimes sees only a closed connection where the server said why (git daemon's "access
/// denied or repository not exported" races with its hang-up). Ask the git CLI, which reads the
/// server's message, and keep its verdict when it names the cause.
fn diagnose(e: GitError, remote: &Remote) -> GitError {
    if matches!(
        e,
        GitError::RepositoryNotFound { .. }
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
