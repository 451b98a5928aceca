//! The admin service's two streams: a download restore's artifact, and a task's progress.

use std::sync::Arc;

use crate::model::{RestoreId, TaskId};

use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use repovault_common::domain::{FromWire, RestoreTarget, TaskStatus};
use repovault_proto::v1 as pb;

use crate::model::Status as RecordStatus;

use crate::coordinator::Coordinator;

/// Download stream chunk: large enough to keep the stream efficient, well under gRPC's default
/// 4 MiB message limit.
const DOWNLOAD_CHUNK: usize = 1024 * 1024;

fn is_final(p: &pb::TaskProgress) -> bool {
    TaskStatus::from_wire(p.status, "status").is_ok_and(TaskStatus::is_terminal)
}

/// A completed download restore's artifact, streamed from storage in [`DOWNLOAD_CHUNK`]s; the
/// first chunk carries the total size and SHA-256, so the client verifies what it wrote.
pub(super) async fn download_stream(
    core: &Arc<Coordinator>,
    id: &RestoreId,
) -> Result<Response<ReceiverStream<Result<pb::DownloadChunk, Status>>>, Status> {
    let r = core.restores.get_restore(id).await?;
    if r.target != RestoreTarget::Download {
        return Err(Status::failed_precondition(format!(
            "restore {} targets {}, not a download",
            r.id, r.target
        )));
    }
    if r.status != RecordStatus::Completed {
        return Err(Status::failed_precondition(format!(
            "restore {} is {}; its download is ready when it is completed",
            r.id,
            r.status.as_str()
        )));
    }
    let path = r
        .artifact_path
        .clone()
        .ok_or_else(|| Status::internal("completed download restore has no artifact path"))?;
    let storage = core
        .locations
        .operator_for(&r.org_id)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let reader = storage
        .reader_with(&path)
        .chunk(DOWNLOAD_CHUNK)
        .await
        .map_err(|e| Status::unavailable(format!("download artifact {path}: {e}")))?;
    let mut stream = reader
        .into_bytes_stream(..)
        .await
        .map_err(|e| Status::unavailable(format!("download artifact {path}: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (total, sha) = (
        r.artifact_bytes,
        r.artifact_sha256.clone().unwrap_or_default(),
    );
    tokio::spawn(async move {
        let mut first = true;
        while let Some(chunk) = stream.next().await {
            let msg = match chunk {
                Ok(bytes) => {
                    let mut c = pb::DownloadChunk {
                        data: bytes.to_vec(),
                        ..Default::default()
                    };
                    if std::mem::take(&mut first) {
                        c.total_bytes = total;
                        c.sha256 = sha.clone();
                    }
                    Ok(c)
                }
                Err(e) => Err(Status::unavailable(format!(
                    "reading download artifact: {e}"
                ))),
            };
            let stop = msg.is_err();
            if tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// A task's progress: its latest event (or its state when it has none), then every event
/// until a final status, the coordinator's stop, or the client going away.
pub(super) async fn watch_stream(
    core: &Arc<Coordinator>,
    task_id: TaskId,
) -> Result<Response<ReceiverStream<Result<pb::TaskProgress, Status>>>, Status> {
    let (latest, mut rx) = core.queue.progress.subscribe(task_id.as_str());
    let task = core
        .queue
        .task_status(&task_id)
        .await?
        .ok_or_else(|| Status::not_found(format!("task {task_id:?} not found")))?;
    let (tx, out) = tokio::sync::mpsc::channel(64);
    let status = task.lease.state.status();
    let first = latest
        .filter(|p| p.status != 0)
        .unwrap_or_else(|| pb::TaskProgress {
            task_id: task_id.to_string(),
            attempt: task.lease.attempt,
            phase: status.as_str().into(),
            status: status.into(),
            error: task
                .lease
                .last_error
                .clone()
                .filter(|_| status == RecordStatus::Failed)
                .unwrap_or_default(),
            ..Default::default()
        });
    let core = core.clone();
    tokio::spawn(async move {
        let mut last = first;
        if tx.send(Ok(last.clone())).await.is_err() {
            return;
        }
        loop {
            if is_final(&last) {
                break;
            }
            let next = tokio::select! {
                n = rx.recv() => n,
                _ = core.stopping.cancelled() => break,
            };
            match next {
                Ok(p) => {
                    last = p;
                    if tx.send(Ok(last.clone())).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        core.queue.progress.gc(task_id.as_str());
    });
    Ok(Response::new(ReceiverStream::new(out)))
}
