//! The metadata restore's journal (old → new numbers, see the forge's restore engine) kept in
//! storage across attempts: at `<org-id>/<repo-id>/restores/<restore-id>.journal.json`, loaded
//! at the start, saved every [`JOURNAL_SAVE_EVERY`] while it changes and at the end, so a
//! re-leased restore creates nothing twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use repovault_common::domain::RestoreId;

use crate::tasks::{TaskContext, TaskError};

/// How often the journal is saved to storage while it changes. Our choice: a re-leased attempt
/// finds at most the last second's creations missing from the journal (it then matches them by
/// their markers in the target), for at most one small storage write a second.
const JOURNAL_SAVE_EVERY: Duration = Duration::from_secs(1);

/// Where the journal of `restore_id` lives in storage, beside the snapshot repository.
pub fn journal_storage_path(snapshot_path: &str, restore_id: &RestoreId) -> String {
    format!(
        "{}/restores/{restore_id}.journal.json",
        snapshot_path.trim_end_matches('/')
    )
}

/// Copies the journal from storage to `local` (nothing when there is none yet).
pub async fn load_journal(ctx: &TaskContext, remote: &str, local: &Path) -> Result<(), TaskError> {
    match ctx.storage.read(remote).await {
        Ok(buf) => tokio::fs::write(local, buf.to_vec())
            .await
            .map_err(|e| TaskError::retryable(format!("writing {}: {e}", local.display()))),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TaskError::retryable(format!(
            "reading the restore journal {remote}: {e}"
        ))),
    }
}

/// Writes `local` to storage (nothing when it does not exist), while the lease allows writes.
pub async fn save_journal(ctx: &TaskContext, local: &Path, remote: &str) -> Result<(), TaskError> {
    let data = match tokio::fs::read(local).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(TaskError::retryable(format!(
                "reading {}: {e}",
                local.display()
            )));
        }
    };
    ctx.lease.may_write().map_err(TaskError::retryable)?;
    ctx.storage
        .write(remote, data)
        .await
        .map(|_| ())
        .map_err(|e| TaskError::retryable(format!("saving the restore journal {remote}: {e}")))
}

/// Saves the journal to storage every [`JOURNAL_SAVE_EVERY`] while it changes.
pub struct JournalSaver {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl JournalSaver {
    pub fn start(ctx: Arc<TaskContext>, local: PathBuf, remote: String) -> JournalSaver {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut last: Option<(u64, std::time::SystemTime)> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(JOURNAL_SAVE_EVERY) => {}
                    _ = stopped.changed() => return,
                }
                let now = tokio::fs::metadata(&local)
                    .await
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)));
                if now.is_none() || now == last {
                    continue;
                }
                match save_journal(&ctx, &local, &remote).await {
                    Ok(()) => last = now,
                    Err(e) => tracing::warn!(error = %e, "could not save the restore journal"),
                }
            }
        });
        JournalSaver { stop, handle }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}
