//! What an escrowed repository's storage lock should be, and which objects a pass locks: pure
//! functions of the agreements, the last pass's record and `now`.

use serde::{Deserialize, Serialize};

use crate::maintenance::retention::EscrowWindow;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How far ahead an agreement without an end (until released) is locked. S3 cannot shorten a
/// COMPLIANCE lock, so such an agreement is locked in rolling windows: a release keeps its data
/// locked at most this long after. 30 days is our choice: a month's storage of the escrowed data
/// at most, and a coordinator that stops extending (down, or the credential revoked) leaves the
/// data locked for weeks, time to notice and act.
pub const OPEN_ENDED_LOCK_MS: i64 = 30 * DAY_MS;

/// A rolling lock is extended once less than this is left: half the window, so that a pass a
/// minute misses for days still leaves a lock in place.
pub const EXTEND_WHEN_LEFT_MS: i64 = OPEN_ENDED_LOCK_MS / 2;

/// Objects whose last-modified time is this close before the last pass's start are locked
/// again by the next pass. S3's Last-Modified is when an upload began (a multipart upload's
/// initiation), so an object finishing during a pass can carry an earlier time and be missed by
/// its listing. An hour outlasts any one upload: a part that makes no progress for 30 s fails,
/// and a 16 MiB part is never slower than that.
pub const WRITE_MARGIN_MS: i64 = 60 * 60 * 1000;

/// The directories of a restic repository whose objects make up its snapshots. `locks/` is
/// left out (restic's own locks are deleted by their holder) and so are repovault's records
/// (`catalog/`, `verify/`), which are not what stock restic opens.
pub const LOCKED_DIRS: [&str; 4] = ["data/", "index/", "keys/", "snapshots/"];

/// Whether a path relative to the repository is part of what is locked (`config` included).
pub fn is_locked_kind(relative: &str) -> bool {
    relative == "config" || LOCKED_DIRS.iter().any(|d| relative.starts_with(d))
}

/// How far a repository's lock has come, `escrow-lock/<repo-id>` in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowLockRecord {
    pub status: LockStatus,
    /// Why the storage is not locked (`Unavailable`) or the last pass failed (`Failed`).
    #[serde(default)]
    pub detail: Option<String>,
    /// Every object listed by the last complete pass carries a lock until this time.
    #[serde(default)]
    pub locked_until_ms: Option<i64>,
    /// When the last complete pass began: objects written before it are locked.
    #[serde(default)]
    pub covered_through_ms: Option<i64>,
    /// Lock calls made so far (an object locked again counts again).
    #[serde(default)]
    pub locks_set: u64,
    pub checked_at_ms: i64,
}

/// Whether a repository's storage is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStatus {
    /// The last pass locked every object it listed.
    Locked,
    /// The storage has no immutability repovault can set (not S3, or a bucket without Object
    /// Lock): the agreement holds through repovault alone.
    Unavailable,
    /// The last pass failed; the next one tries again. What an earlier pass locked stays so.
    Failed,
}

impl LockStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Locked => "locked",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
        }
    }
}

/// The lock the agreements want at `now_ms`: until the latest end of an active agreement, or a
/// rolling window when one has no end. `None`: no agreement is active.
pub fn wanted(windows: &[EscrowWindow], now_ms: i64) -> Option<Wanted> {
    let active: Vec<&EscrowWindow> = windows.iter().filter(|w| w.is_active(now_ms)).collect();
    if active.is_empty() {
        return None;
    }
    Some(
        match active
            .iter()
            .map(|w| w.until_ms)
            .collect::<Option<Vec<_>>>()
        {
            Some(ends) => Wanted {
                until_ms: ends.into_iter().max().unwrap_or(now_ms),
                open_ended: false,
            },
            None => Wanted {
                until_ms: now_ms + OPEN_ENDED_LOCK_MS,
                open_ended: true,
            },
        },
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub until_ms: i64,
    pub open_ended: bool,
}

/// What one pass over a repository does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Nothing,
    /// Lock every object until `until_ms` (the first pass, or the lock is extended).
    All {
        until_ms: i64,
    },
    /// Lock the objects written since `since_ms` until `until_ms` (backups added some).
    Since {
        since_ms: i64,
        until_ms: i64,
    },
}

/// The pass due for a repository whose agreements want `wanted`, whose last pass left `record`
/// and whose latest successful backup finished at `last_backup_ms`. A lock is never asked to
/// end earlier than one already set (S3 refuses).
pub fn plan_pass(
    wanted: Option<Wanted>,
    record: Option<&EscrowLockRecord>,
    last_backup_ms: Option<i64>,
    now_ms: i64,
) -> Pass {
    let Some(wanted) = wanted else {
        return Pass::Nothing;
    };
    let (Some(until), Some(covered)) = (
        record.and_then(|r| r.locked_until_ms),
        record.and_then(|r| r.covered_through_ms),
    ) else {
        return Pass::All {
            until_ms: wanted.until_ms,
        };
    };
    let extend = if wanted.open_ended {
        until - now_ms < EXTEND_WHEN_LEFT_MS
    } else {
        wanted.until_ms > until
    };
    if extend {
        return Pass::All {
            until_ms: wanted.until_ms.max(until),
        };
    }
    // A backup finished before the last pass began had every object written before its
    // listing; one finished since may have objects the listing missed.
    let failed = record.is_some_and(|r| r.status != LockStatus::Locked);
    if failed || last_backup_ms.is_some_and(|b| b > covered) {
        return Pass::Since {
            since_ms: covered - WRITE_MARGIN_MS,
            until_ms: until,
        };
    }
    Pass::Nothing
}

