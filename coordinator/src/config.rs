//! Coordinator configuration: a TOML file, overridden by environment variables, validated at
//! start-up and printed with secrets redacted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use repovault_common::crypto::{MasterKey, random_secret, write_private_file};
use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;

use crate::kv::KvBackend;
use crate::kv::MemoryKv;
use crate::kv::RedbKv;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("config: {0}")]
    Invalid(String),
}

pub use crate::config_store::{DEFAULT_ETCD_NAMESPACE, StoreConfig, StoreKind};

/// TLS for the gRPC port: a PEM certificate chain and its private key, and optionally the CA
/// that signs workers' client certificates (mTLS).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA certificates (PEM) that sign workers' client certificates. Set: a client presenting a
    /// certificate must present one this CA signed (the handshake fails otherwise); presenting
    /// none stays allowed (admin CLI callers present none) unless `require_worker_cert`.
    /// Env: REPOVAULT_TLS_CLIENT_CA_FILE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse worker calls (UNAUTHENTICATED) whose connection presented no client certificate
    /// signed by `client_ca_file`, in addition to the join token. Needs `client_ca_file`.
    /// Env: REPOVAULT_TLS_REQUIRE_WORKER_CERT (true/false).
    #[serde(default)]
    pub require_worker_cert: bool,
}

/// A loaded certificate and key (the key is secret: never printed), and the client CA.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The CA (PEM) workers' client certificates must chain to, when one is configured.
    pub client_ca_pem: Option<Vec<u8>>,
    /// Workers must present a client certificate ([`TlsFiles::require_worker_cert`]).
    pub require_worker_cert: bool,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity([certificate], [redacted key])")
    }
}

impl TlsFiles {
    /// Reads and checks the files: each must hold what it is for, and `require_worker_cert`
    /// needs a `client_ca_file` (refused naming both fields).
    pub fn load(&self) -> Result<TlsIdentity, ConfigError> {
        if self.require_worker_cert && self.client_ca_file.is_none() {
            return Err(ConfigError::Invalid(
                "tls.require_worker_cert needs tls.client_ca_file: the CA that signs workers' client certificates".into(),
            ));
        }
        let read = |p: &Path, what: &str| {
            std::fs::read(p)
                .map_err(|e| ConfigError::Invalid(format!("tls {what} {}: {e}", p.display())))
        };
        let cert_pem = read(&self.cert_file, "cert_file")?;
        let key_pem = read(&self.key_file, "key_file")?;
        if !String::from_utf8_lossy(&cert_pem).contains("BEGIN CERTIFICATE") {
            return Err(ConfigError::Invalid(format!(
                "tls cert_file {} holds no PEM certificate",
                self.cert_file.display()
            )));
        }
        if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY") {
            return Err(ConfigError::Invalid(format!(
                "tls key_file {} holds no PEM private key",
                self.key_file.display()
            )));
        }
        let client_ca_pem = match &self.client_ca_file {
            Some(p) => {
                let pem = read(p, "client_ca_file")?;
                if !String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") {
                    return Err(ConfigError::Invalid(format!(
                        "tls client_ca_file {} holds no PEM certificate",
                        p.display()
                    )));
                }
                Some(pem)
            }
            None => None,
        };
        Ok(TlsIdentity {
            cert_pem,
            key_pem,
            client_ca_pem,
            require_worker_cert: self.require_worker_cert,
        })
    }
}

