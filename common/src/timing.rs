//! Every timeout of the lease protocol, derived from one heartbeat interval H (README, design
//! decisions, "Timing").
//!
//! The coordinator owns the timing and sends it to workers at registration, so a fleet never runs
//! with two notions of when a lease expires.

use std::time::Duration;

/// The lease outlives three missed heartbeats; the extra second absorbs scheduling and network
/// jitter on a heartbeat that is merely late (TTL = 3H + 1 s).
const LEASE_SLACK: Duration = Duration::from_secs(1);
/// Clock skew tolerated between coordinators before a new leader reaps leases it inherited.
const TAKEOVER_SKEW: Duration = Duration::from_secs(1);
/// Below this, heartbeats of a large fleet would dominate the coordinator's work.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Above this, a dead worker's tasks wait minutes before they run elsewhere.
const MAX_HEARTBEAT: Duration = Duration::from_secs(60);
/// Long-poll ceiling: load balancers commonly cut idle HTTP/2 streams after 60 s.
const MAX_ACQUIRE_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    heartbeat: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("heartbeat interval {got:?} is outside {min:?}..={max:?}")]
pub struct TimingError {
    pub got: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Timing {
    /// The default heartbeat interval, H = 5 s (README, design decisions, "Timing"): a lost
    /// worker's lease expires 16 s (3H + 1 s) after its last heartbeat.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

    pub fn new(heartbeat: Duration) -> Result<Self, TimingError> {
        if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&heartbeat) {
            return Err(TimingError {
                got: heartbeat,
                min: MIN_HEARTBEAT,
                max: MAX_HEARTBEAT,
            });
        }
        Ok(Self { heartbeat })
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long a lease lives without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.heartbeat * 3 + LEASE_SLACK
    }

    /// A worker that has not renewed for this long stops writing: it leaves a full heartbeat of
    /// margin before the coordinator can hand the task to someone else.
    pub fn write_deadline(&self) -> Duration {
        self.lease_ttl() - self.heartbeat
    }

    /// A newly elected leader reaps no lease for this long: a lease renewed with the old leader
    /// just before it fell is still honoured.
    pub fn takeover_grace(&self) -> Duration {
        self.lease_ttl() + TAKEOVER_SKEW
    }

    /// How long an AcquireTask long-poll waits for work before answering "nothing".
    pub fn acquire_wait(&self) -> Duration {
        (self.heartbeat * 2).min(MAX_ACQUIRE_WAIT)
    }

    /// Rebuilds the timing a coordinator sent (worker side).
    pub fn from_heartbeat_ms(ms: u64) -> Result<Self, TimingError> {
        Self::new(Duration::from_millis(ms))
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Self::DEFAULT_HEARTBEAT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let t = Timing::default();
        assert_eq!(t.lease_ttl(), Duration::from_secs(16));
        assert_eq!(t.write_deadline(), Duration::from_secs(11));
        assert_eq!(t.takeover_grace(), Duration::from_secs(17));
        assert_eq!(t.acquire_wait(), Duration::from_secs(10));
    }

    #[test]
    fn write_deadline_always_precedes_expiry_by_a_heartbeat() {
        for ms in [100u64, 250, 1000, 5000, 60_000] {
            let t = Timing::new(Duration::from_millis(ms)).expect("valid");
            assert!(t.write_deadline() + t.heartbeat() <= t.lease_ttl());
            assert!(t.write_deadline() >= t.heartbeat() * 2);
        }
    }

    #[test]
    fn out_of_range_is_refused() {
        assert!(Timing::new(Duration::from_millis(10)).is_err());
        assert!(Timing::new(Duration::from_secs(3600)).is_err());
    }
}
