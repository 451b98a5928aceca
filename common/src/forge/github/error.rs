//! [`ForgeError`]: what a GitHub call can fail with. Errors name the method, the path and
//! GitHub's own message; they never hold a credential (the client never puts one in a URL).

use std::path::PathBuf;

/// A failed GitHub call or export step.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// GitHub answered with a status that is not success (after the client's retries: rate
    /// limits are waited out, 5xx retried; see [`super::client`]).
    #[error("{method} {path}: GitHub answered {status}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        /// GitHub's `message`, or the start of the body when it has none.
        message: String,
    },
    /// The request never got an answer (connection, TLS, timeout), after the retries.
    #[error("{method} {path}: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },
    /// The answer was not what GitHub documents (not JSON, a field missing).
    #[error("{method} {path}: unexpected answer: {detail}")]
    Decode {
        method: String,
        path: String,
        detail: String,
    },
    /// The endpoint or a credential is unusable (bad URL, bad CA certificate, bad private key).
    #[error("GitHub client configuration: {0}")]
    Config(String),
    /// The fleet's rate budget would not admit the request (the task's lease is gone, or the
    /// coordinator cannot be reached); the request was not sent.
    #[error("rate budget: {0}")]
    Budget(String),
    /// Reading or writing the export tree.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ForgeError {
    /// The HTTP status GitHub answered with, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ForgeError::Io {
            path: path.into(),
            source,
        }
    }
}
