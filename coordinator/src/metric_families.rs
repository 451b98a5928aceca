//! Every metric family the coordinator exposes, described once: its help text (Prometheus's
//! `# HELP`), and for counters the label sets that exist at 0 from start-up, because an alert on
//! `rate()` or on an absent series cannot see a counter that has never been incremented. Also the
//! build and process families, and the histograms of what a finished task took.
//!
//! A metric recorded anywhere in the coordinator is listed here; the end-to-end test
//! `metrics_lint` runs Prometheus's own `promtool check metrics` on a live scrape.

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::tasks::kinds::outcome::TaskReport;
use repovault_common::domain::{DrillStatus, TaskKind, VerifyRun, VerifyStatus};

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const TASK_DURATION: &str = "repovault_task_duration_seconds";
const TASK_BYTES: &str = "repovault_task_bytes";

const FAMILIES: &[Family] = &[
    gauge(
        "repovault_pool_workers",
        "Workers connected, by the worker pool whose join token they registered with.",
    ),
    gauge(
        "repovault_pool_worker_slots",
        "Task slots of connected workers, by worker pool.",
    ),
    gauge(
        "repovault_pool_worker_slots_used",
        "Task slots running a task, by worker pool.",
    ),
    gauge(
        "repovault_coordinator_leader",
        "1 while this coordinator is the elected leader of its group (always, for one coordinator on redb), else 0.",
    ),
    counter("repovault_backups_total", "Backups that ended, by outcome."),
    counter("repovault_tasks_enqueued_total", "Tasks enqueued, by kind."),
    counter(
        "repovault_tasks_finished_total",
        "Completions accepted, by kind and outcome (retry: the task goes back to the queue).",
    ),
    counter(
        "repovault_lease_expiries_total",
        "Leases that expired without a completion (a worker lost or stalled).",
    ),
    counter(
        "repovault_stale_completions_total",
        "Completions refused because their lease was no longer current.",
    ),
    counter(
        "repovault_verifications_total",
        "Verifications that finished, by run and status.",
    ),
    counter(
        "repovault_drills_total",
        "Restore drills that ended, by outcome.",
    ),
    counter(
        "repovault_readback_bytes_total",
        "Bytes read back by the read-back rotation.",
    ),
    counter(
        "repovault_readback_packs_total",
        "Packs read back by the read-back rotation.",
    ),
    counter(
        "repovault_retention_backups_removed_total",
        "Backups removed by retention.",
    ),
    counter("repovault_prunes_total", "Prunes of snapshot repositories."),
    counter(
        "repovault_uncommitted_snapshots_forgotten_total",
        "Snapshots of attempts that were never committed, forgotten by the reconciler.",
    ),
    counter(
        "repovault_reconcile_failures_total",
        "Reconcile sweeps of a repository that failed.",
    ),
    counter(
        "repovault_temporaries_removed_total",
        "Stale temporary files of failed writes removed.",
    ),
    counter(
        "repovault_temporaries_removed_bytes_total",
        "Bytes of stale temporary files of failed writes removed.",
    ),
    counter(
        "repovault_schedule_runs_total",
        "Scheduled backups enqueued by the scheduler.",
    ),
    counter(
        "repovault_schedule_slots_skipped_total",
        "Schedule slots skipped because the previous backup still ran.",
    ),
    counter(
        "repovault_webhook_deliveries_total",
        "Forge webhook deliveries answered, by HTTP status code.",
    ),
    counter(
        "repovault_webhook_pushes_total",
        "Push events accepted, by whether they opened a new burst.",
    ),
    counter(
        "repovault_downloads_expired_total",
        "Download artifacts deleted after their expiry.",
    ),
    counter(
        "repovault_download_link_refused_total",
        "Download link requests refused, by HTTP status code.",
    ),
    counter(
        "repovault_refused_calls_total",
        "Admin calls refused for the caller's role, by method.",
    ),
    gauge(
        "repovault_queue_depth",
        "Tasks waiting for a worker, by priority.",
    ),
    gauge(
        "repovault_queue_oldest_ready_seconds",
        "How long the oldest ready task has waited.",
    ),
    gauge("repovault_tasks_leased", "Tasks leased to a worker now."),
    gauge(
        "repovault_worker_slots",
        "Task slots of the connected workers.",
    ),
    gauge(
        "repovault_worker_slots_used",
        "Task slots of the connected workers in use.",
    ),
    gauge(
        "repovault_desired_workers",
        "Workers wanted for everything running and waiting, within [scaling] (KEDA's figure too).",
    ),
    gauge(
        "repovault_desired_worker_slots",
        "Slots wanted to run everything running and waiting (for an autoscaler).",
    ),
    gauge("repovault_repos", "Repositories, by health state."),
    gauge(
        "repovault_repos_late",
        "Repositories whose scheduled backup is late.",
    ),
    gauge(
        "repovault_repos_unverified",
        "Repositories whose latest backup is not verified.",
    ),
    gauge(
        "repovault_oldest_backup_age_seconds",
        "Age of the oldest latest successful backup, by organisation.",
    ),
    gauge(
        "repovault_drill_passed",
        "Whether the latest restore drill passed (1) or failed (0), by organisation.",
    ),
    gauge(
        "repovault_readback_repos",
        "Repositories whose packs were read back within the maximum age, by state.",
    ),
    gauge(
        "repovault_readback_due_repos",
        "Repositories due for a read-back visit.",
    ),
    gauge(
        "repovault_reconcile_failing_repos",
        "Repositories whose latest reconcile sweep failed.",
    ),
    gauge(
        "repovault_build_info",
        "The coordinator's build: always 1, the version in a label.",
    ),
    gauge(
        "process_resident_memory_bytes",
        "Resident memory of the coordinator process.",
    ),
    gauge(
        "process_virtual_memory_bytes",
        "Virtual memory of the coordinator process.",
    ),
    gauge(
        "process_open_fds",
        "Open file descriptors of the coordinator process.",
    ),
    gauge("process_threads", "Threads of the coordinator process."),
    gauge(
        "process_start_time_seconds",
        "Start time of the coordinator process, in seconds since the epoch.",
    ),
    Family {
        name: TASK_DURATION,
        kind: Kind::Histogram,
        help: "How long a task's attempt ran, from its lease to its completion, by kind and outcome.",
    },
    Family {
        name: TASK_BYTES,
        kind: Kind::Histogram,
        help: "Bytes a finished task moved, by kind and what: received from the source, added to \
               storage, read back, or written as a restore artifact.",
    },
];

