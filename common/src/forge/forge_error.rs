//! [`ForgeError`]: what a forge call can fail with, and [`FailureClass`], the one answer to
//! "does trying again help?" that every caller (backup export, target repository, metadata
//! restore) reads instead of keeping its own list of statuses.
//!
//! Errors name the method, the path and the forge's own message; they never hold a credential
//! (the clients never put one in a URL, and a forge's message is scrubbed with
//! [`crate::redact::scrub`] before it is kept).

use std::path::PathBuf;
use std::time::Duration;

/// A failed forge call or export step.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The forge answered with a status that is not success (after the client's own retries:
    /// rate limits are waited out, 5xx retried; see `github::rest_client`).
    #[error("{method} {path}: the forge answered {status}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        /// The forge's `message`, or the start of the body when it has none.
        message: String,
        /// When the answer was a rate limit (a 429, or a 403 whose headers say so): how long
        /// the forge asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The request never got an answer (connection, TLS, timeout), after the retries.
    #[error("{method} {path}: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },
    /// The answer was not what the forge documents (not JSON, a field missing).
    #[error("{method} {path}: unexpected answer: {detail}")]
    Decode {
        method: String,
        path: String,
        detail: String,
    },
    /// The endpoint or a credential is unusable (bad URL, bad CA certificate, bad private key).
    #[error("forge client configuration: {0}")]
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
    /// The provider has no such operation (plain git has no API: no organisation listing, no
    /// metadata, no repository to create).
    #[error("{operation} is not supported by {provider}")]
    Unsupported {
        /// The provider as a reader knows it ("plain git").
        provider: &'static str,
        /// What was asked ("listing an organisation's repositories").
        operation: &'static str,
    },
}

/// Whether a failed forge call is worth repeating, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Another attempt may pass: a 5xx after the client's retries, a transport error, an
    /// unexpected answer, the rate budget out of reach, a local file-system error.
    Retryable,
    /// Another attempt gets the same answer: the credential or the repository is wrong (401,
    /// 403 without rate-limit headers, 404, 410, 422, 451), the client cannot be configured,
    /// or the provider has no such operation.
    Permanent,
    /// The forge refused for its rate limit (a 429, or a 403 with rate-limit headers): worth
    /// repeating after `retry_after` (when the forge said).
    RateLimited { retry_after: Option<Duration> },
}

impl FailureClass {
    /// The class of a non-success answer with `status`; `retry_after` is the wait the answer's
    /// headers asked for when they marked it as a rate limit (`retry-after`, or
    /// `x-ratelimit-remaining: 0` until `x-ratelimit-reset`).
    ///
    /// Statuses not named (400, 409, other 4xx) stay retryable, as every caller treated them
    /// before the classification was shared.
    pub fn of_status(status: u16, retry_after: Option<Duration>) -> FailureClass {
        match status {
            429 => FailureClass::RateLimited { retry_after },
            403 if retry_after.is_some() => FailureClass::RateLimited { retry_after },
            401 | 403 | 404 | 410 | 422 | 451 => FailureClass::Permanent,
            _ => FailureClass::Retryable,
        }
    }

    /// Whether another attempt may pass (retryable or rate-limited).
    pub fn is_retryable(self) -> bool {
        !matches!(self, FailureClass::Permanent)
    }
}

impl ForgeError {
    /// The HTTP status the forge answered with, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again helps; see [`FailureClass`].
    pub fn class(&self) -> FailureClass {
        match self {
            ForgeError::Status {
                status,
                retry_after,
                ..
            } => FailureClass::of_status(*status, *retry_after),
            ForgeError::Config(_) | ForgeError::Unsupported { .. } => FailureClass::Permanent,
            ForgeError::Transport { .. }
            | ForgeError::Decode { .. }
            | ForgeError::Budget(_)
            | ForgeError::Io { .. } => FailureClass::Retryable,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ForgeError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<Duration>) -> ForgeError {
        ForgeError::Status {
            method: "GET".into(),
            path: "/repos/acme/web".into(),
            status,
            message: "refused".into(),
            retry_after,
        }
    }

    #[test]
    fn statuses_are_classified_once_for_every_caller() {
        for permanent in [401, 403, 404, 410, 422, 451] {
            assert_eq!(
                status(permanent, None).class(),
                FailureClass::Permanent,
                "{permanent}"
            );
        }
        for retryable in [500, 502, 503, 504] {
            assert_eq!(
                status(retryable, None).class(),
                FailureClass::Retryable,
                "{retryable}"
            );
        }
        let wait = Some(Duration::from_secs(60));
        assert_eq!(
            status(403, wait).class(),
            FailureClass::RateLimited { retry_after: wait }
        );
        assert_eq!(
            status(429, None).class(),
            FailureClass::RateLimited { retry_after: None }
        );
        assert!(status(429, None).class().is_retryable());
        assert!(!status(404, None).class().is_retryable());
    }

    #[test]
    fn errors_without_an_answer_are_classified_by_kind() {
        let transport = ForgeError::Transport {
            method: "GET".into(),
            path: "/".into(),
            detail: "connection reset".into(),
        };
        assert_eq!(transport.class(), FailureClass::Retryable);
        assert_eq!(
            ForgeError::Budget("coordinator unreachable".into()).class(),
            FailureClass::Retryable
        );
        assert_eq!(
            ForgeError::Config("bad CA".into()).class(),
            FailureClass::Permanent
        );
        let unsupported = ForgeError::Unsupported {
            provider: "plain git",
            operation: "listing an organisation's repositories",
        };
        assert_eq!(unsupported.class(), FailureClass::Permanent);
    }
}