/// The coordinator's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// gRPC (admin and worker services). Env: REPOVAULT_LISTEN.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HTTP: /metrics, /healthz. Env: REPOVAULT_HTTP_LISTEN.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// `/metrics` on a listener of its own (for a scrape network), and then not on
    /// `http_listen`, which may face the internet for webhooks and download links. Default: on
    /// `http_listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// The base URL download links start with (`http(s)://host[:port][/prefix]`), as clients
    /// reach the HTTP port (a proxy, a public name). Default `http://<http_listen>`.
    /// Env: REPOVAULT_HTTP_PUBLIC_URL.
    #[serde(default)]
    pub http_public_url: Option<String>,
    /// State, keys and tokens live here unless configured elsewhere. Env: REPOVAULT_DATA_DIR.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// A coordinator of a group (store kind etcd): its advertised URL, name, election lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::config_store::GroupConfig>,
    /// Default: fs under `<data_dir>/storage`.
    #[serde(default)]
    pub storage: Option<StorageConfig>,
    /// The heartbeat interval H every lease timeout derives from. Env:
    /// REPOVAULT_HEARTBEAT_INTERVAL.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: String,
    /// Failed attempts before a task fails for good.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Workers must present this token. Default `<data_dir>/join.token`, created when absent.
    pub join_token_file: Option<PathBuf>,
    /// When set, admin calls must present this token; it has the `admin` role (named "admin"
    /// in the audit log).
    pub admin_token_file: Option<PathBuf>,
    /// Named admin tokens with a role (`viewer`, `operator`, `admin`):
    /// `[[admin_tokens]] name = "ops", role = "operator", token_file = "/etc/repovault/ops.token"`.
    /// With none here and no `admin_token_file`, every caller is the local admin (`standalone`
    /// on loopback).
    #[serde(default)]
    pub admin_tokens: Vec<AdminTokenConfig>,
    /// The master key sealing credentials and organisation keys. Env REPOVAULT_MASTER_KEY (64 hex
    /// characters) wins. Default `<data_dir>/master.key`, created when absent.
    pub master_key_file: Option<PathBuf>,
    /// How often uncommitted snapshots are looked for and forgotten.
    #[serde(default = "default_reconcile")]
    pub reconcile_interval: String,
    /// Serve gRPC over TLS (recommended whenever workers or admins are on other machines: leases
    /// carry credentials).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// How often each GitHub organisation's repositories are discovered again (1m..=7d).
    #[serde(default = "default_github_sync")]
    pub github_sync_interval: String,
    /// On-push backups start at most this long after the first push of a burst (default 2
    /// minutes; 0s..=1h).
    #[serde(default = "default_push_delay")]
    pub push_delay: String,
    /// How long a ready backup is left to the worker whose mirror cache holds its repository
    /// before any worker may take it (default 30s; 0s..=10m; 0s only prefers the holder among
    /// equals). Env: REPOVAULT_AFFINITY_WAIT.
    #[serde(default = "default_affinity_wait")]
    pub affinity_wait: String,
    /// Retention and maintenance: `interval`, `prune_interval`, `keep_delete`,
    /// `concurrency`.
    #[serde(default)]
    pub retention: crate::maintenance::maintenance_runs::RetentionConfig,
    /// `[verification]`: size thresholds, the read-back rotation, the default drill schedule.
    #[serde(default)]
    pub verification: crate::verification::VerificationConfig,
    /// `[scaling]`: the desired-worker figure's slots per worker and bounds.
    #[serde(default)]
    pub scaling: crate::scaling::ScalingConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7420))
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7421))
}
fn default_heartbeat() -> String {
    "5s".into()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_reconcile() -> String {
    "10m".into()
}
fn default_github_sync() -> String {
    "1h".into()
}
fn default_push_delay() -> String {
    "2m".into()
}
fn default_affinity_wait() -> String {
    "30s".into()
}

/// Bounds of `github_sync_interval`: more often than a minute spends the rate limit on listing;
/// less often than weekly leaves new repositories unprotected too long.
const GITHUB_SYNC_MIN: Duration = Duration::from_secs(60);
const GITHUB_SYNC_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses and bounds `github_sync_interval`.
pub fn parse_github_sync_interval(v: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration("github_sync_interval", v)?;
    if !(GITHUB_SYNC_MIN..=GITHUB_SYNC_MAX).contains(&d) {
        return Err(ConfigError::Invalid(format!(
            "github_sync_interval {v:?} must be within 1m..=7d"
        )));
    }
    Ok(d)
}

impl CoordinatorConfig {
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            listen: default_listen(),
            http_listen: default_http_listen(),
            metrics_listen: None,
            http_public_url: None,
            data_dir: data_dir.to_path_buf(),
            store: None,
            group: None,
            storage: None,
            heartbeat_interval: default_heartbeat(),
            max_attempts: default_max_attempts(),
            join_token_file: None,
            admin_token_file: None,
            admin_tokens: Vec::new(),
            master_key_file: None,
            reconcile_interval: default_reconcile(),
            tls: None,
            github_sync_interval: default_github_sync(),
            push_delay: default_push_delay(),
            affinity_wait: default_affinity_wait(),
            retention: Default::default(),
            verification: Default::default(),
            scaling: Default::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Environment overrides of every key (`config_env.rs`; the getter is a parameter so tests
    /// need no process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        *self = crate::config_env::apply(self, get)?;
        Ok(())
    }

    pub fn timing(&self) -> Result<Timing, ConfigError> {
        let h = parse_duration("heartbeat_interval", &self.heartbeat_interval)?;
        Timing::new(h).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Validates everything and opens what the coordinator needs: the store, the keys, the tokens.
    /// Creates the data directory, the master key and the join token when absent.
    pub async fn resolve(&self) -> Result<Settings, ConfigError> {
        let checked = self.checked()?;
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            ConfigError::Invalid(format!("data_dir {}: {e}", self.data_dir.display()))
        })?;
        let storage = self.storage_config();
        // Required options checked and the fs root created now, not at the first backup.
        storage
            .prepare()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let (master_key, master_key_created) = match std::env::var("REPOVAULT_MASTER_KEY") {
            Ok(v) => (
                MasterKey::parse(&v)
                    .map_err(|e| ConfigError::Invalid(format!("REPOVAULT_MASTER_KEY: {e}")))?,
                None,
            ),
            Err(_) => {
                let path = self.master_key_path();
                let (k, created) = MasterKey::load_or_create(&path)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
                (k, created.then_some(path))
            }
        };
        let join_path = self.join_token_path();
        let join_token = read_or_create_token(&join_path)?;
        let mut group = None;
        let kv: Arc<dyn KvBackend> = match self
            .store
            .as_ref()
            .map_or(StoreKind::Redb, |s| s.kind.clone())
        {
            StoreKind::Memory => Arc::new(MemoryKv::new()),
            StoreKind::Etcd => {
                let options = self
                    .store
                    .as_ref()
                    .ok_or_else(|| ConfigError::Invalid("store kind etcd needs [store]".into()))?
                    .etcd_options()?;
                let etcd = crate::kv::EtcdKv::connect_with(&options)
                    .await
                    .map_err(|e| ConfigError::Invalid(format!("state store: {e}")))?;
                let g = self.group.clone().unwrap_or_default();
                group = Some(crate::leadership::coordinator_group::GroupSettings {
                    etcd: etcd.clone(),
                    me: g.record(self.listen, checked.tls.is_some())?,
                    timing: g.timing()?,
                });
                Arc::new(etcd)
            }
            StoreKind::Redb => {
                let path = self
                    .store
                    .as_ref()
                    .and_then(|s| s.path.clone())
                    .unwrap_or_else(|| self.data_dir.join("state.redb"));
                Arc::new(RedbKv::open(&path).await.map_err(|e| {
                    ConfigError::Invalid(format!("state store {}: {e}", path.display()))
                })?)
            }
        };
        Ok(Settings {
            http_public_url: checked.http_public_url,
            tls: checked.tls,
            listen: self.listen,
            http_listen: Some(self.http_listen),
            metrics_listen: self.metrics_listen,
            kv,
            storage,
            timing: checked.timing,
            max_attempts: self.max_attempts,
            join_token,
            join_token_file: Some(join_path),
            admin_tokens: checked.admin_tokens,
            master_key,
            master_key_created,
            reconcile_interval: checked.reconcile_interval,
            github_sync_interval: checked.github_sync_interval,
            push_delay: checked.push_delay,
            affinity_wait: checked.affinity_wait,
            retention: checked.retention,
            verification: checked.verification,
            scaling: self.scaling,
            group,
        })
    }

    /// The storage: as configured, else fs under `<data_dir>/storage`.
    pub(crate) fn storage_config(&self) -> StorageConfig {
        self.storage.clone().unwrap_or_else(|| {
            StorageConfig::fs(self.data_dir.join("storage").display().to_string())
        })
    }

    pub(crate) fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    pub(crate) fn join_token_path(&self) -> PathBuf {
        self.join_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("join.token"))
    }

    /// The admin tokens, read from their files, with unique non-empty names.
    pub(crate) fn admin_tokens(&self) -> Result<Vec<crate::admin_roles::NamedToken>, ConfigError> {
        let mut admin_tokens = Vec::new();
        if let Some(p) = &self.admin_token_file {
            admin_tokens.push(crate::admin_roles::NamedToken {
                name: "admin".into(),
                role: crate::admin_roles::Role::Admin,
                token: read_token(p)?,
            });
        }
        for t in &self.admin_tokens {
            if t.name.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "every [[admin_tokens]] entry needs a name (it is what the audit log shows)"
                        .into(),
                ));
            }
            if admin_tokens.iter().any(|o| o.name == t.name) {
                return Err(ConfigError::Invalid(format!(
                    "admin token name {:?} is used twice",
                    t.name
                )));
            }
            admin_tokens.push(crate::admin_roles::NamedToken {
                name: t.name.clone(),
                role: t.role,
                token: read_token(&t.token_file)?,
            });
        }
        Ok(admin_tokens)
    }
}

