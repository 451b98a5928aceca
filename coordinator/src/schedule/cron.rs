//! Standard five-field cron expressions (`minute hour day-of-month month day-of-week`):
//! `*`, `N`, `N-M`, `*/S`, `N-M/S`, comma lists, month names (`jan`..`dec`) and day names
//! (`sun`..`sat`, `7` is Sunday too). As in Vixie cron, when both day-of-month and day-of-week
//! are restricted a day matching either runs.

use chrono::{Datelike, NaiveDate};

use super::ScheduleError;

/// A parsed cron expression: one bit per allowed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    dom: u32,
    months: u16,
    dow: u8,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(
    text: &str,
    what: &'static str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), ScheduleError> {
    let bad = |why: String| ScheduleError::Cron(format!("{what} field {text:?}: {why}"));
    let value = |s: &str| -> Result<u32, ScheduleError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(name_base + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number")))?;
        if v < lo || v > hi {
            return Err(bad(format!("{v} is outside {lo}-{hi}")));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s.parse().map_err(|_| bad(format!("step {s:?}")))?;
                if s == 0 {
                    return Err(bad("step 0".into()));
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `N/S` means N to the end, stepping S.
            (v, if part.contains('/') { hi } else { v })
        };
        if a > b {
            return Err(bad(format!("range {a}-{b} is reversed")));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*"))
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(ScheduleError::Cron(format!(
                "{expr:?} has {} fields; a cron expression has five: minute hour day-of-month month day-of-week",
                f.len()
            )));
        }
        let (minutes, _) = field(f[0], "minute", 0, 59, &[], 0)?;
        let (hours, _) = field(f[1], "hour", 0, 23, &[], 0)?;
        let (dom, dom_star) = field(f[2], "day-of-month", 1, 31, &[], 0)?;
        let (months, _) = field(f[3], "month", 1, 12, &MONTHS, 1)?;
        let (mut dow, dow_star) = field(f[4], "day-of-week", 0, 7, &DAYS, 0)?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        Ok(Self {
            minutes,
            hours: hours as u32,
            dom: dom as u32,
            months: months as u16,
            dow: dow as u8,
            dom_star,
            dow_star,
        })
    }

    pub fn matches_date(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.dom_star, self.dow_star) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The (hour, minute) pairs of a matching day, ascending.
    pub fn times(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..24u32)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60u32)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| (h, m))
            })
    }

    /// Whether any date can ever match (`0 0 30 2 *` cannot).
    pub fn can_match(&self) -> bool {
        // Within eight years every month/day-of-week combination and every 29 February occurs.
        let Some(mut d) = NaiveDate::from_ymd_opt(2024, 1, 1) else {
            return false;
        };
        for _ in 0..(366 * 8) {
            if self.matches_date(d) {
                return true;
            }
            match d.succ_opt() {
                Some(n) => d = n,
                None => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn parses_fields() {
        let c = Cron::parse("*/15 2 * * *").expect("parse");
        assert_eq!(
            c.times().collect::<Vec<_>>(),
            vec![(2, 0), (2, 15), (2, 30), (2, 45)]
        );
        let c = Cron::parse("0 1-3,22 * * mon-fri").expect("parse");
        assert_eq!(c.times().count(), 4);
        assert!(c.matches_date(date(2026, 11, 23))); // Monday
        assert!(!c.matches_date(date(2026, 11, 22))); // Sunday
        let c = Cron::parse("0 0 * * 7").expect("parse");
        assert!(c.matches_date(date(2026, 11, 22)));
        let c = Cron::parse("0 0 1 jan,jul *").expect("parse");
        assert!(c.matches_date(date(2026, 7, 1)));
        assert!(!c.matches_date(date(2026, 8, 1)));
    }

    #[test]
    fn dom_or_dow_when_both_restricted() {
        let c = Cron::parse("0 0 13 * fri").expect("parse");
        assert!(c.matches_date(date(2026, 11, 13))); // the 13th
        assert!(c.matches_date(date(2026, 11, 20))); // a Friday
        assert!(!c.matches_date(date(2026, 11, 19)));
    }

    #[test]
    fn refuses_bad_expressions() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "* * * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(!Cron::parse("0 0 30 2 *").expect("parse").can_match());
        assert!(Cron::parse("0 0 29 2 *").expect("parse").can_match());
    }
}
