//! Full or incremental: a pure function of what is known about the repository.
//!
//! Full: the first backup of a repository, the first after its organisation was added or
//! reconnected, every scheduled weekly backup, any backup when the last full one is
//! `full_every_days` old (default 7) or more, and manual backups. Otherwise (scheduled, cron,
//! on-push): incremental.

use repovault_common::domain::BackupType;

/// Why a backup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    Manual,
    /// A scheduled run; `weekly` when the schedule is `weekly`.
    Scheduled {
        weekly: bool,
    },
    OnPush,
}

/// The default of `full_every_days`: a full backup at least weekly bounds how long a chain of
/// incremental backups grows.
pub const DEFAULT_FULL_EVERY_DAYS: u32 = 7;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInputs {
    pub kind: BackupKind,
    /// The last successful backup (any type).
    pub last_success_at_ms: Option<i64>,
    /// The last successful full backup.
    pub last_full_at_ms: Option<i64>,
    /// When the organisation was (re)connected: the first backup after it is full.
    pub connected_at_ms: Option<i64>,
    /// 0 means the default.
    pub full_every_days: u32,
    pub now_ms: i64,
}

/// Full when there is no successful backup, after a reconnect, for manual and weekly runs, and
/// when the last full one is `full_every_days` old; incremental otherwise.
pub fn backup_type(i: &TypeInputs) -> BackupType {
    let every = if i.full_every_days == 0 {
        DEFAULT_FULL_EVERY_DAYS
    } else {
        i.full_every_days
    };
    let Some(last_success) = i.last_success_at_ms else {
        return BackupType::Full;
    };
    if i.connected_at_ms.is_some_and(|c| last_success < c) {
        return BackupType::Full;
    }
    match i.kind {
        BackupKind::Manual | BackupKind::Scheduled { weekly: true } => return BackupType::Full,
        BackupKind::Scheduled { weekly: false } | BackupKind::OnPush => {}
    }
    match i.last_full_at_ms {
        Some(f) if i.now_ms - f < i64::from(every) * DAY_MS => BackupType::Incremental,
        _ => BackupType::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(kind: BackupKind) -> TypeInputs {
        TypeInputs {
            kind,
            last_success_at_ms: Some(10 * DAY_MS),
            last_full_at_ms: Some(9 * DAY_MS),
            connected_at_ms: Some(DAY_MS),
            full_every_days: 0,
            now_ms: 11 * DAY_MS,
        }
    }

    #[test]
    fn policy() {
        let sched = BackupKind::Scheduled { weekly: false };
        assert_eq!(backup_type(&base(sched)), BackupType::Incremental);
        assert_eq!(
            backup_type(&base(BackupKind::OnPush)),
            BackupType::Incremental
        );
        assert_eq!(backup_type(&base(BackupKind::Manual)), BackupType::Full);
        assert_eq!(
            backup_type(&base(BackupKind::Scheduled { weekly: true })),
            BackupType::Full
        );
        // First backup.
        let mut i = base(BackupKind::OnPush);
        i.last_success_at_ms = None;
        assert_eq!(backup_type(&i), BackupType::Full);
        // First after a reconnect.
        let mut i = base(sched);
        i.connected_at_ms = Some(10 * DAY_MS + 1);
        assert_eq!(backup_type(&i), BackupType::Full);
        // A full at least every 7 days, whatever the schedule.
        let mut i = base(sched);
        i.now_ms = 16 * DAY_MS - 1;
        assert_eq!(backup_type(&i), BackupType::Incremental);
        i.now_ms = 16 * DAY_MS;
        assert_eq!(backup_type(&i), BackupType::Full);
        // Configurable per organisation.
        i.full_every_days = 30;
        assert_eq!(backup_type(&i), BackupType::Incremental);
        // Never a full one yet (older records): full.
        let mut i = base(sched);
        i.last_full_at_ms = None;
        assert_eq!(backup_type(&i), BackupType::Full);
    }
}
