//! A backup of a source that has not changed since its parent: the snapshot repeats the
//! parent's tree ([`repovault_common::repo::SnapshotRepo::repeat_parent`]), so nothing is
//! walked, packed or read back, and its verification is the parent's plus this backup's own
//! comparison of refs.
//!
//! The decision ([`repeats_parent`]) is pure; the snapshot and the verification are the I/O.

use repovault_common::domain::{BackupId, SnapshotId};
use repovault_common::manifest::Manifest;
use repovault_common::repo::{BackupRequest, BackupSummary, RepoError};
use repovault_proto::v1 as pb;

use crate::git;
use crate::tasks::{TaskError, blocking};
use crate::verify::{self, Check, Outcome};

use super::BackupJob;

/// What the decision looks at.
pub(super) struct Facts<'a> {
    /// The source has forge metadata (issues, releases, a wiki, LFS): its export may have
    /// changed what the snapshot holds even when the refs did not.
    pub exports_metadata: bool,
    pub parent_backup_id: Option<&'a BackupId>,
    pub parent_snapshot_id: Option<&'a SnapshotId>,
    pub parent_verified: bool,
    pub parent_mirror_damaged: bool,
    /// The parent's manifest.
    pub previous: Option<&'a Manifest>,
    pub fetched: &'a git::FetchOutcome,
    /// This backup's git_fsck of code.git.
    pub fsck: &'a Check,
    pub fsck_report: Option<&'a git::FsckReport>,
}

/// The parent snapshot to repeat, when the backup may: a backup of plain git whose parent
/// passed every check, whose source advertised exactly the parent's refs, whose mirror holds
/// exactly the parent's refs, and whose git_fsck found nothing new since the mirror's last
/// sound check. Full or incremental alike: for plain git the two differ in nothing a snapshot
/// holds (every fetch is incremental into the cache). A forge's backup always stores its tree
/// (its metadata may change without a ref moving).
pub(super) fn repeats_parent(f: &Facts) -> Option<SnapshotId> {
    let previous = f.previous?;
    let nothing_new = matches!(
        f.fsck_report.map(|r| &r.coverage),
        Some(git::Coverage::Incremental {
            new_objects: 0,
            moved_refs: 0,
            ..
        })
    );
    let same_refs = previous
        .source_state
        .as_ref()
        .is_some_and(|s| s.refs == f.fetched.advertised)
        && previous.refs == f.fetched.inventory.refs;
    let eligible = !f.exports_metadata
        && f.parent_verified
        && !f.parent_mirror_damaged
        && f.parent_backup_id == Some(&previous.backup_id)
        && f.fsck.result == Outcome::Pass
        && nothing_new
        && same_refs;
    eligible.then(|| f.parent_snapshot_id.cloned()).flatten()
}

