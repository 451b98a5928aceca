//! The heartbeat: on its own timer, independent of work. It never waits on a slot, a task or
//! the acquire long-poll (a heartbeat held up behind work would let the lease of a task that is
//! running fine expire); each beat renews every held lease, interrupts the tasks whose leases
//! the coordinator revoked, takes in the forge's rate pauses, and tells the coordinator when
//! this worker is draining. A refused beat (UNAUTHENTICATED: its join token was revoked) ends
//! the registration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use repovault_common::domain::WorkerId;
use repovault_proto::v1 as pb;

use crate::coordinator_client::Client;
use crate::forge::RatePauses;

use super::Held;

/// What the heartbeat task needs; `over` ends it, and it cancels `over` itself when the
/// coordinator asks this worker to register again.
pub(super) struct Heartbeat {
    pub client: Client,
    pub worker_id: WorkerId,
    pub held: Held,
    pub pauses: Arc<RatePauses>,
    pub draining: Arc<AtomicBool>,
    pub over: CancellationToken,
    /// The coordinator's heartbeat interval; also each beat's timeout, so a slow coordinator
    /// never delays the next beat by more than one interval.
    pub every: Duration,
}

impl Heartbeat {
    /// Starts the heartbeat task; it ends when `over` is cancelled.
    pub(super) fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.beat())
    }

    async fn beat(mut self) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.over.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leases = self.held.tokens();
            let sent_at = Instant::now();
            let req = pb::HeartbeatRequest {
                worker_id: self.worker_id.to_string(),
                held: leases,
                draining: self.draining.load(Ordering::SeqCst),
                free_slots: 0,
            };
            match tokio::time::timeout(self.every, self.client.heartbeat(req)).await {
                Ok(Ok(r)) => {
                    if self.take(r.into_inner(), sent_at) {
                        return;
                    }
                }
                Ok(Err(e)) if e.code() == tonic::Code::Unauthenticated => {
                    // The join token was revoked or expired (or the client certificate is
                    // missing): the coordinator has released this worker's leases already. End
                    // the registration; registering again is refused the same way, and the
                    // worker stops with that reason instead of beating in vain.
                    tracing::error!(error = %e.message(), "heartbeat refused; this worker's registration is over");
                    self.over.cancel();
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e.message(), "heartbeat failed"),
                Err(_) => tracing::warn!("heartbeat timed out"),
            }
        }
    }

    /// Applies an answer to a beat sent at `sent_at`. Returns whether the registration is over
    /// (the coordinator restarted, or forgot this worker: register again under this id; the
    /// running tasks go on, their leases renewed here).
    fn take(&self, r: pb::HeartbeatResponse, sent_at: Instant) -> bool {
        self.pauses
            .merge(&r.rate_pauses, chrono::Utc::now().timestamp_millis());
        for t in &r.renewed {
            if let Some(l) = self.held.get(t) {
                // Renewed as of when we asked, not when the answer came.
                *l.renewed_at.lock() = sent_at;
            }
        }
        for t in &r.revoked {
            if let Some(l) = self.held.get(t) {
                if l.is_completing() {
                    // The coordinator took the completion before this beat: nothing to stop.
                    tracing::debug!(task = %t.task_id, attempt = t.attempt, "lease ended with its completion");
                    continue;
                }
                if matches!(l.lost(), Some(crate::tasks::LeaseLoss::Revoked)) {
                    // Revoked before and still winding down (a call that cannot be cut short):
                    // presented until its end, refused again on every beat, said once.
                    continue;
                }
                tracing::warn!(task = %t.task_id, attempt = t.attempt, "lease revoked; interrupting");
                l.revoke();
            }
        }
        if r.reregister {
            self.over.cancel();
        }
        r.reregister
    }
}
