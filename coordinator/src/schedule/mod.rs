//! Schedules, pure: when a repository's scheduled backups are due, where in its slot each
//! repository runs, and whether a backup is full or incremental. Time is always a parameter
//! (milliseconds since the Unix epoch, UTC); nothing here reads a clock.
//!
//! A schedule is `hourly`, `daily`, `weekly`, `monthly` (cron `0 * * * *`, `0 0 * * *`,
//! `0 0 * * 0`, `0 0 1 * *`) or a five-field cron expression, evaluated in an IANA time zone
//! (default UTC). A *slot* is the interval from one firing to the next. Daylight saving: a local
//! time that does not exist (spring forward) fires once at the next valid instant; a local time
//! that occurs twice (fall back) fires once, at its first occurrence.

mod cron;
pub mod policy;
/// On-push backups: push webhooks, deliveries, starting due bursts.
pub mod push_backups;
/// The shell: materialising due slots into tasks, schedule settings.
pub mod schedule_runs;
/// Push webhooks, pure: signature checks and the burst window.
pub mod webhook_bursts;

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

pub use cron::Cron;
pub use policy::{BackupKind, TypeInputs, backup_type};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron: {0}")]
    Cron(String),
    #[error(
        "schedule {0:?} is not one of hourly, daily, weekly, monthly or a five-field cron expression"
    )]
    Unknown(String),
    #[error("time zone {0:?} is not an IANA time zone name (such as Europe/Berlin or UTC)")]
    TimeZone(String),
    #[error("cron expression {0:?} never fires")]
    Never(String),
}

/// A schedule as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Cron(String),
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "hourly" => Schedule::Hourly,
            "daily" => Schedule::Daily,
            "weekly" => Schedule::Weekly,
            "monthly" => Schedule::Monthly,
            _ if t.split_whitespace().count() == 5 => {
                let c = Cron::parse(t)?;
                if !c.can_match() {
                    return Err(ScheduleError::Never(t.to_string()));
                }
                Schedule::Cron(t.split_whitespace().collect::<Vec<_>>().join(" "))
            }
            _ if t.split_whitespace().count() > 1 => {
                // Report the cron parser's reason (wrong number of fields).
                Cron::parse(t)?;
                return Err(ScheduleError::Unknown(t.to_string()));
            }
            _ => return Err(ScheduleError::Unknown(t.to_string())),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Schedule::Hourly => "hourly",
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
            Schedule::Monthly => "monthly",
            Schedule::Cron(c) => c,
        }
    }

    fn cron_expr(&self) -> &str {
        match self {
            Schedule::Hourly => "0 * * * *",
            Schedule::Daily => "0 0 * * *",
            Schedule::Weekly => "0 0 * * 0",
            Schedule::Monthly => "0 0 1 * *",
            Schedule::Cron(c) => c,
        }
    }
}

/// Parses an IANA time zone name; empty is UTC.
pub fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    if name.trim().is_empty() {
        return Ok(Tz::UTC);
    }
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

/// How far back or forward the slot search looks: in eight years every date pattern a
/// [`Cron::can_match`] accepts occurs.
const SEARCH_DAYS: i64 = 366 * 8;

/// A schedule in a time zone, ready to compute slots.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schedule: Schedule,
    pub tz: Tz,
    cron: Cron,
}

impl Plan {
    pub fn new(schedule: &Schedule, tz: &str) -> Result<Self, ScheduleError> {
        Ok(Self {
            schedule: schedule.clone(),
            tz: parse_tz(tz)?,
            cron: Cron::parse(schedule.cron_expr())?,
        })
    }

    /// A local wall-clock time as an instant: the first occurrence of a repeated time, the next
    /// valid instant for a time in a gap.
    fn resolve(&self, local: NaiveDateTime) -> Option<i64> {
        let mut n = local;
        // Gaps are at most a few hours (the largest observed: 24 h, Samoa 2011).
        for _ in 0..=(25 * 60) {
            if let Some(t) = self.tz.from_local_datetime(&n).earliest() {
                return Some(t.with_timezone(&Utc).timestamp_millis());
            }
            n += Duration::minutes(1);
        }
        None
    }

