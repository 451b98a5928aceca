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

/// The pacing rule, pure: when the next write may leave, given when the earlier ones left (as
/// times since any fixed origin). [`Pacer`] applies it with the clock.
#[derive(Debug)]
pub(crate) struct Schedule {
    pace: Pace,
    /// When the latest writes left (at most the hour's allowance of them).
    sent: VecDeque<Duration>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Schedule {
    pub fn new(pace: Pace) -> Schedule {
        Schedule {
            pace,
            sent: VecDeque::new(),
        }
    }

    fn per_hour(&self) -> usize {
        usize::try_from(self.pace.per_hour.max(1)).unwrap_or(usize::MAX)
    }

    /// The earliest time, not before `now`, the next write may leave: a gap after the previous
    /// one, and an hour after the write the hour's allowance ago.
    pub fn next_at(&self, now: Duration) -> Duration {
        let mut at = now;
        if let Some(last) = self.sent.back() {
            at = at.max(*last + self.pace.gap());
        }
        if self.sent.len() >= self.per_hour()
            && let Some(oldest) = self.sent.front()
        {
            at = at.max(*oldest + HOUR);
        }
        at
    }

    /// Records a write that left at `at` (a late one moves the next later, never closer).
    pub fn record(&mut self, at: Duration) {
        self.sent.push_back(at);
        if self.sent.len() > self.per_hour() {
            self.sent.pop_front();
        }
    }
}

/// The writes' pacing for a [`Pace`] on the clock; `None` paces nothing.
#[derive(Debug)]
pub(crate) struct Pacer {
    origin: Instant,
    schedule: Option<Schedule>,
}

impl Pacer {
    pub fn new(pace: Option<Pace>) -> Pacer {
        Pacer {
            origin: Instant::now(),
            schedule: pace.map(Schedule::new),
        }
    }

    /// Waits until one content request may be sent ([`Schedule::next_at`]), and records it.
    pub async fn take(&mut self) {
        let Some(schedule) = self.schedule.as_mut() else {
            return;
        };
        let at = schedule.next_at(self.origin.elapsed());
        tokio::time::sleep_until(self.origin + at).await;
        // The time it actually leaves.
        schedule.record(self.origin.elapsed().max(at));
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

    /// 600 writes at GitHub's pace (so across the hour's allowance), each put to the
    /// simulator's model of GitHub's secondary limits (`forge_sim::limits`, which counts in whole
    /// seconds) at the second it leaves, for several alignments of the first write within its
    /// second: not one is refused. The same writes unpaced are refused from the 81st on.
    #[test]
    fn paced_writes_meet_no_secondary_limit_of_the_simulator() {
        let opts = forge_sim::options::Options::default();
        let refusals = |paced: bool, offset_ms: u64| {
            let mut limits = forge_sim::limits::Limits::default();
            let mut schedule = Schedule::new(Pace::GITHUB);
            let mut now = Duration::ZERO;
            let mut refused = Vec::new();
            for n in 0..600u32 {
                if paced {
                    now = schedule.next_at(now);
                    schedule.record(now);
                }
                let secs = (1_700_000_000_000 + offset_ms + now.as_millis() as u64) / 1000;
                match limits.admit("restorer", u64::MAX, true, secs, &opts) {
                    Ok(_) => limits.finish("restorer", false),
                    Err(e) => refused.push((n, now.as_secs_f64(), e)),
                }
            }
            refused
        };
        for offset_ms in [0, 1, 250, 500, 740, 999] {
            let refused = refusals(true, offset_ms);
            assert!(refused.is_empty(), "offset {offset_ms} ms: {refused:?}");
        }
        let burst = refusals(false, 0);
        assert_eq!(burst.first().map(|r| r.0), Some(80), "{burst:?}");
    }
}
