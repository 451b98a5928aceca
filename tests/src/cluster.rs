//! An in-process cluster: a coordinator on 127.0.0.1:0 with the embedded store and fs storage
//! under a temporary directory, and workers as tokio tasks (or as child processes, for tests that
//! pause and kill them). The same code paths as `repovault standalone`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use repovault_coordinator::coordinator::Coordinator;
use repovault_coordinator::model::{BackupRecord, RestoreRecord, Status};
use repovault_coordinator::server::{CoordinatorHandle, start};
use repovault_proto::v1::admin_service_client::AdminServiceClient;
use repovault_worker::session::{WorkerConfig, run};

/// Heartbeat of test clusters: short, so lease expiry tests take seconds (TTL = 3H + 1 s).
pub const TEST_HEARTBEAT: &str = "500ms";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub coordinator: Option<CoordinatorHandle>,
    workers: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
    heartbeat: String,
    listen: SocketAddr,
    /// Worker numbers are never reused, so a new worker starts with an empty cache.
    next_worker: usize,
    /// Set: the coordinator serves TLS with this CA's certificate, and workers trust it.
    ca_file: Option<PathBuf>,
    tls: Option<repovault_coordinator::config::TlsFiles>,
    /// Set: the coordinator serves its HTTP port here (port 0 at first; restarts keep the
    /// port), e.g. for webhooks.
    http: Option<std::net::SocketAddr>,
    /// Admin tokens with roles; empty: every caller is the local admin.
    admin_tokens: Vec<repovault_coordinator::admin_roles::NamedToken>,
    /// Where workers added from now on allow file:// sources and targets (none by default,
    /// as a worker's default); the cluster's own directory is refused whatever it says.
    local_roots: Vec<PathBuf>,
    /// Set: the coordinator's storage instead of fs under its data directory.
    storage: Option<repovault_common::storage::StorageConfig>,
    /// Set: the coordinator's state store instead of redb in its data directory (etcd).
    kv: Option<std::sync::Arc<dyn repovault_coordinator::kv::KvBackend>>,
}

impl Cluster {
    /// A coordinator and `workers` in-process workers.
    pub async fn start(workers: usize) -> Result<Self> {
        Self::start_with(workers, TEST_HEARTBEAT).await
    }

    /// A cluster whose coordinator serves gRPC over TLS (`tls`), with workers trusting `ca_file`.
    pub async fn start_tls(
        workers: usize,
        tls: repovault_coordinator::config::TlsFiles,
        ca_file: PathBuf,
    ) -> Result<Self> {
        Self::start_configured(workers, |c| {
            c.tls = Some(tls);
            c.ca_file = Some(ca_file);
        })
        .await
    }

    /// A cluster whose coordinator keeps its snapshots in `storage` (an object store).
    pub async fn start_on(
        workers: usize,
        storage: repovault_common::storage::StorageConfig,
    ) -> Result<Self> {
        Self::start_configured(workers, |c| c.storage = Some(storage)).await
    }

    /// A cluster whose coordinator keeps its state in `kv` (etcd) instead of redb; a restart
    /// opens the same store.
    pub async fn start_on_store(
        workers: usize,
        kv: std::sync::Arc<dyn repovault_coordinator::kv::KvBackend>,
    ) -> Result<Self> {
        Self::start_configured(workers, |c| c.kv = Some(kv)).await
    }

    /// A cluster whose admin API takes these tokens (and only these).
    pub async fn start_with_admin_tokens(
        workers: usize,
        tokens: Vec<repovault_coordinator::admin_roles::NamedToken>,
    ) -> Result<Self> {
        Self::start_configured(workers, |c| c.admin_tokens = tokens).await
    }

    /// A cluster whose coordinator is started again after `configure` set what differs from
    /// the defaults, then `workers` workers.
    async fn start_configured(workers: usize, configure: impl FnOnce(&mut Self)) -> Result<Self> {
        let mut c = Self::start_with(0, TEST_HEARTBEAT).await?;
        if let Some(h) = c.coordinator.take() {
            h.shutdown().await;
        }
        configure(&mut c);
        c.restart_coordinator().await?;
        for _ in 0..workers {
            c.add_worker().await?;
        }
        Ok(c)
    }

