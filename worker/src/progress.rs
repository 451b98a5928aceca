//! Progress of one task, streamed to the coordinator: one event per phase change at once, and
//! the current state every [`RESEND`] in between, so a watcher always sees a recent event even
//! during a long silent phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use repovault_common::domain::WorkerId;
use repovault_proto::v1 as pb;

/// Counter updates are sent at most this often (a fetch reports many times a second).
const THROTTLE: Duration = Duration::from_millis(500);
/// The current state is re-sent at least this often ("every few seconds").
pub const RESEND: Duration = Duration::from_secs(2);

/// The counters of one phase: bytes of a byte total, and the phase's other unit (git objects,
/// files, items) of its own total. A total of 0 is unknown; a phase that counts no bytes leaves
/// `bytes` 0 (a watcher shows items as items, not as bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bytes: u64,
    pub total_bytes: u64,
    pub objects: u64,
    pub total_objects: u64,
}

impl From<crate::git::GitProgress> for Counts {
    /// A fetch counts git objects of the pack's object count, and the pack's bytes received
    /// (their total is not known ahead).
    fn from(p: crate::git::GitProgress) -> Self {
        Counts {
            bytes: p.bytes,
            total_bytes: 0,
            objects: p.objects,
            total_objects: p.total_objects,
        }
    }
}

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<pb::TaskEvent>,
    state: Mutex<(pb::TaskEvent, Instant)>,
    /// When the current phase began: its duration is logged when the next one begins.
    phase_began: Mutex<Instant>,
}

impl Progress {
    pub fn new(
        tx: mpsc::Sender<pb::TaskEvent>,
        worker_id: &WorkerId,
        lease: pb::LeaseToken,
    ) -> Self {
        let ev = pb::TaskEvent {
            worker_id: worker_id.into(),
            lease: Some(lease),
            phase: "starting".into(),
            ..Default::default()
        };
        Self {
            inner: Arc::new(Inner {
                tx,
                state: Mutex::new((ev, Instant::now() - THROTTLE)),
                phase_began: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Enters a new phase; sent at once.
    pub fn phase(&self, phase: &str, message: impl Into<String>) {
        let ev = {
            let mut s = self.inner.state.lock();
            let now = Instant::now();
            let began = std::mem::replace(&mut *self.inner.phase_began.lock(), now);
            tracing::debug!(
                phase = %s.0.phase,
                took_ms = (now - began).as_secs_f64() * 1000.0,
                next = phase,
                "task phase ended"
            );
            metrics::histogram!(
                repovault_common::worker_metrics::PHASE_SECONDS,
                "phase" => s.0.phase.clone()
            )
            .record((now - began).as_secs_f64());
            s.0.phase = phase.to_string();
            s.0.message = message.into();
            set_counts(&mut s.0, Counts::default());
            s.1 = Instant::now();
            s.0.clone()
        };
        self.send(ev);
    }

    /// Says where the current phase is without restarting its counters (a watcher's rate and
    /// time left run on); sent at once. A `phase` other than the current one is entered as
    /// [`Progress::phase`] enters it.
    pub fn status(&self, phase: &str, message: impl Into<String>) {
        let ev = {
            let mut s = self.inner.state.lock();
            if s.0.phase != phase {
                drop(s);
                return self.phase(phase, message);
            }
            s.0.message = message.into();
            s.1 = Instant::now();
            s.0.clone()
        };
        self.send(ev);
    }

    /// Bytes done of `total` (0 = unknown); the phase counts no other unit.
    pub fn update_bytes(&self, done: u64, total: u64) {
        self.update(Counts {
            bytes: done,
            total_bytes: total,
            ..Counts::default()
        });
    }

    /// Items (files, forge items, git objects) done of `total` (0 = unknown); the phase counts
    /// no bytes.
    pub fn update_items(&self, done: u64, total: u64) {
        self.update(Counts {
            objects: done,
            total_objects: total,
            ..Counts::default()
        });
    }

    /// Updates the counters; sent when the throttle allows, or at once when a total changed
    /// (became known): that turns a watcher's spinner into a bar, and a short phase (a snapshot
    /// of a small entry) may end before the throttle would let its total out.
    pub fn update(&self, counts: Counts) {
        let ev = {
            let mut s = self.inner.state.lock();
            let new_total =
                (counts.total_bytes, counts.total_objects) != (s.0.total_bytes, s.0.total_objects);
            set_counts(&mut s.0, counts);
            if !new_total && s.1.elapsed() < THROTTLE {
                return;
            }
            s.1 = Instant::now();
            s.0.clone()
        };
        self.send(ev);
    }

    /// Re-sends the current state (the periodic tick).
    pub fn resend(&self) {
        let ev = self.inner.state.lock().0.clone();
        self.send(ev);
    }

    fn send(&self, ev: pb::TaskEvent) {
        // Progress is advisory: when the stream is backed up, drop rather than block the work.
        let _ = self.inner.tx.try_send(ev);
    }
}

fn set_counts(ev: &mut pb::TaskEvent, c: Counts) {
    ev.bytes = c.bytes;
    ev.total_bytes = c.total_bytes;
    ev.objects = c.objects;
    ev.total_objects = c.total_objects;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> (Progress, mpsc::Receiver<pb::TaskEvent>) {
        let (tx, rx) = mpsc::channel(16);
        let worker: WorkerId = "w1".parse().expect("worker id");
        (Progress::new(tx, &worker, pb::LeaseToken::default()), rx)
    }

    /// The state as a watcher would see it next.
    fn current(p: &Progress, rx: &mut mpsc::Receiver<pb::TaskEvent>) -> pb::TaskEvent {
        while rx.try_recv().is_ok() {}
        p.resend();
        rx.try_recv().expect("resent")
    }

    fn counts(ev: &pb::TaskEvent) -> (u64, u64, u64, u64) {
        (ev.bytes, ev.total_bytes, ev.objects, ev.total_objects)
    }

    #[test]
    fn items_are_counted_as_items_and_bytes_as_bytes() {
        let (p, mut rx) = progress();
        p.phase("metadata", "issues");
        p.update_items(12, 300);
        assert_eq!(counts(&current(&p, &mut rx)), (0, 0, 12, 300));
        p.update_bytes(5, 50);
        assert_eq!(counts(&current(&p, &mut rx)), (5, 50, 0, 0));
    }

    #[test]
    fn a_total_newly_known_is_sent_at_once_and_counts_within_the_throttle_are_not() {
        let (p, mut rx) = progress();
        p.phase("snapshot", "storing");
        while rx.try_recv().is_ok() {}
        p.update_bytes(0, 0);
        assert!(rx.try_recv().is_err(), "throttled");
        p.update_bytes(10, 1000);
        let ev = rx.try_recv().expect("a new total goes out at once");
        assert_eq!(counts(&ev), (10, 1000, 0, 0));
        p.update_bytes(20, 1000);
        assert!(rx.try_recv().is_err(), "throttled");
    }

    #[test]
    fn a_new_phase_restarts_the_counters_and_a_status_keeps_them() {
        let (p, mut rx) = progress();
        p.phase("metadata", "issues: 0 of 300");
        p.update_items(12, 300);
        while rx.try_recv().is_ok() {}
        p.status("metadata", "issues: 12 of 300");
        let ev = rx.try_recv().expect("sent at once");
        assert_eq!(ev.message, "issues: 12 of 300");
        assert_eq!(counts(&ev), (0, 0, 12, 300));
        p.status("push", "pushing");
        let ev = current(&p, &mut rx);
        assert_eq!((ev.phase.as_str(), counts(&ev)), ("push", (0, 0, 0, 0)));
    }
}
