//! Environment overrides of the coordinator's configuration: every key can be set as
//! `REPOVAULT_<KEY>` (a top-level key) or `REPOVAULT_<TABLE>_<KEY>` (a key of `[store]`, `[group]`,
//! `[storage]`, `[tls]`, `[retention]`, `[verification]`), upper case, e.g.
//! `REPOVAULT_HEARTBEAT_INTERVAL=2s`, `REPOVAULT_RETENTION_KEEP_DELETE=30h`. An override is
//! applied to the file's values before validation, so a bad value is refused naming the
//! variable. `[storage.options]` are read as `REPOVAULT_STORAGE_OPTIONS_<OPTION>` for each option
//! the storage's kind knows (`REPOVAULT_STORAGE_OPTIONS_SECRET_ACCESS_KEY`): container platforms
//! hand secrets to a process as variables, and the file then holds none. `[[admin_tokens]]` (a
//! list) stays in the file.

use toml::Value;

use repovault_common::storage::StorageKind;

use crate::config::{ConfigError, CoordinatorConfig};

/// What an override's text is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    /// `true` or `false`.
    Boolean,
    /// Comma-separated (`REPOVAULT_STORE_ENDPOINTS=10.0.0.1:2379,10.0.0.2:2379`).
    List,
}

/// Every overridable key, as its path in the file.
const KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Text),
    ("http_listen", Kind::Text),
    ("metrics_listen", Kind::Text),
    ("http_public_url", Kind::Text),
    ("data_dir", Kind::Text),
    ("store.kind", Kind::Text),
    ("store.path", Kind::Text),
    ("store.endpoints", Kind::List),
    ("store.namespace", Kind::Text),
    ("store.username", Kind::Text),
    ("store.password_file", Kind::Text),
    ("store.ca_file", Kind::Text),
    ("store.cert_file", Kind::Text),
    ("store.key_file", Kind::Text),
    ("group.advertise_url", Kind::Text),
    ("group.name", Kind::Text),
    ("group.election_ttl", Kind::Text),
    ("storage.kind", Kind::Text),
    ("heartbeat_interval", Kind::Text),
    ("max_attempts", Kind::Integer),
    ("join_token_file", Kind::Text),
    ("admin_token_file", Kind::Text),
    ("master_key_file", Kind::Text),
    ("reconcile_interval", Kind::Text),
    ("tls.cert_file", Kind::Text),
    ("tls.key_file", Kind::Text),
    ("tls.client_ca_file", Kind::Text),
    ("tls.require_worker_cert", Kind::Boolean),
    ("github_sync_interval", Kind::Text),
    ("push_delay", Kind::Text),
    ("affinity_wait", Kind::Text),
    ("retention.interval", Kind::Text),
    ("retention.prune_interval", Kind::Text),
    ("retention.keep_delete", Kind::Text),
    ("retention.concurrency", Kind::Integer),
    ("verification.shrink_fail_below_percent", Kind::Integer),
    ("verification.growth_warn_above_percent", Kind::Integer),
    ("verification.readback_max_age", Kind::Text),
    ("verification.rotation_every", Kind::Text),
    ("verification.rotation_concurrency", Kind::Integer),
    ("verification.rotation_interval", Kind::Text),
    ("verification.default_drill", Kind::Text),
    ("scaling.slots_per_worker", Kind::Integer),
    ("scaling.min_workers", Kind::Integer),
    ("scaling.max_workers", Kind::Integer),
];

/// The variable that overrides `path`.
pub fn variable(path: &str) -> String {
    format!("REPOVAULT_{}", path.replace('.', "_").to_uppercase())
}

/// `cfg` with every override `get` finds applied.
pub fn apply(
    cfg: &CoordinatorConfig,
    get: impl Fn(&str) -> Option<String>,
) -> Result<CoordinatorConfig, ConfigError> {
    let mut root =
        Value::try_from(cfg).map_err(|e| ConfigError::Invalid(format!("configuration: {e}")))?;
    let mut applied = Vec::new();
    for (path, kind) in KEYS {
        let var = variable(path);
        let Some(text) = get(&var) else {
            continue;
        };
        let value = match kind {
            Kind::Text => Value::String(text),
            Kind::Integer => Value::Integer(text.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!("{var} {text:?} is not a whole number"))
            })?),
            Kind::Boolean => match text.trim() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{var} {text:?} is neither true nor false"
                    )));
                }
            },
            Kind::List => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
        };
        set(&mut root, path, value);
        applied.push(var);
    }
    storage_options(&mut root, &get, &mut applied);
    if applied.is_empty() {
        return Ok(cfg.clone());
    }
    root.try_into().map_err(|e: toml::de::Error| {
        ConfigError::Invalid(format!(
            "with the environment overrides {}: {}",
            applied.join(", "),
            e.message()
        ))
    })
}

