//! [`Election`] on etcd: one lease per campaign, kept alive from its grant; the leader key
//! (`election/leader` in the store's namespace) is put with that lease only while absent, so at
//! most one coordinator holds it, and it vanishes with the lease of a leader that dies.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Election, ElectionTiming, LeaderRecord, LeaderView, Term};
use crate::kv::{Campaign, EtcdKv, LeaseId};

/// The leader key, in the store's namespace. No store record lives under `election/`.
pub const LEADER_KEY: &[u8] = b"election/leader";

pub struct EtcdElection {
    kv: EtcdKv,
    timing: ElectionTiming,
}

impl EtcdElection {
    pub fn new(kv: EtcdKv, timing: ElectionTiming) -> Self {
        Self { kv, timing }
    }

    /// A lease kept alive by a task of its own until `stop`; `lost` is cancelled if it lapses.
    /// While etcd grants none, `seen` says why.
    async fn lease(
        &self,
        stop: &CancellationToken,
        lost: &CancellationToken,
        seen: &LeaderView,
    ) -> Option<LeaseId> {
        loop {
            match self.kv.grant_lease(self.timing.ttl).await {
                Ok(lease) => {
                    let kv = self.kv.clone();
                    let (stop, lost) = (stop.clone(), lost.clone());
                    let timing = self.timing;
                    tokio::spawn(async move {
                        let kept = kv
                            .keep_alive(lease, timing.ttl, timing.renew_every(), stop)
                            .await;
                        if let Err(e) = kept {
                            tracing::warn!(error = %e, "election lease lost");
                            lost.cancel();
                        }
                    });
                    return Some(lease);
                }
                Err(e) => {
                    seen.set_problem(e.to_string());
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(self.timing.poll_every()) => {}
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Election for EtcdElection {
    async fn campaign(
        &self,
        me: &LeaderRecord,
        seen: &LeaderView,
        stop: &CancellationToken,
    ) -> Option<Term> {
        let value = match serde_json::to_vec(me) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "election: cannot encode this coordinator's record");
                return None;
            }
        };
        loop {
            // One lease per attempt: a lease lost while waiting (etcd unreachable for a TTL)
            // is replaced, never reused.
            let keep = stop.child_token();
            let lost = CancellationToken::new();
            let lease = self.lease(&keep, &lost, seen).await?;
            while !lost.is_cancelled() {
                match self.kv.campaign(LEADER_KEY, &value, lease).await {
                    Ok(Campaign::Won { term }) => {
                        tracing::info!(term, name = %me.name, "elected leader");
                        seen.set(Some(me.clone()));
                        let kv = self.kv.clone();
                        return Some(Term {
                            term,
                            lost,
                            resign: Box::new(move || {
                                Box::pin(async move {
                                    // First, so that a resignation cut short by its caller
                                    // leaves no keep-alive renewing a lease nobody holds.
                                    keep.cancel();
                                    match kv.delete_if_term(LEADER_KEY, term).await {
                                        Ok(true) => tracing::info!(term, "resigned the leadership"),
                                        Ok(false) => {}
                                        Err(e) => tracing::warn!(error = %e, "resigning"),
                                    }
                                    if let Err(e) = kv.revoke_lease(lease).await {
                                        tracing::warn!(error = %e, "revoking the election lease");
                                    }
                                })
                            }),
                        });
                    }
                    Ok(Campaign::Held(held)) => seen.set(
                        held.and_then(|kv| serde_json::from_slice::<LeaderRecord>(&kv.value).ok()),
                    ),
                    Err(e) => seen.set_problem(e.to_string()),
                }
                tokio::select! {
                    _ = stop.cancelled() => {
                        keep.cancel();
                        let _ = self.kv.revoke_lease(lease).await;
                        return None;
                    }
                    _ = lost.cancelled() => {}
                    _ = tokio::time::sleep(self.timing.poll_every()) => {}
                }
            }
            keep.cancel();
        }
    }
}
