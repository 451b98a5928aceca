//! The forge a lease names ([`source_forge`]: the implementation the forge seam picks for the
//! lease's provider), its API requests admitted by the coordinator's fleet-wide rate budget and
//! authenticated with the credential's current token.
//!
//! Each task has one [`TaskForge`] (in its [`TaskContext`]) holding one [`LeaseGate`], the
//! lease's holder in the budget, starting with the lease's first [`pb::RateGrant`]. The gate:
//! - admits one request at a time per task (the coordinator caps the holders per credential,
//!   which caps the credential's requests in flight fleet-wide);
//! - spends the lease's permits and refills them with `RequestPermits`, reporting the lowest
//!   `x-ratelimit-*` reading seen since the last refill; with none granted it waits until the
//!   coordinator's `retry_at` (a window's reset, a free holder slot);
//! - honours pauses: its own (the forge imposed a wait), and the credential's fleet-wide ones that
//!   heartbeats bring ([`RatePauses`]); a secondary limit is reported to the coordinator at once,
//!   so every worker using the credential pauses;
//! - is the client's [`TokenSource`]: every refill answers the credential's current token (an
//!   installation token is replaced before it expires), and a 401 asks for a new one;
//! - gives its permits back with a last report when the task ends ([`TaskForge::finish`]), so
//!   the budget knows every request the task spent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use repovault_common::domain::{Provider, WorkerId};
use repovault_common::forge::{
    self as forges, Admission, Credentials, FailureClass, Forge, ForgeEndpoint, ForgeError,
    GitRemote, RateGate, RateSnapshot, TokenSource, token_credential_id,
};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::coordinator_client::Client;
use crate::git::Remote;
use crate::tasks::{TaskContext, TaskError};

/// Permits asked for per refill: as many as the budget gives (it caps them at its batch size).
pub const REFILL_WANTED: u32 = u32::MAX;
/// Longest single wait for a refill the coordinator deferred, before asking again. Our choice:
/// a coordinator restart (a new, cautious budget) or a freed holder slot is noticed within 5 s.
pub const MAX_REFILL_WAIT: Duration = Duration::from_secs(5);
/// One `RequestPermits` call's limit. Our choice: the coordinator answers from memory (or after
/// one token mint); 10 s is a heartbeat of the default timing.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Permits older than this are dropped and refilled rather than spent. The coordinator forgets
/// a holder that has not asked for 120 s (`BudgetPolicy::holder_idle_ms`); half that keeps a
/// lease that spent nothing for a long while (a long git fetch after its lease) from spending
/// permits the budget no longer counts.
pub const PERMIT_MAX_AGE: Duration = Duration::from_secs(60);
/// How long refills are retried while the coordinator cannot be reached, before the request
/// fails. Our choice: longer than a coordinator restart with the default timing (a few seconds)
/// and than its takeover grace, shorter than a lease is worth keeping without renewals.
pub const COORDINATOR_PATIENCE: Duration = Duration::from_secs(60);

/// A forge failure as a task failure with `context` in front and `e` kept as its source:
/// permanent or retryable as [`ForgeError::class`] says (the one classification every forge
/// caller shares); a rate limit is retryable and says how long the forge asked to wait.
pub fn task_failure(context: &str, e: ForgeError) -> TaskError {
    match e.class() {
        FailureClass::Permanent => TaskError::permanent(context),
        FailureClass::Retryable => TaskError::retryable(context),
        FailureClass::RateLimited {
            retry_after: Some(wait),
        } => TaskError::retryable(format!(
            "{context}, rate limited (retry after {}s)",
            wait.as_secs()
        )),
        FailureClass::RateLimited { retry_after: None } => {
            TaskError::retryable(format!("{context}, rate limited"))
        }
    }
    .with_source(e)
}

/// The forge's endpoint in `access` (its API and CA).
pub fn endpoint(access: &pb::RepoAccess) -> ForgeEndpoint {
    ForgeEndpoint {
        api_url: access.api_url.clone(),
        ca_cert_pem: (!access.ca_cert_pem.is_empty()).then(|| access.ca_cert_pem.clone()),
    }
}

