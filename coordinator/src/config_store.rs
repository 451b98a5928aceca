//! `[store]`: where the coordinator keeps its state (redb, or etcd for a group), and how etcd
//! is reached (endpoints, namespace, TLS, user); `[group]`: how a coordinator of a group is
//! named and reached, and its election's lease. Read by `config.rs`.

use std::path::PathBuf;

use repovault_common::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Redb,
    Memory,
    /// An etcd v3 cluster (`endpoints`), for a group of coordinators.
    Etcd,
}

/// The default namespace of the state store's keys in etcd.
pub const DEFAULT_ETCD_NAMESPACE: &str = "repovault/";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// redb file; default `<data_dir>/state.redb`.
    pub path: Option<PathBuf>,
    /// etcd: the cluster's client endpoints (`host:port` or `http://host:port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// etcd: the prefix of every key (default `repovault/`), so one etcd can hold several
    /// installations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// etcd: the user to authenticate as (etcd's `auth enable`), with its password read from
    /// `password_file` (never written in this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// etcd over TLS: the CA of etcd's certificates (PEM); with `cert_file` and `key_file`, a
    /// client certificate for etcd's `--client-cert-auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl StoreConfig {
    /// How to reach etcd: the files read now, each failure naming its key and path.
    pub fn etcd_options(&self) -> Result<crate::kv::EtcdOptions, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::Invalid(
                "store kind \"etcd\" needs store.endpoints (REPOVAULT_STORE_ENDPOINTS)".into(),
            ));
        }
        let read = |key: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| ConfigError::Invalid(format!("store.{key} {}: {e}", path.display())))
        };
        let tls = match (&self.ca_file, &self.cert_file, &self.key_file) {
            (None, None, None) => None,
            (Some(ca), cert, key) => Some(crate::kv::EtcdTls {
                ca_pem: read("ca_file", ca)?,
                client: match (cert, key) {
                    (Some(c), Some(k)) => Some((read("cert_file", c)?, read("key_file", k)?)),
                    (None, None) => None,
                    _ => {
                        return Err(ConfigError::Invalid(
                            "store.cert_file and store.key_file go together".into(),
                        ));
                    }
                },
            }),
            (None, _, _) => {
                return Err(ConfigError::Invalid(
                    "store.cert_file and store.key_file need store.ca_file (etcd over TLS)".into(),
                ));
            }
        };
        let user = match (&self.username, &self.password_file) {
            (None, None) => None,
            (Some(u), Some(p)) => {
                let text = String::from_utf8(read("password_file", p)?).map_err(|_| {
                    ConfigError::Invalid(format!("store.password_file {}: not UTF-8", p.display()))
                })?;
                Some((u.clone(), Secret::new(text.trim_end_matches(['\n', '\r']))))
            }
            _ => {
                return Err(ConfigError::Invalid(
                    "store.username and store.password_file go together".into(),
                ));
            }
        };
        Ok(crate::kv::EtcdOptions {
            endpoints: self.endpoints.clone(),
            namespace: self
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_ETCD_NAMESPACE.to_string()),
            tls,
            user,
        })
    }
}

/// `[group]`: a coordinator of a group (store kind etcd). Every key is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The gRPC URL workers and admins reach this coordinator at, which followers give out while
    /// it leads. Default: `http(s)://<listen>`, with the host name when `listen` is a wildcard
    /// address. Env: REPOVAULT_GROUP_ADVERTISE_URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// This coordinator's name in logs and refusals. Default: `<host name>-<process id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The election lease: a dead leader is replaced this long after its last renewal, plus
    /// about a second. Default 5s; at least 2s (etcd's own minimum lease is about 1.5 s).
    /// Env: REPOVAULT_GROUP_ELECTION_TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_ttl: Option<String>,
}

impl GroupConfig {
    /// The election's timing, refused below 2 s or above 60 s (a minute without a leader is
    /// a minute without schedules).
    pub fn timing(&self) -> Result<crate::leadership::ElectionTiming, ConfigError> {
        let ttl = match &self.election_ttl {
            None => crate::leadership::ElectionTiming::DEFAULT_TTL,
            Some(v) => humantime::parse_duration(v)
                .map_err(|e| ConfigError::Invalid(format!("group.election_ttl {v:?}: {e}")))?,
        };
        if ttl < std::time::Duration::from_secs(2) || ttl > std::time::Duration::from_secs(60) {
            return Err(ConfigError::Invalid(format!(
                "group.election_ttl {ttl:?}: must be between 2s and 60s"
            )));
        }
        Ok(crate::leadership::ElectionTiming { ttl })
    }

    /// How this coordinator is named and reached (see the fields).
    pub fn record(
        &self,
        listen: std::net::SocketAddr,
        tls: bool,
    ) -> Result<crate::leadership::LeaderRecord, ConfigError> {
        let host = host_name();
        let grpc_url = match &self.advertise_url {
            Some(u) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(ConfigError::Invalid(format!(
                        "group.advertise_url {u:?}: must be an http:// or https:// URL"
                    )));
                }
                u.trim_end_matches('/').to_string()
            }
            None => {
                let scheme = if tls { "https" } else { "http" };
                if listen.ip().is_unspecified() {
                    format!("{scheme}://{host}:{}", listen.port())
                } else {
                    format!("{scheme}://{listen}")
                }
            }
        };
        Ok(crate::leadership::LeaderRecord {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            grpc_url,
        })
    }
}

/// The machine's host name (`HOSTNAME`, else the kernel's), `localhost` when neither is known.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
