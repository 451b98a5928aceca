//! The leases this worker holds, one per task attempt.
//!
//! A task can be held twice at once: its lease expired (the worker paused, or the coordinator
//! did not hear it for a TTL), the coordinator leased the task again, and it came back to this
//! worker while the old attempt still winds down (interrupted, but waiting on a call that is
//! not cancellable). Keyed by task id alone, the new attempt replaced the old one's entry and
//! the old attempt's end then removed it: the heartbeat stopped renewing the new attempt, whose
//! lease expired in turn, and so on for every attempt. So each attempt is its own entry, added
//! when it starts and removed only by its own end.
//!
//! Tokens stay on the wire's side of the edge: each is matched against the tokens in heartbeat
//! answers and cancel controls and given back verbatim (the task's typed ids come from
//! `tasks::leased::decode`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use repovault_proto::v1 as pb;

use crate::tasks::LeaseView;

#[derive(Default)]
pub(crate) struct HeldLeases {
    by_attempt: Mutex<HashMap<(String, u32), Arc<LeaseView>>>,
}

impl HeldLeases {
    /// Holds `lease` from now on: heartbeats renew it until [`Self::release`].
    pub(crate) fn hold(&self, lease: Arc<LeaseView>) {
        let key = (lease.token.task_id.clone(), lease.token.attempt);
        self.by_attempt.lock().insert(key, lease);
    }

    /// Stops holding the attempt of `token`; another attempt of the same task stays held.
    pub(crate) fn release(&self, token: &pb::LeaseToken) {
        self.by_attempt
            .lock()
            .remove(&(token.task_id.clone(), token.attempt));
    }

    /// The held lease of `token`'s attempt.
    pub(crate) fn get(&self, token: &pb::LeaseToken) -> Option<Arc<LeaseView>> {
        self.by_attempt
            .lock()
            .get(&(token.task_id.clone(), token.attempt))
            .cloned()
    }

    /// Every held lease, each attempt once.
    pub(crate) fn all(&self) -> Vec<Arc<LeaseView>> {
        self.by_attempt.lock().values().cloned().collect()
    }

    /// The tokens of every held lease, as a heartbeat or a registration presents them.
    pub(crate) fn tokens(&self) -> Vec<pb::LeaseToken> {
        self.by_attempt
            .lock()
            .values()
            .map(|l| l.token.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use repovault_common::timing::Timing;

    use super::*;

    fn lease(task: &str, attempt: u32) -> Arc<LeaseView> {
        let token = pb::LeaseToken {
            task_id: task.into(),
            attempt,
        };
        Arc::new(LeaseView::new(
            token,
            &Timing::default(),
            Duration::from_secs(10),
        ))
    }

    #[test]
    fn a_stale_attempts_end_leaves_the_new_attempt_held() {
        let held = HeldLeases::default();
        let first = lease("t1", 1);
        held.hold(first.clone());
        // The lease expired; the task came back to this worker as attempt 2 while attempt 1
        // still runs.
        let second = lease("t1", 2);
        held.hold(second.clone());
        assert_eq!(held.tokens().len(), 2, "both attempts are presented");
        held.release(&first.token);
        assert_eq!(
            held.tokens(),
            vec![second.token.clone()],
            "attempt 2 is still renewed by the heartbeat"
        );
        assert!(held.get(&first.token).is_none());
        assert!(held.get(&second.token).is_some());
        held.release(&second.token);
        assert!(held.all().is_empty());
    }
}
