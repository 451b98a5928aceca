//! `storage check`: what one credential can do on its location, found by doing it to a probe
//! object under `.repovault-probe/`, and named by the permission a failure means.
//!
//! A writer is expected to create, read and list, and expected *not* to overwrite or delete
//! (least privilege: a leaked worker credential cannot destroy backups); a maintainer must also
//! delete. Both outcomes are reported, so an operator sees a writer that could delete as well
//! as a maintainer that cannot.

use opendal::{ErrorKind, Operator};

use repovault_common::storage::StorageConfig;

use super::Role;

/// Where probe objects go, beside (never inside) the snapshot repositories.
pub const PROBE_DIR: &str = ".repovault-probe/";

/// One step of a probe and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStep {
    /// `create`, `read`, `list`, `overwrite`, `delete`.
    pub name: &'static str,
    /// Whether the step did what was asked.
    pub done: bool,
    /// Whether this role needs the step to work (`Some(true)`), must be refused
    /// (`Some(false)`: a writer's overwrite and delete), or either is fine (`None`).
    pub wanted: Option<bool>,
    /// What happened, with the permission a refusal means.
    pub detail: String,
}

impl ProbeStep {
    /// Whether the outcome is what the role needs.
    pub fn as_wanted(&self) -> bool {
        self.wanted.is_none_or(|w| w == self.done)
    }
}

/// The probe of one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub role: Role,
    pub steps: Vec<ProbeStep>,
}

impl ProbeReport {
    /// Whether the credential can do its role's work (create, read, list; a maintainer also
    /// delete). A writer that could also delete is usable, and reported as broader than needed.
    pub fn usable(&self) -> bool {
        self.steps
            .iter()
            .filter(|s| s.wanted == Some(true))
            .all(|s| s.done)
    }

    /// The first step whose outcome is not what the role needs, as one line.
    pub fn summary(&self) -> String {
        match self.steps.iter().find(|s| !s.as_wanted()) {
            Some(s) => format!(
                "{} credential: {}: {}",
                self.role.as_str(),
                s.name,
                s.detail
            ),
            None => format!("{} credential: every step as expected", self.role.as_str()),
        }
    }
}

/// Probes `config` as `role` would use it. Never fails: every failure is a step's outcome.
pub async fn probe(config: &StorageConfig, role: Role) -> ProbeReport {
    let mut steps = Vec::new();
    let op = match config.operator() {
        Ok(op) => op,
        Err(e) => {
            steps.push(step(
                "create",
                false,
                Some(true),
                format!("the configuration: {e}"),
            ));
            return ProbeReport { role, steps };
        }
    };
    let path = format!("{PROBE_DIR}{}", uuid::Uuid::now_v7());
    let body = format!("repovault storage probe ({})", role.as_str());
    let created = write(&op, &path, &body, true).await;
    steps.push(outcome(
        "create",
        created.clone(),
        Some(true),
        "create (write) objects",
    ));
    if created.is_err() {
        return ProbeReport { role, steps };
    }
    let read = match op.read(&path).await {
        Ok(b) if b.to_vec() == body.as_bytes() => Ok(()),
        Ok(_) => Err("read back other bytes than were written".to_string()),
        Err(e) => Err(e.to_string()),
    };
    steps.push(outcome("read", read, Some(true), "read objects"));
    let listed = match op.list(PROBE_DIR).await {
        Ok(entries) if entries.iter().any(|e| e.path() == path) => Ok(()),
        Ok(_) => Err("the probe object is missing from the listing".to_string()),
        Err(e) => Err(e.to_string()),
    };
    steps.push(outcome("list", listed, Some(true), "list objects"));
    // A writer should not be able to replace what it wrote; a maintainer may or may not.
    let overwrite = write(&op, &path, "replaced", false).await;
    steps.push(outcome(
        "overwrite",
        overwrite,
        (role == Role::Writer).then_some(false),
        "overwrite objects",
    ));
    let deleted = match op.delete(&path).await {
        Ok(()) => match op.exists(&path).await {
            Ok(false) => Ok(()),
            Ok(true) => Err("the object is still there after the delete".to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let wanted_delete = match role {
        Role::Maintainer => Some(true),
        Role::Writer => Some(false),
    };
    steps.push(outcome("delete", deleted, wanted_delete, "delete objects"));
    ProbeReport { role, steps }
}

async fn write(op: &Operator, path: &str, body: &str, if_absent: bool) -> Result<(), String> {
    let conditional = if_absent && op.info().capability().write_with_if_not_exists;
    match op
        .write_with(path, body.to_string())
        .if_not_exists(conditional)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
            Err("refused: the object exists".to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn step(name: &'static str, done: bool, wanted: Option<bool>, detail: String) -> ProbeStep {
    ProbeStep {
        name,
        done,
        wanted,
        detail,
    }
}

/// A step from its result: a refusal names the permission it means.
fn outcome(
    name: &'static str,
    result: Result<(), String>,
    wanted: Option<bool>,
    permission: &str,
) -> ProbeStep {
    match result {
        Ok(()) if wanted == Some(false) => step(
            name,
            true,
            wanted,
            format!("allowed, but this credential need not {permission}: a narrower one is safer"),
        ),
        Ok(()) => step(name, true, wanted, "ok".to_string()),
        Err(e) if wanted == Some(false) => step(
            name,
            false,
            wanted,
            format!("refused, as it should be ({e})"),
        ),
        Err(e) => step(
            name,
            false,
            wanted,
            format!("failed: the credential may lack the permission to {permission}: {e}"),
        ),
    }
}
