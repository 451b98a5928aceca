//! A repository's timeline for the operator: its backups, the scheduled slots it skipped and
//! its restore drills, in time order, with the backups whose size jumped flagged. Pure: the
//! records come in as arguments.

use serde::Serialize;

use crate::model::{BackupRecord, DrillRecord, Status};

/// Size grew by more than this factor over the previous completed backup: "more than 200%"
/// (new > 3 × old), a large file committed by mistake.
pub const SIZE_JUMP_FACTOR: u64 = 3;

/// One line of a repository's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimelineEntry {
    Backup {
        at_ms: i64,
        backup: Box<BackupRecord>,
        /// Its size grew more than 200% against the previous completed backup.
        size_jump: bool,
    },
    /// A scheduled slot skipped because the previous backup still ran.
    SkippedSlot { at_ms: i64 },
    /// A restore drill of one of its backups (at its creation).
    Drill { at_ms: i64, drill: Box<DrillRecord> },
}

impl TimelineEntry {
    pub fn at_ms(&self) -> i64 {
        match self {
            TimelineEntry::Backup { at_ms, .. }
            | TimelineEntry::SkippedSlot { at_ms }
            | TimelineEntry::Drill { at_ms, .. } => *at_ms,
        }
    }
}

/// Every backup oldest first (by creation; ties by id), skipped slots interleaved by time, and
/// the size jumps flagged against the previous completed backup.
pub fn timeline(
    mut backups: Vec<BackupRecord>,
    skipped_slots: &[i64],
    drills: Vec<DrillRecord>,
) -> Vec<TimelineEntry> {
    backups.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut out = Vec::with_capacity(backups.len() + skipped_slots.len());
    let mut previous_size: Option<u64> = None;
    for b in backups {
        let completed = b.status == Status::Completed;
        let size_jump = completed
            && previous_size
                .is_some_and(|p| p > 0 && b.size_bytes > p.saturating_mul(SIZE_JUMP_FACTOR));
        if completed {
            previous_size = Some(b.size_bytes);
        }
        out.push(TimelineEntry::Backup {
            at_ms: b.created_at_ms,
            backup: Box::new(b),
            size_jump,
        });
    }
    out.extend(
        skipped_slots
            .iter()
            .map(|&at_ms| TimelineEntry::SkippedSlot { at_ms }),
    );
    out.extend(drills.into_iter().map(|d| TimelineEntry::Drill {
        at_ms: d.created_at_ms,
        drill: Box::new(d),
    }));
    // Stable: backups keep their order among equal times, and come before a slot skipped then.
    out.sort_by_key(TimelineEntry::at_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: &str, created: i64, status: Status, size: u64) -> BackupRecord {
        BackupRecord {
            id: crate::coordinator::testing::tid(id),
            org_id: crate::coordinator::testing::tid("o"),
            repo_id: crate::coordinator::testing::tid("r"),
            org_name: "org".into(),
            repo_name: "r".into(),
            backup_type: crate::model::BackupType::Full,
            trigger: crate::model::Trigger::Manual,
            status,
            error: None,
            created_at_ms: created,
            started_at_ms: None,
            finished_at_ms: None,
            size_bytes: size,
            added_bytes: 0,
            counts: Default::default(),
            components: Default::default(),
            snapshot_id: None,
            parent_snapshot_id: None,
            task_id: crate::coordinator::testing::tid("t"),
            attempt: 1,
            bytes_received: 0,
            priority: 0,
            worker_id: None,
            verification: None,
            copy: None,
        }
    }

    fn drill(id: &str, created: i64) -> DrillRecord {
        DrillRecord {
            id: crate::coordinator::testing::tid(id),
            org_id: crate::coordinator::testing::tid("o"),
            org_name: "org".into(),
            repo_id: crate::coordinator::testing::tid("r"),
            repo_full_name: "org/r".into(),
            backup_id: crate::coordinator::testing::tid("b1"),
            snapshot_id: crate::coordinator::testing::tid(crate::coordinator::testing::SNAPSHOT),
            trigger: crate::model::Trigger::Schedule,
            status: Status::Completed,
            passed: Some(true),
            checks: Vec::new(),
            summary: None,
            error: None,
            created_at_ms: created,
            finished_at_ms: Some(created + 1),
            task_id: crate::coordinator::testing::tid("t"),
            from_copy: false,
        }
    }

    #[test]
    fn timeline_orders_interleaves_and_flags_jumps() {
        let list = vec![
            backup("b4", 40, Status::Completed, 400),
            backup("b1", 10, Status::Completed, 100),
            backup("b3", 30, Status::Failed, 0),
            backup("b2", 20, Status::Completed, 300),
            backup("b5", 50, Status::Completed, 1201),
        ];
        let t = timeline(list, &[25, 50], vec![drill("d1", 35)]);
        let shape: Vec<(i64, String, bool)> = t
            .iter()
            .map(|e| match e {
                TimelineEntry::Backup {
                    at_ms,
                    backup,
                    size_jump,
                } => (*at_ms, backup.id.to_string(), *size_jump),
                TimelineEntry::SkippedSlot { at_ms } => (*at_ms, "skipped".into(), false),
                TimelineEntry::Drill { at_ms, drill } => {
                    (*at_ms, drill.outcome().as_str().into(), false)
                }
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (10, "b1".into(), false),
                // 300 is +200% of 100: not more than 200%.
                (20, "b2".into(), false),
                (25, "skipped".into(), false),
                // A failed backup neither jumps nor resets the reference.
                (30, "b3".into(), false),
                (35, "passed".into(), false),
                (40, "b4".into(), false),
                // 1201 > 3 × 400.
                (50, "b5".into(), true),
                (50, "skipped".into(), false),
            ]
        );
        assert!(timeline(Vec::new(), &[], Vec::new()).is_empty());
    }
}
