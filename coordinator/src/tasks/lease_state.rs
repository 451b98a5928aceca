//! The lease state machine of one task: a pure function of the task, the request and the time.
//!
//! Fencing: every lease hands out a new `attempt`; every worker mutation names the attempt it
//! holds, and anything but the current attempt of a leased, unexpired task is refused with
//! [`LeaseError::Stale`] (FAILED_PRECONDITION on the wire) and changes nothing. Expiry is checked
//! on every access as well as by the reaper, so a completion that arrives after the TTL is refused
//! even if the reaper has not run yet.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    Pending {
        not_before_ms: i64,
    },
    Leased {
        worker_id: String,
        expires_at_ms: i64,
    },
    Completed {
        at_ms: i64,
    },
    Failed {
        at_ms: i64,
        error: String,
    },
}

impl TaskState {
    /// The status a record of this task shows (a leased task is running).
    pub fn status(&self) -> repovault_common::domain::TaskStatus {
        use repovault_common::domain::TaskStatus;
        match self {
            TaskState::Pending { .. } => TaskStatus::Pending,
            TaskState::Leased { .. } => TaskStatus::Running,
            TaskState::Completed { .. } => TaskStatus::Completed,
            TaskState::Failed { .. } => TaskStatus::Failed,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, TaskState::Completed { .. } | TaskState::Failed { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending { .. } => "pending",
            TaskState::Leased { .. } => "leased",
            TaskState::Completed { .. } => "completed",
            TaskState::Failed { .. } => "failed",
        }
    }
}

/// The part of a task the lease machine owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    pub state: TaskState,
    /// Incremented by every lease: the fencing token.
    pub attempt: u32,
    /// Attempts that ended in a retryable error or an expired lease.
    pub failures: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    /// Attempts ended by a coordinator restart rather than by the task (see
    /// [`LeaseState::reap_inherited`]): they do not count in `failures`.
    #[serde(default)]
    pub interruptions: u32,
}

/// How many attempts a task may lose to coordinator restarts without them counting as failures.
/// Past this many, an attempt whose holder vanished with the coordinator counts again: a task
/// that takes its own process down (a standalone coordinator killed for memory while it runs
/// it) must still fail after `max_attempts` instead of being retried for ever. Ten is more
/// restarts than a rolling upgrade makes during one task.
pub const FREE_INTERRUPTIONS: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("lease (attempt {presented}) is stale: the task is {state} at attempt {current}")]
    Stale {
        presented: u32,
        current: u32,
        state: &'static str,
    },
    #[error("lease (attempt {attempt}) expired {late_ms} ms ago")]
    Expired { attempt: u32, late_ms: i64 },
    #[error("task is not pending")]
    NotPending,
}

/// Lease timing as the state machine needs it.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    pub ttl_ms: i64,
    /// First retry delay; doubles per failure up to `backoff_max_ms`.
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
}

/// What an ended attempt means for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure {
        error: String,
        retryable: bool,
    },
    /// The worker lost the lease on the coordinator's side (revoked, or not renewed while the
    /// coordinator was unreachable) and gives the attempt back: not the task's failure.
    Interrupted {
        error: String,
    },
}

impl LeaseState {
    pub fn new(max_attempts: u32) -> Self {
        Self {
            state: TaskState::Pending { not_before_ms: 0 },
            attempt: 0,
            failures: 0,
            max_attempts: max_attempts.max(1),
            last_error: None,
            interruptions: 0,
        }
    }

    pub fn lease(
        &mut self,
        worker_id: &str,
        now_ms: i64,
        p: &LeasePolicy,
    ) -> Result<u32, LeaseError> {
        match self.state {
            TaskState::Pending { not_before_ms } if not_before_ms <= now_ms => {
                self.attempt += 1;
                self.state = TaskState::Leased {
                    worker_id: worker_id.to_string(),
                    expires_at_ms: now_ms + p.ttl_ms,
                };
                Ok(self.attempt)
            }
            _ => Err(LeaseError::NotPending),
        }
    }

    /// Checks that `attempt` is the current, unexpired lease.
    pub fn check(&self, attempt: u32, now_ms: i64) -> Result<(), LeaseError> {
        match &self.state {
            TaskState::Leased { expires_at_ms, .. } if attempt == self.attempt => {
                if *expires_at_ms <= now_ms {
                    Err(LeaseError::Expired {
                        attempt,
                        late_ms: now_ms - expires_at_ms,
                    })
                } else {
                    Ok(())
                }
            }
            s => Err(LeaseError::Stale {
                presented: attempt,
                current: self.attempt,
                state: s.name(),
            }),
        }
    }

    /// Extends the lease by a TTL from now. Returns the new expiry.
    pub fn renew(&mut self, attempt: u32, now_ms: i64, p: &LeasePolicy) -> Result<i64, LeaseError> {
        self.check(attempt, now_ms)?;
        if let TaskState::Leased { expires_at_ms, .. } = &mut self.state {
            *expires_at_ms = now_ms + p.ttl_ms;
            return Ok(*expires_at_ms);
        }
        Err(LeaseError::NotPending)
    }

