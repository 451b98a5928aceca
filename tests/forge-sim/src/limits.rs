//! Primary and secondary rate limits, as pure state that takes the time as a parameter.
//!
//! Primary: a fixed window per principal (`x-ratelimit-reset` is the window's end, as GitHub's
//! is); a request is reserved when it arrives and refunded if it ends as a 304, which GitHub does
//! not count. Secondary: requests in flight per principal, and content creation per minute and
//! per hour; a refusal carries `retry-after`, and a principal refused is refused until then.

use std::collections::{BTreeMap, VecDeque};

use crate::options::Options;

#[derive(Debug, Default)]
pub struct Limits {
    primary: BTreeMap<String, Window>,
    in_flight: BTreeMap<String, u64>,
    /// Times (unix seconds) of recent content-creating requests, per principal.
    writes: BTreeMap<String, VecDeque<u64>>,
    /// Principal → unix second until which every request is refused (secondary limit).
    penalty: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    reset: u64,
    used: u64,
}

/// The `x-ratelimit-*` values of one answered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    pub used: u64,
    pub reset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The primary window is spent until `quota.reset`.
    Primary(Quota),
    /// A secondary limit: retry after this many seconds.
    Secondary { retry_after: u64 },
}

impl Limits {
    /// Reserves one request of `principal`'s primary window (`limit` per window) and, for a
    /// content-creating request, one of its write budget. On success the caller must call
    /// [`Limits::finish`] when the request ends.
    pub fn admit(
        &mut self,
        principal: &str,
        limit: u64,
        write: bool,
        now: u64,
        opts: &Options,
    ) -> Result<Quota, Refusal> {
        if let Some(until) = self.penalty.get(principal).copied() {
            if now < until {
                return Err(Refusal::Secondary {
                    retry_after: until - now,
                });
            }
            self.penalty.remove(principal);
        }
        let w = self.window(principal, now, opts);
        if w.used >= limit {
            return Err(Refusal::Primary(Quota {
                limit,
                remaining: 0,
                used: w.used,
                reset: w.reset,
            }));
        }
        let in_flight = self.in_flight.get(principal).copied().unwrap_or(0);
        if in_flight >= opts.max_concurrent {
            return Err(self.penalise(principal, now, opts));
        }
        if write {
            let q = self.writes.entry(principal.to_string()).or_default();
            while q.front().is_some_and(|t| *t + 3600 <= now) {
                q.pop_front();
            }
            let last_minute = q.iter().filter(|t| **t + 60 > now).count() as u64;
            if last_minute >= opts.content_per_minute || q.len() as u64 >= opts.content_per_hour {
                return Err(self.penalise(principal, now, opts));
            }
            q.push_back(now);
        }
        let w = self.primary.get_mut(principal).map(|w| {
            w.used += 1;
            *w
        });
        let w = w.unwrap_or(Window {
            reset: now + opts.rate_limit_window_secs,
            used: 1,
        });
        *self.in_flight.entry(principal.to_string()).or_default() += 1;
        Ok(Quota {
            limit,
            remaining: limit.saturating_sub(w.used),
            used: w.used,
            reset: w.reset,
        })
    }

    /// Ends a request admitted by [`Limits::admit`]; `refund` gives its primary unit back (a 304).
    pub fn finish(&mut self, principal: &str, refund: bool) {
        if let Some(n) = self.in_flight.get_mut(principal) {
            *n = n.saturating_sub(1);
        }
        if refund && let Some(w) = self.primary.get_mut(principal) {
            w.used = w.used.saturating_sub(1);
        }
    }

    /// The current quota without spending any (`GET /rate_limit`).
    pub fn peek(&mut self, principal: &str, limit: u64, now: u64, opts: &Options) -> Quota {
        let w = self.window(principal, now, opts);
        Quota {
            limit,
            remaining: limit.saturating_sub(w.used),
            used: w.used,
            reset: w.reset,
        }
    }

    /// Imposes a secondary-limit pause on `principal` for `secs` (failure injection).
    pub fn pause(&mut self, principal: &str, now: u64, secs: u64) {
        self.penalty.insert(principal.to_string(), now + secs);
    }

    fn penalise(&mut self, principal: &str, now: u64, opts: &Options) -> Refusal {
        let retry_after = opts.secondary_retry_after_secs;
        self.penalty
            .insert(principal.to_string(), now + retry_after);
        Refusal::Secondary { retry_after }
    }

    fn window(&mut self, principal: &str, now: u64, opts: &Options) -> Window {
        let w = self.primary.entry(principal.to_string()).or_insert(Window {
            reset: now + opts.rate_limit_window_secs,
            used: 0,
        });
        if now >= w.reset {
            *w = Window {
                reset: now + opts.rate_limit_window_secs,
                used: 0,
            };
        }
        *w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            content_per_minute: 3,
            content_per_hour: 5,
            max_concurrent: 2,
            secondary_retry_after_secs: 30,
            rate_limit_window_secs: 100,
            ..Options::default()
        }
    }

    #[test]
    fn primary_window_spends_refunds_and_resets() {
        let o = opts();
        let mut l = Limits::default();
        let q = l.admit("u", 2, false, 1000, &o).expect("first");
        assert_eq!((q.remaining, q.used, q.reset), (1, 1, 1100));
        l.finish("u", true); // a 304
        let q = l.admit("u", 2, false, 1001, &o).expect("refunded");
        assert_eq!(q.used, 1);
        l.finish("u", false);
        l.admit("u", 2, false, 1002, &o).expect("second");
        l.finish("u", false);
        match l.admit("u", 2, false, 1003, &o) {
            Err(Refusal::Primary(q)) => assert_eq!((q.remaining, q.reset), (0, 1100)),
            other => panic!("expected a primary refusal, got {other:?}"),
        }
        let q = l.admit("u", 2, false, 1100, &o).expect("new window");
        assert_eq!((q.used, q.reset), (1, 1200));
    }

    #[test]
    fn concurrency_and_content_creation_are_secondary_limits() {
        let o = opts();
        let mut l = Limits::default();
        l.admit("u", 100, false, 0, &o).expect("1");
        l.admit("u", 100, false, 0, &o).expect("2");
        assert_eq!(
            l.admit("u", 100, false, 0, &o),
            Err(Refusal::Secondary { retry_after: 30 })
        );
        // Paused until the retry-after passes, even with nothing in flight.
        l.finish("u", false);
        l.finish("u", false);
        assert_eq!(
            l.admit("u", 100, false, 29, &o),
            Err(Refusal::Secondary { retry_after: 1 })
        );
        for t in 30..33 {
            l.admit("w", 100, true, t, &o).expect("write");
            l.finish("w", false);
        }
        assert!(matches!(
            l.admit("w", 100, true, 33, &o),
            Err(Refusal::Secondary { .. })
        ));
        // Reads are not content creation.
        l.admit("x", 100, false, 33, &o).expect("read");
    }
}