/// Checks `http_public_url`: an absolute http(s) URL without query or fragment; returned
/// without a trailing slash.
pub fn parse_public_url(v: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid(format!("http_public_url {v:?} {why}"));
    let u = url::Url::parse(v).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(bad("must be an http:// or https:// URL with a host"));
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(bad("must have no credentials, query or fragment"));
    }
    Ok(v.trim_end_matches('/').to_string())
}

pub fn parse_duration(what: &str, v: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v).map_err(|e| {
        ConfigError::Invalid(format!(
            "{what} {v:?} is not a duration like 5s or 10m: {e}"
        ))
    })
}

pub(crate) fn read_token(path: &Path) -> Result<Secret, ConfigError> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("token file {}: {e}", path.display())))?;
    let t = t.trim();
    if t.len() < 16 {
        return Err(ConfigError::Invalid(format!(
            "token file {} holds fewer than 16 characters",
            path.display()
        )));
    }
    Ok(Secret::new(t))
}

fn read_or_create_token(path: &Path) -> Result<Secret, ConfigError> {
    if !path.exists() {
        let t = random_secret(32);
        write_private_file(path, t.expose().as_bytes())
            .map_err(|e| ConfigError::Invalid(format!("token file {}: {e}", path.display())))?;
    }
    read_token(path)
}

