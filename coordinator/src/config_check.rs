//! Validating a configuration without acting on it: `repovault coordinator --config FILE
//! --check`. Everything `resolve` checks is checked here (durations and bounds, token files,
//! TLS files, the public URL, the storage's required options, retention and verification), and
//! nothing is written: a missing master key or join token is reported as what a start would
//! create, and the state store is not opened (a running coordinator holds its lock). The
//! effective configuration (file, then environment overrides) is printed as TOML with secrets
//! redacted.

use std::path::PathBuf;
use std::time::Duration;

use repovault_common::crypto::MasterKey;
use repovault_common::timing::Timing;

use crate::config::{ConfigError, CoordinatorConfig, TlsIdentity, parse_duration};

/// What both `check` and `resolve` derive from the file without touching anything.
pub(crate) struct Checked {
    pub timing: Timing,
    pub reconcile_interval: Duration,
    pub github_sync_interval: Duration,
    pub push_delay: Duration,
    pub affinity_wait: Duration,
    pub admin_tokens: Vec<crate::admin_roles::NamedToken>,
    pub tls: Option<TlsIdentity>,
    pub http_public_url: Option<String>,
    pub retention: (
        Duration,
        crate::maintenance::maintenance_runs::MaintenanceOptions,
    ),
    pub verification: crate::verification::VerificationOptions,
}

/// What `--check` found: nothing wrong, and what a start would create.
#[derive(Debug)]
pub struct CheckReport {
    /// The effective configuration as TOML, secrets redacted.
    pub effective: String,
    /// Files a start would create (the master key, the join token) and directories.
    pub would_create: Vec<PathBuf>,
}

impl CoordinatorConfig {
    /// The validations that need no writes (shared with `resolve`).
    pub(crate) fn checked(&self) -> Result<Checked, ConfigError> {
        let timing = self.timing()?;
        let reconcile_interval = parse_duration("reconcile_interval", &self.reconcile_interval)?;
        let github_sync_interval =
            crate::config::parse_github_sync_interval(&self.github_sync_interval)?;
        let push_delay = parse_duration("push_delay", &self.push_delay)?;
        if push_delay > Duration::from_secs(3600) {
            return Err(ConfigError::Invalid(format!(
                "push_delay {:?} must be at most 1h",
                self.push_delay
            )));
        }
        let affinity_wait = parse_duration("affinity_wait", &self.affinity_wait)?;
        if affinity_wait > Duration::from_secs(600) {
            return Err(ConfigError::Invalid(format!(
                "affinity_wait {:?} must be at most 10m",
                self.affinity_wait
            )));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(ConfigError::Invalid(format!(
                "max_attempts {} must be within 1..=100",
                self.max_attempts
            )));
        }
        self.storage_config()
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.scaling.validate().map_err(ConfigError::Invalid)?;
        Ok(Checked {
            timing,
            reconcile_interval,
            github_sync_interval,
            push_delay,
            affinity_wait,
            admin_tokens: self.admin_tokens()?,
            tls: self
                .tls
                .as_ref()
                .map(crate::config::TlsFiles::load)
                .transpose()?,
            http_public_url: self
                .http_public_url
                .as_deref()
                .map(crate::config::parse_public_url)
                .transpose()?,
            retention: self.retention.resolve()?,
            verification: self.verification.resolve()?,
        })
    }

    /// Validates without writing anything; see the module documentation. Blocking (reads
    /// files).
    pub fn check(&self) -> Result<CheckReport, ConfigError> {
        self.checked()?;
        let mut would_create = Vec::new();
        if !self.data_dir.is_dir() {
            would_create.push(self.data_dir.clone());
        }
        if std::env::var("REPOVAULT_MASTER_KEY").is_err() {
            let path = self.master_key_path();
            if path.exists() {
                MasterKey::load_or_create(&path)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            } else {
                would_create.push(path);
            }
        } else if let Ok(v) = std::env::var("REPOVAULT_MASTER_KEY") {
            MasterKey::parse(&v)
                .map_err(|e| ConfigError::Invalid(format!("REPOVAULT_MASTER_KEY: {e}")))?;
        }
        let join = self.join_token_path();
        if join.exists() {
            crate::config::read_token(&join)?;
        } else {
            would_create.push(join);
        }
        Ok(CheckReport {
            effective: self.effective_toml()?,
            would_create,
        })
    }

    /// The configuration as TOML, every storage option whose name suggests a secret redacted
    /// (the file holds paths to secrets, never the secrets themselves, elsewhere).
    pub fn effective_toml(&self) -> Result<String, ConfigError> {
        let mut v = toml::Value::try_from(self)
            .map_err(|e| ConfigError::Invalid(format!("configuration: {e}")))?;
        if let Some(opts) = v
            .get_mut("storage")
            .and_then(|s| s.get_mut("options"))
            .and_then(|o| o.as_table_mut())
        {
            for (k, val) in opts.iter_mut() {
                if repovault_common::storage::is_secret_option(k) {
                    *val = toml::Value::String("<redacted>".into());
                }
            }
        }
        toml::to_string_pretty(&v).map_err(|e| ConfigError::Invalid(format!("configuration: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_writes_nothing_and_says_what_a_start_would_create() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let c = CoordinatorConfig::for_data_dir(&data);
        let r = c.check().expect("valid");
        assert!(!data.exists(), "nothing created");
        assert!(r.would_create.contains(&data.join("master.key")), "{r:?}");
        assert!(r.would_create.contains(&data.join("join.token")), "{r:?}");
        assert!(
            r.effective.contains("heartbeat_interval = \"5s\""),
            "{}",
            r.effective
        );
        let mut bad = c.clone();
        bad.push_delay = "2h".into();
        assert!(
            bad.check()
                .expect_err("too long")
                .to_string()
                .contains("push_delay")
        );
    }

    #[test]
    fn secret_storage_options_are_redacted() {
        let c: CoordinatorConfig = toml::from_str(
            "data_dir = '/d'\n[storage]\nkind = 'fs'\noptions = { root = '/r', secret_access_key = 'AKIAXYZ' }\n",
        )
        .expect("config");
        let t = c.effective_toml().expect("toml");
        assert!(
            !t.contains("AKIAXYZ") && t.contains("<redacted>") && t.contains("/r"),
            "{t}"
        );
    }
}
