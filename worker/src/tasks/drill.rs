//! A restore drill: the backup restored the way a restore does it (the mirror out of
//! the snapshot, pushed with `git push` into an empty bare repository), then compared with the
//! backup's manifest: ref tips, objects reachable, item counts. The scratch copy is deleted
//! whatever the outcome.
//!
//! A drill that finds a problem completes with `passed: false` and the failing checks; only an
//! infrastructure failure (storage unreachable) fails the task, to be retried.

use std::path::Path;
use std::sync::Arc;

use repovault_common::manifest::{self, CODE_DIR, Manifest};
use repovault_common::repo::{RepoError, SnapshotRepo};
use repovault_proto::v1 as pb;

use crate::git::{self, Remote};
use crate::verify::{Check, Outcome, metadata};

use super::leased::DrillWork;
use super::{TaskContext, TaskError, blocking};

pub const RESTORE: &str = "restore";
pub const REF_TIPS: &str = "ref_tips";
pub const OBJECT_COUNT: &str = "object_count";
pub const ITEM_COUNTS: &str = "item_counts";

pub async fn run(
    ctx: Arc<TaskContext>,
    access: pb::RepoAccess,
    work: DrillWork,
) -> Result<pb::DrillResult, TaskError> {
    let DrillWork {
        drill_id,
        backup_id,
        snapshot_id,
    } = work;
    let Some(snapshot) = snapshot_id else {
        return Err(TaskError::permanent("drill names no snapshot"));
    };
    let work = super::fresh_scratch(&ctx, &format!("drill-{drill_id}")).await?;
    ctx.progress.phase(
        "restore",
        format!("drill: restoring backup {backup_id} into a scratch repository"),
    );
    let repo = super::restore::open_snapshot_repo(&ctx, &access).await?;
    let (w, interrupt) = (work.clone(), ctx.lease.interrupt.clone());
    let outcome = blocking(move || {
        let snapshot = snapshot.as_str();
        let mut checks = drill(&repo, snapshot, &w)?;
        let damage = restore_failed(&checks).then(|| {
            let how = crate::verify::archive::Reading {
                now_ms: chrono::Utc::now().timestamp_millis(),
                progress: &|_, _| {},
                interrupt: &interrupt,
            };
            crate::verify::archive::diagnose(&repo, snapshot, &how)
        });
        let damage = damage.flatten().unwrap_or_default();
        if let Some(c) = checks.iter_mut().find(|c| c.name == RESTORE)
            && !damage.is_empty()
        {
            c.detail = format!(
                "{}; reading the snapshot back found damaged packs: {}",
                c.detail,
                damage.lines.join("; ")
            );
        }
        Ok((checks, damage))
    })
    .await;
    // The scratch copy goes whatever happened: a drill leaves nothing behind.
    super::discard_scratch(work).await;
    let (checks, damage) = outcome?;
    let passed = checks.iter().all(|c| c.result == Outcome::Pass);
    let summary = checks
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail.lines().next().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("; ");
    ctx.progress.phase(
        "done",
        if passed {
            "drill passed".to_string()
        } else {
            "drill FAILED".to_string()
        },
    );
    Ok(pb::DrillResult {
        passed,
        checks: checks.iter().map(Check::to_proto).collect(),
        summary,
        damaged_snapshot_ids: damage.snapshots,
        damage: damage.lines.join("; "),
    })
}

/// Whether the drill could not restore the backup (then a read-back says whether packs are
/// damaged).
fn restore_failed(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| c.name == RESTORE && c.result == Outcome::Fail)
}

/// The drill proper, on a scratch directory. `Err` only when the repository cannot be used at
/// all; what the backup gets wrong is in the checks.
pub fn drill(repo: &SnapshotRepo, snapshot_id: &str, work: &Path) -> Result<Vec<Check>, TaskError> {
    let manifest = match repo.read_file(snapshot_id, manifest::MANIFEST_FILE) {
        Ok(bytes) => Manifest::from_json(&bytes).map_err(|e| e.to_string()),
        Err(e @ (RepoError::SnapshotNotFound(_) | RepoError::WrongPassword { .. })) => {
            return Err(TaskError::permanent_from(e));
        }
        Err(e) => Err(e.to_string()),
    };
    let manifest = match manifest {
        Ok(m) => m,
        Err(why) => {
            return Ok(vec![Check::fail(
                RESTORE,
                format!("the backup's manifest.json cannot be read: {why}"),
            )]);
        }
    };
    let mirror = work.join(CODE_DIR);
    if let Err(e) = repo.restore(snapshot_id, CODE_DIR, &mirror) {
        return Ok(vec![Check::fail(
            RESTORE,
            format!("code.git cannot be restored from the snapshot: {e}"),
        )]);
    }
    // A restore's own path: `git push` into an empty repository, as `restore start --target
    // new` does for plain git.
    let target = work.join("target.git");
    git::init_bare(&target).map_err(TaskError::retryable_from)?;
    let url = format!("file://{}", target.display());
    let mut checks = Vec::new();
    match git::push_mirror(&mirror, &Remote::anonymous(url)) {
        Ok(p) => checks.push(Check::pass(
            RESTORE,
            format!(
                "restored code.git and pushed {} refs into a scratch repository",
                p.refs_pushed
            ),
        )),
        Err(e) => {
            checks.push(Check::fail(
                RESTORE,
                format!("pushing the restored mirror failed: {e}"),
            ));
            return Ok(checks);
        }
    }
    checks.push(ref_tips(&target, &manifest));
    checks.push(object_count(&target, &manifest));
    checks.push(item_counts(repo, snapshot_id, work, &manifest));
    Ok(checks)
}

