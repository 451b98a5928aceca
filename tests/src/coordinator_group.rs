//! A coordinator group as separate processes of the real CLI: `repovault coordinator --config`
//! members on one etcd namespace, sharing the master key, the join token and the storage (a
//! directory every process sees), each on fixed loopback ports so that a restarted member comes
//! back where clients look for it. Members can be killed, stopped, continued and restarted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use repovault_proto::v1::admin_service_client::AdminServiceClient;

use crate::process::ChildGuard;

/// How long a member may take to come up (open etcd, campaign, serve).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct GroupMember {
    pub name: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    config: PathBuf,
    starts: usize,
    child: Option<ChildGuard>,
}

/// See the module documentation.
pub struct CoordinatorGroup {
    bin: PathBuf,
    pub dir: PathBuf,
    pub members: Vec<GroupMember>,
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl CoordinatorGroup {
    /// Writes the configuration of `n` members on `etcd` (its client endpoints) under `dir`,
    /// with heartbeat interval `heartbeat`; starts none.
    pub fn configure(
        bin: &str,
        dir: &Path,
        etcd: &[String],
        n: usize,
        heartbeat: &str,
    ) -> Result<Self> {
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets)?;
        let key: String = crate::fixtures::pseudo_random_bytes(7, 32)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_private(&secrets.join("master.key"), &key)?;
        write_private(&secrets.join("join.token"), "group-join-token-0123456789")?;
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let endpoints = etcd
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("c{i}");
            let (grpc, http) = (free_addr()?, free_addr()?);
            let config = dir.join(format!("{name}.toml"));
            let text = format!(
                r#"listen = "{grpc}"
http_listen = "{http}"
data_dir = "{data}"
master_key_file = "{secrets}/master.key"
join_token_file = "{secrets}/join.token"
heartbeat_interval = "{heartbeat}"

[store]
kind = "etcd"
endpoints = [{endpoints}]
namespace = "group/"

[group]
name = "{name}"

[storage]
kind = "fs"
[storage.options]
root = "{storage}"
"#,
                data = dir.join(&name).display(),
                secrets = secrets.display(),
                storage = storage.display(),
            );
            std::fs::write(&config, text)?;
            members.push(GroupMember {
                name,
                grpc,
                http,
                config,
                starts: 0,
                child: None,
            });
        }
        Ok(Self {
            bin: PathBuf::from(bin),
            dir: dir.to_path_buf(),
            members,
        })
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].grpc)
    }

    /// Every member's URL, comma-separated: what `--coordinator` takes for a group.
    pub fn urls(&self) -> String {
        (0..self.members.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn storage_root(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub fn join_token_file(&self) -> PathBuf {
        self.dir.join("secrets").join("join.token")
    }

    /// Starts member `i` and waits until it serves (as leader or follower).
    pub async fn start(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        m.starts += 1;
        let log = self.dir.join(format!("{}-{}.log", m.name, m.starts));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("coordinator").arg("--config").arg(&m.config);
        m.child = Some(spawn_logged(cmd, &log).context("starting a coordinator process")?);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = self.members[i].child.as_mut()
                && let Some(status) = c.child.try_wait()?
            {
                bail!(
                    "coordinator {i} exited at start ({status}):\n{}",
                    self.log(i)
                );
            }
            if self.role(i).await.is_some() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "coordinator {i} did not serve within {START_TIMEOUT:?}:\n{}",
                    self.log(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What member `i` says it is: `Some(true)` leading, `Some(false)` following, `None` not
    /// answering. A leader answers admin calls; a follower refuses them naming the leader.
    pub async fn role(&self, i: usize) -> Option<bool> {
        let mut admin = AdminServiceClient::connect(self.url(i)).await.ok()?;
        match admin
            .list_workers(repovault_proto::v1::ListWorkersRequest::default())
            .await
        {
            Ok(_) => Some(true),
            Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("follower") => {
                Some(false)
            }
            Err(_) => None,
        }
    }

    /// Waits until member `i` leads; returns how long that took.
    pub async fn wait_leading(&self, i: usize, within: Duration) -> Result<Duration> {
        let start = tokio::time::Instant::now();
        loop {
            if self.role(i).await == Some(true) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!(
                    "coordinator {i} did not lead within {within:?}:\n{}",
                    self.log(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `sig` (`-KILL`, `-STOP`, `-CONT`, `-TERM`) to member `i`.
    pub fn signal(&self, i: usize, sig: &str) -> Result<()> {
        match &self.members[i].child {
            Some(c) => c.signal(sig),
            None => bail!("coordinator {i} is not running"),
        }
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        let Some(mut c) = self.members[i].child.take() else {
            bail!("coordinator {i} is not running");
        };
        c.signal("-KILL")?;
        c.wait_exit(Duration::from_secs(10)).await?;
        Ok(())
    }

    /// An admin client of member `i`.
    pub async fn admin(&self, i: usize) -> Result<AdminServiceClient<tonic::transport::Channel>> {
        Ok(AdminServiceClient::connect(self.url(i)).await?)
    }

    /// Every start's log of member `i`.
    pub fn log(&self, i: usize) -> String {
        let m = &self.members[i];
        (1..=m.starts)
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("{}-{n}.log", m.name)))
                    .unwrap_or_default();
                format!("--- {} start {n} ---\n{text}", m.name)
            })
            .collect()
    }

    /// Starts `repovault worker` with `slots` slots against every member (`--coordinator` with
    /// all their URLs); it logs to `NAME.log` under `dir`.
    pub fn spawn_worker(&self, name: &str, slots: u32) -> Result<ChildGuard> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["worker", "--coordinator", &self.urls(), "--join-token-file"])
            .arg(self.join_token_file())
            .args(["--slots", &slots.to_string(), "--name", name, "--cache-dir"])
            .arg(self.dir.join(format!("cache-{name}")));
        spawn_logged(cmd, &self.dir.join(format!("{name}.log")))
            .context("starting a worker process")
    }

    pub fn worker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// Starts `cmd` with its stderr in `log`, logging at info unless the caller's RUST_LOG says
/// otherwise.
fn spawn_logged(mut cmd: Command, log: &Path) -> Result<ChildGuard> {
    let child = cmd
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    Ok(ChildGuard { child })
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| path.display().to_string())?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
