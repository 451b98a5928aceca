//! Which backups a second-copy pass covers and what it records: pure.

use crate::model::{BackupRecord, CopyState, CopyStatus, Status};

/// The backups of one repository a pass to `location` makes copies of: completed ones with a
/// snapshot whose copy there is not done (never tried, pending, or failed before).
pub fn due<'a>(backups: &'a [BackupRecord], location: &str) -> Vec<&'a BackupRecord> {
    backups
        .iter()
        .filter(|b| b.status == Status::Completed && b.snapshot_id.is_some())
        .filter(|b| {
            !matches!(&b.copy, Some(c) if c.location == location && c.status == CopyStatus::Done)
        })
        .collect()
}

/// What a pass records for a backup it covered: done when its snapshot file is at the copy
/// (proven by the pass's read-back), failed with the pass's error otherwise.
pub fn outcome(
    location: &str,
    pass: &Result<(), String>,
    snapshot_at_copy: bool,
    now_ms: i64,
) -> CopyState {
    let (status, detail) = match pass {
        Ok(()) if snapshot_at_copy => (CopyStatus::Done, None),
        Ok(()) => (
            CopyStatus::Pending,
            Some("its snapshot was not yet committed when the pass listed the repository".into()),
        ),
        Err(e) => (CopyStatus::Failed, Some(e.clone())),
    };
    CopyState {
        location: location.to_string(),
        status,
        detail,
        at_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(status: Status, copy: Option<CopyState>) -> BackupRecord {
        let counts =
            serde_json::to_value(repovault_common::manifest::Counts::default()).expect("counts");
        let mut b: BackupRecord = serde_json::from_value(serde_json::json!({
            "counts": counts,
            "id": "b", "org_id": "o", "repo_id": "r", "org_name": "o", "repo_name": "r",
            "backup_type": "full", "trigger": "manual", "status": "completed", "error": null,
            "created_at_ms": 0, "started_at_ms": null, "finished_at_ms": null, "size_bytes": 0,
            "added_bytes": 0, "snapshot_id": "abcd", "task_id": "t", "attempt": 1,
            "bytes_received": 0, "priority": 5, "worker_id": null
        }))
        .expect("a backup record");
        b.status = status;
        b.copy = copy;
        b
    }

    fn state(location: &str, status: CopyStatus) -> CopyState {
        CopyState {
            location: location.into(),
            status,
            detail: None,
            at_ms: 1,
        }
    }

    #[test]
    fn completed_backups_without_a_done_copy_there_are_due() {
        let backups = vec![
            backup(Status::Completed, None),
            backup(Status::Completed, Some(state("c", CopyStatus::Done))),
            backup(Status::Completed, Some(state("c", CopyStatus::Failed))),
            backup(Status::Completed, Some(state("old", CopyStatus::Done))),
            backup(Status::Failed, None),
        ];
        assert_eq!(
            due(&backups, "c").len(),
            3,
            "never, failed, and done elsewhere"
        );
    }

    #[test]
    fn a_pass_records_done_failed_or_still_pending() {
        assert_eq!(outcome("c", &Ok(()), true, 5).status, CopyStatus::Done);
        let failed = outcome("c", &Err("refused".into()), true, 5);
        assert_eq!(
            (failed.status, failed.detail.as_deref()),
            (CopyStatus::Failed, Some("refused"))
        );
        assert_eq!(outcome("c", &Ok(()), false, 5).status, CopyStatus::Pending);
    }
}