/// The restored copy's refs equal the manifest's (symbolic refs are not pushed and not
/// compared).
fn ref_tips(target: &Path, manifest: &Manifest) -> Check {
    let restored = match git::inventory(target) {
        Ok(inv) => inv.refs,
        Err(e) => return Check::fail(REF_TIPS, format!("the restored copy cannot be read: {e}")),
    };
    let expected: std::collections::BTreeMap<String, String> = manifest
        .refs
        .iter()
        .filter(|(_, v)| !v.starts_with("ref: "))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let diff = crate::verify::refs::tip_differences(&restored, &expected);
    if diff.is_empty() {
        Check::pass(
            REF_TIPS,
            format!("all {} refs at the manifest's tips", expected.len()),
        )
    } else {
        Check::fail(
            REF_TIPS,
            metadata::summarise(
                &diff
                    .into_iter()
                    .map(|d| {
                        d.replace("the backup has", "the restored copy has")
                            .replace("the source advertised", "the manifest says")
                    })
                    .collect::<Vec<_>>(),
            ),
        )
    }
}

/// The objects reachable in the restored copy equal the manifest's count, and are sound.
fn object_count(target: &Path, manifest: &Manifest) -> Check {
    let never = std::sync::atomic::AtomicBool::new(false);
    let report = match git::fsck(target, &never) {
        Ok(r) => r,
        Err(e) => {
            return Check::fail(
                OBJECT_COUNT,
                format!("the restored copy cannot be checked: {e}"),
            );
        }
    };
    if !report.problems.is_empty() {
        return Check::fail(OBJECT_COUNT, metadata::summarise(&report.problems));
    }
    match manifest.counts.objects {
        0 if report.reachable > 0 => Check::skipped(
            OBJECT_COUNT,
            format!(
                "the backup predates object counts; the restored copy holds {} sound objects",
                report.reachable
            ),
            false,
        ),
        n if n == report.reachable => Check::pass(
            OBJECT_COUNT,
            format!("{n} objects reachable, as the manifest counts"),
        ),
        n => Check::fail(
            OBJECT_COUNT,
            format!(
                "the restored copy holds {} reachable objects, the manifest counts {n}",
                report.reachable
            ),
        ),
    }
}

/// The metadata documents restored from the backup hold what the manifest counts.
fn item_counts(repo: &SnapshotRepo, snapshot_id: &str, work: &Path, manifest: &Manifest) -> Check {
    if manifest.export.is_none() {
        return Check::pass(ITEM_COUNTS, "plain git: no items besides the refs");
    }
    if let Err(e) = repo.restore(snapshot_id, "meta", &work.join("meta")) {
        return Check::fail(
            ITEM_COUNTS,
            format!("meta/ cannot be restored from the snapshot: {e}"),
        );
    }
    let payloads = match metadata::stored_payloads(repo, snapshot_id) {
        Ok(p) => p,
        Err((dir, e)) => return Check::fail(ITEM_COUNTS, format!("{dir}/ cannot be listed: {e}")),
    };
    let reading = metadata::read(work, &payloads);
    let mut problems = reading.problems;
    problems.extend(metadata::count_mismatches(
        &manifest.counts,
        &reading.counts,
    ));
    if problems.is_empty() {
        let c = &reading.counts;
        Check::pass(
            ITEM_COUNTS,
            format!(
                "{} issues, {} pull requests, {} releases, {} comments, as the manifest counts",
                c.issues, c.pulls, c.releases, c.comments
            ),
        )
    } else {
        Check::fail(ITEM_COUNTS, metadata::summarise(&problems))
    }
}