    /// Remaining validity of the current lease.
    pub fn remaining_ms(&self, attempt: u32, now_ms: i64) -> Result<i64, LeaseError> {
        self.check(attempt, now_ms)?;
        match &self.state {
            TaskState::Leased { expires_at_ms, .. } => Ok(expires_at_ms - now_ms),
            _ => Err(LeaseError::NotPending),
        }
    }

    /// Ends the current attempt. A retryable failure goes back to the queue with backoff until
    /// `max_attempts` failures; then the task fails with the last error kept.
    pub fn finish(
        &mut self,
        attempt: u32,
        outcome: Outcome,
        now_ms: i64,
        p: &LeasePolicy,
    ) -> Result<(), LeaseError> {
        self.check(attempt, now_ms)?;
        match outcome {
            Outcome::Success => self.state = TaskState::Completed { at_ms: now_ms },
            Outcome::Failure { error, retryable } => self.fail_attempt(error, retryable, now_ms, p),
            Outcome::Interrupted { error } => self.interrupted(error, now_ms, p),
        }
        Ok(())
    }

    /// Gives the task back without counting a failure (drain, shutdown).
    pub fn release(&mut self, attempt: u32, now_ms: i64) -> Result<(), LeaseError> {
        self.check(attempt, now_ms)?;
        self.state = TaskState::Pending {
            not_before_ms: now_ms,
        };
        Ok(())
    }

    /// Re-queues an expired lease (or fails the task after its last attempt). Returns whether
    /// anything changed.
    pub fn reap(&mut self, now_ms: i64, p: &LeasePolicy) -> bool {
        if let TaskState::Leased {
            worker_id,
            expires_at_ms,
        } = &self.state
            && *expires_at_ms <= now_ms
        {
            let error = format!(
                "lease of attempt {} expired on worker {worker_id}",
                self.attempt
            );
            self.fail_attempt(error, true, now_ms, p);
            return true;
        }
        false
    }

    /// Re-queues an expired lease that this coordinator inherited from the one before it and
    /// that its holder never took back: the restart ended the attempt, not the task, so no
    /// failure is counted (up to [`FREE_INTERRUPTIONS`]). Returns whether anything changed.
    pub fn reap_inherited(&mut self, now_ms: i64, p: &LeasePolicy) -> bool {
        let TaskState::Leased {
            worker_id,
            expires_at_ms,
        } = &self.state
        else {
            return false;
        };
        if *expires_at_ms > now_ms {
            return false;
        }
        let error = format!(
            "lease of attempt {} on worker {worker_id} was not taken back after a coordinator restart",
            self.attempt
        );
        self.interrupted(error, now_ms, p);
        true
    }

    /// Ends the current attempt for a reason that is not the task's (a coordinator restart):
    /// back to the queue at once without counting a failure, up to [`FREE_INTERRUPTIONS`]; past
    /// them, as a retryable failure.
    fn interrupted(&mut self, error: String, now_ms: i64, p: &LeasePolicy) {
        if self.interruptions >= FREE_INTERRUPTIONS {
            self.fail_attempt(error, true, now_ms, p);
            return;
        }
        self.interruptions += 1;
        self.state = TaskState::Pending {
            not_before_ms: now_ms,
        };
        self.last_error = Some(error);
    }

    pub fn expires_at_ms(&self) -> Option<i64> {
        match &self.state {
            TaskState::Leased { expires_at_ms, .. } => Some(*expires_at_ms),
            _ => None,
        }
    }