/// The lease's source forge (the seam's implementation for `provider`), admitted by the
/// credential's fleet-wide budget and authenticated with its current token. Every call for one
/// task shares the same gate (one holder per lease).
pub fn source_forge(
    ctx: &TaskContext,
    access: &pb::RepoAccess,
    provider: Provider,
) -> Result<Arc<dyn Forge>, ForgeError> {
    forges::open(provider, &endpoint(access), ctx.forge.credentials())
}

/// The git layer's remote for a forge's authenticated remote (the token becomes the
/// `Authorization` header git sends; never part of the URL).
pub fn git_remote(remote: &GitRemote) -> Remote {
    Remote::from_lease(&remote.url, remote.token.expose())
        .with_ca(remote.ca_cert_pem.as_deref().unwrap_or(""))
}

/// Pauses of forge credentials the coordinator announced in heartbeats, shared by every task of
/// a worker session: credential id → until (unix ms).
#[derive(Debug, Default)]
pub struct RatePauses(Mutex<HashMap<String, i64>>);

impl RatePauses {
    /// Merges the pauses of a heartbeat answer (a pause is only ever extended) and drops those
    /// over at `now_ms`.
    pub fn merge(&self, pauses: &[pb::RatePause], now_ms: i64) {
        let mut m = self.0.lock();
        m.retain(|_, until| *until > now_ms);
        for p in pauses {
            let e = m.entry(p.credential_id.clone()).or_default();
            *e = (*e).max(p.until_ms);
        }
    }

    /// Until when `credential` is paused (unix ms); 0: not paused.
    pub fn until_ms(&self, credential: &str) -> i64 {
        self.0.lock().get(credential).copied().unwrap_or(0)
    }
}

/// A task's part of the forge: its lease's gate.
pub struct TaskForge {
    gate: Arc<LeaseGate>,
}

impl TaskForge {
    /// The forge part of `task`, leased by `worker_id` over `client`.
    pub fn new(
        client: Client,
        worker_id: &WorkerId,
        task: &pb::Task,
        pauses: Arc<RatePauses>,
    ) -> TaskForge {
        let access = task.repo.clone().unwrap_or_default();
        TaskForge {
            gate: Arc::new(LeaseGate::new(
                client,
                worker_id.clone(),
                task.lease.clone().unwrap_or_default(),
                &access,
                task.rate,
                pauses,
            )),
        }
    }

    /// The lease's credential as a forge takes it: the gate is both the token source (a 401
    /// asks it for a fresh token) and the budget that admits every request.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            tokens: self.gate.clone(),
            gate: Some(self.gate.clone()),
        }
    }

    /// The credential's current token, for git, LFS or the wiki late in a task (an installation
    /// token may have been replaced since the lease): asked of the coordinator; the last one
    /// known when it cannot answer.
    pub async fn source_token(&self) -> Secret {
        self.gate.fresh_token().await
    }

    /// The task ended: gives the lease's permits back with a last report of what it saw, so
    /// the budget counts every request it sent. Failures are logged (the coordinator then
    /// counts the permits as spent).
    pub async fn finish(&self) {
        self.gate.finish().await;
    }
}

struct GateState {
    permits: u32,
    token: Secret,
    /// Own pause (the forge imposed a wait on this task, or the coordinator said so), unix ms.
    paused_until_ms: i64,
    /// Do not ask for a refill before this (unix ms).
    retry_at_ms: i64,
    /// When the coordinator last heard from this holder (the lease, a refill).
    last_ask: tokio::time::Instant,
    /// The lowest reading of the newest window since the last refill.
    reading: Option<RateSnapshot>,
    /// Requests admitted since the last answer with a reading (an answer without
    /// `x-ratelimit-*` headers, such as a followed redirect, still cost one).
    unreflected: u32,
}

