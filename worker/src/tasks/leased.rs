//! A lease decoded once into a typed task. The wire's enums become domain enums, and its ids
//! typed ids, here and nowhere else in the worker; a task this worker cannot run (no spec, no
//! repository, a value unknown to this version, an empty or malformed id) fails permanently
//! naming the field, before anything is read or written.

use repovault_common::domain::{
    BackupId, BackupType, DrillId, FromWire, OrgId, Provider, RepoId, RestoreCombination,
    RestoreId, RestoreTarget, RestoreType, SnapshotId, TaskId, TaskKind, Trigger, VerifyMode,
    WireError,
};
use repovault_proto::v1 as pb;

use super::TaskError;

/// What a lease asks for, with its source repository.
pub struct Leased {
    pub ids: LeaseIds,
    pub access: pb::RepoAccess,
    /// The source's forge (or plain git).
    pub provider: Provider,
    pub work: Work,
}

/// Who and what a lease is for. The lease token itself stays as the wire sent it: it is given
/// back verbatim in every renewal, confirmation and completion.
#[derive(Debug, Clone)]
pub struct LeaseIds {
    pub task_id: TaskId,
    /// The source repository's organisation and the repository itself.
    pub org_id: OrgId,
    pub repo_id: RepoId,
}

/// One variant per task kind: the session dispatches with one exhaustive `match`.
pub enum Work {
    Backup(BackupWork),
    Restore(RestoreWork),
    Verify(VerifyWork),
    Drill(DrillWork),
}

pub struct BackupWork {
    pub spec: pb::BackupSpec,
    pub backup_id: BackupId,
    pub backup_type: BackupType,
    pub trigger: Trigger,
    /// The repository's latest backup and its snapshot (`None` for a first backup): what an
    /// incremental export resumes from and what the cache is seeded from.
    pub parent_backup_id: Option<BackupId>,
    pub parent_snapshot_id: Option<SnapshotId>,
}

pub struct RestoreWork {
    pub spec: pb::RestoreSpec,
    pub restore_id: RestoreId,
    pub backup_id: BackupId,
    pub snapshot_id: SnapshotId,
    pub combination: RestoreCombination,
    /// The target's forge, for restores that write into a repository; `None` for downloads.
    pub target_provider: Option<Provider>,
}

impl RestoreWork {
    pub fn restore_type(&self) -> RestoreType {
        self.combination.restore_type()
    }

    pub fn target(&self) -> RestoreTarget {
        self.combination.target()
    }
}

/// A verification, by its mode.
pub enum VerifyWork {
    /// A read-back rotation visit: every pack of the repository not read within `max_age_ms`.
    Rotation { max_age_ms: i64 },
    /// `backup verify` of one backup. `snapshot_id` is `None` when the backup is gone (deleted
    /// since the verification was asked for): the verification then fails, saying so.
    Backup {
        backup_id: BackupId,
        snapshot_id: Option<SnapshotId>,
    },
}

pub struct DrillWork {
    pub drill_id: DrillId,
    pub backup_id: BackupId,
    /// `None` for a backup recorded without a snapshot (the drill then fails, saying so).
    pub snapshot_id: Option<SnapshotId>,
}

impl Work {
    pub fn kind(&self) -> TaskKind {
        match self {
            Work::Backup(_) => TaskKind::Backup,
            Work::Restore(_) => TaskKind::Restore,
            Work::Verify(_) => TaskKind::Verify,
            Work::Drill(_) => TaskKind::Drill,
        }
    }
}

/// The kind a task's spec names, for logs before it is decoded; `None` without a spec.
pub fn kind_of(task: &pb::Task) -> Option<TaskKind> {
    Some(match task.spec.as_ref()? {
        pb::task::Spec::Backup(_) => TaskKind::Backup,
        pb::task::Spec::Restore(_) => TaskKind::Restore,
        pb::task::Spec::Verify(_) => TaskKind::Verify,
        pb::task::Spec::Drill(_) => TaskKind::Drill,
    })
}

fn invalid(e: WireError) -> TaskError {
    TaskError::permanent("the lease is not valid for this worker").with_source(e)
}