/// The storage options of the (possibly overridden) storage kind found in the environment. An
/// unknown kind is left for validation to refuse.
fn storage_options(
    root: &mut Value,
    get: &impl Fn(&str) -> Option<String>,
    applied: &mut Vec<String>,
) {
    let kind = root
        .get("storage")
        .and_then(|s| s.get("kind"))
        .and_then(Value::as_str)
        .and_then(|k| k.parse::<StorageKind>().ok());
    let Some(kind) = kind else {
        return;
    };
    for option in kind.known_options() {
        let var = variable(&format!("storage.options.{option}"));
        let Some(text) = get(&var) else {
            continue;
        };
        let Some(storage) = root.get_mut("storage").and_then(Value::as_table_mut) else {
            return;
        };
        let options = storage
            .entry("options")
            .or_insert_with(|| Value::Table(Default::default()));
        if let Some(t) = options.as_table_mut() {
            t.insert(option.to_string(), Value::String(text));
            applied.push(var);
        }
    }
}

/// Sets `path` (one or two levels) in `root`, creating the table when the file has none.
fn set(root: &mut Value, path: &str, value: Value) {
    let mut parts = path.split('.');
    let (Some(first), second) = (parts.next(), parts.next()) else {
        return;
    };
    let Some(table) = root.as_table_mut() else {
        return;
    };
    match second {
        None => {
            table.insert(first.to_string(), value);
        }
        Some(key) => {
            let inner = table
                .entry(first.to_string())
                .or_insert_with(|| Value::Table(Default::default()));
            if let Some(t) = inner.as_table_mut() {
                t.insert(key.to_string(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every key path of a configuration with every optional part present.
    fn leaf_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(t) = v.as_table() {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() && !p.ends_with("options") {
                    leaf_paths(v, &p, out);
                } else {
                    out.insert(p);
                }
            }
        }
    }

    fn full() -> CoordinatorConfig {
        toml::from_str(
            r#"
            data_dir = "/var/lib/repovault"
            metrics_listen = "0.0.0.0:9420"
            http_public_url = "https://backup.example"
            join_token_file = "/etc/repovault/join.token"
            admin_token_file = "/etc/repovault/admin.token"
            master_key_file = "/etc/repovault/master.key"
            [store]
            kind = "redb"
            path = "/var/lib/repovault/state.redb"
            endpoints = ["127.0.0.1:2379"]
            namespace = "repovault/"
            username = "repovault"
            password_file = "/etc/repovault/etcd.password"
            ca_file = "/etc/repovault/etcd-ca.pem"
            cert_file = "/etc/repovault/etcd-client.pem"
            key_file = "/etc/repovault/etcd-client.key"
            [storage]
            kind = "fs"
            options = { root = "/srv/backups" }
            [tls]
            cert_file = "/etc/repovault/cert.pem"
            key_file = "/etc/repovault/key.pem"
            client_ca_file = "/etc/repovault/worker-ca.pem"
            require_worker_cert = true
            "#,
        )
        .expect("full configuration")
    }

    #[test]
    fn every_key_of_the_configuration_has_an_override() {
        let mut paths = BTreeSet::new();
        leaf_paths(&Value::try_from(full()).expect("value"), "", &mut paths);
        let known: BTreeSet<String> = KEYS.iter().map(|(p, _)| p.to_string()).collect();
        let lists = ["admin_tokens", "storage.options"];
        let missing: Vec<&String> = paths
            .iter()
            .filter(|p| !known.contains(*p) && !lists.contains(&p.as_str()))
            .collect();
        assert!(missing.is_empty(), "keys without an override: {missing:?}");
    }

    #[test]
    fn storage_options_come_from_the_environment_for_the_kind_in_use() {
        let base = CoordinatorConfig::for_data_dir(std::path::Path::new("/d"));
        let env = |k: &str| {
            let v = match k {
                "REPOVAULT_STORAGE_KIND" => "s3",
                "REPOVAULT_STORAGE_OPTIONS_BUCKET" => "backups",
                "REPOVAULT_STORAGE_OPTIONS_REGION" => "eu-west-1",
                "REPOVAULT_STORAGE_OPTIONS_ACCESS_KEY_ID" => "AKIA",
                "REPOVAULT_STORAGE_OPTIONS_SECRET_ACCESS_KEY" => "s3cret",
                // An Azure option: not one of s3's, so not read.
                "REPOVAULT_STORAGE_OPTIONS_ACCOUNT_KEY" => "azure",
                _ => return None,
            };
            Some(v.to_string())
        };
        let c = apply(&base, env).expect("applied");
        let options = &c.storage.as_ref().expect("storage set").options;
        assert_eq!(options.get("bucket").map(String::as_str), Some("backups"));
        assert_eq!(
            options.get("secret_access_key").map(String::as_str),
            Some("s3cret")
        );
        assert!(!options.contains_key("account_key"), "{options:?}");
    }

    #[test]
    fn overrides_reach_nested_and_absent_keys_and_bad_values_name_the_variable() {
        let base = CoordinatorConfig::for_data_dir(std::path::Path::new("/d"));
        let env = |k: &str| match k {
            "REPOVAULT_RETENTION_KEEP_DELETE" => Some("30h".to_string()),
            "REPOVAULT_MAX_ATTEMPTS" => Some("5".to_string()),
            "REPOVAULT_TLS_CERT_FILE" => Some("/c.pem".to_string()),
            "REPOVAULT_TLS_KEY_FILE" => Some("/k.pem".to_string()),
            _ => None,
        };
        let c = apply(&base, env).expect("applied");
        assert_eq!(c.retention.keep_delete, "30h");
        assert_eq!(c.max_attempts, 5);
        assert_eq!(
            c.tls.as_ref().map(|t| t.cert_file.display().to_string()),
            Some("/c.pem".into())
        );
        let e = apply(&base, |k| {
            (k == "REPOVAULT_MAX_ATTEMPTS").then(|| "many".to_string())
        })
        .expect_err("not a number");
        assert!(e.to_string().contains("REPOVAULT_MAX_ATTEMPTS"), "{e}");
        let e = apply(&base, |k| {
            (k == "REPOVAULT_STORE_KIND").then(|| "floppy".to_string())
        })
        .expect_err("not a store kind");
        assert!(e.to_string().contains("REPOVAULT_STORE_KIND"), "{e}");
    }

    #[test]
    fn worker_mtls_is_set_from_the_environment_and_require_needs_a_client_ca() {
        let base = CoordinatorConfig::for_data_dir(std::path::Path::new("/d"));
        let env = |require: &'static str, ca: bool| {
            move |k: &str| match k {
                "REPOVAULT_TLS_CERT_FILE" => Some("/c.pem".to_string()),
                "REPOVAULT_TLS_KEY_FILE" => Some("/k.pem".to_string()),
                "REPOVAULT_TLS_CLIENT_CA_FILE" if ca => Some("/worker-ca.pem".to_string()),
                "REPOVAULT_TLS_REQUIRE_WORKER_CERT" => Some(require.to_string()),
                _ => None,
            }
        };
        let c = apply(&base, env("true", true)).expect("applied");
        let tls = c.tls.expect("tls");
        assert!(tls.require_worker_cert);
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(std::path::Path::new("/worker-ca.pem"))
        );
        assert!(
            !apply(&base, env("false", true))
                .expect("applied")
                .tls
                .expect("tls")
                .require_worker_cert
        );
        let e = apply(&base, env("yes", true)).expect_err("not a boolean");
        assert!(
            e.to_string().contains("REPOVAULT_TLS_REQUIRE_WORKER_CERT"),
            "{e}"
        );
        // Required without a client CA: refused at start-up, naming both fields, before any
        // file is read.
        let c = apply(&base, env("true", false)).expect("applied");
        let e = c.tls.expect("tls").load().expect_err("no client CA");
        let text = e.to_string();
        assert!(
            text.contains("tls.require_worker_cert") && text.contains("tls.client_ca_file"),
            "{text}"
        );
    }
}