/// Phase `snapshot` of an unchanged source: a snapshot file naming the parent's tree, behind
/// the commit fence. `None` when the parent snapshot is gone from storage (deleted since the
/// lease): the backup then stores its tree as any other.
pub(super) async fn repeat(
    job: &BackupJob,
    parent: &SnapshotId,
    request: BackupRequest,
) -> Result<Option<BackupSummary>, TaskError> {
    let (repo, ctx, parent) = (job.repo.clone(), job.ctx.clone(), parent.to_string());
    blocking(move || {
        let fence = || ctx.confirm_lease();
        match repo.repeat_parent(&parent, &request, &fence) {
            Ok(summary) => Ok(Some(summary)),
            Err(RepoError::SnapshotNotFound(id)) => {
                tracing::warn!(parent = %id, "the parent snapshot is gone: storing the tree anew");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// The verification of a backup that repeats its parent's tree: nothing new was stored, so
/// `zip_integrity` rests on the parent's (which passed); `git_fsck` is this backup's
/// (nothing new since the last check); the tree checks run on the entry as after any backup
/// (the manifest's refs against the mirror's).
pub(super) async fn verify(
    job: &BackupJob,
    parent: &SnapshotId,
    manifest: &Manifest,
    fsck: Check,
) -> pb::VerifyResult {
    let zip = Check::pass(
        verify::ZIP_INTEGRITY,
        format!(
            "nothing new stored: the source is unchanged since backup {}, whose snapshot {} \
             this one repeats and which passed every check",
            job.parent_backup_id.as_ref().map_or("?", |id| id.as_str()),
            &parent.as_str()[..8.min(parent.as_str().len())]
        ),
    );
    let checks =
        super::stored_verification::with_tree_checks(zip, &job.entry, manifest, fsck).await;
    pb::VerifyResult {
        checks: checks.iter().map(Check::to_proto).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repovault_common::manifest;
    use std::collections::BTreeMap;

    fn manifest(backup: &BackupId, refs: &BTreeMap<String, String>) -> Manifest {
        Manifest {
            format_version: manifest::FORMAT_VERSION,
            backup_id: backup.clone(),
            backup_type: repovault_common::domain::BackupType::Incremental,
            trigger: repovault_common::domain::Trigger::Manual,
            task_id: "00000000-0000-4000-8000-000000000001"
                .parse()
                .expect("task id"),
            attempt: 1,
            created_at: "2026-12-05T00:00:00.000Z".into(),
            source: manifest::ManifestSource {
                org_id: "o1".parse().expect("org id"),
                org: "acme".into(),
                repo_id: "r1".parse().expect("repo id"),
                repo: "quiet".into(),
                url: "git://localhost/quiet.git".into(),
            },
            components: BTreeMap::new(),
            refs: refs.clone(),
            head: Some("refs/heads/main".into()),
            counts: Default::default(),
            sizes: BTreeMap::new(),
            export: None,
            source_state: Some(manifest::SourceState {
                refs: refs.clone(),
                default_branch: None,
            }),
        }
    }

    /// A sound git_fsck report that covered `coverage`.
    fn covering(coverage: git::Coverage) -> git::FsckReport {
        git::FsckReport {
            coverage,
            ..Default::default()
        }
    }

    #[test]
    fn only_an_unchanged_plain_git_source_with_a_verified_parent_repeats_it() {
        let parent: BackupId = "rk2j9x0a1b2c-lq3k9x1aaaa".parse().expect("id");
        let snapshot: SnapshotId = "a".repeat(64).parse().expect("snapshot id");
        let refs = BTreeMap::from([("refs/heads/main".to_string(), "1".repeat(40))]);
        let previous = manifest(&parent, &refs);
        let fetched = git::FetchOutcome {
            inventory: git::Inventory {
                refs: refs.clone(),
                ..Default::default()
            },
            advertised: refs.clone(),
            ..Default::default()
        };
        let pass = Check::pass(verify::GIT_FSCK, "ok");
        let report = covering(git::Coverage::Incremental {
            new_objects: 0,
            moved_refs: 0,
            full_check: "just now".into(),
        });
        let facts = || Facts {
            exports_metadata: false,
            parent_backup_id: Some(&parent),
            parent_snapshot_id: Some(&snapshot),
            parent_verified: true,
            parent_mirror_damaged: false,
            previous: Some(&previous),
            fetched: &fetched,
            fsck: &pass,
            fsck_report: Some(&report),
        };
        assert_eq!(repeats_parent(&facts()), Some(snapshot.clone()));
        assert_eq!(
            repeats_parent(&Facts {
                exports_metadata: true,
                ..facts()
            }),
            None
        );
        assert_eq!(
            repeats_parent(&Facts {
                parent_verified: false,
                ..facts()
            }),
            None
        );
        assert_eq!(
            repeats_parent(&Facts {
                parent_mirror_damaged: true,
                ..facts()
            }),
            None
        );
        assert_eq!(
            repeats_parent(&Facts {
                previous: None,
                ..facts()
            }),
            None
        );
        let other: BackupId = "rk2j9x0a1b2c-lq3k9x1bbbb".parse().expect("id");
        let other_parent = manifest(&other, &refs);
        assert_eq!(
            repeats_parent(&Facts {
                previous: Some(&other_parent),
                ..facts()
            }),
            None
        );
        let moved_refs = BTreeMap::from([("refs/heads/main".to_string(), "2".repeat(40))]);
        let moved = git::FetchOutcome {
            advertised: moved_refs.clone(),
            inventory: git::Inventory {
                refs: moved_refs.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            repeats_parent(&Facts {
                fetched: &moved,
                ..facts()
            }),
            None
        );
        let fail = Check::fail(verify::GIT_FSCK, "broken");
        assert_eq!(
            repeats_parent(&Facts {
                fsck: &fail,
                ..facts()
            }),
            None
        );
        let new = covering(git::Coverage::Incremental {
            new_objects: 3,
            moved_refs: 0,
            full_check: "just now".into(),
        });
        assert_eq!(
            repeats_parent(&Facts {
                fsck_report: Some(&new),
                ..facts()
            }),
            None
        );
        let full = covering(git::Coverage::Full {
            reason: "first check of this mirror".into(),
        });
        assert_eq!(
            repeats_parent(&Facts {
                fsck_report: Some(&full),
                ..facts()
            }),
            None
        );
    }
}
