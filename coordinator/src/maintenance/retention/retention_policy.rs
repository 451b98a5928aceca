//! An organisation's retention policy: what the planner (`mod.rs`) is told to keep, and
//! how two policies compare, so that a change that would remove backups is told from one that
//! cannot.

use serde::{Deserialize, Serialize};

/// Default retention in days: 90, the default the README's design decisions state ("Retention").
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// An organisation's retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Backups younger than this are kept.
    #[serde(default = "default_days")]
    pub days: u32,
    /// The newest N successful backups are kept.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// The newest successful backup of each of the last N hours that have one is kept.
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    /// As `keep_hourly`, by day.
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// As `keep_hourly`, by ISO week.
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    /// As `keep_hourly`, by month.
    #[serde(default)]
    pub keep_monthly: Option<u32>,
}

fn default_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: DEFAULT_RETENTION_DAYS,
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
        }
    }
}

impl RetentionPolicy {
    /// Whether this policy keeps every backup `other` keeps, whatever the backups: each rule is
    /// at least as generous (more days, higher counts; an absent count is 0). Every rule of the
    /// planner only keeps more when its number grows, and a backup is kept when any rule keeps
    /// it, so a change from `other` to such a policy removes nothing.
    pub fn keeps_all_of(&self, other: &RetentionPolicy) -> bool {
        let n = |v: Option<u32>| v.unwrap_or(0);
        self.days >= other.days
            && n(self.keep_last) >= n(other.keep_last)
            && n(self.keep_hourly) >= n(other.keep_hourly)
            && n(self.keep_daily) >= n(other.keep_daily)
            && n(self.keep_weekly) >= n(other.keep_weekly)
            && n(self.keep_monthly) >= n(other.keep_monthly)
    }

    /// One line for messages and the audit log, e.g. `days 30, keep-last 5`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("days {}", self.days)];
        for (name, v) in [
            ("keep-last", self.keep_last),
            ("keep-hourly", self.keep_hourly),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
        ] {
            if let Some(n) = v {
                parts.push(format!("{name} {n}"));
            }
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: u32) -> RetentionPolicy {
        RetentionPolicy {
            days: n,
            ..Default::default()
        }
    }

    #[test]
    fn shortening_is_told_from_lengthening() {
        let keep_last = |n| RetentionPolicy {
            keep_last: Some(n),
            ..days(1)
        };
        assert!(days(90).keeps_all_of(&days(30)));
        assert!(!days(0).keeps_all_of(&days(90)));
        assert!(keep_last(5).keeps_all_of(&days(1)));
        assert!(!days(90).keeps_all_of(&keep_last(5)), "a count dropped");
        assert_eq!(keep_last(5).describe(), "days 1, keep-last 5");
    }

    #[test]
    fn default_policy_is_90_days() {
        assert_eq!(RetentionPolicy::default().days, 90);
        let parsed: RetentionPolicy = serde_json::from_str("{}").expect("empty policy");
        assert_eq!(parsed, RetentionPolicy::default());
    }
}
