//! What the coordinator group's election needs of etcd beyond [`KvBackend`]: leases (grant,
//! keep-alive, revoke), a campaign that puts a key only while nobody holds it, a resignation
//! that deletes it only while it is still ours, and the **fence**.
//!
//! The fence makes a deposed leader harmless whatever its clock or scheduler does: the leader's
//! store ([`EtcdKv::fenced`]) sends every transaction as a nested one, `if mod_revision(leader
//! key) == term { <the transaction> }`. The leader key is written once per term (keep-alives
//! renew the lease, not the key), so the compare holds exactly while this term lasts; once the
//! lease runs out (etcd deletes the key) or another coordinator has won (a new revision), the
//! outer compare fails, nothing of the transaction is applied, and the caller gets
//! [`KvError::Deposed`]. etcd applies the compare and the inner transaction atomically, so no
//! write of an old term can land after a new term began. Reads are not fenced: a deposed leader
//! reading stale state cannot commit anything derived from it.
//!
//! [`KvBackend`]: super::KvBackend

use std::sync::Arc;
use std::time::Duration;

use repovault_proto::etcd as pb;
use repovault_proto::etcd::compare::{CompareResult, CompareTarget, TargetUnion};
use repovault_proto::etcd::request_op::Request;
use repovault_proto::etcd::response_op::Response;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::etcd_backend::{EtcdKv, header_revision, status, token_refused};
use super::{KeyValue, KvError, KvResult};

/// An etcd lease's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseId(pub i64);

/// The term this store's writes are guarded by (see the module documentation).
pub(super) struct Fence {
    /// The namespaced leader key.
    key: Vec<u8>,
    term: i64,
    /// Cancelled the first time a write is refused for an ended term, so the owner of the term
    /// steps down without waiting for its keep-alive to notice.
    lost: CancellationToken,
}

/// What a campaign found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// The key is ours from this revision on: the term.
    Won { term: u64 },
    /// Someone holds it: their value (`None` when the key vanished between the compare and
    /// the read, which the next attempt sorts out).
    Held(Option<KeyValue>),
}

impl EtcdKv {
    /// This store with every transaction guarded by `term` of the leader key `key` (see the
    /// module documentation); `lost` is cancelled when a write finds the term over.
    pub fn fenced(&self, key: &[u8], term: u64, lost: CancellationToken) -> EtcdKv {
        let mut kv = self.clone();
        kv.fence = Some(Arc::new(Fence {
            key: self.key(key),
            term: i64::try_from(term).unwrap_or(i64::MAX),
            lost,
        }));
        kv
    }