/// Decodes `task`; see the module doc for what is refused.
pub fn decode(task: &pb::Task) -> Result<Leased, TaskError> {
    let access = task
        .repo
        .clone()
        .ok_or_else(|| TaskError::permanent("task carries no repository"))?;
    let provider = Provider::from_wire(access.provider, "task.repo.provider").map_err(invalid)?;
    let task_id = task.lease.as_ref().map_or("", |l| l.task_id.as_str());
    let ids = LeaseIds {
        task_id: TaskId::from_wire(task_id, "task.lease.task_id").map_err(invalid)?,
        org_id: OrgId::from_wire(&access.org_id, "task.repo.org_id").map_err(invalid)?,
        repo_id: RepoId::from_wire(&access.repo_id, "task.repo.repo_id").map_err(invalid)?,
    };
    let work = match task.spec.clone() {
        None => return Err(TaskError::permanent("task carries no spec")),
        Some(pb::task::Spec::Backup(spec)) => Work::Backup(BackupWork {
            backup_id: BackupId::from_wire(&spec.backup_id, "task.backup.backup_id")
                .map_err(invalid)?,
            backup_type: BackupType::from_wire(spec.backup_type, "task.backup.backup_type")
                .map_err(invalid)?,
            trigger: Trigger::from_wire(spec.trigger, "task.backup.trigger").map_err(invalid)?,
            parent_backup_id: BackupId::from_wire_optional(
                &spec.parent_backup_id,
                "task.backup.parent_backup_id",
            )
            .map_err(invalid)?,
            parent_snapshot_id: SnapshotId::from_wire_optional(
                &spec.parent_snapshot_id,
                "task.backup.parent_snapshot_id",
            )
            .map_err(invalid)?,
            spec,
        }),
        Some(pb::task::Spec::Restore(spec)) => {
            let restore_type =
                RestoreType::from_wire(spec.restore_type, "task.restore.restore_type")
                    .map_err(invalid)?;
            let target =
                RestoreTarget::from_wire(spec.target, "task.restore.target").map_err(invalid)?;
            let combination =
                RestoreCombination::new(restore_type, target).map_err(TaskError::permanent_from)?;
            let target_provider = if spec.target_provider == 0 {
                None
            } else {
                Some(
                    Provider::from_wire(spec.target_provider, "task.restore.target_provider")
                        .map_err(invalid)?,
                )
            };
            Work::Restore(RestoreWork {
                restore_id: RestoreId::from_wire(&spec.restore_id, "task.restore.restore_id")
                    .map_err(invalid)?,
                backup_id: BackupId::from_wire(&spec.backup_id, "task.restore.backup_id")
                    .map_err(invalid)?,
                snapshot_id: SnapshotId::from_wire(&spec.snapshot_id, "task.restore.snapshot_id")
                    .map_err(invalid)?,
                spec,
                combination,
                target_provider,
            })
        }
        Some(pb::task::Spec::Verify(spec)) => Work::Verify(
            match VerifyMode::from_wire(spec.mode, "task.verify.mode").map_err(invalid)? {
                VerifyMode::Rotation => VerifyWork::Rotation {
                    max_age_ms: spec.max_age_ms,
                },
                VerifyMode::Manual => VerifyWork::Backup {
                    backup_id: BackupId::from_wire(&spec.backup_id, "task.verify.backup_id")
                        .map_err(invalid)?,
                    snapshot_id: SnapshotId::from_wire_optional(
                        &spec.snapshot_id,
                        "task.verify.snapshot_id",
                    )
                    .map_err(invalid)?,
                },
            },
        ),
        Some(pb::task::Spec::Drill(spec)) => Work::Drill(DrillWork {
            drill_id: DrillId::from_wire(&spec.drill_id, "task.drill.drill_id").map_err(invalid)?,
            backup_id: BackupId::from_wire(&spec.backup_id, "task.drill.backup_id")
                .map_err(invalid)?,
            snapshot_id: SnapshotId::from_wire_optional(
                &spec.snapshot_id,
                "task.drill.snapshot_id",
            )
            .map_err(invalid)?,
        }),
    };
    Ok(Leased {
        ids,
        access,
        provider,
        work,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = "e90cf774d7dbf31d74ab8b89cb7404596d71146d28cbc04f86305e5854d249d5";

    fn task(spec: pb::task::Spec) -> pb::Task {
        pb::Task {
            repo: Some(pb::RepoAccess {
                provider: Provider::Git.into(),
                org_id: "o1a2b3c4d5e6".into(),
                repo_id: "rk2j9x0a1b2c".into(),
                ..Default::default()
            }),
            lease: Some(pb::LeaseToken {
                task_id: "0190c3b2a1f27c3e8d4b5a6978fedcba".into(),
                attempt: 1,
            }),
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn backup_spec() -> pb::BackupSpec {
        pb::BackupSpec {
            backup_id: "rk2j9x0a1b2c-lq3k9x2fab1".into(),
            backup_type: BackupType::Full.into(),
            trigger: Trigger::Manual.into(),
            ..Default::default()
        }
    }

    /// The message of `task`'s decoding error.
    fn refusal(task: &pb::Task) -> String {
        let err = decode(task).err().expect("refused");
        assert!(!err.retryable, "{}", err.message);
        err.message
    }

    #[test]
    fn ids_are_decoded_once_and_an_empty_or_malformed_one_fails_naming_its_field() {
        let ok = decode(&task(pb::task::Spec::Backup(pb::BackupSpec {
            parent_backup_id: "rk2j9x0a1b2c-lq3k9x1aaaa".into(),
            parent_snapshot_id: SNAPSHOT.into(),
            ..backup_spec()
        })))
        .expect("valid");
        assert_eq!(ok.ids.task_id.as_str(), "0190c3b2a1f27c3e8d4b5a6978fedcba");
        assert_eq!(ok.ids.repo_id.as_str(), "rk2j9x0a1b2c");
        let Work::Backup(w) = ok.work else {
            panic!("a backup")
        };
        assert_eq!(w.backup_id.as_str(), "rk2j9x0a1b2c-lq3k9x2fab1");
        assert_eq!(
            w.parent_snapshot_id.map(String::from).as_deref(),
            Some(SNAPSHOT)
        );
        // A first backup has no parent.
        let first = decode(&task(pb::task::Spec::Backup(backup_spec()))).expect("valid");
        assert!(matches!(
            first.work,
            Work::Backup(BackupWork {
                parent_backup_id: None,
                parent_snapshot_id: None,
                ..
            })
        ));

        let mut t = task(pb::task::Spec::Backup(backup_spec()));
        if let Some(r) = t.repo.as_mut() {
            r.repo_id = "../../etc".into();
        }
        let message = refusal(&t);
        assert!(message.contains("task.repo.repo_id"), "{message}");
        assert!(!message.contains("../../etc"), "{message}");
        let mut t = task(pb::task::Spec::Backup(backup_spec()));
        t.lease = None;
        assert!(refusal(&t).contains("task.lease.task_id"));
        let message = refusal(&task(pb::task::Spec::Backup(pb::BackupSpec {
            backup_id: String::new(),
            ..backup_spec()
        })));
        assert!(
            message.contains("field task.backup.backup_id: backup id is empty"),
            "{message}"
        );
        let message = refusal(&task(pb::task::Spec::Backup(pb::BackupSpec {
            parent_snapshot_id: SNAPSHOT[..8].into(),
            ..backup_spec()
        })));
        assert!(
            message.contains("task.backup.parent_snapshot_id"),
            "{message}"
        );
        let message = refusal(&task(pb::task::Spec::Restore(pb::RestoreSpec {
            restore_id: "s0190c3b2a1f27c3e8d4b5a6978fedcba".into(),
            backup_id: "rk2j9x0a1b2c-lq3k9x2fab1".into(),
            snapshot_id: String::new(),
            restore_type: RestoreType::FullRepo.into(),
            target: RestoreTarget::Download.into(),
            ..Default::default()
        })));
        assert!(message.contains("task.restore.snapshot_id"), "{message}");
        let message = refusal(&task(pb::task::Spec::Drill(pb::DrillSpec {
            drill_id: "d/x".into(),
            ..Default::default()
        })));
        assert!(message.contains("task.drill.drill_id"), "{message}");
    }

    #[test]
    fn a_rotation_needs_no_backup_and_a_manual_verification_names_one() {
        let rotation = decode(&task(pb::task::Spec::Verify(pb::VerifySpec {
            mode: VerifyMode::Rotation.into(),
            max_age_ms: 5,
            ..Default::default()
        })))
        .expect("valid");
        assert!(matches!(
            rotation.work,
            Work::Verify(VerifyWork::Rotation { max_age_ms: 5 })
        ));
        let gone = decode(&task(pb::task::Spec::Verify(pb::VerifySpec {
            mode: VerifyMode::Manual.into(),
            backup_id: "rk2j9x0a1b2c-lq3k9x2fab1".into(),
            ..Default::default()
        })))
        .expect("valid");
        assert!(matches!(
            gone.work,
            Work::Verify(VerifyWork::Backup {
                snapshot_id: None,
                ..
            })
        ));
        let message = refusal(&task(pb::task::Spec::Verify(pb::VerifySpec {
            mode: VerifyMode::Manual.into(),
            ..Default::default()
        })));
        assert!(message.contains("task.verify.backup_id"), "{message}");
    }

    #[test]
    fn a_lease_decodes_once_into_typed_work_or_fails_naming_the_field() {
        let ok = decode(&task(pb::task::Spec::Backup(pb::BackupSpec {
            backup_type: BackupType::Incremental.into(),
            trigger: Trigger::Push.into(),
            ..backup_spec()
        })))
        .expect("valid");
        assert!(matches!(
            ok.work,
            Work::Backup(BackupWork {
                backup_type: BackupType::Incremental,
                trigger: Trigger::Push,
                ..
            })
        ));
        let err = decode(&task(pb::task::Spec::Backup(pb::BackupSpec {
            trigger: 0,
            ..backup_spec()
        })))
        .err()
        .expect("no trigger");
        assert!(
            err.message.contains("task.backup.trigger"),
            "{}",
            err.message
        );
        assert!(!err.retryable);
        let err = decode(&task(pb::task::Spec::Restore(pb::RestoreSpec {
            restore_type: RestoreType::WikiOnly.into(),
            target: RestoreTarget::New.into(),
            ..Default::default()
        })))
        .err()
        .expect("invalid pair");
        assert!(
            err.message.contains("not a valid combination"),
            "{}",
            err.message
        );
        let mut no_spec = task(pb::task::Spec::Drill(pb::DrillSpec::default()));
        no_spec.spec = None;
        assert_eq!(
            decode(&no_spec).err().expect("no spec").message,
            "task carries no spec"
        );
    }
}
