//! forge-sim: a stateful GitHub (Enterprise) simulator for repovault's tests, demos and
//! benchmarks, held to GitHub's own API description.
//!
//! It serves, over HTTPS with a CA made at start-up: the REST API under `/api/v3/` with GitHub's
//! shapes, pagination, ETags, rate limits and errors; git smart HTTP (`/OWNER/REPO.git`,
//! `.wiki.git`) by `git http-backend`; the LFS batch API; release-asset uploads under
//! `/api/uploads/`; the download host's pre-signed URLs under `/_objects/` (where release-asset
//! and attachment downloads redirect); attachments (`/user-attachments/assets/UUID`,
//! `/OWNER/REPO/assets/ID/UUID`); GitHub App installation tokens and fine-grained personal
//! access tokens; webhooks with `X-Hub-Signature-256`. Its own control routes live under
//! `/_sim/` (stats, options, recorded exchanges).
//!
//! Start it in-process with [`ForgeSim::start`] or as the `forge-sim` binary, which prints a
//! [`Ready`] line. See README.md beside this crate for the seed format and the knobs.

#![recursion_limit = "512"]

pub mod api;
pub mod attachments;
pub mod auth;
pub mod control;
pub mod error;
pub mod git_http;
pub mod gitrepo;
pub mod lfs;
pub mod limits;
pub mod objects;
pub mod openapi;
pub mod options;
pub mod page;
pub mod render;
pub mod seed;
pub mod seeding;
pub mod server;
pub mod state;
pub mod stats;
pub mod tls;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;
use crate::limits::Limits;
use crate::options::Options;
use crate::state::{Principal, World};
use crate::stats::Stats;

/// The shared state of one running simulator.
pub struct Sim {
    pub world: Mutex<World>,
    pub options: RwLock<Options>,
    pub limits: Mutex<Limits>,
    pub stats: Stats,
    /// `https://127.0.0.1:PORT/api/v3` (no trailing slash).
    pub api_base: String,
    /// `https://127.0.0.1:PORT`: html_url and git clone URLs.
    pub web_base: String,
    /// `https://127.0.0.1:PORT/api/uploads`.
    pub uploads_base: String,
    /// Where repositories, LFS objects and keys live.
    pub data_dir: PathBuf,
    /// The key the download host's pre-signed URLs are signed with ([`objects`]); drawn at
    /// start-up and never shown.
    pub signing_key: [u8; 32],
    router: Router,
}

impl Sim {
    /// The REST router (cheap to clone; built once).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The primary limit that applies to `caller`.
    pub fn limit_for(&self, caller: &Caller) -> u64 {
        let o = self.options.read();
        match caller.principal {
            Some(Principal::User(_)) => o.rate_limit_user,
            Some(Principal::Installation(_)) | Some(Principal::App(_)) => o.rate_limit_installation,
            None => o.rate_limit_anonymous,
        }
    }

    /// Consumes one matching injected failure, if any, and returns its response.
    pub fn injected_failure(
        &self,
        method: &Method,
        path: &str,
        caller: &Caller,
    ) -> Option<Response> {
        let mut o = self.options.write();
        let idx = o.failures.iter().position(|f| {
            (f.method.is_empty() || f.method.eq_ignore_ascii_case(method.as_str()))
                && path.contains(&f.path_contains)
        })?;
        let f = o.failures[idx].clone();
        if f.count == 1 {
            o.failures.remove(idx);
        } else if f.count > 1 {
            o.failures[idx].count -= 1;
        }
        drop(o);
        self.stats.counters.lock().injected_failures += 1;
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
            let secs = f.retry_after_secs.unwrap_or(60);
            self.limits
                .lock()
                .pause(&caller.limit_key, server::unix_now(), secs);
            self.stats.counters.lock().secondary_refusals += 1;
            return Some(server::secondary_refusal(status, secs));
        }
        Some(
            error::ApiError::new(status, status.canonical_reason().unwrap_or("Server Error"))
                .into_response(),
        )
    }
}

/// What the simulator prints (one JSON line on stdout) when it is ready, and what
/// [`ForgeSim::ready`] returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// `https://127.0.0.1:PORT/api/v3`
    pub api_url: String,
    /// `https://127.0.0.1:PORT`: repositories are at `GIT_URL/OWNER/REPO.git`.
    pub git_url: String,
    pub uploads_url: String,
    /// PEM file of the CA that signed the server's certificate.
    pub ca_cert: PathBuf,
    /// A token of the seed's first user (an owner of every seeded organisation unless the seed
    /// says otherwise).
    pub token: String,
    pub app_id: Option<u64>,
    pub installation_id: Option<u64>,
    /// PEM file of the first app's private key.
    pub app_private_key: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
}

/// A running simulator; stops when dropped.
pub struct ForgeSim {
    sim: Arc<Sim>,
    ready: Ready,
    ca_pem: String,
    stop: CancellationToken,
    _tmp: Option<tempfile::TempDir>,
}

impl ForgeSim {
    /// Starts a simulator on `listen` (port 0 picks a free one) from `seed`, keeping its data in
    /// `data_dir` (a temporary directory, removed on drop, when `None`).
    pub async fn start(
        seed: &seed::Seed,
        listen: SocketAddr,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<ForgeSim> {
        let (tmp, data_dir) = match data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                (None, d.canonicalize()?)
            }
            None => {
                let t = tempfile::Builder::new().prefix("forge-sim-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let host = addr.ip().to_string();
        let tls = tls::make(&data_dir, &[host.clone(), "localhost".to_string()])?;
        let web_base = format!("https://{host}:{}", addr.port());
        let sim = Arc::new(Sim {
            world: Mutex::new(World::new()),
            options: RwLock::new(seed.options.clone()),
            limits: Mutex::new(Limits::default()),
            stats: Stats::default(),
            api_base: format!("{web_base}/api/v3"),
            uploads_base: format!("{web_base}/api/uploads"),
            web_base: web_base.clone(),
            data_dir: data_dir.clone(),
            signing_key: rand::random(),
            router: api::router(),
        });
        let loaded = seed::load(&sim, seed).context("loading the seed")?;
        let stop = CancellationToken::new();
        tokio::spawn(server::serve(
            sim.clone(),
            listener,
            tls.server_config.clone(),
            stop.clone(),
        ));
        let ready = Ready {
            api_url: sim.api_base.clone(),
            git_url: web_base,
            uploads_url: sim.uploads_base.clone(),
            ca_cert: tls.ca_path,
            token: loaded.token,
            app_id: loaded.app_id,
            installation_id: loaded.installation_id,
            app_private_key: loaded.app_private_key,
            data_dir,
            listen: addr,
        };
        Ok(ForgeSim {
            sim,
            ready,
            ca_pem: tls.ca_pem,
            stop,
            _tmp: tmp,
        })
    }

    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The PEM of the CA that signed the server's certificate (the contents of
    /// [`Ready::ca_cert`]), for clients that take a root certificate in memory, e.g.
    /// `reqwest::Certificate::from_pem`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    pub fn stats(&self) -> stats::Counters {
        self.sim.stats.snapshot()
    }
}

impl Drop for ForgeSim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Writes a file only its owner can read (private keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}
