//! A real etcd for tests: one member started on free loopback ports with its data in a
//! temporary directory, killed when dropped. etcd comes from Debian's `etcd-server` package
//! (3.4), which `.ci/run` installs; a test that finds no `etcd` on PATH fails and says so.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use repovault_coordinator::kv::{EtcdKv, KvBackend};

/// How long etcd may take to answer a first read: well under a second here (a single member
/// elects itself at once); ten leave room for a loaded CI machine.
const STARTUP: Duration = Duration::from_secs(10);

/// A running single-member etcd.
pub struct EtcdPeer {
    pub client_port: u16,
    child: Option<Child>,
    data: tempfile::TempDir,
}

impl EtcdPeer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Result<Self> {
        let data = tempfile::tempdir()?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .args(["--name", "m1", "--data-dir"])
            .arg(data.path().join("member"))
            .args(["--logger=zap", "--log-level=warn"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m1={peer}")])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian: apt-get install etcd-server; .ci/run installs it)")?;
        let mut e = Self {
            client_port,
            child: Some(child),
            data,
        };
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            match EtcdKv::connect(&[e.endpoint()], "probe/").await {
                Ok(_) => return Ok(e),
                Err(err) if std::time::Instant::now() > deadline => {
                    e.stop();
                    bail!(
                        "etcd did not answer within {STARTUP:?}: {err}\n{}",
                        e.log_text()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// A state store on this etcd under `namespace`.
    pub async fn kv(&self, namespace: &str) -> Result<Arc<dyn KvBackend>> {
        Ok(Arc::new(
            EtcdKv::connect(&[self.endpoint()], namespace).await?,
        ))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd (SIGKILL: a member stops at once, which is what an outage is).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
