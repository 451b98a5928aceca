//! `[store]`: where the coordinator keeps its state (redb, or etcd for a group), and how etcd
//! is reached (endpoints, namespace, TLS, user). Read by `config.rs`.

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