/// Everything the coordinator runs with, resolved and validated.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None`: no HTTP port (in-process tests that do not need it).
    pub http_listen: Option<SocketAddr>,
    /// `Some`: `/metrics` is served there and not on `http_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Base URL of download links; `None`: `http://<bound HTTP address>`.
    pub http_public_url: Option<String>,
    pub kv: Arc<dyn KvBackend>,
    pub storage: StorageConfig,
    pub timing: Timing,
    pub max_attempts: u32,
    pub join_token: Secret,
    pub join_token_file: Option<PathBuf>,
    /// Admin tokens with their roles; empty: every caller is the local admin.
    pub admin_tokens: Vec<crate::admin_roles::NamedToken>,
    pub master_key: MasterKey,
    /// Set when the master key was generated now (the caller says so to the operator).
    pub master_key_created: Option<PathBuf>,
    pub reconcile_interval: Duration,
    pub tls: Option<TlsIdentity>,
    /// How often GitHub organisations are discovered again.
    pub github_sync_interval: Duration,
    /// From the first push of a burst to its backup.
    pub push_delay: Duration,
    /// How long a ready backup waits for the worker holding its mirror.
    pub affinity_wait: Duration,
    /// The retention loop's interval and maintenance options.
    pub retention: (
        Duration,
        crate::maintenance::maintenance_runs::MaintenanceOptions,
    ),
    pub verification: crate::verification::VerificationOptions,
    pub scaling: crate::scaling::ScalingConfig,
    /// Set for a coordinator of a group (store kind etcd): it campaigns, and leads or follows.
    pub group: Option<crate::leadership::coordinator_group::GroupSettings>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("http_public_url", &self.http_public_url)
            .field("store", &self.kv.name())
            .field("storage", &self.storage)
            .field("heartbeat", &self.timing.heartbeat())
            .field("lease_ttl", &self.timing.lease_ttl())
            .field("max_attempts", &self.max_attempts)
            .field("join_token", &self.join_token)
            .field("admin_tokens", &self.admin_tokens)
            .field("master_key", &self.master_key)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("tls", &self.tls.is_some())
            .field("github_sync_interval", &self.github_sync_interval)
            .field("push_delay", &self.push_delay)
            .field("affinity_wait", &self.affinity_wait)
            .field("scaling", &self.scaling)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_validation() {
        let mut c = CoordinatorConfig::for_data_dir(Path::new("/tmp/x"));
        c.apply_env(|k| (k == "REPOVAULT_LISTEN").then(|| "0.0.0.0:9000".to_string()))
            .expect("env");
        assert_eq!(c.listen.port(), 9000);
        assert!(
            c.apply_env(|k| (k == "REPOVAULT_LISTEN").then(|| "nope".to_string()))
                .is_err()
        );
        c.heartbeat_interval = "1ms".into();
        assert!(c.timing().is_err());
        c.heartbeat_interval = "2s".into();
        assert_eq!(c.timing().expect("ok").lease_ttl(), Duration::from_secs(7));
        let parsed: Result<CoordinatorConfig, _> = toml::from_str("data_dir = '/x'\nbogus = 1\n");
        assert!(parsed.is_err(), "unknown keys are refused");
        assert_eq!(
            parse_github_sync_interval("1h").expect("default"),
            Duration::from_secs(3600)
        );
        assert!(parse_github_sync_interval("30s").is_err());
        assert!(parse_github_sync_interval("8d").is_err());
        assert!(parse_github_sync_interval("hourly").is_err());
        assert_eq!(
            parse_public_url("https://backup.example.com/rv/").expect("ok"),
            "https://backup.example.com/rv"
        );
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("http://x/?a=1").is_err());
        assert!(parse_public_url("nope").is_err());
        let c: CoordinatorConfig = toml::from_str("data_dir = '/x'\n").expect("defaults");
        assert_eq!(c.github_sync_interval, "1h");
    }
}

/// One `[[admin_tokens]]` entry (the file's path, never the token, is printed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// Shown in the audit log, never the token.
    pub name: String,
    pub role: crate::admin_roles::Role,
    /// A file holding the token (created by the operator, e.g. `openssl rand -hex 32`).
    pub token_file: PathBuf,
}
