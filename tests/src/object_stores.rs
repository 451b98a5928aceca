//! Real object-storage servers for tests: moto (S3), Azurite (Azure Blob) and the GCS
//! emulator, each started on a free loopback port by the test that needs it and killed when
//! dropped. They are installed by `peers/install.sh` (which `.ci/run` calls) under
//! `$REPOVAULT_PEERS_DIR` (default `~/.cache/repovault-peers`); a test that finds one missing
//! fails and says how to install it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use repovault_common::storage::azure_sas;
use repovault_common::storage::{StorageConfig, StorageKind};

/// Azurite's well-known development account and key (published in Azurite's own
/// documentation; they open nothing but a local emulator).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// moto takes any key pair unless IAM enforcement is on; these are the root user's.
pub const MOTO_ACCESS_KEY: &str = "AKIAREPOVAULTTEST0001";
pub const MOTO_SECRET_KEY: &str = "repovault-moto-root-secret";

/// How long a peer may take to accept connections (Azurite, a node program, is the slowest:
/// about a second here; ten leave room for a loaded CI machine).
const STARTUP: Duration = Duration::from_secs(10);

/// The object stores the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Moto,
    Azurite,
    GcsEmulator,
}

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::Moto, Peer::Azurite, Peer::GcsEmulator];

    pub fn kind(self) -> StorageKind {
        match self {
            Peer::Moto => StorageKind::S3,
            Peer::Azurite => StorageKind::Azblob,
            Peer::GcsEmulator => StorageKind::Gcs,
        }
    }
}

/// Where `peers/install.sh` put the peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("REPOVAULT_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/repovault-peers")
        })
}

/// A running object store. Killed on drop.
pub struct ObjectStore {
    pub peer: Peer,
    pub port: u16,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
    /// Set: Azurite keeps its data in this directory, so a restart finds it again (an outage
    /// rather than a loss); unset: in memory.
    data: Option<tempfile::TempDir>,
}

impl ObjectStore {
    /// Starts `peer` on a free loopback port and waits until it accepts connections.
    pub async fn start(peer: Peer) -> Result<Self> {
        Self::start_with(peer, None).await
    }

    /// Azurite keeping its data on disk: [`Self::stop`] then [`Self::restart`] is an outage
    /// that loses nothing.
    pub async fn start_persistent_azurite() -> Result<Self> {
        Self::start_with(Peer::Azurite, Some(tempfile::tempdir()?)).await
    }

    async fn start_with(peer: Peer, data: Option<tempfile::TempDir>) -> Result<Self> {
        let port = free_port()?;
        let mut s = Self {
            peer,
            port,
            child: None,
            log: tempfile::NamedTempFile::new()?,
            data,
        };
        s.spawn().await?;
        Ok(s)
    }

