//! The worker's metric families, described once for whichever recorder the process has: a
//! worker's own (`repovault worker --metrics-listen`) or, in `standalone`, the coordinator's,
//! whose `/metrics` then shows the in-process workers' families too.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Bytes received from sources by fetches (git packs, LFS objects, forge exports).
pub const FETCHED_BYTES: &str = "repovault_worker_fetched_bytes_total";
/// Bytes a backup added to storage, as stored (compressed, encrypted).
pub const STORED_BYTES: &str = "repovault_worker_stored_bytes_total";
/// Backups that found their repository's mirror in the worker's cache (`result="hit"`), or
/// seeded or cloned it (`result="miss"`).
pub const CACHE_LOOKUPS: &str = "repovault_worker_cache_lookups_total";
/// How long each task phase took (`phase`: fetch, snapshot, verify, ...).
pub const PHASE_SECONDS: &str = "repovault_worker_phase_seconds";
/// The worker's slots, and those running a task now.
pub const SLOTS: &str = "repovault_worker_slots";
pub const SLOTS_BUSY: &str = "repovault_worker_slots_busy";

/// Buckets of [`PHASE_SECONDS`]: from a tenth of a second (a phase with nothing to do) to six
/// hours (the fetch of a very large repository).
const PHASE_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
];

/// `b` with the buckets of the worker's histograms (without them they render as summaries).
pub fn with_buckets(b: PrometheusBuilder) -> PrometheusBuilder {
    match b.set_buckets_for_metric(Matcher::Full(PHASE_SECONDS.to_string()), PHASE_BUCKETS) {
        Ok(b) => b,
        // The buckets are constant and non-empty, which is all the exporter checks.
        Err(e) => {
            tracing::error!(error = %e, "histogram buckets refused; histograms render as summaries");
            PrometheusBuilder::new()
        }
    }
}

/// Describes every family and registers the counters at 0 (an alert on `rate()` or on an absent
/// series cannot see a counter never incremented).
pub fn describe() {
    metrics::describe_counter!(FETCHED_BYTES, "Bytes received from sources by fetches.");
    metrics::describe_counter!(
        STORED_BYTES,
        "Bytes backups added to storage, as stored (compressed, encrypted)."
    );
    metrics::describe_counter!(
        CACHE_LOOKUPS,
        "Backups that found their mirror in the worker's cache (hit) or seeded or cloned it (miss)."
    );
    metrics::describe_histogram!(PHASE_SECONDS, "How long each task phase took, by phase.");
    metrics::describe_gauge!(SLOTS, "Slots of the workers in this process.");
    metrics::describe_gauge!(SLOTS_BUSY, "Slots running a task now, in this process.");
    metrics::counter!(FETCHED_BYTES).increment(0);
    metrics::counter!(STORED_BYTES).increment(0);
    for result in ["hit", "miss"] {
        metrics::counter!(CACHE_LOOKUPS, "result" => result).increment(0);
    }
}
