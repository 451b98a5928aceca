//! Three real etcd members on loopback, one process each, with a short heartbeat so that losing
//! a member or the quorum shows within a second: what a coordinator group runs on. Members can be
//! killed (SIGKILL) and started again on their data; all are killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use repovault_coordinator::kv::{EtcdKv, EtcdOptions};

use crate::etcd_peer::free_port;

/// etcd's heartbeat and election timeout for tests: 50 ms and 500 ms (etcd's defaults are
/// 100 ms and 1 s); a lost member's leadership moves within about half a second.
const HEARTBEAT_MS: u32 = 50;
const ELECTION_MS: u32 = 500;

/// How long the members may take to form a cluster and answer: a second here, ten on a loaded
/// machine.
const STARTUP: Duration = Duration::from_secs(20);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// See the module documentation.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub async fn start(n: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut members = Vec::new();
        for i in 1..=n {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        let mut c = Self { members, dir };
        for i in 0..n {
            c.spawn(i, "new")?;
        }
        c.wait_answering(&c.endpoints()).await?;
        Ok(c)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<()> {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let log_path = self.log_path(i);
        let m = &mut self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args(["--logger=zap", "--log-level=warn"])
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "repovault-test"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian: apt-get install etcd-server; .ci/run installs it)")?;
        m.child = Some(child);
        Ok(())
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    async fn wait_answering(&self, endpoints: &[String]) -> Result<()> {
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            match EtcdKv::connect_with(&self.options_for(endpoints, "probe/")).await {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => {
                    bail!(
                        "etcd did not answer within {STARTUP:?}: {e}\n{}",
                        self.logs()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Every member's `127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    fn options_for(&self, endpoints: &[String], namespace: &str) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.to_vec(),
            namespace: namespace.to_string(),
            tls: None,
            user: None,
        }
    }

    /// How a client reaches the cluster (every member) under `namespace`.
    pub fn options(&self, namespace: &str) -> EtcdOptions {
        self.options_for(&self.endpoints(), namespace)
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits until the cluster answers through it.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i, "existing")?;
        let one = vec![format!("127.0.0.1:{}", self.members[i].client_port)];
        self.wait_answering(&one).await
    }

    /// Every member's log.
    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                format!(
                    "--- etcd {} ---\n{}",
                    self.members[i].name,
                    std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
