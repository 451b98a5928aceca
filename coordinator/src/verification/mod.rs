//! Verification of backups, the pure part: what a check result means for the backup,
//! `size_match` (the one check the coordinator runs itself, since it alone knows the previous
//! backup), when the read-back rotation is due, and the `[verification]` configuration.
//!
//! The other checks run on workers (`worker/src/verify/`): `zip_integrity`, `git_fsck`,
//! `metadata_valid`, `commit_count_match`.

use crate::model::TaskId;
use std::time::Duration;

use crate::tasks::kinds::outcome::VerifyResult;
use repovault_common::units::human_bytes as human;

/// Recovery drills: the drill schedule, picking the repository, the loop.
pub mod drills;
/// The shell: manual verification, the read-back rotation, recording outcomes.
pub mod verify_ledger;
pub mod verify_runs;

use crate::model::{CheckOutcome, CheckResult, Verification, VerifyRun, VerifyStatus};

pub const ZIP_INTEGRITY: &str = "zip_integrity";
pub const GIT_FSCK: &str = "git_fsck";
pub const METADATA_VALID: &str = "metadata_valid";
pub const COMMIT_COUNT_MATCH: &str = "commit_count_match";
pub const SIZE_MATCH: &str = "size_match";

/// Every check a backup's verification reports, in display order.
pub const CHECKS: [&str; 5] = [
    ZIP_INTEGRITY,
    GIT_FSCK,
    METADATA_VALID,
    COMMIT_COUNT_MATCH,
    SIZE_MATCH,
];

/// `[verification]` in the coordinator's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    /// `size_match` fails when a backup is smaller than this percentage of the previous one
    /// (default 50: a repository does not lose half its history by accident, a broken fetch
    /// does).
    pub shrink_fail_below_percent: u32,
    /// `size_match` passes with a warning when a backup grew by more than this percentage
    /// (default 200, i.e. three times the previous size: a large file committed by mistake).
    pub growth_warn_above_percent: u32,
    /// Every pack of every repository is read back at least this often (default 30d, the
    /// issue's bound; a pack is read at its backup and then by the rotation).
    pub readback_max_age: String,
    /// How often the rotation visits one repository (default 7d). Each visit reads the packs
    /// older than `readback_max_age - rotation_every`, so no pack waits longer than
    /// `readback_max_age`, and each pack is read about once per 23-30 days.
    pub rotation_every: String,
    /// Rotation tasks leased at once, fleet-wide (default 2): the rotation reads whole
    /// repositories from storage, and must not crowd out backups.
    pub rotation_concurrency: usize,
    /// How often the rotation looks for due repositories (default 10m).
    pub rotation_interval: String,
    /// The drill schedule of an organisation that set none (default `monthly`; `none`: off).
    pub default_drill: String,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            shrink_fail_below_percent: 50,
            growth_warn_above_percent: 200,
            readback_max_age: "30d".into(),
            rotation_every: "7d".into(),
            rotation_concurrency: 2,
            rotation_interval: "10m".into(),
            default_drill: "monthly".into(),
        }
    }
}

/// [`VerificationConfig`], validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationOptions {
    pub size: SizeThresholds,
    pub readback_max_age: Duration,
    pub rotation_every: Duration,
    pub rotation_concurrency: usize,
    pub rotation_interval: Duration,
    /// `None`: no drills unless an organisation sets a schedule.
    pub default_drill: Option<String>,
}

impl Default for VerificationOptions {
    fn default() -> Self {
        VerificationConfig::default()
            .resolve()
            .expect("the defaults are valid")
    }
}

