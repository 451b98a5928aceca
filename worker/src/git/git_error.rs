//! Errors of the git module, and the classification of gix's errors into them.
//!
//! Every message names the URL it concerns (which never carries credentials: such URLs are
//! refused up front) and is scrubbed ([`repovault_common::redact::scrub`]) of the authentication
//! header and any other credential before it is built.

use std::path::PathBuf;

use repovault_common::redact::scrub;
use repovault_common::secret::Secret;

/// What went wrong talking to a git remote or a local mirror.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The remote answered that there is no such repository (HTTP 404, git daemon "not found").
    #[error("repository not found at {url}: {detail}")]
    RepositoryNotFound { url: String, detail: String },
    /// The forge withholds the repository (HTTP 451: blocked for legal reasons, a DMCA
    /// takedown). Another attempt gets the same answer.
    #[error("repository unavailable at {url}: {detail}")]
    Unavailable { url: String, detail: String },
    /// The remote refused our credentials or wanted some (HTTP 401/403).
    #[error("authentication failed for {url}: {detail}")]
    AuthenticationFailed { url: String, detail: String },
    /// The remote could not be reached (connection refused, DNS, timeout).
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The URL cannot be used (unparsable, or it carries credentials).
    #[error("invalid repository URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The remote advertised refs but none of them matched the mirror refspec.
    #[error("{url} advertised {advertised} refs but none matched the mirror refspec")]
    EmptyMapping { url: String, advertised: usize },
    /// Some refs could not be updated to the remote's value.
    #[error("{url}: refs rejected: {refs}")]
    RefsRejected { url: String, refs: String },
    /// A push target already has refs; pushing a backup there could mix histories.
    #[error("push target {url} is not empty ({refs} refs); refusing to push")]
    TargetNotEmpty { url: String, refs: usize },
    /// The operation was interrupted through the interrupt flag.
    #[error("interrupted while working on {url}")]
    Interrupted { url: String },
    /// The local directory exists but is not a repository we may use.
    #[error("{path}: {reason}")]
    NotARepository { path: PathBuf, reason: String },
    /// A local filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with what we were doing and the underlying message.
    #[error("{context}: {detail}")]
    Other { context: String, detail: String },
}

impl GitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        GitError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The whole chain of a gix error on one line.
fn chain(err: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in err.iter_errors() {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Turns a gix error met while talking to `url` into a [`GitError`], `doing` naming the step.
/// `detail` is scrubbed of `secret` (the remote's header) and of any other credential
/// ([`scrub`]).
pub(crate) fn classify(
    err: &gix::Error,
    url: &str,
    doing: &str,
    secret: Option<&Secret>,
) -> GitError {
    use gix::error::Class;

    let detail = scrub(&chain(err), secret);
    let lower = detail.to_lowercase();
    let url = url.to_owned();
    let io_kind = err
        .iter_errors()
        .find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
    let class = err.dominant_class();

    if class == Some(Class::Cancelled) || lower.contains("interrupted") {
        return GitError::Interrupted { url };
    }
    if lower.contains("http status 404")
        || lower.contains("repository not found")
        || lower.contains("not exported")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("could not find repository")
        || (doing == "connect"
            && (lower.contains("no such file or directory") || lower.contains("does not exist")))
    {
        return GitError::RepositoryNotFound { url, detail };
    }
    if lower.contains("http status 451") {
        return GitError::Unavailable { url, detail };
    }
    if matches!(
        class,
        Some(Class::Unauthenticated | Class::PermissionDenied)
    ) || lower.contains("http status 401")
        || lower.contains("http status 403")
    {
        return GitError::AuthenticationFailed { url, detail };
    }
    if matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
                | std::io::ErrorKind::TimedOut
        )
    ) || lower.contains("connection refused")
        || lower.contains("error trying to connect")
        || lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("timed out")
    {
        return GitError::Unreachable { url, detail };
    }
    if class == Some(Class::NotFound) && doing == "connect" {
        return GitError::RepositoryNotFound { url, detail };
    }
    GitError::Other {
        context: format!("{doing} {url}"),
        detail,
    }
}
