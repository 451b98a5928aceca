//! A group of coordinators on one etcd: one leads, the others wait.
//!
//! Only the leader runs a [`Coordinator`](crate::coordinator::Coordinator): it holds the queue,
//! the schedules and every background loop, and answers workers and admins. A follower serves
//! only its health, its metrics and a refusal that names the leader (`follower.rs`), so clients
//! given several addresses find the leader (`repovault_common::leader_channel`). When the leader
//! goes, a follower wins the next campaign, builds a coordinator from the store exactly as a
//! restarted one does (leases it inherits get the takeover grace before anything is reaped) and
//! takes over its listeners' addresses (`coordinator_group.rs`).
//!
//! The seam is [`Election`]: campaign until elected, then hold a [`Term`] until it is lost or
//! resigned. Safety does not rest on timing: the leader's store is fenced by its term
//! (`kv/etcd_lease.rs`), so a leader that was paused past its lease, or cut off from etcd, has
//! every write refused once another term began, and steps down when the first is.

pub mod coordinator_group;
pub mod etcd_election;
pub mod follower;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The gRPC metadata (and HTTP header) in which a follower names the leader's gRPC URL.
pub const LEADER_HEADER: &str = repovault_common::leader_channel::LEADER_HEADER;

/// Who leads, as the leader key holds it: what followers tell callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The coordinator's name in logs (host name and process id unless configured).
    pub name: String,
    /// Where workers and admins reach it (`advertise_url`).
    pub grpc_url: String,
}

/// The leader a follower last saw (`None` until one is seen), or why none can be: what
/// followers tell callers.
#[derive(Clone, Default)]
pub struct LeaderView(Arc<RwLock<Seen>>);

#[derive(Default)]
struct Seen {
    leader: Option<LeaderRecord>,
    /// Why no campaign could run (the state store does not answer), while that lasts.
    problem: Option<String>,
}

impl LeaderView {
    pub fn get(&self) -> Option<LeaderRecord> {
        self.0.read().leader.clone()
    }

    /// Why no leader can be elected now, if the last campaign failed.
    pub fn problem(&self) -> Option<String> {
        self.0.read().problem.clone()
    }

    /// A campaign's answer: who leads (`None`: nobody, an election under way).
    pub fn set(&self, leader: Option<LeaderRecord>) {
        let mut seen = self.0.write();
        if seen.problem.take().is_some() {
            tracing::info!("the state store answers campaigns again");
        }
        if seen.leader != leader {
            if let Some(l) = &leader {
                tracing::info!(leader = %l.name, url = %l.grpc_url, "following the leader");
            }
            seen.leader = leader;
        }
    }

    /// A campaign that could not run: nobody is known to lead. Logged when the reason changes
    /// (a follower polls every second; an outage of etcd must not flood the log).
    pub fn set_problem(&self, problem: String) {
        let mut seen = self.0.write();
        seen.leader = None;
        if seen.problem.as_deref() != Some(problem.as_str()) {
            tracing::warn!(error = %problem, "no leader can be elected: the state store does not answer campaigns");
            seen.problem = Some(problem);
        }
    }
}

/// One term of leadership, from winning a campaign to losing or resigning it.
pub struct Term {
    /// The election revision: the store's writes of this term are guarded by it.
    pub term: u64,
    /// Cancelled when the term is lost: the election lease lapsed, or a write found a newer
    /// term. The leader stops at once.
    pub lost: CancellationToken,
    /// What the election needs back to resign.
    pub(crate) resign: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

impl Term {
    /// Gives the term up: the key is deleted and the lease revoked, so another coordinator
    /// wins its next campaign at once instead of after the lease's TTL.
    pub async fn resign(self) {
        (self.resign)().await;
    }
}

/// Errors of an election.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("election: {0}")]
    Store(#[from] crate::kv::KvError),
}

/// The election seam: etcd's today (`etcd_election.rs`); one coordinator on redb needs none.
#[async_trait]
pub trait Election: Send + Sync {
    /// Campaigns until this coordinator (`me`) leads, telling `seen` every leader met while
    /// waiting. Retries through store failures; ends only elected or when `stop` is cancelled
    /// (then `None`).
    async fn campaign(
        &self,
        me: &LeaderRecord,
        seen: &LeaderView,
        stop: &CancellationToken,
    ) -> Option<Term>;
}

/// The election's timing, from its lease's TTL.
#[derive(Debug, Clone, Copy)]
pub struct ElectionTiming {
    /// How long the leader key outlives the leader's last renewal.
    pub ttl: Duration,
}

impl ElectionTiming {
    /// 5 s: a leader SIGKILLed between two renewals is replaced within TTL plus one campaign
    /// poll plus a start-up, which must stay under 10 s; a shorter TTL would depose a healthy
    /// leader through an etcd leader election (about 1 s on a LAN) and a slow disk's fsync.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

    /// Renewals every TTL/3, as etcd's own Go client does: two may be lost before the lease
    /// lapses.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Followers try to win every TTL/5 (1 s at the default): a vacancy is filled at most this
    /// long after the lease lapses, at one small read-and-compare per follower per poll.
    pub fn poll_every(&self) -> Duration {
        self.ttl / 5
    }
}
