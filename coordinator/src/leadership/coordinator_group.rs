//! The life of one coordinator of a group: follow while campaigning, lead once elected, and
//! follow again if the term is lost, until stopped (then a leader resigns, so the next one takes
//! over at once rather than after the election lease's TTL).
//!
//! A new leader starts its coordinator exactly as a restarted single coordinator does: the queue
//! is read from the store, leases it inherits are kept for the takeover grace (a lease TTL and
//! a second) so their workers can take them back before anything is reaped, and what lived only
//! in the old leader's memory (heartbeats, installation tokens, the rate budget) is rebuilt by
//! the workers' next registration and the forge's next answers.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::etcd_election::{EtcdElection, LEADER_KEY};
use super::{Election, ElectionTiming, LeaderRecord, LeaderView, follower};
use crate::config::Settings;
use crate::kv::EtcdKv;
use crate::server::ServerError;

/// What a coordinator of a group needs besides its [`Settings`].
#[derive(Clone)]
pub struct GroupSettings {
    /// The store without a fence: campaigns and the leader's fenced store are made from it.
    pub etcd: EtcdKv,
    /// How this coordinator is named and reached, as followers will tell callers.
    pub me: LeaderRecord,
    pub timing: ElectionTiming,
}

impl std::fmt::Debug for GroupSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSettings")
            .field("me", &self.me)
            .field("election_ttl", &self.timing.ttl)
            .finish()
    }
}

/// How long a member retries binding the addresses its other face just released (follower to
/// leader and back): the kernel frees a closed listener at once, so this only outlasts a slow
/// close.
const BIND_RETRY_FOR: Duration = Duration::from_secs(5);

/// Runs this coordinator as a member of its group until `stop` is cancelled.
pub async fn run(
    settings: Settings,
    group: GroupSettings,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let election = EtcdElection::new(group.etcd.clone(), group.timing);
    let seen = LeaderView::default();
    loop {
        let face = retry_bind(|| follower::start(&settings, seen.clone())).await?;
        let term = election.campaign(&group.me, &seen, &stop).await;
        face.shutdown().await;
        let Some(term) = term else {
            return Ok(());
        };
        let mut lead = settings.clone();
        lead.kv = Arc::new(group.etcd.fenced(LEADER_KEY, term.term, term.lost.clone()));
        let handle = match retry_bind(|| crate::server::start(lead.clone())).await {
            Ok(h) => h,
            Err(e) => {
                term.resign().await;
                return Err(e);
            }
        };
        tracing::info!(term = term.term, grpc = %handle.grpc_addr, "leading the coordinator group");
        tokio::select! {
            _ = term.lost.cancelled() => {
                tracing::error!(term = term.term, "the leadership was lost (election lease lapsed or a newer term began); stepping down");
                seen.set(None);
                handle.shutdown().await;
                // The term is over: this only revokes a lease that may still be alive, and etcd
                // may not answer at all; the follower's face must come back regardless.
                resign_within(term).await;
            }
            _ = stop.cancelled() => {
                handle.shutdown().await;
                resign_within(term).await;
                return Ok(());
            }
        }
    }
}

/// How long a resignation may take: two etcd round trips answer in milliseconds; past this,
/// etcd is unreachable and the lease lapses by itself within its TTL anyway.
const RESIGN_WITHIN: Duration = Duration::from_secs(3);

async fn resign_within(term: super::Term) {
    if tokio::time::timeout(RESIGN_WITHIN, term.resign())
        .await
        .is_err()
    {
        tracing::warn!(
            "etcd did not take the resignation in time; the election lease lapses by itself"
        );
    }
}

/// Runs `start` again while it fails to bind an address the other face of this member just
/// released, for at most [`BIND_RETRY_FOR`].
async fn retry_bind<T, F, Fut>(start: F) -> Result<T, ServerError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServerError>>,
{
    let deadline = tokio::time::Instant::now() + BIND_RETRY_FOR;
    loop {
        match start().await {
            Err(ServerError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Refuses settings a group cannot run with: a listener on port 0 would move to a new port at
/// every change of leader, where no client could find it.
pub fn check(settings: &Settings) -> Result<(), String> {
    let fixed = [
        Some(settings.listen),
        settings.http_listen,
        settings.metrics_listen,
    ];
    for addr in fixed.into_iter().flatten() {
        if addr.port() == 0 {
            return Err(format!(
                "listen address {addr}: a coordinator of a group (store kind etcd) needs fixed ports, not 0"
            ));
        }
    }
    Ok(())
}
