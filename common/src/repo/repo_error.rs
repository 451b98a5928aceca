//! The snapshot repository's errors, and how rustic_core's errors become them.

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