    pub async fn start_with(workers: usize, heartbeat: &str) -> Result<Self> {
        repovault_common::tls::install_crypto_provider();
        repovault_common::telemetry::init("warn", repovault_common::telemetry::LogFormat::Text);
        let dir = tempfile::tempdir()?;
        let mut c = Self {
            dir,
            coordinator: None,
            workers: Vec::new(),
            heartbeat: heartbeat.to_string(),
            listen: "127.0.0.1:0".parse()?,
            next_worker: 0,
            ca_file: None,
            tls: None,
            http: None,
            admin_tokens: Vec::new(),
            local_roots: Vec::new(),
            storage: None,
            kv: None,
        };
        c.start_coordinator().await?;
        for _ in 0..workers {
            c.add_worker().await?;
        }
        Ok(c)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The fs storage root.
    pub fn storage_root(&self) -> PathBuf {
        self.data_dir().join("storage")
    }

    pub fn join_token_file(&self) -> PathBuf {
        self.data_dir().join("join.token")
    }

    async fn start_coordinator(&mut self) -> Result<()> {
        let mut settings = repovault_cli::standalone_settings(
            &self.data_dir(),
            self.listen,
            self.http,
            &self.heartbeat,
        )
        .await?;
        if let Some(t) = &self.tls {
            settings.tls = Some(t.load()?);
        }
        settings.admin_tokens = self.admin_tokens.clone();
        if let Some(storage) = &self.storage {
            settings.storage = storage.clone();
        }
        if let Some(kv) = &self.kv {
            settings.kv = kv.clone();
        }
        let h = start(settings).await?;
        // Restarts come back on the same port, so workers find them again.
        self.listen = h.grpc_addr;
        if self.http.is_some() {
            self.http = h.http_addr;
        }
        self.coordinator = Some(h);
        Ok(())
    }

    /// Stops the coordinator and starts it again on the same data directory and port.
    pub async fn restart_coordinator(&mut self) -> Result<()> {
        if let Some(h) = self.coordinator.take() {
            h.shutdown().await;
        }
        let mut last = None;
        // The port may linger for a moment after shutdown.
        for _ in 0..50 {
            match self.start_coordinator().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("coordinator did not restart")))
    }

    /// A cluster whose coordinator also serves its HTTP port (webhooks, downloads, metrics).
    pub async fn start_with_http(workers: usize) -> Result<Self> {
        let mut c = Self::start_with(0, TEST_HEARTBEAT).await?;
        if let Some(h) = c.coordinator.take() {
            h.shutdown().await;
        }
        c.http = Some("127.0.0.1:0".parse()?);
        c.restart_coordinator().await?;
        for _ in 0..workers {
            c.add_worker().await?;
        }
        Ok(c)
    }