    fn day_instants(&self, d: NaiveDate, out: &mut Vec<i64>) {
        if !self.cron.matches_date(d) {
            return;
        }
        for (h, m) in self.cron.times() {
            if let Some(t) = d.and_hms_opt(h, m, 0).and_then(|n| self.resolve(n)) {
                out.push(t);
            }
        }
    }

    fn local_date(&self, ms: i64) -> Option<NaiveDate> {
        let utc = chrono::DateTime::from_timestamp_millis(ms)?;
        Some(utc.with_timezone(&self.tz).date_naive())
    }

    /// Every slot start `s` with `from < s <= to`, ascending, each once.
    pub fn slots_between(&self, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let (Some(a), Some(b)) = (self.local_date(from_ms), self.local_date(to_ms)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // A day earlier: a gap time of the previous day may resolve into this one.
        let mut d = a - Duration::days(1);
        while d <= b {
            self.day_instants(d, &mut out);
            match d.succ_opt() {
                Some(n) => d = n,
                None => break,
            }
        }
        out.sort_unstable();
        out.dedup();
        out.retain(|&s| s > from_ms && s <= to_ms);
        out
    }

    /// The first slot start after `after_ms`.
    pub fn next_slot(&self, after_ms: i64) -> Option<i64> {
        let mut d = self.local_date(after_ms)? - Duration::days(1);
        let mut best: Option<i64> = None;
        let mut buf = Vec::new();
        for _ in 0..SEARCH_DAYS {
            buf.clear();
            self.day_instants(d, &mut buf);
            if let Some(&t) = buf.iter().filter(|&&t| t > after_ms).min() {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
            // A later day's times are later, but a gap time may resolve into the next day:
            // one more day settles it.
            if best.is_some_and(|b| self.local_date(b) < Some(d)) {
                return best;
            }
            d = d.succ_opt()?;
        }
        best
    }

    /// The last slot start at or before `at_ms`.
    pub fn prev_slot(&self, at_ms: i64) -> Option<i64> {
        let mut d = self.local_date(at_ms)? + Duration::days(1);
        let mut buf = Vec::new();
        for _ in 0..SEARCH_DAYS {
            buf.clear();
            self.day_instants(d, &mut buf);
            // Gap resolution moves times forward only, so the latest time of the latest
            // matching day at or before `at` is the answer once any is found; the day before
            // is looked at too, for a gap time resolving into this day.
            let here = buf.iter().filter(|&&t| t <= at_ms).max().copied();
            if let Some(t) = here {
                buf.clear();
                if let Some(p) = d.pred_opt() {
                    self.day_instants(p, &mut buf);
                }
                let prev = buf.iter().filter(|&&t| t <= at_ms).max().copied();
                return Some(prev.map_or(t, |p| p.max(t)));
            }
            d = d.pred_opt()?;
        }
        None
    }

    /// The slot containing `at_ms`: `(start, length)`.
    pub fn slot_at(&self, at_ms: i64) -> Option<(i64, i64)> {
        let s = self.prev_slot(at_ms)?;
        let n = self.next_slot(s)?;
        Some((s, n - s))
    }
}

/// The widest spread of one slot's runs: an hour keeps a nightly `0 2 * * *` inside its
/// night, and spreads 10,000 repositories at under 3 a second on average.
pub const SPREAD_MAX_MS: i64 = 3_600_000;

/// Over what part of a slot its runs are spread: half of it (the run then has the other half
/// to finish before the next slot comes), at most [`SPREAD_MAX_MS`].
pub fn spread_window_ms(slot_len_ms: i64) -> i64 {
    (slot_len_ms / 2).clamp(0, SPREAD_MAX_MS)
}

/// A stable 64-bit hash of a repository id (FNV-1a, then the SplitMix64 finaliser so ids that
/// differ in one character land far apart). Stable across builds and platforms, unlike std's
/// `DefaultHasher`.
pub fn stable_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Where in a slot of `slot_len_ms` the repository runs: a stable fraction of the spread
/// window, always inside the slot.
pub fn repo_offset_ms(repo_id: &str, slot_len_ms: i64) -> i64 {
    let w = spread_window_ms(slot_len_ms);
    if w <= 0 {
        return 0;
    }
    // w <= SPREAD_MAX_MS fits u64 and the remainder fits i64.
    i64::try_from(stable_hash(repo_id) % (w as u64)).unwrap_or(0)
}

/// What the materialiser should do for one repository in one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    No,
    /// Materialise the run of this slot.
    Run(i64),
}

/// Whether a repository has a run due at `now_ms`. `latest` is the slot containing now
/// (start, length) and `previous` the slot before it; `last` the last slot materialised for
/// the repository (persisted). A slot runs at its start plus the repository's offset. A slot
/// missed entirely (coordinator down) runs once at once, and only the latest such slot; a
/// repository never materialised before starts with the current slot (no catch-up storm when
/// schedules are switched on for thousands of repositories).
pub fn due(
    repo_id: &str,
    latest: (i64, i64),
    previous: Option<(i64, i64)>,
    last: Option<i64>,
    now_ms: i64,
) -> Due {
    let (s, len) = latest;
    if last.is_some_and(|l| l >= s) {
        return Due::No;
    }
    if now_ms >= s + repo_offset_ms(repo_id, len) {
        return Due::Run(s);
    }
    match (previous, last) {
        (Some((p, _)), Some(l)) if l < p => Due::Run(p),
        _ => Due::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_millis()
    }
    fn show(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn parses_schedules() {
        assert_eq!(Schedule::parse("Daily"), Ok(Schedule::Daily));
        assert_eq!(
            Schedule::parse(" 0  2 * * * "),
            Ok(Schedule::Cron("0 2 * * *".into()))
        );
        assert!(matches!(
            Schedule::parse("fortnightly"),
            Err(ScheduleError::Unknown(_))
        ));
        assert!(matches!(
            Schedule::parse("0 2 * *"),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 0 31 2 *"),
            Err(ScheduleError::Never(_))
        ));
        assert!(parse_tz("Europe/Berlin").is_ok());
        assert_eq!(parse_tz(""), Ok(Tz::UTC));
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn named_schedules_in_utc() {
        let p = Plan::new(&Schedule::Daily, "UTC").expect("plan");
        let s = p.slots_between(utc("2026-11-20T12:00:00Z"), utc("2026-11-23T00:00:00Z"));
        assert_eq!(
            s.iter().map(|&t| show(t)).collect::<Vec<_>>(),
            [
                "2026-11-21T00:00:00Z",
                "2026-11-22T00:00:00Z",
                "2026-11-23T00:00:00Z"
            ]
        );
        let w = Plan::new(&Schedule::Weekly, "UTC").expect("plan");
        assert_eq!(
            w.next_slot(utc("2026-11-23T10:00:00Z"))
                .map(show)
                .as_deref(),
            Some("2026-11-29T00:00:00Z")
        );
        let m = Plan::new(&Schedule::Monthly, "UTC").expect("plan");
        assert_eq!(
            m.prev_slot(utc("2026-11-23T10:00:00Z"))
                .map(show)
                .as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        let h = Plan::new(&Schedule::Hourly, "UTC").expect("plan");
        assert_eq!(
            h.slot_at(utc("2026-11-23T10:59:59Z")),
            Some((utc("2026-11-23T10:00:00Z"), 3_600_000))
        );
        // A slot start is its own previous slot, and not its own next.
        assert_eq!(
            h.prev_slot(utc("2026-11-23T10:00:00Z")),
            Some(utc("2026-11-23T10:00:00Z"))
        );
        assert_eq!(
            h.next_slot(utc("2026-11-23T10:00:00Z")),
            Some(utc("2026-11-23T11:00:00Z"))
        );
    }

    /// Berlin springs forward on 2026-03-29 at 02:00 CET (01:00 UTC) to 03:00 CEST.
    #[test]
    fn spring_forward_runs_once_at_the_next_valid_instant() {
        let p = Plan::new(&Schedule::Cron("30 2 * * *".into()), "Europe/Berlin").expect("plan");
        let s = p.slots_between(utc("2026-03-27T12:00:00Z"), utc("2026-03-31T12:00:00Z"));
        assert_eq!(
            s.iter().map(|&t| show(t)).collect::<Vec<_>>(),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
        // Every quarter hour inside the gap collapses onto one run at 03:00 CEST.
        let q = Plan::new(&Schedule::Cron("*/15 2 * * *".into()), "Europe/Berlin").expect("plan");
        let s = q.slots_between(utc("2026-03-28T23:00:00Z"), utc("2026-03-29T23:00:00Z"));
        assert_eq!(s, vec![utc("2026-03-29T01:00:00Z")]);
        // Hourly: 02:00 local is missing; the day still has 23 runs, none doubled.
        let h = Plan::new(&Schedule::Hourly, "Europe/Berlin").expect("plan");
        let s = h.slots_between(
            utc("2026-03-28T23:00:00Z") - 1,
            utc("2026-03-29T22:00:00Z") - 1,
        );
        assert_eq!(s.len(), 23);
        assert!(s.windows(2).all(|w| w[1] - w[0] == 3_600_000));
        // next/prev agree with slots_between around the gap.
        assert_eq!(
            p.next_slot(utc("2026-03-28T01:30:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            p.prev_slot(utc("2026-03-29T23:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    /// Berlin falls back on 2026-10-25 at 03:00 CEST (01:00 UTC) to 02:00 CET.
    #[test]
    fn fall_back_runs_once_at_the_first_occurrence() {
        let p = Plan::new(&Schedule::Cron("30 2 * * *".into()), "Europe/Berlin").expect("plan");
        let s = p.slots_between(utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z"));
        assert_eq!(
            s.iter().map(|&t| show(t)).collect::<Vec<_>>(),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first 02:30
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        let d = Plan::new(&Schedule::Daily, "Europe/Berlin").expect("plan");
        let s = d.slots_between(utc("2026-10-20T00:00:00Z"), utc("2026-10-30T00:00:00Z"));
        assert_eq!(s.len(), 10);
        assert_eq!(
            d.slot_at(utc("2026-10-25T12:00:00Z")),
            Some((utc("2026-10-24T22:00:00Z"), 25 * 3_600_000)) // midnight CEST to midnight CET
        );
        // Hourly across the repeated hour: 24 distinct runs in the 25-hour day.
        let h = Plan::new(&Schedule::Hourly, "Europe/Berlin").expect("plan");
        let s = h.slots_between(
            utc("2026-10-24T22:00:00Z") - 1,
            utc("2026-10-25T23:00:00Z") - 1,
        );
        assert_eq!(s.len(), 24);
        let mut u = s.clone();
        u.dedup();
        assert_eq!(u, s);
    }

    #[test]
    fn next_and_prev_agree_with_slots_between() {
        for (sched, tz) in [
            ("0 2 * * *", "Europe/Berlin"),
            ("*/20 1-3 * * 1-5", "Europe/Berlin"),
            ("0 0 1 * *", "America/New_York"),
            ("hourly", "Australia/Lord_Howe"),
        ] {
            let p = Plan::new(&Schedule::parse(sched).expect("parse"), tz).expect("plan");
            let from = utc("2026-01-01T00:00:00Z");
            let to = utc("2026-12-31T00:00:00Z");
            let all = p.slots_between(from, to);
            assert!(!all.is_empty());
            let mut t = from;
            for &s in &all {
                assert_eq!(p.next_slot(t), Some(s), "{sched} {tz} after {}", show(t));
                assert_eq!(p.prev_slot(s), Some(s));
                assert_eq!(p.prev_slot(s + 1), Some(s));
                t = s;
            }
        }
    }

    #[test]
    fn offsets_are_stable_and_inside_the_slot() {
        assert_eq!(
            repo_offset_ms("r1", 3_600_000),
            repo_offset_ms("r1", 3_600_000)
        );
        assert_ne!(
            repo_offset_ms("r1", 3_600_000),
            repo_offset_ms("r2", 3_600_000)
        );
        for len in [60_000, 3_600_000, 86_400_000, 31 * 86_400_000] {
            for i in 0..1000 {
                let o = repo_offset_ms(&format!("r{i}"), len);
                assert!((0..len / 2).contains(&o) && o < SPREAD_MAX_MS);
            }
        }
        assert_eq!(repo_offset_ms("r1", 0), 0);
    }

    /// 10,000 repositories on one schedule never enqueue in the same second: per second at
    /// most a small multiple of the mean.
    #[test]
    fn ten_thousand_repositories_spread_over_the_slot() {
        // Fixed ids shaped like generated ones: the bound is checked on one known population, so
        // the test cannot pass or fail by the luck of a random draw.
        let ids: Vec<String> = (0..10_000u64)
            .map(|i| format!("repo-{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        for (len, bound) in [(3_600_000i64, 20usize), (86_400_000, 12)] {
            let mut per_second = std::collections::HashMap::<i64, usize>::new();
            for id in &ids {
                *per_second
                    .entry(repo_offset_ms(id, len) / 1000)
                    .or_default() += 1;
            }
            let max = per_second.values().copied().max().unwrap_or(0);
            let mean = 10_000.0 / (spread_window_ms(len) / 1000) as f64;
            assert!(
                max <= bound,
                "slot {len} ms: {max} in one second (mean {mean:.1})"
            );
        }
        // Sequential ids spread as well as random ones.
        let mut per_second = std::collections::HashMap::<i64, usize>::new();
        for i in 0..10_000 {
            *per_second
                .entry(repo_offset_ms(&format!("r{i:08}"), 86_400_000) / 1000)
                .or_default() += 1;
        }
        assert!(per_second.values().all(|&n| n <= 12));
    }

    #[test]
    fn due_once_per_slot_and_catches_up_the_latest_missed() {
        let h = 3_600_000;
        let s = utc("2026-11-23T10:00:00Z");
        let off = repo_offset_ms("rX", h);
        assert!(off > 0);
        let latest = (s, h);
        let prev = Some((s - h, h));
        // Before its offset: nothing (last was the previous slot).
        assert_eq!(due("rX", latest, prev, Some(s - h), s + off - 1), Due::No);
        assert_eq!(due("rX", latest, prev, Some(s - h), s + off), Due::Run(s));
        // Once materialised, never again in the slot.
        assert_eq!(due("rX", latest, prev, Some(s), s + h - 1), Due::No);
        // Down across the previous slot: it runs at once, then the current one at its offset.
        assert_eq!(due("rX", latest, prev, Some(s - 3 * h), s), Due::Run(s - h));
        // Down across several: only the latest missed runs.
        assert_eq!(
            due("rX", latest, prev, Some(s - 10 * h), s + off),
            Due::Run(s)
        );
        // Never materialised: no catch-up, the current slot at its offset.
        assert_eq!(
            due("rX", latest, prev, None, s),
            if off == 0 { Due::Run(s) } else { Due::No }
        );
        assert_eq!(due("rX", latest, prev, None, s + off), Due::Run(s));
    }
}
