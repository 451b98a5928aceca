//! WorkerService: registration, heartbeats, leases, progress and completion.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use repovault_proto::PROTOCOL_VERSION;
use repovault_proto::v1 as pb;
use repovault_proto::v1::worker_service_server::WorkerService;

use super::worker_convert;
use crate::coordinator::{Coordinator, WorkerHello};
use crate::tasks::lifecycle::Lease;
use crate::worker_pools::JoinIdentity;

pub struct WorkerApi {
    pub core: Arc<Coordinator>,
}

/// A request's lease token, decoded: refused (`invalid_argument`) when missing, or naming the
/// field when its task id is not an id.
fn lease_of(t: &Option<pb::LeaseToken>) -> Result<Lease, Status> {
    let t = t
        .as_ref()
        .filter(|t| !t.task_id.is_empty() && t.attempt > 0)
        .ok_or_else(|| Status::invalid_argument("lease token (task_id, attempt) is missing"))?;
    worker_convert::lease(t, "lease.task_id").map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The pool and token the door admitted the call with (`call_auth.rs` puts it there); a call
/// that did not pass the door (a unit test calling the service directly) is the configured
/// token's.
fn joined_as<T>(req: &Request<T>) -> JoinIdentity {
    req.extensions()
        .get::<JoinIdentity>()
        .cloned()
        .unwrap_or_default()
}

/// The refusal of a call whose token stopped admitting it while the call was under way.
fn revoked_meanwhile(identity: &JoinIdentity) -> String {
    format!(
        "join token {} of pool {} was revoked or expired",
        identity.token_id.as_deref().unwrap_or("(configured)"),
        identity.pool
    )
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn register_worker(
        &self,
        req: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let identity = joined_as(&req);
        let peer = req.remote_addr();
        let r = req.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "worker speaks protocol version {}, this coordinator speaks {PROTOCOL_VERSION}: upgrade the older side",
                r.protocol_version
            )));
        }
        if r.slots == 0 || r.slots > 256 {
            return Err(Status::invalid_argument(format!(
                "slots {} must be within 1..=256",
                r.slots
            )));
        }
        if r.held.len() > 256 {
            return Err(Status::invalid_argument(format!(
                "{} held leases: a worker holds at most 256 (its slots)",
                r.held.len()
            )));
        }
        let (held, malformed) = worker_convert::held_leases(&r.held);
        let reg = self
            .core
            .fleet
            .register_worker(WorkerHello {
                name: r.name.clone(),
                slots: r.slots,
                previous_id: r.previous_worker_id,
                held,
                identity: identity.clone(),
            })
            .await;
        if !self.core.worker_pools.still_admits(&identity) {
            // Its token was revoked while it registered (after the revocation's sweep).
            self.core.queue.workers.forget(&reg.worker_id);
            let pools = &self.core.worker_pools;
            let tasks: Vec<_> = reg.renewed.iter().map(|l| l.task_id.clone()).collect();
            pools.release_leases(&reg.worker_id, tasks.iter()).await?;
            return Err(Status::unauthenticated(revoked_meanwhile(&identity)));
        }
        self.core
            .worker_pools
            .audit_join(&reg.worker_id, &r.name, &identity, reg.resumed, peer)
            .await;
        let t = self.core.timing;
        Ok(Response::new(pb::RegisterWorkerResponse {
            worker_id: reg.worker_id,
            renewed: reg
                .renewed
                .iter()
                .map(worker_convert::lease_token)
                .collect(),
            revoked: worker_convert::revoked_leases(&reg.revoked, malformed),
            timing: Some(pb::Timing {
                heartbeat_interval_ms: ms(t.heartbeat()),
                lease_ttl_ms: ms(t.lease_ttl()),
                write_deadline_ms: ms(t.write_deadline()),
                acquire_wait_ms: ms(t.acquire_wait()),
            }),
            protocol_version: PROTOCOL_VERSION,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let (held, malformed) = worker_convert::held_leases(&r.held);
        let (renewed, revoked, reregister) = self
            .core
            .fleet
            .heartbeat(&r.worker_id, &held, r.draining)
            .await;
        Ok(Response::new(pb::HeartbeatResponse {
            renewed: renewed.iter().map(worker_convert::lease_token).collect(),
            revoked: worker_convert::revoked_leases(&revoked, malformed),
            reregister,
            rate_pauses: worker_convert::rate_pauses(&self.core.forge.rate_pauses()),
        }))
    }

    async fn acquire_task(
        &self,
        req: Request<pb::AcquireTaskRequest>,
    ) -> Result<Response<pb::AcquireTaskResponse>, Status> {
        let identity = joined_as(&req);
        let r = req.into_inner();
        let max = self.core.timing.acquire_wait();
        let wait = Duration::from_millis(r.wait_ms).min(max);
        if r.free_slots == 0 {
            return Ok(Response::new(pb::AcquireTaskResponse { task: None }));
        }
        let cached = r
            .cached_repo_ids
            .iter()
            .map(|id| super::convert::id_field(id, "cached_repo_ids"))
            .collect::<Result<_, _>>()?;
        let task = self.core.queue.acquire(&r.worker_id, cached, wait).await?;
        if !self.core.worker_pools.still_admits(&identity) {
            // Its token was revoked during the long-poll: the lease goes back at once.
            if let Some(t) = &task {
                let pools = &self.core.worker_pools;
                pools
                    .release_leases(&r.worker_id, std::iter::once(&t.lease.task_id))
                    .await?;
            }
            return Err(Status::unauthenticated(revoked_meanwhile(&identity)));
        }
        Ok(Response::new(pb::AcquireTaskResponse {
            task: task.as_ref().map(worker_convert::task_message),
        }))
    }

    type TaskEventsStream = ReceiverStream<Result<pb::TaskControl, Status>>;

    async fn task_events(
        &self,
        req: Request<Streaming<pb::TaskEvent>>,
    ) -> Result<Response<Self::TaskEventsStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let core = self.core.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = inbound.next() => ev,
                    _ = core.stopping.cancelled() => break,
                };
                let Some(Ok(ev)) = ev else { break };
                // An event without a well-formed lease names no active task: dropped, as
                // progress arriving after its task's completion is.
                let Ok(lease) = lease_of(&ev.lease) else {
                    tracing::debug!("progress without a well-formed lease; dropped");
                    continue;
                };
                let progress = worker_convert::worker_progress(&ev);
                if let Err(e) = core.queue.task_event(&lease, &progress).await {
                    // A stale lease's progress: tell the worker to stop that task.
                    tracing::debug!(error = %e, "progress from a stale lease");
                    if tx
                        .send(Ok(pb::TaskControl {
                            lease: ev.lease.clone(),
                            cancel: true,
                        }))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn confirm_lease(
        &self,
        req: Request<pb::ConfirmLeaseRequest>,
    ) -> Result<Response<pb::ConfirmLeaseResponse>, Status> {
        let r = req.into_inner();
        let tok = lease_of(&r.lease)?;
        let remaining = self.core.queue.confirm_lease(&r.worker_id, &tok).await?;
        Ok(Response::new(pb::ConfirmLeaseResponse {
            remaining_ms: u64::try_from(remaining).unwrap_or(0),
        }))
    }

    async fn complete_task(
        &self,
        req: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let r = req.into_inner();
        let tok = lease_of(&r.lease)?;
        let report = worker_convert::task_report(&r)?;
        self.core.forge.release_permits(&tok);
        self.core.queue.complete(&tok, &report).await?;
        Ok(Response::new(pb::CompleteTaskResponse {}))
    }

    async fn release_task(
        &self,
        req: Request<pb::ReleaseTaskRequest>,
    ) -> Result<Response<pb::ReleaseTaskResponse>, Status> {
        let r = req.into_inner();
        let tok = lease_of(&r.lease)?;
        self.core.forge.release_permits(&tok);
        self.core
            .queue
            .release(&r.worker_id, &tok, &r.reason)
            .await?;
        Ok(Response::new(pb::ReleaseTaskResponse {}))
    }

    async fn request_permits(
        &self,
        req: Request<pb::RequestPermitsRequest>,
    ) -> Result<Response<pb::RequestPermitsResponse>, Status> {
        let r = req.into_inner();
        let tok = lease_of(&r.lease)?;
        let answer = self
            .core
            .fleet
            .request_permits(&tok, &worker_convert::permit_request(&r))
            .await?;
        Ok(Response::new(worker_convert::permit_answer(&answer)))
    }
}
