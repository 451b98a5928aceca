//! The snapshot repository's errors, and how rustic_core's errors become them.
//!
//! Error policy of the snapshot store:
//! - **Every error names where and what**: the repository's location (never its password or
//!   key), the snapshot or path, and what was being done (`doing`), so a task's one-line failure
//!   says enough to act on without a log.
//! - **Retryable or permanent is decided here, once** ([`RepoError::is_retryable`]): a wrong
//!   password and damaged stored data never get better by trying again; everything else (storage
//!   and local I/O failures, rustic_core errors we cannot classify, interruptions) may, and the
//!   coordinator's attempt budget bounds the retries.
//! - **Sources are kept where they are ours** (`Io` keeps its `std::io::Error`). rustic_core's
//!   errors are rendered once, at the boundary, into one line per cause ([`describe`]): their
//!   `Display` carries backtrace frames and "please report" text that must not reach an operator,
//!   and the chain is walked first to classify it (wrong password, an opendal error anywhere in
//!   it means storage).
//! - **Nothing half-written**: an error from a write path means no snapshot file was written
//!   (the snapshot file is the commit point), so a caller may always retry or give up without
//!   cleaning up.

use std::fmt::Write as _;
use std::path::PathBuf;

use rustic_core::RusticError;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no restic repository at {location} (no config file)")]
    NotFound { location: String },
    #[error("wrong password for the repository at {location}")]
    WrongPassword { location: String },
    #[error("storage error in the repository at {location}: {message}")]
    Storage { location: String, message: String },
    #[error("backup fenced, no snapshot written: {0}")]
    Fenced(String),
    #[error("source directory could not be read completely, no snapshot written: {0}")]
    SourceRead(String),
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("path {path:?} not found in snapshot {snapshot}")]
    PathNotFound { snapshot: String, path: String },
    #[error("restore destination {0} already exists")]
    DestinationExists(PathBuf),
    #[error("repository check found problems: {0}")]
    CheckFailed(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("local I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not inside a tokio runtime context: call the snapshot repository from spawn_blocking")]
    NoRuntime,
    #[error("repository error while {doing}: {message}")]
    Repository {
        doing: &'static str,
        message: String,
    },
    #[error("interrupted while {doing}")]
    Interrupted { doing: &'static str },
    /// rustic_core panicked on the stored data (it unwraps some decryption and decoding
    /// errors): the data is damaged, and reading it again will not help.
    #[error("the stored data is damaged (rustic_core failed while {doing}): {message}")]
    Damaged {
        doing: &'static str,
        message: String,
    },
}

impl RepoError {
    /// Whether another attempt could succeed; see the module's error policy.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            RepoError::WrongPassword { .. } | RepoError::Damaged { .. }
        )
    }
}

/// Classifies a rustic error: wrong password, storage (an opendal error anywhere in the
/// chain), or anything else with what we were doing.
// Takes the box because that is `RusticResult`'s error type: callers pass it straight from `map_err`.
#[allow(clippy::boxed_local)]
pub(super) fn map_err(err: Box<RusticError>, location: &str, doing: &'static str) -> RepoError {
    if err.is_incorrect_password() {
        return RepoError::WrongPassword {
            location: location.to_string(),
        };
    }
    let message = describe(&err);
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*err);
    while let Some(e) = cause {
        if e.downcast_ref::<opendal::Error>().is_some() {
            return RepoError::Storage {
                location: location.to_string(),
                message,
            };
        }
        cause = e.source();
    }
    RepoError::Repository { doing, message }
}

/// A rustic_core error as one line: each link of the cause chain by its message alone.
///
/// Not `display_log`: it formats a nested rustic_core cause with that error's terminal
/// `Display`, which appends "Some additional details", the backtrace frames (or a hint to
/// enable them) and a request to report a bug, none of which belongs in a task's error.
pub(crate) fn describe(err: &RusticError) -> String {
    let mut parts = vec![head(err)];
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        match c.downcast_ref::<RusticError>() {
            Some(r) => parts.push(head(r)),
            None => parts.push(c.to_string().lines().next().unwrap_or_default().to_string()),
        }
        cause = c.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.join(": ")
}

/// One rustic_core error's own message, without its causes.
fn head(err: &RusticError) -> String {
    let log = err.display_log();
    let own = log.split(": caused by: ").next().unwrap_or_default();
    own.strip_prefix("Error: ")
        .unwrap_or(own)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// At most the first ten messages, and how many more there were.
pub(super) fn summarise(messages: &[String]) -> String {
    let mut out = messages
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if messages.len() > 10 {
        let _ = write!(out, "; and {} more", messages.len() - 10);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::RepoError;

    #[test]
    fn only_a_wrong_password_and_damaged_data_are_permanent() {
        let location = || "fs:/r".to_string();
        assert!(
            !RepoError::WrongPassword {
                location: location()
            }
            .is_retryable()
        );
        let damaged = RepoError::Damaged {
            doing: "reading a pack",
            message: "decryption failed".into(),
        };
        assert!(!damaged.is_retryable());
        let storage = RepoError::Storage {
            location: location(),
            message: "connection reset".into(),
        };
        assert!(storage.is_retryable());
        assert!(RepoError::Interrupted { doing: "restoring" }.is_retryable());
    }
}