/// One lease's holder in the fleet-wide budget; see the module documentation.
pub struct LeaseGate {
    client: Client,
    worker_id: WorkerId,
    lease: pb::LeaseToken,
    credential_id: String,
    pauses: Arc<RatePauses>,
    /// One request in flight per task.
    in_flight: Arc<tokio::sync::Semaphore>,
    state: Mutex<GateState>,
}

/// What a refill call reports besides its wants.
#[derive(Default)]
struct Ask {
    wanted: u32,
    limited_until_ms: i64,
    secondary: bool,
    rejected_token_id: String,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn until(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms.saturating_sub(now_ms())).unwrap_or(0))
}

impl LeaseGate {
    /// A gate for `lease` on `access`'s credential, starting with the lease's `first` grant.
    pub fn new(
        client: Client,
        worker_id: WorkerId,
        lease: pb::LeaseToken,
        access: &pb::RepoAccess,
        first: Option<pb::RateGrant>,
        pauses: Arc<RatePauses>,
    ) -> LeaseGate {
        let first = first.unwrap_or_default();
        LeaseGate {
            client,
            worker_id,
            lease,
            credential_id: access.credential_id.clone(),
            pauses,
            in_flight: Arc::new(tokio::sync::Semaphore::new(1)),
            state: Mutex::new(GateState {
                permits: first.permits,
                token: Secret::new(access.source_token.clone()),
                paused_until_ms: first.paused_until_ms,
                retry_at_ms: first.retry_at_ms,
                last_ask: tokio::time::Instant::now(),
                reading: None,
                unreflected: 0,
            }),
        }
    }

    /// Whether the lease names a budget (a credential); without one the gate admits freely.
    fn budgeted(&self) -> bool {
        !self.credential_id.is_empty()
    }

    fn pause_until_ms(&self) -> i64 {
        let own = self.state.lock().paused_until_ms;
        own.max(self.pauses.until_ms(&self.credential_id))
    }

