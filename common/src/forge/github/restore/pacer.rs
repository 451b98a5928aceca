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
//! writes' own times: the write after the allowance waits until the first is an hour old.
//!
//! The pace keeps [`HEADROOM`] below the documented limits: GitHub counts a write when it
//! arrives, not when it leaves here, and arrivals jitter with the network and with scheduling on
//! a busy worker. At exactly 80 a minute a write that arrives late followed by one on time puts
//! 81 in some minute (a loaded CI machine met two such refusals in one 300-item restore); at 72
//! a minute the writes of any minute would have to bunch by 6 s to reach 81.

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

    /// The gap between two writes: the minute's allowance, less the headroom, spread evenly.
    fn gap(&self) -> Duration {
        Duration::from_secs_f64(60.0 / (f64::from(self.per_minute.max(1)) * HEADROOM))
    }

    /// How many writes the pacer lets leave in any hour: the allowance less the headroom.
    fn hour_allowance(&self) -> u64 {
        ((f64::from(self.per_hour) * HEADROOM).floor() as u64).max(1)
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
        let per_hour = self.hour_allowance();
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

/// The share of the documented limits the pacer uses (see the module's documentation): 90 %
/// leaves 8 writes a minute and 50 an hour for arrivals that bunch on the way.
const HEADROOM: f64 = 0.9;

impl Schedule {
    pub fn new(pace: Pace) -> Schedule {
        Schedule {
            pace,
            sent: VecDeque::new(),
        }
    }

    fn per_hour(&self) -> usize {
        usize::try_from(self.pace.hour_allowance()).unwrap_or(usize::MAX)
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
        // 72 writes a minute (80 less the headroom), 0.833 s apart: the first and the 72nd
        // are 59.17 s apart.
        let gap = 60.0 / 72.0;
        assert!((p.duration_of(72).as_secs_f64() - 71.0 * gap).abs() < 1e-6);
        // 450 an hour (500 less the headroom): the 451st waits until the first is an hour old.
        assert_eq!(p.duration_of(451), Duration::from_secs(3600));
        assert!(p.duration_of(450) < Duration::from_secs(3600));
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
            let per_hour = pace.hour_allowance() as usize;
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

    /// When each of `n` writes leaves: by the schedule, or all at once.
    fn departures(paced: bool, n: u32) -> Vec<Duration> {
        let mut schedule = Schedule::new(Pace::GITHUB);
        let mut now = Duration::ZERO;
        (0..n)
            .map(|_| {
                if paced {
                    now = schedule.next_at(now);
                    schedule.record(now);
                }
                now
            })
            .collect()
    }

    /// Puts writes to the simulator's model of GitHub's secondary limits (`forge_sim::limits`,
    /// which counts in whole seconds) at the second each arrives, in the order they arrive;
    /// returns the refused ones.
    fn refused(arrivals: &[Duration], offset_ms: u64) -> Vec<(usize, f64)> {
        let opts = forge_sim::options::Options::default();
        let mut limits = forge_sim::limits::Limits::default();
        let mut order: Vec<usize> = (0..arrivals.len()).collect();
        order.sort_by_key(|i| arrivals[*i]);
        let mut refused = Vec::new();
        for i in order {
            let secs = (1_700_000_000_000 + offset_ms + arrivals[i].as_millis() as u64) / 1000;
            match limits.admit("restorer", u64::MAX, true, secs, &opts) {
                Ok(_) => limits.finish("restorer", false),
                Err(_) => refused.push((i, arrivals[i].as_secs_f64())),
            }
        }
        refused
    }

    /// Delays of up to three seconds on the way, spread over the writes without a pattern
    /// (a fixed multiplicative sequence, so the test is the same on every run).
    fn jittered(departures: &[Duration]) -> Vec<Duration> {
        departures
            .iter()
            .enumerate()
            .map(|(i, d)| *d + Duration::from_millis((i as u64 * 7919 + 13) * 104_729 % 3000))
            .collect()
    }

    /// 600 writes at GitHub's pace (so across the hour's allowance), for several alignments of
    /// the first write within its second: not one is refused, arriving when they leave or up to
    /// three seconds late. The same writes unpaced are refused from the 81st on, and writes
    /// spread at exactly the documented 80 a minute are refused once they arrive with the same
    /// delays (which is what the headroom is for).
    #[test]
    fn paced_writes_meet_no_secondary_limit_of_the_simulator() {
        let paced = departures(true, 600);
        for offset_ms in [0, 1, 250, 500, 740, 999] {
            let on_time = refused(&paced, offset_ms);
            assert!(on_time.is_empty(), "offset {offset_ms} ms: {on_time:?}");
            let late = refused(&jittered(&paced), offset_ms);
            assert!(late.is_empty(), "offset {offset_ms} ms, jittered: {late:?}");
        }
        let burst = refused(&departures(false, 600), 0);
        assert_eq!(burst.first().map(|r| r.0), Some(80), "{burst:?}");
        let at_the_limit: Vec<Duration> = (0..300u32)
            .map(|i| Duration::from_millis(750 * u64::from(i)))
            .collect();
        assert!(refused(&at_the_limit, 0).is_empty());
        assert!(!refused(&jittered(&at_the_limit), 0).is_empty());
    }
}
