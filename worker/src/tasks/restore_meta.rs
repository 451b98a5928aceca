//! The metadata part of a forge restore: the restore engine
//! (`repovault_common::forge::github::restore`) run on the snapshot's export tree, with its
//! progress reported as the task's `metadata` phase (items done of total, ETA).
//!
//! The journal file is the caller's (it keeps it in storage across attempts); the engine also
//! matches its markers in the target, so a repeated run creates nothing twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use repovault_common::forge::github::GitHubClient;
use repovault_common::forge::github::access::{AccessPlan, AccessScope};
use repovault_common::forge::github::restore::{
    self as engine, Pace, Progress, RestoreOptions, RestoreTarget,
};

use super::restore_forge::{Parts, human};
use super::{TaskContext, TaskError};

/// How often the lease's interrupt flag is looked at while the engine runs.
const INTERRUPT_POLL: Duration = Duration::from_millis(200);

/// What the metadata part will do, before it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataPlan {
    /// Items to create (when the target holds none yet).
    pub creations: u64,
    /// How long that takes at GitHub's content-creation pace.
    pub estimate_secs: u64,
}

/// The engine's parts for a restore's parts.
fn engine_parts(parts: Parts) -> engine::Parts {
    engine::Parts {
        issues: parts.issues,
        releases: parts.releases,
        // Issues name labels and milestones: they come with them.
        labels: parts.issues,
        settings: parts.settings,
    }
}

fn options(
    backup_id: &str,
    parts: Parts,
    access: AccessScope,
    branches: BTreeSet<String>,
    journal: &Path,
) -> RestoreOptions {
    RestoreOptions {
        backup_id: backup_id.to_string(),
        parts: engine_parts(parts),
        branches_present: branches,
        journal: journal.to_path_buf(),
        pace: Some(Pace::GITHUB),
        access,
    }
}

fn engine_failure(context: &str, e: repovault_common::forge::github::ForgeError) -> TaskError {
    let message = format!("{context}: {e}");
    match e.status() {
        Some(401 | 403 | 404 | 410 | 451) => TaskError::permanent(message),
        _ => TaskError::retryable(message),
    }
}

/// Counts what restoring the export tree `tree` creates, and how long it takes.
pub async fn plan(
    tree: &Path,
    backup_id: &str,
    parts: Parts,
    access: AccessScope,
) -> Result<MetadataPlan, TaskError> {
    let opts = options(
        backup_id,
        parts,
        access,
        BTreeSet::new(),
        &tree.join("unused-journal"),
    );
    let tree = tree.to_path_buf();
    let p = super::blocking(move || {
        engine::plan(&tree, &opts).map_err(|e| engine_failure("planning the metadata restore", e))
    })
    .await?;
    Ok(MetadataPlan {
        creations: p.creations,
        estimate_secs: p.estimate.as_secs(),
    })
}

/// What restoring the access recorded in `tree` into `owner` grants and leaves out (the target
/// organisation asked for its teams); `None` when settings are not restored or the backup
/// holds no access record.
pub async fn access_plan(
    tree: &Path,
    client: &GitHubClient,
    owner: &str,
    name: &str,
    parts: Parts,
    access: AccessScope,
) -> Result<Option<AccessPlan>, TaskError> {
    if !parts.settings {
        return Ok(None);
    }
    let tree = tree.to_path_buf();
    let doc = super::blocking(move || {
        engine::read_access(&tree).map_err(|e| engine_failure("reading the backup's access", e))
    })
    .await?;
    let Some(doc) = doc else {
        return Ok(None);
    };
    let target = RestoreTarget {
        client,
        owner,
        name,
    };
    engine::plan_access(&doc, target, access)
        .await
        .map(Some)
        .map_err(|e| engine_failure(&format!("asking {owner} for its teams"), e))
}

/// Restores the metadata of `tree` into `owner/name` through `client`, journaling to `journal`.
/// Returns a one-line account for the restore's summary.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    ctx: &TaskContext,
    tree: &Path,
    client: &GitHubClient,
    owner: &str,
    name: &str,
    backup_id: &str,
    parts: Parts,
    access: AccessScope,
    branches: Vec<String>,
    journal: &Path,
) -> Result<String, TaskError> {
    let opts = options(
        backup_id,
        parts,
        access,
        branches.into_iter().collect(),
        journal,
    );
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    let progress = |p: Progress| {
        ctx.progress.update(p.done, p.done, p.total);
        let mut l = last.lock();
        if l.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) && p.done < p.total {
            return;
        }
        *l = Some(Instant::now());
        ctx.progress.phase(
            "metadata",
            format!(
                "{}: {} of {} items, ETA {}",
                p.phase,
                p.done,
                p.total,
                human(p.eta.as_secs())
            ),
        );
        ctx.progress.update(p.done, p.done, p.total);
    };
    let target = RestoreTarget {
        client,
        owner,
        name,
    };
    // The engine does not know the lease: it is dropped (between two requests at the latest)
    // as soon as the lease is revoked, the restore cancelled or the worker stops, so an attempt
    // that lost its lease creates nothing more.
    let interrupt = ctx.lease.interrupt.clone();
    let stopped = async move {
        while !interrupt.load(Ordering::SeqCst) {
            tokio::time::sleep(INTERRUPT_POLL).await;
        }
    };
    let report = tokio::select! {
        r = engine::restore_metadata(tree, target, &opts, &progress) => r,
        () = stopped => {
            return Err(TaskError::retryable(
                "the metadata restore was interrupted (lease revoked, cancelled, or worker stopping)",
            ));
        }
    }
    .map_err(|e| engine_failure(&format!("restoring metadata into {owner}/{name}"), e))?;
    let created: Vec<String> = report
        .created
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let mut line = format!(
        "metadata: {} created ({}), {} already there",
        report.total_created(),
        if created.is_empty() {
            "nothing".to_string()
        } else {
            created.join(", ")
        },
        report.reused.values().sum::<u64>()
    );
    if !report.converted.is_empty() {
        line.push_str(&format!(
            ", {} pull requests as issues",
            report.converted.len()
        ));
    }
    if !report.skipped.is_empty() {
        let shown: Vec<String> = report
            .skipped
            .iter()
            .take(5)
            .map(|s| format!("{} ({})", s.item, s.reason))
            .collect();
        line.push_str(&format!(
            ", {} skipped: {}",
            report.skipped.len(),
            shown.join(", ")
        ));
    }
    if !report.webhooks_needing_secret.is_empty() {
        line.push_str(&format!(
            ", webhooks needing a secret: {}",
            report.webhooks_needing_secret.join(", ")
        ));
    }
    if let Some(access) = &report.access {
        line.push_str("; ");
        line.push_str(&access.describe());
    }
    Ok(line)
}