/// Which listed objects (path, last-modified) a pass locks: every one of a full pass; of a
/// `Since` pass, those modified since (or whose time the storage did not give).
pub fn objects_to_lock(listed: &[(String, Option<i64>)], pass: Pass) -> Vec<&str> {
    listed
        .iter()
        .filter(|(_, modified)| match pass {
            Pass::Nothing => false,
            Pass::All { .. } => true,
            Pass::Since { since_ms, .. } => modified.is_none_or(|m| m >= since_ms),
        })
        .map(|(p, _)| p.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn window(until_ms: Option<i64>, released: bool) -> EscrowWindow {
        EscrowWindow {
            created_at_ms: NOW - DAY_MS,
            until_ms,
            released_at_ms: released.then_some(NOW - 1),
        }
    }

    fn locked(until_ms: i64, covered: i64) -> EscrowLockRecord {
        EscrowLockRecord {
            status: LockStatus::Locked,
            detail: None,
            locked_until_ms: Some(until_ms),
            covered_through_ms: Some(covered),
            locks_set: 10,
            checked_at_ms: covered,
        }
    }

    #[test]
    fn the_latest_end_or_a_rolling_window() {
        assert_eq!(wanted(&[], NOW), None);
        assert_eq!(wanted(&[window(None, true)], NOW), None);
        assert_eq!(wanted(&[window(Some(NOW - 1), false)], NOW), None);
        let fixed = [window(Some(NOW + 5), false), window(Some(NOW + 9), false)];
        assert_eq!(
            wanted(&fixed, NOW),
            Some(Wanted {
                until_ms: NOW + 9,
                open_ended: false
            })
        );
        let open = [window(Some(NOW + 5), false), window(None, false)];
        assert_eq!(
            wanted(&open, NOW),
            Some(Wanted {
                until_ms: NOW + OPEN_ENDED_LOCK_MS,
                open_ended: true
            })
        );
    }

    #[test]
    fn a_first_pass_locks_everything_and_later_ones_only_what_backups_added() {
        let w = Some(Wanted {
            until_ms: NOW + 100 * DAY_MS,
            open_ended: false,
        });
        assert_eq!(
            plan_pass(w, None, Some(NOW), NOW),
            Pass::All {
                until_ms: NOW + 100 * DAY_MS
            }
        );
        let r = locked(NOW + 100 * DAY_MS, NOW - 10 * DAY_MS);
        // No backup since the pass began: nothing to do.
        assert_eq!(
            plan_pass(w, Some(&r), Some(NOW - 10 * DAY_MS), NOW),
            Pass::Nothing
        );
        assert_eq!(
            plan_pass(w, Some(&r), Some(NOW - DAY_MS), NOW),
            Pass::Since {
                since_ms: NOW - 10 * DAY_MS - WRITE_MARGIN_MS,
                until_ms: NOW + 100 * DAY_MS
            }
        );
        // A failed pass is tried again even without a new backup.
        let failed = EscrowLockRecord {
            status: LockStatus::Failed,
            ..r.clone()
        };
        assert!(matches!(
            plan_pass(w, Some(&failed), None, NOW),
            Pass::Since { .. }
        ));
        // No agreement active: nothing, whatever the record says.
        assert_eq!(plan_pass(None, Some(&r), Some(NOW), NOW), Pass::Nothing);
    }

    #[test]
    fn a_longer_agreement_relocks_everything_and_a_shorter_one_never_shortens() {
        let r = locked(NOW + 100 * DAY_MS, NOW - DAY_MS);
        let longer = Some(Wanted {
            until_ms: NOW + 200 * DAY_MS,
            open_ended: false,
        });
        assert_eq!(
            plan_pass(longer, Some(&r), None, NOW),
            Pass::All {
                until_ms: NOW + 200 * DAY_MS
            }
        );
        let shorter = Some(Wanted {
            until_ms: NOW + 50 * DAY_MS,
            open_ended: false,
        });
        assert_eq!(
            plan_pass(shorter, Some(&r), Some(NOW), NOW),
            Pass::Since {
                since_ms: NOW - DAY_MS - WRITE_MARGIN_MS,
                until_ms: NOW + 100 * DAY_MS
            }
        );
    }

    #[test]
    fn a_rolling_lock_is_extended_at_half_time() {
        let open = Some(Wanted {
            until_ms: NOW + OPEN_ENDED_LOCK_MS,
            open_ended: true,
        });
        let fresh = locked(NOW + OPEN_ENDED_LOCK_MS - DAY_MS, NOW - DAY_MS);
        assert_eq!(plan_pass(open, Some(&fresh), None, NOW), Pass::Nothing);
        let old = locked(NOW + EXTEND_WHEN_LEFT_MS - 1, NOW - 16 * DAY_MS);
        assert_eq!(
            plan_pass(open, Some(&old), None, NOW),
            Pass::All {
                until_ms: NOW + OPEN_ENDED_LOCK_MS
            }
        );
    }

    #[test]
    fn objects_since_a_time_or_of_unknown_age() {
        let listed = vec![
            ("data/aa".to_string(), Some(NOW - 5)),
            ("data/bb".to_string(), Some(NOW + 5)),
            ("index/cc".to_string(), None),
        ];
        assert_eq!(
            objects_to_lock(
                &listed,
                Pass::Since {
                    since_ms: NOW,
                    until_ms: NOW + 1
                }
            ),
            vec!["data/bb", "index/cc"]
        );
        assert_eq!(
            objects_to_lock(&listed, Pass::All { until_ms: NOW + 1 }).len(),
            3
        );
        assert!(objects_to_lock(&listed, Pass::Nothing).is_empty());
        assert!(is_locked_kind("config"));
        assert!(is_locked_kind("data/aa/aabb"));
        assert!(!is_locked_kind("locks/x"));
        assert!(!is_locked_kind("catalog/b.json"));
    }
}
