//! The coordinator's one clock. Every component that reads the time (leases and reaping,
//! retention, health, schedules, drills and the read-back rotation, downloads) reads it through
//! the [`Clock`] the coordinator was constructed with, so tests move time with a
//! [`ManualClock`] instead of sleeping or editing deadlines by hand.
//!
//! Time is milliseconds since the Unix epoch, UTC, as stored in every record.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> i64;
}

/// The wall clock: what a running coordinator uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

/// The wall clock's time, for what sits outside the components (the audit log's timestamps,
/// tests that compare with a running coordinator). Components read [`Clock::now_ms`] instead.
pub fn system_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A time in ms since the epoch as RFC 3339 with milliseconds (UTC), the one form times take in
/// messages and API answers; empty when out of range.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3_000);
        c.set(7);
        assert_eq!(c.now_ms(), 7);
        assert!(
            SystemClock.now_ms() > 1_700_000_000_000,
            "the wall clock is after 2023"
        );
    }
}
