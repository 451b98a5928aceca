//! repovault as separate processes of the real CLI: a coordinator (`repovault standalone
//! --workers 0`) that a test can kill (SIGKILL) or stop (SIGTERM) and start again on the same data
//! directory and ports, and worker processes (`repovault worker`) that talk to it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use repovault_proto::v1::admin_service_client::AdminServiceClient;

/// How long a coordinator may take to answer after it was started: it opens (and after a
/// SIGKILL, recovers) the store and writes pending catalog objects first.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed (and reaped) on drop, also when a test fails; a stopped process is
/// continued first so that it can die.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `sig` (`-KILL`, `-TERM`, `-STOP`, `-CONT`) with kill(1).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let status = Command::new("kill").args([sig, &self.pid()]).status()?;
        if !status.success() {
            bail!("kill {sig} {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("process {} still running after {timeout:?}", self.pid());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-CONT", &self.pid()]).status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// How a test stops the coordinator process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash; nothing is flushed or drained.
    Kill,
    /// SIGTERM: a graceful stop, as systemd or Kubernetes restart it.
    Term,
}

impl Stop {
    fn signal(self) -> &'static str {
        match self {
            Stop::Kill => "-KILL",
            Stop::Term => "-TERM",
        }
    }
}

/// `repovault standalone --workers 0` as a child process, with its gRPC and HTTP ports fixed at
/// the first start so that a restart comes back where workers look for it.
pub struct CoordinatorProcess {
    bin: PathBuf,
    pub dir: PathBuf,
    grpc: SocketAddr,
    http: SocketAddr,
    heartbeat: String,
    /// Starts so far; each start logs to `coordinator-N.log` under `dir`.
    starts: usize,
    child: Option<ChildGuard>,
    /// Environment of every process started from now on (the coordinator and its workers).
    env: Vec<(String, std::ffi::OsString)>,
}

fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl CoordinatorProcess {
    /// Starts the coordinator of `bin` (the test-process binary) over `dir`/data with heartbeat
    /// interval `heartbeat` and waits until it answers.
    pub async fn start(bin: &str, dir: &Path, heartbeat: &str) -> Result<CoordinatorProcess> {
        Self::start_with_env(bin, dir, heartbeat, &[]).await
    }

    /// As [`CoordinatorProcess::start`], with `env` set for the coordinator and for every
    /// worker started by [`CoordinatorProcess::spawn_worker`] (e.g. `SSL_CERT_FILE`, to trust a
    /// test server's CA the way a machine's trust store would).
    pub async fn start_with_env(
        bin: &str,
        dir: &Path,
        heartbeat: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<CoordinatorProcess> {
        let mut c = CoordinatorProcess {
            bin: PathBuf::from(bin),
            dir: dir.to_path_buf(),
            grpc: free_addr()?,
            http: free_addr()?,
            heartbeat: heartbeat.to_string(),
            starts: 0,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_os_string()))
                .collect(),
        };
        c.spawn().await?;
        Ok(c)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn storage_root(&self) -> PathBuf {
        self.data_dir().join("storage")
    }

    pub fn join_token_file(&self) -> PathBuf {
        self.data_dir().join("join.token")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The coordinator's HTTP port (metrics, health), as an `http://` URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Sends `sig` (`-STOP`, `-CONT`, ...) to the running coordinator.
    pub fn signal(&self, sig: &str) -> Result<()> {
        match &self.child {
            Some(c) => c.signal(sig),
            None => bail!("the coordinator is not running"),
        }
    }

    /// Every start's log, in order.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("coordinator-{n}.log")))
                    .unwrap_or_default();
                format!("--- coordinator start {n} ---\n{text}")
            })
            .collect()
    }

    async fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("coordinator-{}.log", self.starts)))?;
        let child = Command::new(&self.bin)
            .arg("standalone")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--workers", "0", "--heartbeat", &self.heartbeat])
            .arg("--listen")
            .arg(self.grpc.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            // Info unless the caller's own RUST_LOG (or the harness's env) says otherwise.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the coordinator process")?;
        let mut child = ChildGuard { child };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.child.try_wait()? {
                bail!(
                    "the coordinator exited at start ({status}):\n{}",
                    self.log()
                );
            }
            if let Ok(mut a) = AdminServiceClient::connect(self.url()).await
                && a.list_workers(repovault_proto::v1::ListWorkersRequest {})
                    .await
                    .is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the coordinator did not answer within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the running coordinator with `how` and waits for the process to end.
    pub async fn stop(&mut self, how: Stop) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the coordinator is not running");
        };
        child.signal(how.signal())?;
        child.wait_exit(START_TIMEOUT).await
    }

    /// Starts the coordinator again on the same data directory and ports.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the coordinator is still running");
        }
        let mut last = None;
        // The port may linger for a moment after the old process ended.
        for _ in 0..20 {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the coordinator did not restart")))
    }

    /// An admin client (the standalone coordinator has no admin token: every caller is admin).
    pub async fn admin(&self) -> Result<AdminServiceClient<tonic::transport::Channel>> {
        Ok(AdminServiceClient::connect(self.url()).await?)
    }

    /// The running coordinator's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.child.id())
    }

    /// Starts `repovault worker` (one slot) against this coordinator; it logs at info level to
    /// `NAME.log` under `dir` ([`CoordinatorProcess::worker_log`]).
    pub fn spawn_worker(&self, name: &str, extra: &[&str]) -> Result<ChildGuard> {
        self.spawn_worker_with_slots(name, 1, extra)
    }

    /// As [`CoordinatorProcess::spawn_worker`], with `slots` slots.
    pub fn spawn_worker_with_slots(
        &self,
        name: &str,
        slots: u32,
        extra: &[&str],
    ) -> Result<ChildGuard> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new(&self.bin)
            .args(["worker", "--coordinator", &self.url(), "--join-token-file"])
            .arg(self.join_token_file())
            .args(["--slots", &slots.to_string(), "--name", name, "--cache-dir"])
            .arg(self.dir.join(format!("cache-{name}")))
            .args(extra)
            // Info unless the caller's own RUST_LOG (or the harness's env) says otherwise.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a worker process")?;
        Ok(ChildGuard { child })
    }

    pub fn worker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}