/// Buckets of [`TASK_DURATION`]: from a second (an unchanged incremental backup) to six hours
/// (a first backup of a very large repository).
const DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// Buckets of [`TASK_BYTES`]: decades from a kilobyte to a terabyte.
const BYTE_BUCKETS: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12];

/// The exporter with the histograms' buckets (without them they would render as summaries).
pub fn builder() -> PrometheusBuilder {
    let with = |b: PrometheusBuilder, name: &str, buckets: &[f64]| {
        b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
            .unwrap_or_else(unreachable_buckets)
    };
    let b = with(PrometheusBuilder::new(), TASK_DURATION, DURATION_BUCKETS);
    // In-process workers (`standalone`) record their families in this recorder too.
    repovault_common::worker_metrics::with_buckets(with(b, TASK_BYTES, BYTE_BUCKETS))
}

/// The buckets above are constant and non-empty, which is all the exporter checks.
fn unreachable_buckets(e: metrics_exporter_prometheus::BuildError) -> PrometheusBuilder {
    tracing::error!(error = %e, "histogram buckets refused; histograms render as summaries");
    PrometheusBuilder::new()
}

/// Describes every family and registers the counters' label sets at 0. Called once, when the
/// recorder is installed.
pub fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
    for (name, labels) in zero_counters() {
        metrics::counter!(name, labels).increment(0);
    }
    metrics::gauge!("repovault_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    repovault_common::worker_metrics::describe();
}