    fn command(&self) -> Result<Command> {
        let dir = peers_dir();
        let (exe, args): (PathBuf, Vec<String>) = match self.peer {
            Peer::Moto => (
                dir.join("venv/bin/moto_server"),
                vec![
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    self.port.to_string(),
                ],
            ),
            Peer::Azurite => {
                let mut args: Vec<String> = [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &self.port.to_string(),
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ]
                .map(String::from)
                .to_vec();
                match &self.data {
                    Some(d) => args.extend(["--location".into(), d.path().display().to_string()]),
                    None => args.push("--inMemoryPersistence".into()),
                }
                (dir.join("azurite/node_modules/.bin/azurite-blob"), args)
            }
            Peer::GcsEmulator => {
                let addr = format!("127.0.0.1:{}", self.port);
                (
                    dir.join("venv/bin/fake-gcs-server"),
                    [
                        "-scheme",
                        "http",
                        "-backend",
                        "memory",
                        "-host",
                        "127.0.0.1",
                        "-port",
                        &self.port.to_string(),
                        "-external-url",
                        &format!("http://{addr}"),
                        "-public-host",
                        &addr,
                        "-log-level",
                        "warn",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
            }
        };
        if !exe.exists() {
            bail!(
                "{} is not installed ({} is missing): run peers/install.sh",
                self.name(),
                exe.display()
            );
        }
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(self.log.reopen()?)
            .stderr(self.log.reopen()?);
        Ok(cmd)
    }

    async fn spawn(&mut self) -> Result<()> {
        let child = self
            .command()?
            .spawn()
            .with_context(|| format!("starting {}", self.name()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + STARTUP;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} did not listen within {STARTUP:?}: {}",
                    self.name(),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Kills the server (a storage outage); [`Self::restart`] brings it back on the same port
    /// (with its in-memory data gone).
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if self.data.is_some() {
            // Azurite writes its metadata out when asked to stop; killed, it loses the latest.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + STARTUP;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn().await
    }

    pub fn name(&self) -> &'static str {
        match self.peer {
            Peer::Moto => "moto",
            Peer::Azurite => "Azurite",
            Peer::GcsEmulator => "the GCS emulator",
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        match self.peer {
            Peer::Azurite => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
            Peer::Moto | Peer::GcsEmulator => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Creates a bucket (container), as an operator would before adding the location.
    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        self.create_bucket_with(name, false).await
    }

    /// A moto bucket with S3 Object Lock enabled (and so versioning, which Object Lock needs).
    pub async fn create_bucket_with_object_lock(&self, name: &str) -> Result<()> {
        if self.peer != Peer::Moto {
            bail!("Object Lock buckets are made on moto only");
        }
        self.create_bucket_with(name, true).await
    }

    async fn create_bucket_with(&self, name: &str, object_lock: bool) -> Result<()> {
        let http = reqwest::Client::new();
        let resp = match self.peer {
            // moto answers unsigned requests while IAM enforcement is off.
            Peer::Moto => {
                let mut req = http.put(format!("{}/{name}", self.endpoint()));
                if object_lock {
                    req = req.header("x-amz-bucket-object-lock-enabled", "true");
                }
                req.send().await?
            }
            Peer::Azurite => {
                let now = chrono::Utc::now().timestamp();
                let sas = azure_sas::account_sas(
                    AZURITE_ACCOUNT,
                    AZURITE_KEY,
                    "racwdl",
                    now - 300,
                    now + 3600,
                )?;
                http.put(format!(
                    "{}/{name}?restype=container&{sas}",
                    self.endpoint()
                ))
                .header("x-ms-version", azure_sas::SAS_VERSION)
                .header("content-length", "0")
                .send()
                .await?
            }
            Peer::GcsEmulator => {
                http.post(format!(
                    "{}/storage/v1/b?project=repovault-test",
                    self.endpoint()
                ))
                .json(&serde_json::json!({ "name": name }))
                .send()
                .await?
            }
        };
        if !resp.status().is_success() {
            let status = resp.status();
            bail!(
                "{} refused to create bucket {name}: {status} {}",
                self.name(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// A storage location on `bucket` with full (owner) credentials.
    pub fn storage(&self, bucket: &str) -> StorageConfig {
        let options: Vec<(&str, String)> = match self.peer {
            Peer::Moto => vec![
                ("bucket", bucket.into()),
                ("region", "us-east-1".into()),
                ("endpoint", self.endpoint()),
                ("access_key_id", MOTO_ACCESS_KEY.into()),
                ("secret_access_key", MOTO_SECRET_KEY.into()),
            ],
            Peer::Azurite => vec![
                ("container", bucket.into()),
                ("endpoint", self.endpoint()),
                ("account_name", AZURITE_ACCOUNT.into()),
                ("account_key", AZURITE_KEY.into()),
            ],
            Peer::GcsEmulator => vec![
                ("bucket", bucket.into()),
                ("endpoint", self.endpoint()),
                ("anonymous", "true".into()),
            ],
        };
        StorageConfig {
            kind: self.peer.kind(),
            options: options
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// Starts `peer` with a fresh bucket and returns the store and the location's configuration.
    pub async fn with_bucket(peer: Peer) -> Result<(Self, StorageConfig)> {
        let store = Self::start(peer).await?;
        store.create_bucket("repovault").await?;
        let storage = store.storage("repovault");
        Ok((store, storage))
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
