//! A lease decoded once into a typed task. The wire's enums become domain enums here and nowhere
//! else in the worker; a task this worker cannot run (no spec, no repository, a value unknown to
//! this version) fails permanently naming the field, before anything is read or written.

use repovault_common::domain::{
    BackupType, FromWire, Provider, RestoreCombination, RestoreTarget, RestoreType, TaskKind,
    Trigger, VerifyMode, WireError,
};
use repovault_proto::v1 as pb;

use super::TaskError;

/// What a lease asks for, with its source repository.
pub struct Leased {
    pub access: pb::RepoAccess,
    /// The source's forge (or plain git).
    pub provider: Provider,
    pub work: Work,
}

/// One variant per task kind: the session dispatches with one exhaustive `match`.
pub enum Work {
    Backup(BackupWork),
    Restore(RestoreWork),
    Verify(VerifyWork),
    Drill(pb::DrillSpec),
}

pub struct BackupWork {
    pub spec: pb::BackupSpec,
    pub backup_type: BackupType,
    pub trigger: Trigger,
}

pub struct RestoreWork {
    pub spec: pb::RestoreSpec,
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

pub struct VerifyWork {
    pub spec: pb::VerifySpec,
    pub mode: VerifyMode,
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
    let work = match task.spec.clone() {
        None => return Err(TaskError::permanent("task carries no spec")),
        Some(pb::task::Spec::Backup(spec)) => Work::Backup(BackupWork {
            backup_type: BackupType::from_wire(spec.backup_type, "task.backup.backup_type")
                .map_err(invalid)?,
            trigger: Trigger::from_wire(spec.trigger, "task.backup.trigger").map_err(invalid)?,
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
                spec,
                combination,
                target_provider,
            })
        }
        Some(pb::task::Spec::Verify(spec)) => Work::Verify(VerifyWork {
            mode: VerifyMode::from_wire(spec.mode, "task.verify.mode").map_err(invalid)?,
            spec,
        }),
        Some(pb::task::Spec::Drill(spec)) => Work::Drill(spec),
    };
    Ok(Leased {
        access,
        provider,
        work,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(spec: pb::task::Spec) -> pb::Task {
        pb::Task {
            repo: Some(pb::RepoAccess {
                provider: Provider::Git.into(),
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_decodes_once_into_typed_work_or_fails_naming_the_field() {
        let ok = decode(&task(pb::task::Spec::Backup(pb::BackupSpec {
            backup_type: BackupType::Incremental.into(),
            trigger: Trigger::Push.into(),
            ..Default::default()
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
            backup_type: BackupType::Full.into(),
            ..Default::default()
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