    /// The coordinator's HTTP address, when it serves one.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http
    }

    pub fn core(&self) -> &Arc<Coordinator> {
        &self.coordinator.as_ref().expect("coordinator running").core
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }

    /// Workers added after this call allow file:// URLs under `dir` (where a test's file://
    /// fixtures live), as `--allow-local-root dir` does.
    pub fn allow_local_root(&mut self, dir: &Path) {
        self.local_roots.push(dir.to_path_buf());
    }

    /// The configuration of in-process worker `test-worker-<label>`, with its cache in
    /// `cache-<label>` and its scratch in `scratch-<label>`.
    pub fn worker_config(
        &self,
        label: &str,
        exit_when_idle: Option<Duration>,
    ) -> Result<WorkerConfig> {
        let token = std::fs::read_to_string(self.join_token_file())?;
        Ok(WorkerConfig {
            coordinator: self.url(),
            ca_file: self.ca_file.clone(),
            client_cert: None,
            join_token: repovault_common::secret::Secret::new(token.trim()),
            name: format!("test-worker-{label}"),
            slots: 2,
            exit_when_idle,
            cache_dir: self.dir.path().join(format!("cache-{label}")),
            cache_max_bytes: None,
            scratch_dir: self.dir.path().join(format!("scratch-{label}")),
            drain_grace: Duration::from_secs(10),
            full_check_every: repovault_worker::session::DEFAULT_FULL_CHECK_EVERY,
            // As `standalone` refuses its data directory: every worker's cache and scratch,
            // the store and the storage live in the cluster's directory.
            local_paths: repovault_worker::local_paths::LocalPaths::new(
                &self.local_roots,
                &[self.dir.path().to_path_buf()],
            )?,
        })
    }

    pub async fn add_worker(&mut self) -> Result<()> {
        let i = self.next_worker;
        self.next_worker += 1;
        let cfg = self.worker_config(&i.to_string(), None)?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        let h = tokio::spawn(async move {
            if let Err(e) = run(cfg, s).await {
                tracing::error!(error = %e, "test worker stopped");
            }
        });
        self.workers.push((stop, h));
        Ok(())
    }

    /// Starts an in-process worker with `cfg` (e.g. [`Cluster::worker_config`] with another join
    /// token or a client certificate) beside the cluster's own: the caller stops it with the
    /// token, and the handle says how its session ended (a refused worker ends with
    /// `WorkerError::Refused`).
    pub fn spawn_worker(
        &self,
        cfg: WorkerConfig,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<
            Result<repovault_worker::session::Exit, repovault_worker::session::WorkerError>,
        >,
    ) {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(cfg, stop.clone()));
        (stop, handle)
    }

    /// Drains and stops every in-process worker.
    pub async fn stop_workers(&mut self) {
        for (stop, h) in self.workers.drain(..) {
            stop.cancel();
            let _ = h.await;
        }
    }

    /// Starts a worker as a child process of the real CLI (`repovault worker`). `bin` is
    /// `env!("CARGO_BIN_EXE_repovault-test-process")` (only integration tests see that variable).
    pub fn spawn_worker_process(&self, bin: &str, name: &str) -> Result<Child> {
        self.spawn_worker_process_with(bin, name, &[])
    }

    /// As [`Cluster::spawn_worker_process`], with extra `repovault worker` arguments.
    pub fn spawn_worker_process_with(
        &self,
        bin: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<Child> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .args(["worker", "--coordinator", &self.url(), "--join-token-file"])
            .arg(self.join_token_file())
            .args(["--slots", "1", "--name", name, "--cache-dir"])
            .arg(self.dir.path().join(format!("cache-{name}")))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a worker process")?;
        Ok(child)
    }

    pub fn process_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    pub async fn admin(&self) -> Result<AdminServiceClient<tonic::transport::Channel>> {
        Ok(AdminServiceClient::connect(self.url()).await?)
    }

    /// Waits until the backup is completed or failed (`id`: a record's id, or its text from the
    /// CLI's output).
    pub async fn wait_backup(
        &self,
        id: impl std::fmt::Display,
        timeout: Duration,
    ) -> Result<BackupRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id: repovault_common::domain::BackupId = id.to_string().parse()?;
        loop {
            let b = self.core().registry.get_backup(&id).await?;
            if b.status.is_terminal() {
                return Ok(b);
            }
            if tokio::time::Instant::now() > deadline {
                // Where it stands, so a test that times out says which phase hung.
                let progress = self
                    .core()
                    .queue
                    .progress
                    .latest(b.task_id.as_str())
                    .map(|p| {
                        format!(
                            "phase {} ({}), {} of {} items, {} of {} bytes, worker {}",
                            p.phase,
                            p.message,
                            p.objects,
                            p.total_objects,
                            p.bytes,
                            p.total_bytes,
                            p.worker_id
                        )
                    });
                bail!(
                    "backup {id} still {:?} after {timeout:?}; last progress: {}",
                    b.status,
                    progress.as_deref().unwrap_or("none")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_restore(
        &self,
        id: impl std::fmt::Display,
        timeout: Duration,
    ) -> Result<RestoreRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id: repovault_common::domain::RestoreId = id.to_string().parse()?;
        loop {
            let r = self.core().restores.get_restore(&id).await?;
            if matches!(r.status, Status::Completed | Status::Failed) {
                return Ok(r);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("restore {id} still {:?} after {timeout:?}", r.status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Adds the plain git repository `full_name` (`ORG/NAME`) at `url`, and its organisation
    /// when this cluster has none of that name yet.
    pub async fn add_git_repo(&self, full_name: &str, url: &str) -> Result<()> {
        let (org, _) = full_name
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("{full_name:?} is not ORG/NAME"))?;
        let registry = &self.core().registry;
        if registry.org_named(org).await.is_err() {
            registry
                .add_org(org, repovault_common::domain::Provider::Git)
                .await?;
        }
        registry.add_repo(full_name, url, None).await?;
        Ok(())
    }

    /// A manual backup, waited for; fails unless it completed.
    pub async fn backup_ok(&self, full_name: &str) -> Result<BackupRecord> {
        let b = self.core().backups.run_backup(full_name).await?;
        let b = self.wait_backup(&b.id, Duration::from_secs(120)).await?;
        if b.status != Status::Completed {
            bail!("backup of {full_name} {:?}: {:?}", b.status, b.error);
        }
        Ok(b)
    }

    pub async fn shutdown(mut self) {
        self.stop_workers().await;
        if let Some(h) = self.coordinator.take() {
            h.shutdown().await;
        }
    }
}

/// Runs `restic` with the organisation key from a file (never in argv).
pub fn restic(repo: &Path, key_file: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD_FILE", key_file)
        .env(
            "RESTIC_CACHE_DIR",
            repo.parent().unwrap_or(repo).join(".restic-cache"),
        )
        .output()
        .context("running restic (apt-get install restic)")?;
    if !out.status.success() {
        bail!("restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
