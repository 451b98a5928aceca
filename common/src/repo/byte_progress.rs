//! Byte progress out of rustic_core: how far a backup ("backing up...") or a restore ("restoring
//! file contents...") is, handed to the caller's callback while rustic works.
//!
//! rustic_core reports progress through the `ProgressBars` a repository handle was made with,
//! not through the call, so an operation that reports opens a handle of its own made with
//! [`Reporting`]; every other operation keeps the shared handle and rustic's logging-only bars.
//! A handle costs no I/O until it is opened, and opening it with the master key reads one
//! config file, as [`SnapshotRepo::reopen`](super::SnapshotRepo) does anyway.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustic_core::{NoProgressBars, Progress, ProgressBars, ProgressType, RusticProgress};

/// Called with `(done, total)` in bytes as an operation goes on; `total` is 0 while unknown (a
/// backup learns the source's size from a walk that runs beside the backup). Called from
/// rustic_core's threads, often (once per chunk): keep it cheap, throttle downstream.
pub type ByteProgress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The progress bars of a handle that reports: rustic's byte progress goes to the callback, the
/// other kinds (counters and spinners of index loading and the like) are rustic's own
/// logging-only ones, as on a handle without progress.
#[derive(Clone)]
pub(super) struct Reporting(pub ByteProgress);

impl fmt::Debug for Reporting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reporting")
    }
}

impl ProgressBars for Reporting {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        match kind {
            ProgressType::Bytes => Progress::new(Bytes {
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                report: self.0.clone(),
            }),
            ProgressType::Counter | ProgressType::Spinner => NoProgressBars.progress(kind, prefix),
        }
    }
}

/// One byte progress of rustic's: its counters and where they go.
struct Bytes {
    done: AtomicU64,
    total: AtomicU64,
    report: ByteProgress,
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bytes")
            .field("done", &self.done)
            .field("total", &self.total)
            .finish()
    }
}

impl RusticProgress for Bytes {
    /// Not hidden: rustic's archiver walks the source for its size only for a progress that
    /// is shown.
    fn is_hidden(&self) -> bool {
        false
    }

    fn set_length(&self, len: u64) {
        self.total.store(len, Ordering::Relaxed);
        (self.report)(self.done.load(Ordering::Relaxed), len);
    }

    fn set_title(&self, _title: &str) {}

    fn inc(&self, inc: u64) {
        let done = self.done.fetch_add(inc, Ordering::Relaxed) + inc;
        (self.report)(done, self.total.load(Ordering::Relaxed));
    }

    fn finish(&self) {}
}
