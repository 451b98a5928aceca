//! The calls at a task's commit point (ConfirmLease before the snapshot is written, then
//! CompleteTask), retried through a coordinator outage for as long as the lease lives.
//!
//! Why: a coordinator restart (a crash, a deploy) makes these calls fail for about a second. A
//! worker that gave up at the first transport error would throw away a finished backup and run
//! it again. A transient failure (no connection, no answer in time) is retried with exponential
//! backoff and jitter until the lease's remaining life on this worker's clock is used up; a
//! permanent answer (the lease is stale or fenced, the request is invalid) is final at once.
//! (ReleaseTask, on shutdown, is tried once: the lease expires on its own otherwise.)

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

use repovault_common::domain::WorkerId;
use repovault_proto::v1 as pb;

use crate::coordinator_client::Client;
use crate::tasks::LeaseView;

/// First pause after a transient failure. A coordinator restarted by its supervisor answers
/// again within about a second; 100 ms puts the first tries near that moment without hammering
/// one that is still starting.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest single call: the default heartbeat interval (5 s, `Timing::DEFAULT_HEARTBEAT`). A
/// coordinator that is up answers these calls in milliseconds; one outstanding this long is on a
/// dead connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call at the commit point did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The coordinator answered, and the answer is final (stale or fenced lease, bad request).
    #[error("coordinator refused ({code:?}): {message}")]
    Refused { code: Code, message: String },
    /// The coordinator could not be reached before the lease ran out on this worker's clock.
    #[error("coordinator unreachable through {tries} tries until the lease ran out; last: {last}")]
    OutOfTime { tries: u32, last: String },
}

/// Whether a failed call may succeed if tried again: the coordinator was unreachable, did not
/// answer in time, or the connection broke under the call (a restart). Everything else is an
/// answer of the coordinator's and final.
pub fn is_transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

/// Exponential backoff from [`FIRST_BACKOFF`], doubling up to `cap`, with "equal jitter" (half
/// the delay fixed, half random; AWS Architecture Blog, "Exponential Backoff And Jitter", 2015):
/// the workers that lost the same coordinator do not all call its successor at once.
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        Self {
            next: FIRST_BACKOFF.min(cap),
            cap,
        }
    }

    /// The next pause: within [d/2, d] for d = 100 ms, 200 ms, ... up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.cap);
        let half = d / 2;
        let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(random_u64() % (half_ms + 1))
    }
}

/// A random number for jitter, from the standard library's randomly keyed hasher (jitter needs
/// no quality beyond "differs between processes and calls").
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}

/// Calls `call` until it succeeds or the coordinator gives a final answer. The first try is
/// always made (the coordinator, not this worker's clock, decides whether the lease is still
/// good); the next ones only while `time_left` (asked again before every try, since heartbeats
/// renewing the lease meanwhile extend it) answers `Some`. Pauses back off up to `cap`.
pub async fn retry<T, F, Fut>(
    cap: Duration,
    mut time_left: impl FnMut() -> Option<Duration>,
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut backoff = Backoff::new(cap);
    let mut tries = 0;
    let mut left = time_left().unwrap_or(CALL_TIMEOUT);
    loop {
        tries += 1;
        let patience = CALL_TIMEOUT.min(left);
        let last = match tokio::time::timeout(patience, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(s)) if !is_transient(&s) => {
                return Err(CallError::Refused {
                    code: s.code(),
                    message: s.message().to_string(),
                });
            }
            Ok(Err(s)) => format!("{:?}: {}", s.code(), s.message()),
            Err(_) => format!("no answer within {patience:?}"),
        };
        let Some(remaining) = time_left() else {
            return Err(CallError::OutOfTime { tries, last });
        };
        tracing::debug!(tries, error = %last, "coordinator call failed; retrying");
        tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        let Some(remaining) = time_left() else {
            return Err(CallError::OutOfTime { tries, last });
        };
        left = remaining;
    }
}

/// ConfirmLease, retried while this worker may still write under the lease (its write
/// deadline). Returns the lease's remaining milliseconds as the coordinator sees them.
pub async fn confirm_lease(
    client: &Client,
    worker_id: &WorkerId,
    lease: &LeaseView,
) -> Result<u64, CallError> {
    let req = pb::ConfirmLeaseRequest {
        worker_id: worker_id.into(),
        lease: Some(lease.token.clone()),
    };
    retry(
        lease.heartbeat,
        || lease.write_time_left(),
        || {
            let (mut c, req) = (client.clone(), req.clone());
            async move {
                c.confirm_lease(req)
                    .await
                    .map(|r| r.into_inner().remaining_ms)
            }
        },
    )
    .await
}

/// CompleteTask, retried while the lease lives on this worker's clock (a completion lost to a
/// restart would cost the whole task).
pub async fn complete_task(
    client: &Client,
    req: &pb::CompleteTaskRequest,
    lease: &LeaseView,
) -> Result<(), CallError> {
    retry(
        lease.heartbeat,
        || lease.life_left(),
        || {
            let (mut c, req) = (client.clone(), req.clone());
            async move { c.complete_task(req).await.map(|_| ()) }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(500));
        for want in [100u64, 200, 400, 500, 500] {
            let d = b.next_delay();
            let want = Duration::from_millis(want);
            assert!(d >= want / 2 && d <= want, "{d:?} for {want:?}");
        }
    }

    #[test]
    fn transport_failures_are_transient_and_answers_are_not() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Cancelled,
        ] {
            assert!(is_transient(&Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::FailedPrecondition,
            Code::NotFound,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Internal,
        ] {
            assert!(!is_transient(&Status::new(code, "x")), "{code:?}");
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_the_answer() {
        let calls = AtomicU32::new(0);
        let r = retry(
            Duration::from_millis(50),
            || Some(Duration::from_secs(10)),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 => Err(Status::unavailable("tcp connect error")),
                        1 => Err(Status::unknown("h2 protocol error")),
                        _ => Ok(n),
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_final_answer_is_not_retried() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(
            Duration::from_millis(50),
            || Some(Duration::from_secs(10)),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::failed_precondition("lease is stale")) }
            },
        )
        .await;
        assert_eq!(
            r,
            Err(CallError::Refused {
                code: Code::FailedPrecondition,
                message: "lease is stale".into()
            })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_end_with_the_lease() {
        let start = Instant::now();
        let life = Duration::from_millis(400);
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(
            Duration::from_millis(100),
            || life.checked_sub(start.elapsed()).filter(|d| !d.is_zero()),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::unavailable("connection refused")) }
            },
        )
        .await;
        let Err(CallError::OutOfTime { tries, last }) = r else {
            panic!("{r:?}");
        };
        assert!(last.contains("connection refused"), "{last}");
        assert_eq!(tries, calls.load(Ordering::SeqCst));
        assert!(tries >= 3, "only {tries} tries in {life:?}");
        let took = start.elapsed();
        assert!(
            took >= life && took < life + Duration::from_millis(300),
            "{took:?}"
        );
        // No time left at all: one try still, and the coordinator's answer decides.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(
            Duration::from_millis(100),
            || None,
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::unavailable("connection refused")) }
            },
        )
        .await;
        assert!(
            matches!(r, Err(CallError::OutOfTime { tries: 1, .. })),
            "{r:?}"
        );
        let r = retry(Duration::from_millis(100), || None, || async { Ok(7) }).await;
        assert_eq!(r, Ok(7));
    }
}
