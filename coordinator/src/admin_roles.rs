//! Who may call what on the admin API (README, design decisions, "Roles and audit").
//!
//! A caller presents `authorization: Bearer <token>`; the coordinator's config names each token
//! and gives it a role. Roles are ordered: `viewer` (read) < `operator` (trigger backups and
//! restores, change schedules and other settings) < `admin` (credentials, key export, escrow,
//! deletion, purge, connect/disconnect). A coordinator configured with no token at all
//! (`standalone` on loopback) treats every caller as the local admin.
//!
//! The method → role table is the single place the rules live ([`required`]); a method it does
//! not name needs `admin`, so an RPC added later is closed until someone opens it.

use std::fmt;

use repovault_common::secret::Secret;

/// A caller's role; ordered from least to most allowed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role an admin RPC (by its method name, e.g. `RunBackup`) needs.
pub fn required(method: &str) -> Role {
    match method {
        // Reading: the catalog, the queue, progress, what a backup holds, escrow agreements.
        m if m.starts_with("List") || m.starts_with("Get") || m.starts_with("Browse") => {
            Role::Viewer
        }
        "WatchTask" => Role::Viewer,
        // Revoking a worker pool's join token stops workers and re-queues their work: what an
        // operator on call must be able to do about a lost or compromised worker. Creating
        // one is the admin's (below): a worker receives credentials and keys in its leases.
        "RevokeWorkerToken" => Role::Operator,
        // Triggers, restores (downloads are restores) and settings.
        "RunBackup"
        | "StartRestore"
        | "CancelRestore"
        | "MintDownloadLink"
        | "DownloadRestore"
        | "SyncOrg"
        | "AddRepo"
        | "SetOrgSchedule"
        | "SetRepoSchedule"
        | "SetRetention"
        | "VerifyBackup"
        | "RunDrill"
        | "CheckStorageLocation" => Role::Operator,
        // Credentials (AddOrg), key export, escrow, deletion, purge, connect/disconnect, the
        // catalog rebuild, worker pools' join tokens (CreateWorkerToken), and anything not
        // named above.
        _ => Role::Admin,
    }
}

/// Whether a call of `method` changes something (and so is written to the audit log).
pub fn is_change(method: &str) -> bool {
    required(method) > Role::Viewer
}

/// One configured admin token.
#[derive(Clone)]
pub struct NamedToken {
    /// Shown in the audit log (never the token).
    pub name: String,
    pub role: Role,
    pub token: Secret,
}

impl fmt::Debug for NamedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this call needs an admin token (authorization: Bearer ...)")]
    NoToken,
    #[error("the admin token is not known to this coordinator")]
    UnknownToken,
    #[error("{method} needs the {needed} role; the token {caller:?} has the {has} role")]
    Forbidden {
        method: String,
        needed: Role,
        caller: String,
        has: Role,
    },
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    tokens: Vec<NamedToken>,
}

impl Callers {
    pub fn new(tokens: Vec<NamedToken>) -> Self {
        Callers { tokens }
    }

    /// The caller a bearer token names, allowed to call `method`. Token comparison is
    /// constant-time per configured token.
    pub fn authorize(&self, bearer: Option<&str>, method: &str) -> Result<Caller, Refusal> {
        let caller = if self.tokens.is_empty() {
            Caller {
                name: "local".into(),
                role: Role::Admin,
            }
        } else {
            let presented = bearer.ok_or(Refusal::NoToken)?;
            let t = self
                .tokens
                .iter()
                .find(|t| constant_time_eq(presented.as_bytes(), t.token.expose().as_bytes()))
                .ok_or(Refusal::UnknownToken)?;
            Caller {
                name: t.name.clone(),
                role: t.role,
            }
        };
        let needed = required(method);
        if caller.role < needed {
            return Err(Refusal::Forbidden {
                method: method.to_string(),
                needed,
                caller: caller.name,
                has: caller.role,
            });
        }
        Ok(caller)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    fn callers() -> Callers {
        let t = |name: &str, role, token: &str| NamedToken {
            name: name.into(),
            role,
            token: Secret::new(token),
        };
        Callers::new(vec![
            t("ann", Role::Viewer, "v-token"),
            t("ops", Role::Operator, "o-token"),
            t("root", Role::Admin, "a-token"),
        ])
    }

    #[test]
    fn each_role_reaches_exactly_its_methods() {
        let c = callers();
        let can = |token: &str, method: &str| c.authorize(Some(token), method).is_ok();
        for m in [
            "ListBackups",
            "GetBackup",
            "BrowseBackup",
            "WatchTask",
            "ListEscrows",
            "GetHealth",
            "GetTimeline",
            "ListWorkers",
            "ListWorkerTokens",
        ] {
            assert!(can("v-token", m), "viewer {m}");
        }
        for m in [
            "RunBackup",
            "StartRestore",
            "SetRepoSchedule",
            "SetRetention",
            "RevokeWorkerToken",
        ] {
            assert!(!can("v-token", m), "viewer {m}");
            assert!(can("o-token", m), "operator {m}");
        }
        for m in [
            "AddOrg",
            "ExportOrgKey",
            "DeleteBackup",
            "PurgeOrg",
            "EnableEscrow",
            "ReleaseEscrow",
            "SetOrgConnected",
            "CreateWorkerToken",
            "SomethingAddedLater",
        ] {
            assert!(!can("o-token", m), "operator {m}");
            assert!(can("a-token", m), "admin {m}");
        }
    }

    #[test]
    fn refusals_name_the_problem_and_never_the_token() {
        let c = callers();
        assert_eq!(c.authorize(None, "GetBackup"), Err(Refusal::NoToken));
        assert_eq!(
            c.authorize(Some("nope"), "GetBackup"),
            Err(Refusal::UnknownToken)
        );
        let e = c.authorize(Some("v-token"), "DeleteBackup").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("DeleteBackup needs the admin role"), "{text}");
        assert!(text.contains("\"ann\" has the viewer role"), "{text}");
        assert!(!text.contains("v-token"));
    }

    #[test]
    fn without_configured_tokens_the_caller_is_the_local_admin() {
        let c = Callers::default();
        let caller = c.authorize(None, "PurgeOrg").unwrap();
        assert_eq!(caller.role, Role::Admin);
        assert!(is_change("PurgeOrg") && !is_change("ListRepos"));
    }
}