    fn fail_attempt(&mut self, error: String, retryable: bool, now_ms: i64, p: &LeasePolicy) {
        self.failures += 1;
        if retryable && self.failures < self.max_attempts {
            let shift = (self.failures - 1).min(20);
            let delay = (p.backoff_base_ms << shift).min(p.backoff_max_ms);
            self.state = TaskState::Pending {
                not_before_ms: now_ms + delay,
            };
        } else {
            self.state = TaskState::Failed {
                at_ms: now_ms,
                error: error.clone(),
            };
        }
        self.last_error = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LeasePolicy = LeasePolicy {
        ttl_ms: 1000,
        backoff_base_ms: 100,
        backoff_max_ms: 350,
    };

    #[test]
    fn lease_renew_complete() {
        let mut s = LeaseState::new(3);
        assert_eq!(s.lease("w1", 0, &P), Ok(1));
        assert_eq!(s.lease("w2", 0, &P), Err(LeaseError::NotPending));
        assert_eq!(s.renew(1, 900, &P), Ok(1900));
        assert!(s.finish(1, Outcome::Success, 1800, &P).is_ok());
        assert!(s.state.is_terminal());
        assert!(matches!(
            s.finish(1, Outcome::Success, 1801, &P),
            Err(LeaseError::Stale { .. })
        ));
    }

    #[test]
    fn a_stale_attempt_changes_nothing() {
        let mut s = LeaseState::new(3);
        s.lease("w1", 0, &P).expect("lease");
        // w1 is paused past its lease; the reaper re-queues with backoff, w2 takes it.
        assert!(s.reap(1000, &P));
        assert_eq!(
            s.state,
            TaskState::Pending {
                not_before_ms: 1100
            }
        );
        assert_eq!(s.lease("w2", 1050, &P), Err(LeaseError::NotPending));
        assert_eq!(s.lease("w2", 1100, &P), Ok(2));
        let before = s.clone();
        assert!(matches!(
            s.check(1, 1200),
            Err(LeaseError::Stale {
                presented: 1,
                current: 2,
                ..
            })
        ));
        assert!(s.finish(1, Outcome::Success, 1200, &P).is_err());
        assert!(s.renew(1, 1200, &P).is_err());
        assert!(s.release(1, 1200).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn expiry_is_checked_on_access_before_the_reaper_runs() {
        let mut s = LeaseState::new(3);
        s.lease("w1", 0, &P).expect("lease");
        assert!(matches!(
            s.finish(1, Outcome::Success, 1000, &P),
            Err(LeaseError::Expired { .. })
        ));
        assert!(!s.state.is_terminal());
    }

    #[test]
    fn retries_back_off_then_fail_with_last_error() {
        let mut s = LeaseState::new(3);
        let fail = |e: &str| Outcome::Failure {
            error: e.into(),
            retryable: true,
        };
        s.lease("w", 0, &P).expect("lease");
        s.finish(1, fail("e1"), 10, &P).expect("finish");
        assert_eq!(s.state, TaskState::Pending { not_before_ms: 110 });
        s.lease("w", 110, &P).expect("lease");
        s.finish(2, fail("e2"), 120, &P).expect("finish");
        assert_eq!(s.state, TaskState::Pending { not_before_ms: 320 });
        s.lease("w", 320, &P).expect("lease");
        assert!(s.reap(2000, &P));
        assert!(matches!(&s.state, TaskState::Failed { error, .. } if error.contains("expired")));
        assert_eq!(s.failures, 3);
    }

    #[test]
    fn an_inherited_lease_nobody_took_back_is_requeued_without_a_failure() {
        let mut s = LeaseState::new(3);
        s.lease("w1", 0, &P).expect("lease");
        assert!(!s.reap_inherited(999, &P), "not expired yet");
        assert!(s.reap_inherited(1000, &P));
        assert_eq!(
            s.state,
            TaskState::Pending {
                not_before_ms: 1000
            }
        );
        assert_eq!((s.failures, s.interruptions), (0, 1));
        assert!(
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("restart"))
        );
        // The next lease is a new attempt (fencing), still with the whole failure budget.
        assert_eq!(s.lease("w2", 1000, &P), Ok(2));
        // Past the free interruptions, they count again: the task fails in the end.
        s.interruptions = FREE_INTERRUPTIONS;
        for round in 1..=3 {
            assert!(s.reap_inherited(1_000_000 * round, &P));
            if round < 3 {
                let TaskState::Pending { not_before_ms } = s.state else {
                    panic!("{:?}", s.state);
                };
                s.lease("w", not_before_ms, &P).expect("lease");
            }
        }
        assert!(s.state.is_terminal());
        assert_eq!(s.failures, 3);
    }

    #[test]
    fn a_lost_lease_given_back_costs_no_attempt() {
        let mut s = LeaseState::new(1);
        s.lease("w", 0, &P).expect("lease");
        let lost = Outcome::Interrupted {
            error: "lease not renewed".into(),
        };
        s.finish(1, lost.clone(), 10, &P).expect("finish");
        assert_eq!(s.state, TaskState::Pending { not_before_ms: 10 });
        assert_eq!((s.failures, s.interruptions), (0, 1));
        // Only the current attempt can give itself back.
        s.lease("w", 10, &P).expect("lease");
        assert!(s.finish(1, lost, 20, &P).is_err());
        assert_eq!(s.attempt, 2);
    }

    #[test]
    fn permanent_failure_ends_at_once_and_release_costs_nothing() {
        let mut s = LeaseState::new(3);
        s.lease("w", 0, &P).expect("lease");
        s.release(1, 5).expect("release");
        assert_eq!(s.failures, 0);
        s.lease("w", 5, &P).expect("lease");
        s.finish(
            2,
            Outcome::Failure {
                error: "repository not found".into(),
                retryable: false,
            },
            6,
            &P,
        )
        .expect("finish");
        assert!(
            matches!(&s.state, TaskState::Failed { error, .. } if error == "repository not found")
        );
        assert_eq!(s.last_error.as_deref(), Some("repository not found"));
    }
}