fn label_sets(key: &'static str, values: &[&'static str]) -> Vec<Vec<Label>> {
    values.iter().map(|v| vec![Label::new(key, *v)]).collect()
}

/// The counters and label sets that exist before their first event.
fn zero_counters() -> Vec<(&'static str, Vec<Label>)> {
    let kinds: Vec<&'static str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut out: Vec<(&'static str, Vec<Label>)> = Vec::new();
    for f in FAMILIES.iter().filter(|f| matches!(f.kind, Kind::Counter)) {
        let sets = match f.name {
            "repovault_backups_total" => label_sets("outcome", &["completed", "failed"]),
            "repovault_tasks_enqueued_total" => label_sets("kind", &kinds),
            "repovault_tasks_finished_total" => kinds
                .iter()
                .flat_map(|k| {
                    ["completed", "failed", "retry"]
                        .map(|o| vec![Label::new("kind", *k), Label::new("outcome", o)])
                })
                .collect(),
            "repovault_verifications_total" => VerifyRun::ALL
                .iter()
                .flat_map(|r| {
                    [VerifyStatus::Verified, VerifyStatus::Failed].map(|s| {
                        vec![
                            Label::new("run", r.as_str()),
                            Label::new("status", s.as_str()),
                        ]
                    })
                })
                .collect(),
            "repovault_drills_total" => label_sets(
                "outcome",
                &[DrillStatus::Passed.as_str(), DrillStatus::Failed.as_str()],
            ),
            // A signature that does not verify (401) is the one an alert watches.
            "repovault_webhook_deliveries_total" => label_sets("code", &["202", "401"]),
            "repovault_webhook_pushes_total" => label_sets("opened", &["true", "false"]),
            // Open-ended labels (a method, a refusal's code) appear with their first event.
            "repovault_refused_calls_total" | "repovault_download_link_refused_total" => Vec::new(),
            _ => vec![Vec::new()],
        };
        out.extend(sets.into_iter().map(|l| (f.name, l)));
    }
    out
}

/// Records a completion's duration (from `leased_at_ms`, when this coordinator granted the
/// lease) and the bytes its result reports.
pub fn observe_completion(
    kind: TaskKind,
    outcome: &'static str,
    leased_at_ms: Option<i64>,
    now_ms: i64,
    req: &TaskReport,
) {
    if let Some(at) = leased_at_ms {
        let secs = (now_ms.saturating_sub(at)).max(0) as f64 / 1000.0;
        metrics::histogram!(TASK_DURATION, "kind" => kind.as_str(), "outcome" => outcome)
            .record(secs);
    }
    let bytes = |what: &'static str, n: u64| {
        metrics::histogram!(TASK_BYTES, "kind" => kind.as_str(), "what" => what).record(n as f64);
    };
    if !req.success {
        return;
    }
    if let Some(b) = req.backup() {
        bytes("received", b.bytes_received);
        bytes("added", b.added_bytes);
        if let Some(v) = &b.verification {
            bytes("read_back", v.bytes_read);
        }
    }
    if let Some(r) = req.restore() {
        bytes("artifact", r.artifact_bytes);
    }
    if let Some(v) = req.verify() {
        bytes("read_back", v.bytes_read);
    }
}

/// Reads the process's memory, threads, descriptors and start time from `/proc` (Linux; elsewhere
/// the process families stay absent). Called on each scrape.
pub fn update_process() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces) are split by spaces; see proc(5).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // Linux reports these fields in pages and clock ticks: 4096-byte pages and USER_HZ 100 are
    // the values on x86_64 and aarch64 Linux, the platforms repovault is built for.
    let (page, ticks) = (4096.0, 100.0);
    if let Some(threads) = field(20) {
        metrics::gauge!("process_threads").set(threads);
    }
    if let Some(vsize) = field(23) {
        metrics::gauge!("process_virtual_memory_bytes").set(vsize);
    }
    if let Some(rss) = field(24) {
        metrics::gauge!("process_resident_memory_bytes").set(rss * page);
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        metrics::gauge!("process_start_time_seconds").set(boot + start / ticks);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
}

/// The system's boot time in seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}