    /// One `RequestPermits` round trip; applies the answer (permits, pause, retry, token).
    async fn ask(&self, ask: Ask) -> Result<(), ForgeError> {
        let (permits, reading, unreflected) = {
            let mut s = self.state.lock();
            (
                s.permits,
                s.reading.take(),
                std::mem::take(&mut s.unreflected),
            )
        };
        // Requests no reading shows yet are reported as spent: taken off the reading, or, with
        // none, still held (the budget keeps counting them until a reading shows them).
        let (unspent, shown) = match &reading {
            Some(r) => (
                permits,
                Some(RateSnapshot {
                    remaining: r.remaining.saturating_sub(u64::from(unreflected)),
                    ..r.clone()
                }),
            ),
            None => (permits.saturating_add(unreflected), None),
        };
        let req = pb::RequestPermitsRequest {
            worker_id: self.worker_id.to_string(),
            lease: Some(self.lease.clone()),
            unspent,
            wanted: ask.wanted,
            reading: shown.as_ref().map(|r| pb::RateReading {
                limit: r.limit,
                remaining: r.remaining,
                reset: r.reset,
                resource: r.resource.clone(),
            }),
            limited_until_ms: ask.limited_until_ms,
            secondary: ask.secondary,
            rejected_token_id: ask.rejected_token_id,
        };
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(RPC_TIMEOUT, client.request_permits(req)).await;
        let refused = |message: String| {
            // Nothing is lost: the next refill reports it.
            let mut s = self.state.lock();
            s.unreflected = s.unreflected.saturating_add(unreflected);
            if s.reading.is_none() {
                s.reading = reading.clone();
            }
            message
        };
        let resp = match answer {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s))
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::NotFound
                        | tonic::Code::InvalidArgument
                        | tonic::Code::Unauthenticated
                ) =>
            {
                return Err(ForgeError::Budget(format!(
                    "the coordinator refused the lease's permits: {}",
                    refused(s.message().to_string())
                )));
            }
            Ok(Err(s)) => {
                return Err(ForgeError::Transport {
                    method: "RequestPermits".into(),
                    path: "coordinator".into(),
                    detail: refused(s.message().to_string()),
                });
            }
            Err(_) => {
                return Err(ForgeError::Transport {
                    method: "RequestPermits".into(),
                    path: "coordinator".into(),
                    detail: refused("timed out".into()),
                });
            }
        };
        let grant = resp.grant.unwrap_or_default();
        let mut s = self.state.lock();
        s.last_ask = tokio::time::Instant::now();
        s.permits = s.permits.saturating_add(grant.permits);
        s.retry_at_ms = grant.retry_at_ms;
        s.paused_until_ms = s.paused_until_ms.max(grant.paused_until_ms);
        if !resp.source_token.is_empty() {
            s.token = Secret::new(resp.source_token);
        }
        Ok(())
    }

    /// [`LeaseGate::ask`], retried while the coordinator cannot be reached (up to
    /// [`COORDINATOR_PATIENCE`]); a refusal is final.
    async fn ask_patiently(&self, make: impl Fn() -> Ask) -> Result<(), ForgeError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match self.ask(make()).await {
                Ok(()) => return Ok(()),
                Err(e @ ForgeError::Budget(_)) => return Err(e),
                Err(e) if started.elapsed() >= COORDINATOR_PATIENCE => {
                    return Err(ForgeError::Budget(format!(
                        "no permits: the coordinator could not be reached for {COORDINATOR_PATIENCE:?}: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "rate budget: coordinator unreachable");
                    tokio::time::sleep(delay).await;
                    // Doubling to at most 5 s, as the worker's registration does.
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// See [`TaskForge::finish`].
    pub async fn finish(&self) {
        let used = {
            let s = self.state.lock();
            s.reading.is_some() || s.permits > 0 || s.unreflected > 0
        };
        if !self.budgeted() || !used {
            return;
        }
        // Every permit goes back: `unspent` 0 with nothing wanted ends the holding.
        self.state.lock().permits = 0;
        if let Err(e) = self.ask(Ask::default()).await {
            tracing::warn!(error = %e, "could not give the rate permits back");
        }
    }

    /// The credential's current token, asked of the coordinator (the lease's last known token
    /// when it cannot answer).
    pub async fn fresh_token(&self) -> Secret {
        if self.budgeted()
            && let Err(e) = self.ask(Ask::default()).await
        {
            tracing::warn!(error = %e, "could not refresh the forge token; using the last one");
        }
        self.state.lock().token.clone()
    }
}

#[async_trait::async_trait]
impl RateGate for LeaseGate {
    async fn admit(&self) -> Result<Admission, ForgeError> {
        let slot = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ForgeError::Budget("the task's gate is closed".into()))?;
        if !self.budgeted() {
            return Ok(Admission::holding(slot));
        }
        loop {
            let pause = self.pause_until_ms();
            if pause > now_ms() {
                tracing::debug!(
                    credential = %self.credential_id,
                    wait_ms = pause - now_ms(),
                    "rate budget: the credential is paused"
                );
                tokio::time::sleep(until(pause)).await;
                continue;
            }
            let retry_at = {
                let mut s = self.state.lock();
                if s.permits > 0 && s.last_ask.elapsed() >= PERMIT_MAX_AGE {
                    // Stale: given back (unspent 0) with the next refill.
                    s.permits = 0;
                    s.retry_at_ms = 0;
                }
                if s.permits > 0 {
                    s.permits -= 1;
                    s.unreflected = s.unreflected.saturating_add(1);
                    return Ok(Admission::holding(slot));
                }
                s.retry_at_ms
            };
            if retry_at > now_ms() {
                tracing::debug!(
                    credential = %self.credential_id,
                    wait_ms = retry_at - now_ms(),
                    "rate budget: no permits, waiting for the coordinator's retry time"
                );
                tokio::time::sleep(until(retry_at).min(MAX_REFILL_WAIT)).await;
                // Asked again even if retry_at is still ahead: a pause may have come meanwhile.
                self.state.lock().retry_at_ms = 0;
                continue;
            }
            self.ask_patiently(|| Ask {
                wanted: REFILL_WANTED,
                ..Ask::default()
            })
            .await?;
            let mut s = self.state.lock();
            if s.permits == 0 && s.retry_at_ms <= now_ms() {
                // Never spin: an answer without permits and without a time waits a little.
                s.retry_at_ms = now_ms() + 200;
            }
        }
    }

    fn observe(&self, snapshot: &RateSnapshot) {
        // Readings of limits the budget does not track (the forge says which) change nothing.
        if !snapshot.is_budgeted() {
            return;
        }
        let mut s = self.state.lock();
        // The answer to this gate's latest request (one at a time, reported before the
        // admission ends): every request it admitted is in this reading.
        s.unreflected = 0;
        let newer = match &s.reading {
            None => true,
            Some(r) => {
                snapshot.reset > r.reset
                    || (snapshot.reset == r.reset && snapshot.remaining < r.remaining)
            }
        };
        if newer {
            s.reading = Some(snapshot.clone());
        }
    }

    async fn limited(&self, until: DateTime<Utc>, secondary: bool) {
        let until_ms = until.timestamp_millis();
        {
            let mut s = self.state.lock();
            s.paused_until_ms = s.paused_until_ms.max(until_ms);
        }
        if !self.budgeted() {
            return;
        }
        if secondary {
            // This worker's other tasks with the credential pause at once; other workers when
            // the coordinator tells them (their next refill or heartbeat).
            self.pauses.merge(
                &[pb::RatePause {
                    credential_id: self.credential_id.clone(),
                    until_ms,
                }],
                now_ms(),
            );
        }
        let ask = Ask {
            limited_until_ms: until_ms,
            secondary,
            ..Ask::default()
        };
        if let Err(e) = self.ask(ask).await {
            tracing::warn!(error = %e, "could not report a rate limit to the coordinator");
        }
    }
}

#[async_trait::async_trait]
impl TokenSource for LeaseGate {
    fn current(&self) -> Secret {
        self.state.lock().token.clone()
    }

    async fn refresh(&self, rejected: &Secret) -> Option<Secret> {
        if !self.budgeted() {
            return None;
        }
        let ask = Ask {
            rejected_token_id: token_credential_id(rejected),
            ..Ask::default()
        };
        if let Err(e) = self.ask(ask).await {
            tracing::warn!(error = %e, "could not get a fresh forge token");
            return None;
        }
        let token = self.state.lock().token.clone();
        (token.expose() != rejected.expose()).then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, retry_after: Option<Duration>) -> ForgeError {
        ForgeError::Status {
            method: "GET".into(),
            path: "/repos/acme/web".into(),
            status,
            message: "refused".into(),
            retry_after,
        }
    }

    #[test]
    fn forge_failures_become_task_failures_by_their_class() {
        let gone = task_failure("reading acme/web", refused(404, None));
        assert!(!gone.retryable);
        assert!(gone.source.is_some());
        assert!(
            gone.message
                .starts_with("reading acme/web: GET /repos/acme/web"),
            "{}",
            gone.message
        );
        assert!(!task_failure("x", refused(422, None)).retryable);
        assert!(task_failure("x", refused(502, None)).retryable);
        let limited = task_failure("x", refused(403, Some(Duration::from_secs(60))));
        assert!(limited.retryable);
        assert!(
            limited.message.contains("rate limited (retry after 60s)"),
            "{}",
            limited.message
        );
    }

    #[test]
    fn pauses_only_grow_and_expire() {
        let p = RatePauses::default();
        let pause = |c: &str, until_ms| pb::RatePause {
            credential_id: c.into(),
            until_ms,
        };
        p.merge(&[pause("a", 1_000)], 0);
        assert_eq!(p.until_ms("a"), 1_000);
        p.merge(&[pause("a", 500), pause("b", 2_000)], 10);
        assert_eq!((p.until_ms("a"), p.until_ms("b")), (1_000, 2_000));
        p.merge(&[], 1_000);
        assert_eq!((p.until_ms("a"), p.until_ms("b")), (0, 2_000));
    }
}
