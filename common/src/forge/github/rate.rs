//! Rate-limit state as GitHub reports it (`x-ratelimit-*` headers), and the hook through which
//! a fleet-wide budget (the coordinator's, DESIGN.md §6) sees every snapshot and can hold
//! requests back.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// One reading of GitHub's `x-ratelimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSnapshot {
    /// `x-ratelimit-limit`: requests per window.
    pub limit: u64,
    /// `x-ratelimit-remaining`.
    pub remaining: u64,
    /// `x-ratelimit-reset`: when the window resets, in seconds since the Unix epoch.
    pub reset: i64,
    /// `x-ratelimit-used` (0 when absent).
    pub used: u64,
    /// `x-ratelimit-resource` (`core`, `search`, ...; `core` when absent).
    pub resource: String,
}

impl RateSnapshot {
    /// The snapshot in `headers`, when they carry limit, remaining and reset.
    pub fn from_headers(headers: &HeaderMap) -> Option<RateSnapshot> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Some(RateSnapshot {
            limit: get("x-ratelimit-limit")?.parse().ok()?,
            remaining: get("x-ratelimit-remaining")?.parse().ok()?,
            reset: get("x-ratelimit-reset")?.parse().ok()?,
            used: get("x-ratelimit-used")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            resource: get("x-ratelimit-resource").unwrap_or("core").to_string(),
        })
    }

    /// The reset as a time.
    pub fn reset_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.reset, 0)
    }
}

/// The hook of a rate budget. A [`super::GitHubClient`] calls [`RateObserver::pause_until`]
/// before every request (and sleeps until the time it names, if in the future), reports every
/// snapshot it reads to [`RateObserver::observe`], and reports the waits GitHub imposes to
/// [`RateObserver::limited`], so one worker's secondary limit can pause its peers.
pub trait RateObserver: Send + Sync {
    /// Called with the `x-ratelimit-*` headers of every answer that has them.
    fn observe(&self, snapshot: &RateSnapshot);

    /// Requests are held until this time (a fleet-wide pause). `None`: go ahead.
    fn pause_until(&self) -> Option<DateTime<Utc>> {
        None
    }

    /// GitHub refused a request for a rate limit and the client waits until `until`
    /// (`secondary`: a `retry-after` or secondary-limit refusal, else the primary limit).
    fn limited(&self, until: DateTime<Utc>, secondary: bool) {
        let _ = (until, secondary);
    }
}
