//! A backup's verification, in two halves: git_fsck over the entry's mirrors before the
//! snapshot (compacting a mirror whose objects are mostly unreachable), and after it the
//! read-back of what this backup stored (`zip_integrity`) and the tree checks on the entry.
//! Neither half fails the backup: what fails or cannot be checked is reported, and the backup
//! is then not verified.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use repovault_common::manifest::{self, Manifest};
use repovault_common::repo::{ReadBackLedger, SnapshotRepo};
use repovault_proto::v1 as pb;

use crate::git;
use crate::tasks::{TaskContext, TaskError, blocking};
use crate::verify::{self, Check, Outcome, Selection};

use super::Fsck;

/// The packs of the entry's mirrors before the fetch: what the fetch adds is what this backup
/// received (see [`git::fsck_incremental`]).
#[derive(Debug, Default, Clone)]
pub(super) struct PacksBefore {
    code: BTreeSet<String>,
    wiki: BTreeSet<String>,
}

impl PacksBefore {
    /// Lists them (a mirror not there yet has none).
    pub(super) async fn list(entry: &Path) -> Result<PacksBefore, TaskError> {
        let entry = entry.to_owned();
        blocking(move || {
            let names = |dir: &str| {
                git::pack_names(&entry.join(dir))
                    .map_err(|e| TaskError::retryable("listing the mirror's packs").with_source(e))
            };
            Ok(PacksBefore {
                code: names(manifest::CODE_DIR)?,
                wiki: names(manifest::WIKI_DIR)?,
            })
        })
        .await
    }
}

/// git_fsck over the entry's mirrors (code.git and, when present, wiki.git), each checked as far
/// as it changed since its last sound check ([`git::fsck_incremental`]); `before` are the packs
/// before this backup's fetch, `None` when none of the packs were received by it.
pub(super) async fn fsck(
    ctx: &TaskContext,
    entry: &Path,
    before: Option<PacksBefore>,
) -> Result<Fsck, TaskError> {
    let (entry, interrupt) = (entry.to_owned(), ctx.lease.interrupt.clone());
    let full_every_ms = i64::try_from(ctx.full_check_every.as_millis()).unwrap_or(i64::MAX);
    blocking(move || {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (check, report) = verify::git_fsck_with(&entry, |dir, label| {
            let received = match &before {
                Some(before) => {
                    let was = if label == manifest::WIKI_DIR {
                        &before.wiki
                    } else {
                        &before.code
                    };
                    let now = git::pack_names(dir)?;
                    now.difference(was).cloned().collect()
                }
                None => BTreeSet::new(),
            };
            let since = git::CheckSince {
                received: &received,
                now_ms,
                full_every_ms,
            };
            git::fsck_incremental(dir, &since, &interrupt)
        });
        Ok(Fsck { check, report })
    })
    .await
}

/// Whether a passing mirror is sparse enough to compact: a quarter of its objects are no longer
/// reachable. The source rewrote or dropped history (or fetches left many duplicate delta
/// bases); gix never repacks, so without this every later backup would carry the old objects,
/// and a source that lost nine tenths of its history would look unchanged in size (size_match
/// could not see it). Earlier backups keep them. A quarter, not any: a repack rewrites every
/// pack, so the next snapshot stores the mirror anew.
fn sparse(fsck: &Fsck) -> Option<&git::FsckReport> {
    fsck.report.as_ref().filter(|r| {
        fsck.check.result == Outcome::Pass
            && r.reachable.saturating_mul(4) < r.objects.saturating_mul(3)
    })
}

/// Phase `compact`, only for a [`sparse`] mirror: repacks code.git without its unreachable
/// objects and runs git_fsck again. A repack that fails leaves the mirror as it was, still a
/// sound backup: the backup carries on with it (and `fsck` as it was).
pub(super) async fn compact(
    ctx: &TaskContext,
    entry: &Path,
    fsck: Fsck,
) -> Result<Fsck, TaskError> {
    let Some(report) = sparse(&fsck) else {
        return Ok(fsck);
    };
    ctx.progress.phase(
        "compact",
        "a quarter of the mirror's objects are unreachable: compacting it",
    );
    tracing::info!(
        objects = report.objects,
        reachable = report.reachable,
        "compacting the mirror: a quarter of its objects are unreachable"
    );
    let code = entry.join(manifest::CODE_DIR);
    let compacted = blocking(move || {
        git::compact(&code).map_err(|e| TaskError::retryable("compacting").with_source(e))
    })
    .await;
    match compacted {
        // The repack wrote every pack from the objects checked before it: none was received,
        // so the check that follows reads them all.
        Ok(()) => self::fsck(ctx, entry, None).await,
        Err(e) => {
            tracing::warn!(error = %e, "could not compact the mirror");
            Ok(fsck)
        }
    }
}

/// The checks at the end of a backup: `zip_integrity` over the packs this backup added (and the
/// stored listing of code.git against the entry), then the tree checks on the entry, with
/// `fsck` the first half's verdict. Never fails the backup: what cannot be checked is reported
/// as such, so the backup is not verified.
pub(super) async fn verify_stored_entry(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    repo: &Arc<SnapshotRepo>,
    snapshot_id: &str,
    entry: &Path,
    manifest: &Manifest,
    fsck: Check,
) -> pb::VerifyResult {
    let mut ledger = ReadBackLedger::load(&ctx.storage, &access.snapshot_path)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "read-back ledger unreadable: starting a new one");
            ReadBackLedger::new()
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
        let report = |done: u64, total: u64| progress.update_bytes(done, total);
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
    let checks = with_tree_checks(zip, entry, manifest, fsck).await;
    pb::VerifyResult {
        checks: checks.iter().map(Check::to_proto).collect(),
        packs_read: stats.packs_read,
        bytes_read: stats.bytes_read,
        damaged_snapshot_ids: stats.damage.snapshots.clone(),
        damage: stats.damage.lines.join("; "),
        ..Default::default()
    }
}

/// `zip_integrity`'s verdict followed by the tree checks on the entry (`fsck` being git_fsck's,
/// which ran before the snapshot); each failure is logged. A tree check that cannot run is
/// skipped as incomplete, naming why.
pub(super) async fn with_tree_checks(
    zip: Check,
    entry: &Path,
    manifest: &Manifest,
    fsck: Check,
) -> Vec<Check> {
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
    for c in checks.iter().filter(|c| c.result == Outcome::Fail) {
        tracing::error!(check = c.name, detail = %c.detail, "backup verification failed");
    }
    checks
}
