//! repovault as `repovault standalone` runs it, in process: a coordinator and one worker over a
//! fresh data directory. For benchmarks, which measure the product as a user starts it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio_util::sync::CancellationToken;

use repovault_common::secret::Secret;
use repovault_coordinator::model::{BackupRecord, Status};
use repovault_coordinator::server::CoordinatorHandle;
use repovault_worker::session::WorkerConfig;

/// How long [`Standalone::wait_backup`] waits: generous, a benchmark's backups may be large.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// A running coordinator with one worker of `slots` slots.
pub struct Standalone {
    pub data: PathBuf,
    pub handle: CoordinatorHandle,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

impl Standalone {
    /// Starts both and waits for the worker to register, so timings hold no start-up.
    pub async fn start(data: PathBuf, slots: u32) -> Result<Standalone> {
        let settings =
            repovault_cli::standalone_settings(&data, "127.0.0.1:0".parse()?, None, "1s").await?;
        let join_token: Secret = settings.join_token.clone();
        let handle = repovault_coordinator::server::start(settings).await?;
        let cfg = WorkerConfig {
            coordinator: handle.url(),
            ca_file: None,
            client_cert: None,
            join_token,
            name: "standalone-0".into(),
            slots,
            exit_when_idle: None,
            cache_dir: data.join("cache").join("worker-0"),
            cache_max_bytes: None,
            scratch_dir: data.join("scratch").join("worker-0"),
            drain_grace: Duration::from_secs(30),
            full_check_every: repovault_worker::session::DEFAULT_FULL_CHECK_EVERY,
            // `repovault standalone` without --allow-local-root: the benchmarks' sources are
            // served by git daemon, and the data directory is refused in any case.
            local_paths: repovault_worker::local_paths::LocalPaths::new(
                &[],
                std::slice::from_ref(&data),
            )?,
        };
        let stop = CancellationToken::new();
        let s = stop.clone();
        let worker = tokio::spawn(async move {
            if let Err(e) = repovault_worker::session::run(cfg, s).await {
                tracing::error!(error = %e, "worker stopped");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while handle.core.queue.workers.list().is_empty() {
            if Instant::now() > deadline {
                bail!("the worker did not register within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Standalone {
            data,
            handle,
            stop,
            worker,
        })
    }

    /// Waits for backup `id` to complete; fails if it failed or took [`BACKUP_TIMEOUT`].
    pub async fn wait_backup(&self, id: impl std::fmt::Display) -> Result<BackupRecord> {
        let t = Instant::now();
        let id: repovault_common::domain::BackupId = id.to_string().parse()?;
        loop {
            let r = self.handle.core.registry.get_backup(&id).await?;
            match r.status {
                Status::Completed => return Ok(r),
                Status::Failed => bail!("backup {} failed: {:?}", r.id, r.error),
                Status::Pending | Status::Running => {}
            }
            if t.elapsed() > BACKUP_TIMEOUT {
                bail!(
                    "backup {} still {:?} after {BACKUP_TIMEOUT:?}",
                    r.id,
                    r.status
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn storage(&self) -> PathBuf {
        self.data.join("storage")
    }

    pub fn cache(&self) -> PathBuf {
        self.data.join("cache")
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.worker.await;
        self.handle.shutdown().await;
    }
}

/// Bytes of every regular file under `dir` (0 when it does not exist).
pub fn dir_size(dir: &Path) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry.with_context(|| format!("listing {}", d.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("stat {}", entry.path().display()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
