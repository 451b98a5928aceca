//! A real etcd for tests: one member started on free loopback ports with its data in a
//! temporary directory, killed when dropped. etcd comes from Debian's `etcd-server` package
//! (3.4) and etcdctl from `etcd-client`, which `.ci/run` installs; a test that finds no `etcd`
//! on PATH fails and says so.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use repovault_common::secret::Secret;
use repovault_coordinator::config::TlsFiles;
use repovault_coordinator::kv::{EtcdKv, EtcdOptions, EtcdTls, KvBackend};

/// How long etcd may take to answer a first read: well under a second here (a single member
/// elects itself at once); ten leave room for a loaded CI machine.
const STARTUP: Duration = Duration::from_secs(10);

/// A running single-member etcd.
pub struct EtcdPeer {
    pub client_port: u16,
    child: Option<Child>,
    data: tempfile::TempDir,
    /// Set: clients must use TLS with this CA.
    tls: Option<(TlsFiles, PathBuf)>,
}

/// What differs from a plaintext member.
#[derive(Default)]
pub struct EtcdPeerOptions {
    /// Serve clients over TLS with this certificate (and the CA that signed it).
    pub tls: Option<(TlsFiles, PathBuf)>,
    /// etcd's `--auth-token-ttl`: how long a simple auth token lasts unused (etcd: 300 s).
    pub auth_token_ttl_secs: Option<u32>,
}

impl EtcdPeer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Result<Self> {
        Self::start_with(EtcdPeerOptions::default()).await
    }

    /// Starts etcd as `options` say and waits until it answers.
    pub async fn start_with(options: EtcdPeerOptions) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data.path().join("etcd.log"))?;
        let mut cmd = Command::new("etcd");
        if let Some((files, _)) = &options.tls {
            cmd.arg("--cert-file")
                .arg(&files.cert_file)
                .arg("--key-file")
                .arg(&files.key_file);
        }
        if let Some(ttl) = options.auth_token_ttl_secs {
            cmd.arg(format!("--auth-token-ttl={ttl}"));
        }
        let child = cmd
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
            tls: options.tls,
        };
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            match EtcdKv::connect_with(&e.options("probe/", None)?).await {
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

    /// How a client reaches this etcd (TLS with its CA when it serves TLS), as `user` when set.
    pub fn options(&self, namespace: &str, user: Option<(&str, &str)>) -> Result<EtcdOptions> {
        Ok(EtcdOptions {
            endpoints: vec![self.endpoint()],
            namespace: namespace.to_string(),
            tls: match &self.tls {
                Some((_, ca)) => Some(EtcdTls {
                    ca_pem: std::fs::read(ca)?,
                    client: None,
                }),
                None => None,
            },
            user: user.map(|(u, p)| (u.to_string(), Secret::new(p))),
        })
    }

    /// Turns etcd's user authentication on, with user `root` and `password` (etcdctl, from
    /// Debian's `etcd-client`).
    pub fn enable_auth(&self, password: &str) -> Result<()> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = format!("--endpoints={scheme}://{}", self.endpoint());
        let user = format!("root:{password}");
        for args in [
            vec!["user", "add", user.as_str(), "--interactive=false"],
            vec!["user", "grant-role", "root", "root"],
            vec!["auth", "enable"],
        ] {
            let mut cmd = Command::new("etcdctl");
            cmd.env("ETCDCTL_API", "3").arg(&endpoint);
            if let Some((_, ca)) = &self.tls {
                cmd.arg("--cacert").arg(ca);
            }
            let out = cmd
                .args(&args)
                .output()
                .context("etcdctl (Debian: apt-get install etcd-client)")?;
            if !out.status.success() {
                bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Ok(())
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

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