    /// The fenced form of `inner`: applied only while the term holds.
    pub(super) async fn fenced_txn(
        &self,
        fence: &Fence,
        inner: pb::TxnRequest,
    ) -> KvResult<pb::TxnResponse> {
        let outer = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal.into(),
                target: CompareTarget::Mod.into(),
                key: fence.key.clone(),
                target_union: Some(TargetUnion::ModRevision(fence.term)),
                range_end: Vec::new(),
            }],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(inner)),
            }],
            failure: Vec::new(),
        };
        let r = self
            .call("running a transaction", outer, |mut c, req| async move {
                c.txn(req).await
            })
            .await?;
        if !r.succeeded {
            fence.lost.cancel();
            return Err(KvError::Deposed {
                term: u64::try_from(fence.term).unwrap_or(0),
            });
        }
        let header = r.header;
        match r.responses.into_iter().next().and_then(|o| o.response) {
            Some(Response::ResponseTxn(mut t)) => {
                t.header = header;
                Ok(t)
            }
            _ => Err(KvError::Backend(
                "etcd answered a fenced transaction without its inner transaction".into(),
            )),
        }
    }

    /// A lease of `ttl` (whole seconds, at least 1), which lapses unless kept alive.
    pub async fn grant_lease(&self, ttl: Duration) -> KvResult<LeaseId> {
        let msg = pb::LeaseGrantRequest {
            ttl: i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX),
            id: 0,
        };
        let r = self
            .lease_call("granting a lease", msg, |mut c, req| async move {
                c.lease_grant(req).await
            })
            .await?;
        if !r.error.is_empty() {
            return Err(KvError::Backend(format!(
                "etcd granting a lease: {}",
                r.error
            )));
        }
        Ok(LeaseId(r.id))
    }

    /// Revokes `lease`: the keys attached to it are deleted now rather than when it lapses.
    /// A lease already gone is not an error.
    pub async fn revoke_lease(&self, lease: LeaseId) -> KvResult<()> {
        let msg = pb::LeaseRevokeRequest { id: lease.0 };
        match self
            .lease_call("revoking a lease", msg, |mut c, req| async move {
                c.lease_revoke(req).await
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(KvError::Backend(m)) if m.contains("requested lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Keeps `lease` alive, renewing it every `every`, until `stop` is cancelled (returns
    /// `Ok`) or the lease is lost (returns why): etcd says it is gone, or no renewal succeeded
    /// for `ttl` (etcd has then let it lapse, or is about to). Broken streams are opened again
    /// while time is left.
    pub async fn keep_alive(
        &self,
        lease: LeaseId,
        ttl: Duration,
        every: Duration,
        stop: CancellationToken,
    ) -> KvResult<()> {
        let mut valid_until = Instant::now() + ttl;
        loop {
            if Instant::now() >= valid_until {
                return Err(KvError::Backend(format!(
                    "etcd lease {:x}: no renewal succeeded for {ttl:?}",
                    lease.0
                )));
            }
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            // etcd answers the stream's opening only once a first request came: queue it now.
            let _ = tx.try_send(pb::LeaseKeepAliveRequest { id: lease.0 });
            let opened = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(valid_until) => continue,
                r = self.open_keep_alive(rx) => r,
            };
            let mut answers = match opened {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd lease keep-alive: opening the stream");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(every.min(Duration::from_secs(1))) => continue,
                    }
                }
            };
            let mut tick = tokio::time::interval(every);
            // The first tick is immediate and the first request is already queued.
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(valid_until) => break,
                    _ = tick.tick() => {
                        if tx.send(pb::LeaseKeepAliveRequest { id: lease.0 }).await.is_err() {
                            break;
                        }
                    }
                    answer = answers.message() => match answer {
                        Ok(Some(a)) if a.ttl <= 0 => {
                            return Err(KvError::Backend(format!(
                                "etcd lease {:x} has expired", lease.0
                            )));
                        }
                        Ok(Some(_)) => valid_until = Instant::now() + ttl,
                        Ok(None) => break,
                        Err(s) => {
                            tracing::warn!(error = %s.message(), "etcd lease keep-alive stream broke");
                            break;
                        }
                    },
                }
            }
        }
    }

    async fn open_keep_alive(
        &self,
        rx: tokio::sync::mpsc::Receiver<pb::LeaseKeepAliveRequest>,
    ) -> KvResult<tonic::Streaming<pb::LeaseKeepAliveResponse>> {
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let req = self.request(stream).await?;
        self.leases
            .clone()
            .lease_keep_alive(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| status("keeping a lease alive", s))
    }

    /// Puts `key = value` attached to `lease` if the key does not exist; otherwise reads who
    /// holds it. Atomic: two campaigns cannot both win.
    pub async fn campaign(&self, key: &[u8], value: &[u8], lease: LeaseId) -> KvResult<Campaign> {
        let k = self.key(key);
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal.into(),
                target: CompareTarget::Create.into(),
                key: k.clone(),
                target_union: Some(TargetUnion::CreateRevision(0)),
                range_end: Vec::new(),
            }],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestPut(pb::PutRequest {
                    key: k.clone(),
                    value: value.to_vec(),
                    lease: lease.0,
                    ..Default::default()
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestRange(pb::RangeRequest {
                    key: k,
                    ..Default::default()
                })),
            }],
        };
        let r = self
            .call(
                "campaigning",
                txn,
                |mut c, req| async move { c.txn(req).await },
            )
            .await?;
        if r.succeeded {
            return Ok(Campaign::Won {
                term: header_revision(r.header.as_ref())?,
            });
        }
        let held = match r.responses.into_iter().next().and_then(|o| o.response) {
            Some(Response::ResponseRange(range)) => range
                .kvs
                .into_iter()
                .next()
                .map(|kv| self.unkey(kv))
                .transpose()?,
            _ => None,
        };
        Ok(Campaign::Held(held))
    }

    /// Deletes `key` if it was last written at `term` (a leader resigning its own term and no
    /// other). Returns whether it was deleted.
    pub async fn delete_if_term(&self, key: &[u8], term: u64) -> KvResult<bool> {
        let k = self.key(key);
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal.into(),
                target: CompareTarget::Mod.into(),
                key: k.clone(),
                target_union: Some(TargetUnion::ModRevision(
                    i64::try_from(term).unwrap_or(i64::MAX),
                )),
                range_end: Vec::new(),
            }],
            success: vec![pb::RequestOp {
                request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: k,
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        let r = self
            .call(
                "resigning",
                txn,
                |mut c, req| async move { c.txn(req).await },
            )
            .await?;
        Ok(r.succeeded)
    }

    /// [`EtcdKv::call`] for the lease service.
    async fn lease_call<T: Clone, R, F, Fut>(&self, doing: &str, msg: T, call: F) -> KvResult<R>
    where
        F: Fn(
            repovault_proto::etcd::lease_client::LeaseClient<tonic::transport::Channel>,
            tonic::Request<T>,
        ) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        match call(self.leases.clone(), self.request(msg.clone()).await?).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) if token_refused(&s) => {
                self.renew_token().await?;
                call(self.leases.clone(), self.request(msg).await?)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| status(doing, s))
            }
            Err(s) => Err(status(doing, s)),
        }
    }
}
