//! The end of a backup's writing: the manifest written into the cache entry, then the entry
//! stored as a snapshot behind the commit fence (the snapshot file is written only while the
//! lease is confirmed: [`crate::tasks::TaskContext::confirm_lease`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use repovault_common::manifest::{self, BranchCount, Manifest, ManifestSource, SourceState};
use repovault_common::repo::{BackupRequest, BackupSummary, ByteProgress, RepoError};

use crate::git;
use crate::tasks::{TaskError, blocking};

use super::{BackupJob, Findings};

/// Builds the manifest from what the phases found and writes it to `entry/manifest.json`.
/// `default_branch`: the forge's commit count of the default branch, when it said.
pub(super) async fn write_manifest(
    job: &BackupJob,
    fetched: &git::FetchOutcome,
    found: Findings,
    default_branch: Option<BranchCount>,
) -> Result<Manifest, TaskError> {
    let (access, ids, lease) = (&job.access, &job.ids, &job.ctx.lease.token);
    let inv = &fetched.inventory;
    // A walk of the whole mirror: on the blocking pool.
    let code_bytes = {
        let code = job.code_dir();
        blocking(move || Ok(crate::cache::dir_size(&code))).await?
    };
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        backup_id: job.backup_id.clone(),
        backup_type: job.backup_type,
        trigger: job.trigger,
        task_id: ids.task_id.clone(),
        attempt: lease.attempt,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        source: ManifestSource {
            org_id: ids.org_id.clone(),
            org: access.org_name.clone(),
            repo_id: ids.repo_id.clone(),
            repo: access.repo_name.clone(),
            url: access.source_url.clone(),
        },
        components: found.components,
        refs: inv.refs.clone(),
        head: inv.head.clone(),
        counts: found.counts,
        sizes: BTreeMap::from([
            ("code_bytes".to_string(), code_bytes),
            ("bytes_received".to_string(), fetched.bytes_received),
        ]),
        export: found.export,
        source_state: Some(SourceState {
            refs: fetched.advertised.clone(),
            default_branch,
        }),
    };
    tokio::fs::write(job.entry.join(manifest::MANIFEST_FILE), manifest.to_json())
        .await
        .map_err(|e| TaskError::retryable("writing manifest.json").with_source(e))?;
    Ok(manifest)
}

/// Stores the entry as a snapshot, its parent being the parent backup's unless that is not whole
/// (`BackupJob::parent_whole`). A damaged index file
/// (which would fail every backup after it) is moved aside, the index rebuilt from the packs
/// (as `restic repair index`), and the backup tried once more: safe because this backup is the
/// repository's only writer (backups of a repository are exclusive).
pub(super) async fn snapshot(
    job: &BackupJob,
    parent_whole: bool,
) -> Result<BackupSummary, TaskError> {
    let mut request = request(job);
    if !parent_whole {
        request.parent = None;
    }
    let (repo, ctx, entry) = (job.repo.clone(), job.ctx.clone(), job.entry.clone());
    let progress = job.ctx.progress.clone();
    let report: ByteProgress = Arc::new(move |done, total| progress.update_bytes(done, total));
    blocking(move || {
        let fence = || ctx.confirm_lease();
        match repo.backup_reporting(&entry, &request, &fence, report.clone()) {
            Err(e @ RepoError::Repository { doing: "reading the index", .. }) => {
                let now = chrono::Utc::now().timestamp_millis();
                let repair = repo.repair_damaged_index(now)?;
                if repair.damaged.is_empty() {
                    return Err(e.into());
                }
                for (_, problem) in &repair.damaged {
                    tracing::warn!(%problem, "damaged index file moved aside; index rebuilt from the packs");
                }
                Ok(repo.backup_reporting(&entry, &request, &fence, report)?)
            }
            other => Ok(other?),
        }
    })
    .await
}

/// How this backup's snapshot is labelled and what it leaves out.
pub(super) fn request(job: &BackupJob) -> BackupRequest {
    BackupRequest {
        host: manifest::SNAPSHOT_HOST.to_string(),
        label: job.ids.repo_id.to_string(),
        tags: manifest::snapshot_tags(
            &job.backup_id,
            &job.ids.task_id,
            job.ctx.lease.token.attempt,
            job.backup_type,
            job.trigger,
        ),
        parent: job.parent_snapshot_id.as_ref().map(String::from),
        as_path: manifest::SNAPSHOT_PATH.to_string(),
        // git_fsck's record describes this cache's copy of the mirrors, not the repository:
        // a mirror seeded from the snapshot is checked in full.
        exclude: [manifest::CODE_DIR, manifest::WIKI_DIR]
            .iter()
            .flat_map(|dir| {
                git::FSCK_RECORD_FILES
                    .iter()
                    .map(move |f| format!("{dir}/{f}"))
            })
            .collect(),
    }
}
