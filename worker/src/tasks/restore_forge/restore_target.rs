//! The two ends of a forge restore: the snapshot's tree read into the scratch directory, and
//! the target repository on the target's forge (read, or created when the restore allows),
//! with its authenticated git remote.

use std::path::Path;
use std::sync::Arc;

use repovault_common::domain::{Provider, SnapshotId};
use repovault_common::forge::{
    self as forges, Credentials, Forge, ForgeEndpoint, GitRemote, StaticToken, TargetRepo,
};
use repovault_common::manifest::{self, Manifest};
use repovault_common::repo::RepoError;
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::tasks::leased::RestoreWork;
use crate::tasks::{TaskContext, TaskError, blocking};

/// Restores `dirs` of the restore's snapshot under `tree` (those the backup lacks are skipped)
/// and returns the manifest.
pub async fn read_snapshot(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    snapshot_id: &SnapshotId,
    tree: &Path,
    dirs: &[&'static str],
) -> Result<Manifest, TaskError> {
    ctx.progress.phase(
        "restore",
        format!("reading snapshot {}", snapshot_id.short()),
    );
    let repo = crate::tasks::restore::open_snapshot_repo(ctx, access).await?;
    let (snapshot_id, tree, dirs) = (snapshot_id.clone(), tree.to_path_buf(), dirs.to_vec());
    blocking(move || {
        let snapshot = snapshot_id.as_str();
        std::fs::create_dir_all(&tree)
            .map_err(|e| TaskError::retryable(format!("creating {}: {e}", tree.display())))?;
        let bytes = repo.read_file(snapshot, manifest::MANIFEST_FILE)?;
        std::fs::write(tree.join(manifest::MANIFEST_FILE), &bytes)
            .map_err(|e| TaskError::retryable(format!("writing manifest.json: {e}")))?;
        let manifest = Manifest::from_json(&bytes)
            .map_err(|e| TaskError::permanent(format!("snapshot {snapshot_id}: {e}")))?;
        for dir in dirs {
            match repo.restore(snapshot, dir, &tree.join(dir)) {
                Ok(_) | Err(RepoError::PathNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(manifest)
    })
    .await
}

/// The target's forge: with the lease's own gated credential when the target uses the
/// source's (its rate budget then admits every request on the same API), else with the
/// restore's token, unbudgeted.
pub fn target_forge(
    ctx: &TaskContext,
    access: &pb::RepoAccess,
    spec: &pb::RestoreSpec,
    provider: Provider,
) -> Result<Arc<dyn Forge>, TaskError> {
    let credentials = if spec.target_is_source_credential {
        let lease = ctx.forge.credentials();
        Credentials {
            gate: lease.gate.filter(|_| spec.target_api_url == access.api_url),
            ..lease
        }
    } else {
        Credentials {
            tokens: Arc::new(StaticToken(Secret::new(spec.target_token.clone()))),
            gate: None,
        }
    };
    let endpoint = ForgeEndpoint {
        api_url: spec.target_api_url.clone(),
        ca_cert_pem: (!spec.target_ca_cert_pem.is_empty()).then(|| spec.target_ca_cert_pem.clone()),
    };
    forges::open(provider, &endpoint, credentials)
        .map_err(|e| TaskError::permanent(format!("the target's forge client: {e}")))
}

/// The target repository: read, or created when the restore allows it and it is absent (with
/// the source's description and visibility from the export tree `tree`).
pub async fn ensure_target(
    forge: &dyn Forge,
    restore: &RestoreWork,
    tree: &Path,
) -> Result<TargetRepo, TaskError> {
    let spec = &restore.spec;
    let (owner, name) = (&spec.target_owner, &spec.target_name);
    let create_from = spec.create_target.then_some(tree);
    match forge.target_repo(owner, name, create_from).await {
        Ok(repo) => Ok(repo),
        Err(e) if e.status() == Some(404) && !spec.create_target => {
            Err(TaskError::permanent(format!(
                "repository {owner}/{name} does not exist (a {} restore writes into an existing repository)",
                restore.restore_type()
            )))
        }
        Err(e) => Err(crate::forge::task_failure(
            &format!("reading or creating {owner}/{name}"),
            e,
        )),
    }
}

/// The authenticated git remote for `url` on the target: a source credential's token is asked
/// afresh first (an installation token may have been replaced since the lease).
pub async fn target_remote(
    ctx: &TaskContext,
    forge: &dyn Forge,
    spec: &pb::RestoreSpec,
    url: &str,
) -> GitRemote {
    if spec.target_is_source_credential {
        ctx.forge.source_token().await;
    }
    forge.git_remote(url)
}
