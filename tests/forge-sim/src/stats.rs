//! Counters of everything the simulator answered and every limit it enforced, for tests and
//! benchmarks (`GET /_sim/stats`, or [`crate::Sim::stats`] in-process).

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    /// REST requests answered (any status), including 304s.
    pub api_requests: u64,
    /// REST requests that counted against a primary limit (everything but 304s and
    /// `/rate_limit`).
    pub counted_requests: u64,
    pub not_modified: u64,
    pub primary_refusals: u64,
    pub secondary_refusals: u64,
    pub injected_failures: u64,
    pub git_requests: u64,
    pub lfs_requests: u64,
    pub upload_requests: u64,
    /// Objects served by the download host (pre-signed release-asset and attachment URLs).
    pub object_downloads: u64,
    pub webhook_deliveries: u64,
    /// `METHOD /route/{template} status` → count.
    pub by_route: BTreeMap<String, u64>,
    /// Principal (`user:login`, `installation:ID`, `app:ID`, `anonymous`) → counted requests.
    pub by_principal: BTreeMap<String, u64>,
}

/// One REST exchange, recorded when `record_exchanges` is on.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub method: String,
    /// The route template as in GitHub's OpenAPI paths, e.g. `/repos/{owner}/{repo}/issues`.
    pub route: String,
    pub path: String,
    /// The query string as sent (without `?`; empty when none).
    pub query: String,
    pub status: u16,
    pub request: Option<Value>,
    pub response: Option<Value>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub counters: Mutex<Counters>,
    pub exchanges: Mutex<Vec<Exchange>>,
}

impl Stats {
    pub fn snapshot(&self) -> Counters {
        self.counters.lock().clone()
    }

    pub fn reset(&self) {
        *self.counters.lock() = Counters::default();
        self.exchanges.lock().clear();
    }
}
