//! The engine's own pacing of content creation, so a restore does not provoke GitHub's
//! secondary limits needlessly (the client still waits out any refusal: a limit never fails a
//! restore).
//!
//! GitHub: "In general, no more than 80 content-generating requests per minute and no more than
//! 500 content-generating requests per hour are allowed" ("Rate limits for the REST API",
//! secondary rate limits). Two token buckets, one per window, each holding at most its window's
//! allowance: our choice, the simplest shape that never exceeds either average.

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

    /// How long `n` content requests take at this pace, starting with full buckets.
    pub fn duration_of(&self, n: u64) -> Duration {
        let window = |allowance: u32, secs: u64| {
            let allowance = u64::from(allowance.max(1));
            let over = n.saturating_sub(allowance);
            Duration::from_secs_f64(over as f64 * secs as f64 / allowance as f64)
        };
        window(self.per_minute, 60).max(window(self.per_hour, 3600))
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace::GITHUB
    }
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
}

/// Token buckets for a [`Pace`]; `None` paces nothing.
#[derive(Debug)]
pub(crate) struct Pacer {
    buckets: Vec<Bucket>,
    last: Instant,
}

impl Pacer {
    pub fn new(pace: Option<Pace>) -> Pacer {
        let buckets = pace
            .map(|p| {
                [(p.per_minute, 60.0), (p.per_hour, 3600.0)]
                    .into_iter()
                    .map(|(n, secs)| {
                        let n = f64::from(n.max(1));
                        Bucket {
                            capacity: n,
                            tokens: n,
                            per_sec: n / secs,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Pacer {
            buckets,
            last: Instant::now(),
        }
    }

    /// Waits until one content request may be sent, and takes it.
    pub async fn take(&mut self) {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.last = now;
            let mut wait = 0f64;
            for b in &mut self.buckets {
                b.tokens = (b.tokens + elapsed * b.per_sec).min(b.capacity);
                if b.tokens < 1.0 {
                    wait = wait.max((1.0 - b.tokens) / b.per_sec);
                }
            }
            if wait <= 0.0 {
                for b in &mut self.buckets {
                    b.tokens -= 1.0;
                }
                return;
            }
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_from_the_windows() {
        let p = Pace::GITHUB;
        assert_eq!(p.duration_of(80), Duration::ZERO);
        assert_eq!(p.duration_of(160), Duration::from_secs(60));
        // 1000 items: the hour's 500 is the bound (one more hour).
        assert_eq!(p.duration_of(1000), Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn unpaced_and_within_allowance_do_not_wait() {
        let start = std::time::Instant::now();
        let mut none = Pacer::new(None);
        let mut some = Pacer::new(Some(Pace::GITHUB));
        for _ in 0..80 {
            none.take().await;
            some.take().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
