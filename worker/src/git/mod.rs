//! Bare git mirrors with gix, and pushes with the git CLI.
//!
//! Every function blocks; async callers run them with `spawn_blocking`.
//!
//! Credentials travel only as an `http.extraHeader` value held in a [`Secret`]: in memory for
//! gix, in the environment (`GIT_CONFIG_*`) for the git CLI; never on disk, in argv or in a URL.
//! URLs that carry credentials themselves are refused.

mod cli;
mod counting_progress;
mod fsck;
mod fsck_connectivity;
mod fsck_incremental;
#[cfg(test)]
mod fsck_incremental_tests;
mod fsck_integrity;
mod fsck_plan;
mod fsck_record;
#[cfg(test)]
mod fsck_tests;
mod git_error;
mod mirror;
mod mirror_fetch;
mod mirror_inventory;
mod mirror_open;
mod mirror_refs;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use base64::Engine as _;
use repovault_common::secret::Secret;

pub use cli::{
    PushOutcome, compact, fetch_mirror, init_bare, ls_remote, ls_remote_head, push_mirror,
    push_refs,
};
pub use fsck::{Coverage, FsckReport, MAX_PROBLEMS, count_commits, fsck};
pub use fsck_incremental::{CheckSince, fsck_incremental};
pub use fsck_record::{RECORD_FILES as FSCK_RECORD_FILES, pack_names};
pub use git_error::GitError;
pub use mirror::mirror;
pub use mirror_inventory::{count_all_commits, files_at_head, inventory};

/// Where to fetch from or push to, with the credentials to use.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The repository URL (`https://`, `http://`, `git://`, `ssh://`, `file://` or a local path).
    /// Must not contain credentials.
    pub url: String,
    /// The full value of an `http.extraHeader` line, e.g. `Authorization: Basic <base64>`.
    pub auth_header: Option<Secret>,
    /// A PEM CA certificate to trust instead of the system's roots (a GitHub Enterprise behind
    /// a private CA). gix's reqwest transport ignores `http.sslCAInfo` and trusts only the
    /// platform's roots, so a remote with its own CA is fetched with the git CLI instead.
    pub ca_cert_pem: Option<String>,
}

impl Remote {
    /// A remote without credentials.
    pub fn anonymous(url: impl Into<String>) -> Remote {
        Remote {
            url: url.into(),
            auth_header: None,
            ca_cert_pem: None,
        }
    }

    /// A remote authenticated the way GitHub expects an installation or personal token over
    /// HTTPS: `Authorization: Basic base64("x-access-token:" + token)`.
    pub fn with_token(url: impl Into<String>, token: &Secret) -> Remote {
        let credentials = format!("x-access-token:{}", token.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes());
        Remote {
            url: url.into(),
            auth_header: Some(Secret::new(format!("Authorization: Basic {encoded}"))),
            ca_cert_pem: None,
        }
    }

    /// A remote as a lease describes it: a URL and a token that is empty when there is none.
    pub fn from_lease(url: &str, token: &str) -> Remote {
        if token.is_empty() {
            Remote::anonymous(url)
        } else {
            Remote::with_token(url, &Secret::new(token))
        }
    }

    /// The same remote trusting `pem` (empty: the system's roots).
    pub fn with_ca(mut self, pem: &str) -> Remote {
        self.ca_cert_pem = (!pem.trim().is_empty()).then(|| pem.to_string());
        self
    }

    /// The header line, for gix's and git's configuration (messages are scrubbed of it with
    /// [`repovault_common::redact::scrub`] and `auth_header`).
    pub(crate) fn secret(&self) -> Option<&str> {
        self.auth_header.as_ref().map(Secret::expose)
    }

    /// Refuses URLs that carry credentials or do not parse; returns the URL safe to print.
    pub(crate) fn checked_url(&self) -> Result<String, GitError> {
        check_url(&self.url)
    }
}

/// The refs of a mirror.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every ref under `refs/`, by full name, to the hex id it points to (not peeled: an
    /// annotated tag maps to the tag object). A symbolic ref maps to `ref: <target>`.
    pub refs: BTreeMap<String, String>,
    /// The ref `HEAD` points to, e.g. `refs/heads/main`; `None` if `HEAD` is detached or missing.
    pub head: Option<String>,
    /// Number of refs under `refs/heads/`.
    pub branches: u64,
    /// Number of refs under `refs/tags/`.
    pub tags: u64,
}

/// The result of [`mirror`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The mirror's refs after the fetch.
    pub inventory: Inventory,
    /// Bytes of pack data read from the remote (0 if nothing was new).
    pub bytes_received: u64,
    /// Refs deleted from the mirror because the remote no longer has them, sorted.
    pub pruned: Vec<String>,
    /// `true` if the mirror was created by this call.
    pub cloned: bool,
    /// The refs the remote advertised that the mirror maps (every ref under `refs/` except
    /// `refs/pull/*/merge`), by full name, to the advertised hex id, not peeled: an annotated
    /// tag maps to the tag object, as in [`Inventory::refs`]. Empty for an empty remote.
    /// What a verification compares the mirror's refs with.
    pub advertised: BTreeMap<String, String>,
}

/// Progress of a [`mirror`] call, reported a few times per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitProgress {
    /// One of `connecting`, `listing refs`, `receiving`, `indexing`, `updating refs`, `done`.
    pub phase: &'static str,
    /// Objects received and indexed so far.
    pub objects: u64,
    /// Objects in the pack being received, from its header; 0 until the header has arrived
    /// (and for a fetch that needs no pack).
    pub total_objects: u64,
    /// Pack bytes received so far.
    pub bytes: u64,
}

/// Validates `url` and returns it; refuses credentials in the URL without echoing them.
fn check_url(url: &str) -> Result<String, GitError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(GitError::InvalidUrl {
            url: String::new(),
            reason: "empty URL".into(),
        });
    }
    if trimmed.starts_with('-') {
        return Err(GitError::InvalidUrl {
            url: trimmed.to_owned(),
            reason: "a URL must not start with '-'".into(),
        });
    }
    if let Ok(parsed) = url::Url::parse(trimmed) {
        let http = matches!(parsed.scheme(), "http" | "https");
        if parsed.password().is_some() || (http && !parsed.username().is_empty()) {
            let mut shown = parsed.clone();
            // Both calls only fail for URLs that cannot have credentials at all.
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            return Err(GitError::InvalidUrl {
                url: shown.to_string(),
                reason: "the URL contains credentials; pass them as a token instead".into(),
            });
        }
    }
    match gix::url::parse(trimmed.as_bytes()) {
        Ok(parsed) => {
            if parsed.password().is_some() {
                return Err(GitError::InvalidUrl {
                    url: "[URL with credentials]".into(),
                    reason: "the URL contains credentials; pass them as a token instead".into(),
                });
            }
            Ok(trimmed.to_owned())
        }
        Err(err) => Err(GitError::InvalidUrl {
            // An unparsable URL with an '@' may hold credentials: do not echo it.
            url: if trimmed.contains('@') {
                "[unparsable URL]".into()
            } else {
                trimmed.to_owned()
            },
            reason: err.to_string(),
        }),
    }
}
