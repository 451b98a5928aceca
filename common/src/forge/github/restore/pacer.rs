//! The engine's own pacing of content creation, so a restore never meets a secondary limit it
//! caused itself (the client still waits out any refusal: a limit never fails a restore).
//!
//! GitHub: "In general, no more than 80 content-generating requests per minute and no more than
//! 500 content-generating requests per hour are allowed" ("Rate limits for the REST API",
//! secondary rate limits), and integrators are asked to pace content creation rather than burst
//! it. So writes are spread evenly at the minute's rate (one every 60 s / 80 = 0.75 s), never in
//! a burst: a token bucket holding a window's whole allowance let 80 writes leave in under a
//! second and then refilled within the same sliding minute, up to twice the allowance, and
//! GitHub answered with a 60 s refusal. The hour's allowance is a sliding window over the
//! writes' own times: the 501st write waits until the first is an hour old.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Content-creation limits to pace at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Pace {
    /// GitHub's documented content-creation limits: 80 per minute, 500 per hour ("Rate limits
    /// for the REST API", secondary rate limits).
    pub const GITHUB: Pace = Pace {
        per_minute: 80,
        per_hour: 500,
    };

    /// The gap between two writes: the minute's allowance spread evenly.
    fn gap(&self) -> Duration {
        Duration::from_secs_f64(60.0 / f64::from(self.per_minute.max(1)))
    }

    /// How long `n` content requests take at this pace, from the first to the last (the times
    /// [`Pacer`] gives them). Closed form, as it is asked at every step of a restore: writes go
    /// one `gap` apart; when an hour's allowance at that gap takes less than the hour, the writes
    /// come in blocks of the allowance, each starting an hour after the one before.
    pub fn duration_of(&self, n: u64) -> Duration {
        let Some(last) = n.checked_sub(1) else {
            return Duration::ZERO;
        };
        let (gap, hour) = (self.gap(), Duration::from_secs(3600));
        let per_hour = u64::from(self.per_hour.max(1));
        let block = gap.mul_f64(per_hour as f64);
        if block >= hour {
            return gap.mul_f64(last as f64);
        }
        let (blocks, within) = (last / per_hour, last % per_hour);
        hour.mul_f64(blocks as f64) + gap.mul_f64(within as f64)
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace::GITHUB
    }
}

/// The writes' pacing for a [`Pace`]; `None` paces nothing.
#[derive(Debug)]
pub(crate) struct Pacer {
    pace: Option<Pace>,
    /// When the latest writes were let go (at most the hour's allowance of them).
    sent: VecDeque<Instant>,
}

impl Pacer {
    pub fn new(pace: Option<Pace>) -> Pacer {
        Pacer {
            pace,
            sent: VecDeque::new(),
        }
    }

    /// Waits until one content request may be sent (a gap after the previous one, and fewer
    /// than the hour's allowance in the last hour), and records it.
    pub async fn take(&mut self) {
        let Some(pace) = self.pace else {
            return;
        };
        let per_hour = usize::try_from(pace.per_hour.max(1)).unwrap_or(usize::MAX);
        let mut at = Instant::now();
        if let Some(last) = self.sent.back() {
            at = at.max(*last + pace.gap());
        }
        if self.sent.len() >= per_hour
            && let Some(oldest) = self.sent.front()
        {
            at = at.max(*oldest + Duration::from_secs(3600));
        }
        tokio::time::sleep_until(at).await;
        // The time it actually leaves (a late wake-up moves the next one later, never closer).
        self.sent.push_back(Instant::now().max(at));
        if self.sent.len() > per_hour {
            self.sent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_the_even_pace_and_the_sliding_hour() {
        let p = Pace::GITHUB;
        assert_eq!(p.duration_of(0), Duration::ZERO);
        assert_eq!(p.duration_of(1), Duration::ZERO);
        // 80 writes, 0.75 s apart: the first and the last are 59.25 s apart.
        assert_eq!(p.duration_of(80), Duration::from_secs_f64(79.0 * 0.75));
        // The 501st waits until the first is an hour old.
        assert_eq!(p.duration_of(501), Duration::from_secs(3600));
        // The closed form is the pacer's rule applied write by write.
        for pace in [
            p,
            Pace {
                per_minute: 10,
                per_hour: 100,
            },
            Pace {
                per_minute: 60,
                per_hour: 7,
            },
        ] {
            let (gap, hour) = (pace.gap(), Duration::from_secs(3600));
            let per_hour = pace.per_hour as usize;
            let mut times: Vec<Duration> = Vec::new();
            for n in 1..=1200u64 {
                let mut t = times.last().map_or(Duration::ZERO, |l| *l + gap);
                if times.len() >= per_hour {
                    t = t.max(times[times.len() - per_hour] + hour);
                }
                times.push(t);
                let want = t.as_secs_f64();
                let got = pace.duration_of(n).as_secs_f64();
                assert!((want - got).abs() < 1e-6, "{pace:?} n={n}: {got} != {want}");
            }
        }
    }

    /// Writes are spread evenly at the minute's rate, with no burst at the start (a pace of
    /// 6,000 a minute here: 10 ms apart, so the test takes a second), and the estimate is what
    /// the pacer does.
    #[tokio::test]
    async fn writes_are_spread_evenly_from_the_first() {
        let pace = Pace {
            per_minute: 6000,
            per_hour: 1_000_000,
        };
        let mut p = Pacer::new(Some(pace));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..100 {
            p.take().await;
            at.push(Instant::now() - start);
        }
        for w in at.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(10), "{w:?}");
        }
        let took = at[at.len() - 1];
        let estimate = pace.duration_of(100);
        assert!(
            took >= estimate && took < estimate + Duration::from_millis(500),
            "took {took:?}, estimated {estimate:?}"
        );
    }

    #[tokio::test]
    async fn unpaced_does_not_wait() {
        let start = std::time::Instant::now();
        let mut none = Pacer::new(None);
        for _ in 0..1000 {
            none.take().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