impl VerificationConfig {
    pub fn resolve(&self) -> Result<VerificationOptions, crate::config::ConfigError> {
        use crate::config::{ConfigError, parse_duration};
        let max_age = parse_duration("verification.readback_max_age", &self.readback_max_age)?;
        let every = parse_duration("verification.rotation_every", &self.rotation_every)?;
        if every >= max_age {
            return Err(ConfigError::Invalid(format!(
                "verification.rotation_every ({}) must be shorter than readback_max_age ({})",
                self.rotation_every, self.readback_max_age
            )));
        }
        if self.shrink_fail_below_percent > 100 {
            return Err(ConfigError::Invalid(format!(
                "verification.shrink_fail_below_percent {} must be within 0..=100",
                self.shrink_fail_below_percent
            )));
        }
        let default_drill = match self.default_drill.trim() {
            "" | "none" => None,
            s => Some(
                crate::schedule::Schedule::parse(s)
                    .map_err(|e| ConfigError::Invalid(format!("verification.default_drill: {e}")))?
                    .as_str()
                    .to_string(),
            ),
        };
        Ok(VerificationOptions {
            size: SizeThresholds {
                shrink_fail_below_percent: self.shrink_fail_below_percent,
                growth_warn_above_percent: self.growth_warn_above_percent,
            },
            readback_max_age: max_age,
            rotation_every: every,
            rotation_concurrency: self.rotation_concurrency.max(1),
            rotation_interval: parse_duration(
                "verification.rotation_interval",
                &self.rotation_interval,
            )?,
            default_drill,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeThresholds {
    pub shrink_fail_below_percent: u32,
    pub growth_warn_above_percent: u32,
}

/// `size_match`: this backup's size against the previous successful backup's.
pub fn size_match(current: u64, previous: Option<u64>, t: SizeThresholds) -> CheckResult {
    let check = |result, detail: String, warning| CheckResult {
        name: SIZE_MATCH.into(),
        result,
        detail,
        warning,
        incomplete: false,
    };
    let previous = match previous {
        Some(p) if p > 0 => p,
        Some(_) => {
            return check(
                CheckOutcome::Skipped,
                "the previous backup was empty: nothing to compare with".into(),
                false,
            );
        }
        None => {
            return check(
                CheckOutcome::Skipped,
                "the first backup of the repository: nothing to compare with".into(),
                false,
            );
        }
    };
    let (cur, prev) = (u128::from(current), u128::from(previous));
    let percent = cur * 100 / prev;
    let sizes = format!(
        "{} against the previous backup's {} ({percent}%)",
        human(current),
        human(previous)
    );
    if cur * 100 < prev * u128::from(t.shrink_fail_below_percent) {
        check(
            CheckOutcome::Fail,
            format!(
                "the backup shrank to {sizes}, below {}%",
                t.shrink_fail_below_percent
            ),
            false,
        )
    } else if cur * 100 > prev * (100 + u128::from(t.growth_warn_above_percent)) {
        check(
            CheckOutcome::Pass,
            format!(
                "warning: the backup grew to {sizes}, more than {}% growth",
                t.growth_warn_above_percent
            ),
            true,
        )
    } else {
        check(CheckOutcome::Pass, sizes, false)
    }
}

/// Verified when every check passed or was skipped as not applicable; failed otherwise. An
/// empty list is not a verification.
pub fn status_of(checks: &[CheckResult]) -> VerifyStatus {
    let sound = |c: &CheckResult| match c.result {
        CheckOutcome::Pass => true,
        CheckOutcome::Skipped => !c.incomplete,
        CheckOutcome::Fail => false,
    };
    if !checks.is_empty() && checks.iter().all(sound) {
        VerifyStatus::Verified
    } else {
        VerifyStatus::Failed
    }
}

/// One line naming what kept a finished verification from `verified` (`None` when verified or
/// not finished).
pub fn failure_summary(v: &Verification) -> Option<String> {
    if v.status != VerifyStatus::Failed {
        return None;
    }
    let failing: Vec<String> = v
        .checks
        .iter()
        .filter(|c| {
            c.result == CheckOutcome::Fail || (c.incomplete && c.result != CheckOutcome::Pass)
        })
        .map(|c| {
            format!(
                "{} {}: {}",
                c.name,
                c.result.as_str(),
                first_line(&c.detail)
            )
        })
        .collect();
    Some(if failing.is_empty() {
        "no check ran".into()
    } else {
        failing.join("; ")
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The verification of a finished run: the worker's checks, `size_match`, in display order.
pub fn finished(
    run: VerifyRun,
    mut checks: Vec<CheckResult>,
    size: CheckResult,
    result: &VerifyResult,
    now_ms: i64,
    task_id: Option<TaskId>,
) -> Verification {
    checks.retain(|c| c.name != SIZE_MATCH);
    checks.push(size);
    checks.sort_by_key(|c| {
        CHECKS
            .iter()
            .position(|n| *n == c.name)
            .unwrap_or(CHECKS.len())
    });
    Verification {
        status: status_of(&checks),
        checks,
        run,
        finished_at_ms: Some(now_ms),
        packs_read: result.packs_read,
        bytes_read: result.bytes_read,
        task_id,
    }
}

/// A pack a read-back (`run`) found damaged fails `zip_integrity` of every backup that uses it;
/// the other checks keep what they last said. Damage found earlier stays named: a check that
/// already failed keeps its detail, with the new finding added unless it already says it.
pub fn apply_damage(
    v: Option<&Verification>,
    damage: &str,
    run: VerifyRun,
    now_ms: i64,
) -> Verification {
    let mut checks = v.map(|v| v.checks.clone()).unwrap_or_default();
    let failed = CheckResult {
        name: ZIP_INTEGRITY.into(),
        result: CheckOutcome::Fail,
        detail: format!(
            "{} found a pack this backup uses damaged: {damage}",
            match run {
                VerifyRun::Rotation => "the read-back rotation",
                VerifyRun::Manual => "`backup verify` of another backup",
                VerifyRun::Restore => "a restore",
                VerifyRun::Drill => "a restore drill",
                VerifyRun::Automatic => "a later backup's read-back",
            }
        ),
        warning: false,
        incomplete: false,
    };
    match checks.iter_mut().find(|c| c.name == ZIP_INTEGRITY) {
        Some(c) if c.result == CheckOutcome::Fail && c.detail.contains(damage) => {}
        Some(c) if c.result == CheckOutcome::Fail => {
            c.detail = format!("{}; then {}", c.detail, failed.detail);
        }
        Some(c) => *c = failed,
        None => checks.insert(0, failed),
    }
    Verification {
        status: VerifyStatus::Failed,
        checks,
        run,
        finished_at_ms: Some(now_ms),
        packs_read: v.map_or(0, |v| v.packs_read),
        bytes_read: v.map_or(0, |v| v.bytes_read),
        task_id: v.and_then(|v| v.task_id.clone()),
    }
}

/// Whether the rotation should visit a repository: never visited, or visited `every` ago.
pub fn rotation_due(last_readback_at_ms: Option<i64>, now_ms: i64, every: Duration) -> bool {
    let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    last_readback_at_ms.is_none_or(|at| now_ms.saturating_sub(at) >= every)
}

/// Whether a repository's packs are overdue for the read-back (not visited within the bound).
pub fn readback_overdue(last_readback_at_ms: Option<i64>, now_ms: i64, max_age: Duration) -> bool {
    rotation_due(last_readback_at_ms, now_ms, max_age)
}

/// The age limit a rotation reads with: packs older than this are read again, so that with a
/// visit every `every` none waits longer than `max_age`.
pub fn rotation_pack_age(max_age: Duration, every: Duration) -> Duration {
    max_age.saturating_sub(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SizeThresholds = SizeThresholds {
        shrink_fail_below_percent: 50,
        growth_warn_above_percent: 200,
    };

    fn check(name: &str, result: CheckOutcome, incomplete: bool) -> CheckResult {
        CheckResult {
            name: name.into(),
            result,
            detail: format!("{name} detail"),
            warning: false,
            incomplete,
        }
    }

    #[test]
    fn size_match_fails_below_half_and_names_both_sizes() {
        let c = size_match(100 * 1024, Some(1024 * 1024), T);
        assert_eq!(c.result, CheckOutcome::Fail);
        assert!(c.detail.contains("100.0 KiB"), "{}", c.detail);
        assert!(c.detail.contains("1.0 MiB"), "{}", c.detail);
        assert!(c.detail.contains("(9%)"), "{}", c.detail);
        // Exactly half is still a pass.
        assert_eq!(size_match(50, Some(100), T).result, CheckOutcome::Pass);
        assert_eq!(size_match(49, Some(100), T).result, CheckOutcome::Fail);
    }

    #[test]
    fn size_match_warns_above_tripling_but_passes() {
        let c = size_match(301, Some(100), T);
        assert_eq!((c.result, c.warning), (CheckOutcome::Pass, true));
        assert!(c.detail.starts_with("warning:"), "{}", c.detail);
        let c = size_match(300, Some(100), T);
        assert_eq!((c.result, c.warning), (CheckOutcome::Pass, false));
    }

    #[test]
    fn size_match_skips_without_a_previous_backup() {
        assert_eq!(size_match(5, None, T).result, CheckOutcome::Skipped);
        assert_eq!(size_match(5, Some(0), T).result, CheckOutcome::Skipped);
        assert!(!size_match(5, None, T).incomplete);
    }

    #[test]
    fn thresholds_are_configurable() {
        let strict = SizeThresholds {
            shrink_fail_below_percent: 90,
            growth_warn_above_percent: 10,
        };
        assert_eq!(size_match(85, Some(100), strict).result, CheckOutcome::Fail);
        assert!(size_match(111, Some(100), strict).warning);
    }

    #[test]
    fn status_needs_every_applicable_check_to_pass() {
        use CheckOutcome::*;
        let all_pass: Vec<_> = CHECKS.iter().map(|n| check(n, Pass, false)).collect();
        assert_eq!(status_of(&all_pass), VerifyStatus::Verified);
        let mut na = all_pass.clone();
        na[2] = check(METADATA_VALID, Skipped, false);
        assert_eq!(status_of(&na), VerifyStatus::Verified, "not applicable");
        let mut incomplete = all_pass.clone();
        incomplete[2] = check(METADATA_VALID, Skipped, true);
        assert_eq!(status_of(&incomplete), VerifyStatus::Failed);
        let mut failed = all_pass.clone();
        failed[1] = check(GIT_FSCK, Fail, false);
        assert_eq!(status_of(&failed), VerifyStatus::Failed);
        assert_eq!(status_of(&[]), VerifyStatus::Failed);
    }

    #[test]
    fn failure_summary_names_the_failing_checks() {
        use CheckOutcome::*;
        let checks = vec![
            check(ZIP_INTEGRITY, Pass, false),
            check(GIT_FSCK, Fail, false),
            check(METADATA_VALID, Skipped, true),
        ];
        let v = finished(
            VerifyRun::Automatic,
            checks,
            size_match(10, Some(10), T),
            &VerifyResult::default(),
            1,
            None,
        );
        assert_eq!(v.status, VerifyStatus::Failed);
        let s = failure_summary(&v).expect("failed");
        assert!(s.contains("git_fsck fail: git_fsck detail"), "{s}");
        assert!(s.contains("metadata_valid skipped"), "{s}");
        assert!(!s.contains("zip_integrity"), "{s}");
        // Display order, size_match last.
        let names: Vec<_> = v.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [ZIP_INTEGRITY, GIT_FSCK, METADATA_VALID, SIZE_MATCH]);
    }

    #[test]
    fn damage_fails_zip_integrity_and_keeps_the_rest() {
        use CheckOutcome::*;
        let v = finished(
            VerifyRun::Automatic,
            vec![
                check(ZIP_INTEGRITY, Pass, false),
                check(GIT_FSCK, Pass, false),
            ],
            size_match(10, Some(10), T),
            &VerifyResult::default(),
            1,
            None,
        );
        let d = apply_damage(
            Some(&v),
            "pack 12ab is missing from storage",
            VerifyRun::Rotation,
            2,
        );
        assert_eq!(d.status, VerifyStatus::Failed);
        assert_eq!(d.checks[0].result, Fail);
        assert!(d.checks[0].detail.contains("12ab"));
        assert_eq!(d.checks[1].result, Pass);
        assert_eq!(d.run, VerifyRun::Rotation);
        // A second finding keeps the first named; the same finding again changes nothing.
        let again = apply_damage(Some(&d), "pack 34cd is damaged", VerifyRun::Manual, 3);
        assert!(
            again.checks[0].detail.contains("12ab"),
            "{:?}",
            again.checks[0]
        );
        assert!(
            again.checks[0].detail.contains("34cd"),
            "{:?}",
            again.checks[0]
        );
        let same = apply_damage(Some(&again), "pack 34cd is damaged", VerifyRun::Manual, 4);
        assert_eq!(same.checks[0].detail, again.checks[0].detail);
    }

    #[test]
    fn rotation_visits_bound_the_pack_age() {
        let day = Duration::from_secs(86_400);
        assert!(rotation_due(None, 0, 7 * day));
        let ms = |d: u64| i64::try_from(d * 86_400_000).expect("fits");
        assert!(!rotation_due(Some(0), ms(6), 7 * day));
        assert!(rotation_due(Some(0), ms(7), 7 * day));
        assert_eq!(rotation_pack_age(30 * day, 7 * day), 23 * day);
        assert!(readback_overdue(Some(0), ms(31), 30 * day));
        assert!(!readback_overdue(Some(0), ms(29), 30 * day));
    }

    #[test]
    fn config_validation() {
        assert!(VerificationConfig::default().resolve().is_ok());
        let bad = VerificationConfig {
            rotation_every: "40d".into(),
            ..Default::default()
        };
        assert!(bad.resolve().is_err());
        let off = VerificationConfig {
            default_drill: "none".into(),
            ..Default::default()
        };
        assert_eq!(off.resolve().expect("valid").default_drill, None);
        let bad_drill = VerificationConfig {
            default_drill: "fortnightly".into(),
            ..Default::default()
        };
        assert!(bad_drill.resolve().is_err());
    }
}
