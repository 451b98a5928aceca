//! The simulator's knobs: rate limits, token lifetime, injected failures. Set at start-up (seed
//! `[options]`, command line) and changed at run time through `PATCH /_sim/options`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Primary limit per hour for a user token (GitHub: 5,000).
    pub rate_limit_user: u64,
    /// Primary limit per hour for an installation token (GitHub: 5,000 at least).
    pub rate_limit_installation: u64,
    /// Primary limit per hour for unauthenticated requests, per client address (GitHub: 60).
    pub rate_limit_anonymous: u64,
    /// Length of the primary window in seconds (GitHub: one hour).
    pub rate_limit_window_secs: u64,
    /// Secondary limit: requests in flight at once per principal (GitHub documents 100).
    pub max_concurrent: u64,
    /// Secondary limit on content creation (POST/PATCH/PUT/DELETE): GitHub documents about 80
    /// per minute and 500 per hour.
    pub content_per_minute: u64,
    pub content_per_hour: u64,
    /// The `retry-after` sent with a secondary-limit refusal, in seconds (GitHub sends 60).
    pub secondary_retry_after_secs: u64,
    /// Lifetime of installation tokens in seconds (GitHub: one hour).
    pub installation_token_ttl_secs: u64,
    /// Record every REST exchange (method, route, status, request and response bodies) for the
    /// schema conformance tests; `GET /_sim/exchanges` returns them.
    pub record_exchanges: bool,
    /// Failures to inject: the first `count` requests matching get `status`.
    pub failures: Vec<Failure>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rate_limit_user: 5000,
            rate_limit_installation: 5000,
            rate_limit_anonymous: 60,
            rate_limit_window_secs: 3600,
            max_concurrent: 100,
            content_per_minute: 80,
            content_per_hour: 500,
            secondary_retry_after_secs: 60,
            installation_token_ttl_secs: 3600,
            record_exchanges: false,
            failures: Vec::new(),
        }
    }
}

/// One injected failure. `path_contains` is matched against the request path without `/api/v3`
/// (e.g. `/repos/acme/widgets/issues`); `method` empty matches every method.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    #[serde(default)]
    pub method: String,
    pub path_contains: String,
    /// 500, 502, 403 (secondary limit, with `retry-after`), 429, ...
    pub status: u16,
    /// How many matching requests fail; 0 means every one.
    #[serde(default)]
    pub count: u64,
    /// For 403/429: the `retry-after` to send (seconds).
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}
