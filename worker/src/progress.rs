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

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<pb::TaskEvent>,
    state: Mutex<(pb::TaskEvent, Instant)>,
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
            }),
        }
    }

    /// Enters a new phase; sent at once.
    pub fn phase(&self, phase: &str, message: impl Into<String>) {
        let ev = {
            let mut s = self.inner.state.lock();
            s.0.phase = phase.to_string();
            s.0.message = message.into();
            s.0.bytes = 0;
            s.0.objects = 0;
            s.0.total_bytes = 0;
            s.1 = Instant::now();
            s.0.clone()
        };
        self.send(ev);
    }

    /// Updates the counters; sent when the throttle allows.
    pub fn update(&self, bytes: u64, objects: u64, total_bytes: u64) {
        let ev = {
            let mut s = self.inner.state.lock();
            s.0.bytes = bytes;
            s.0.objects = objects;
            s.0.total_bytes = total_bytes;
            if s.1.elapsed() < THROTTLE {
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
