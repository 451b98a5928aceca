//! A task's failure, and the worker's error policy.
//!
//! # Policy
//!
//! - **One error per failed task.** A task fails with one [`TaskError`]: a one-line message
//!   saying what failed and where, whether another attempt could help (`retryable`), the error
//!   it came from (`source`), and for a restore that hit damaged packs, the damage (the
//!   coordinator fails every backup using them).
//! - **Permanent** when another attempt would get the same answer: the lease is not valid for
//!   this worker (no spec, a value unknown to this version, an invalid restore combination);
//!   the source or target refuses us or is not there (git's not-found, unavailable,
//!   authentication, an invalid URL, a target that is not empty; a forge failure its one
//!   classification, `ForgeError::class`, calls permanent, turned into a task failure by
//!   `forge::task_failure`); a local path outside the allowed roots; the snapshot repository's
//!   key is wrong or its data is damaged (`RepoError::is_retryable`). The coordinator fails the
//!   task at once.
//! - **Retryable** otherwise: transport failures and 5xx after their own retries, the local
//!   file system (a full disk, a removal that failed), an interruption, a panic in a blocking
//!   step. The coordinator queues the task again while attempts remain. When in doubt an error
//!   is retryable: a needless retry costs an attempt, a wrong "permanent" costs a backup.
//! - **A lost lease is not the task's failure**: when the coordinator revoked or could not
//!   renew the lease ([`super::LeaseLoss`]), the session gives the attempt back
//!   (`lease_lost`), whatever `retryable` says.
//! - **Context is attached where the failure happens**, in words: what the task was doing and
//!   on what (`TaskError::retryable(format!("moving {from} to {to}")).with_source(e)`). The
//!   message is then `context: source`, as one line. Conversions classify by variant and keep
//!   the source: `From<GitError>` and `From<RepoError>` (prefixed `snapshot repository:`).
//!   There is no `From<std::io::Error>`: an I/O error without the path it was about says
//!   nothing, so each call site names its path.
//! - **Sources are kept, not flattened**: [`TaskError::source`] is the error it came from
//!   (`GitError`, `RepoError`, `std::io::Error`, the forge's and LFS errors), for logs and for
//!   decisions that look at the cause. The message already holds the source's own one-line
//!   text, so a reporter prints the message (`%e`), not the chain.
//! - **What leaves the worker is one line and holds no secret**: the coordinator receives
//!   [`TaskError::wire_message`], the message with line breaks folded and every secret of the
//!   lease, every `Authorization` value and every URL credential scrubbed
//!   (`repovault_common::redact::scrub`). Messages are built from our own words and from errors
//!   that scrub at their source (git, LFS, the forge client); the scrub at the edge is the
//!   last net, not the first.

use std::error::Error;

use repovault_common::redact::scrub;
use repovault_common::repo::RepoError;
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::git::GitError;

/// The boxed cause of a [`TaskError`].
pub type Source = Box<dyn Error + Send + Sync + 'static>;

/// A task's failure: its message (never with secrets), whether another attempt could help,
/// and the error it came from. See the module documentation for the policy.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// What failed, one line; with a source, `context: source`.
    pub message: String,
    pub retryable: bool,
    /// Damaged packs found while failing (a restore that hit them): sent with the failure so
    /// the coordinator fails every backup using them.
    pub damage: Option<crate::verify::archive::Damage>,
    /// The error this one came from; its text is already in `message`.
    #[source]
    pub source: Option<Source>,
}

impl TaskError {
    /// Another attempt would get the same answer.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            damage: None,
            source: None,
        }
    }

    /// Another attempt may succeed.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            damage: None,
            source: None,
        }
    }

    /// A permanent error whose message is `source`'s own (no context to add).
    pub fn permanent_from(source: impl Into<Source>) -> Self {
        let source = source.into();
        Self {
            message: source.to_string(),
            source: Some(source),
            ..Self::permanent("")
        }
    }

    /// A retryable error whose message is `source`'s own (no context to add).
    pub fn retryable_from(source: impl Into<Source>) -> Self {
        let source = source.into();
        Self {
            message: source.to_string(),
            source: Some(source),
            ..Self::retryable("")
        }
    }

    /// Keeps `source` as this error's cause; the message becomes `message: source`. The
    /// message so far is the context: what was being done, on what.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        let source = source.into();
        self.message = format!("{}: {source}", self.message);
        self.source = Some(source);
        self
    }

    /// The message as the coordinator receives it (`CompleteTaskRequest.error`): one line,
    /// with `secrets` (the lease's) and any credential a URL or header carries scrubbed.
    pub fn wire_message<'a>(&self, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
        let one_line = self
            .message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        scrub(&one_line, secrets)
    }

    /// The damage found, as the completion carries it (`CompleteTaskRequest.verify`).
    pub fn damage_result(&self) -> Option<pb::VerifyResult> {
        self.damage.as_ref().map(|d| pb::VerifyResult {
            damaged_snapshot_ids: d.snapshots.clone(),
            damage: d.lines.join("; "),
            ..Default::default()
        })
    }
}

impl From<GitError> for TaskError {
    /// Permanent when the remote or the target says no (see the module policy).
    fn from(e: GitError) -> Self {
        let retryable = !matches!(
            e,
            GitError::RepositoryNotFound { .. }
                | GitError::Unavailable { .. }
                | GitError::AuthenticationFailed { .. }
                | GitError::InvalidUrl { .. }
                | GitError::TargetNotEmpty { .. }
                | GitError::EmptyMapping { .. }
        );
        Self {
            message: e.to_string(),
            retryable,
            damage: None,
            source: Some(Box::new(e)),
        }
    }
}

impl From<RepoError> for TaskError {
    /// Retryable as the snapshot store's policy says ([`RepoError::is_retryable`]).
    fn from(e: RepoError) -> Self {
        let retryable = e.is_retryable();
        Self {
            message: format!("snapshot repository: {e}"),
            retryable,
            damage: None,
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_kept_and_named_once_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = TaskError::retryable("writing /c/manifest.json").with_source(io);
        assert_eq!(e.message, "writing /c/manifest.json: denied");
        assert!(e.retryable);
        let source = e.source().expect("source kept");
        assert_eq!(
            source
                .downcast_ref::<std::io::Error>()
                .expect("an io::Error")
                .kind(),
            std::io::ErrorKind::PermissionDenied
        );
        let repo = TaskError::from(RepoError::NoRuntime);
        assert!(repo.message.starts_with("snapshot repository: "));
        assert!(repo.source().is_some_and(|s| s.is::<RepoError>()));
    }

    #[test]
    fn the_wire_message_is_one_line_without_secrets() {
        let token = Secret::new("ghs_0123456789abcdefghijklmnop".to_string());
        let e = TaskError::permanent(format!(
            "push to https://x-access-token:{}@github.com/o/r.git failed:\nremote: denied\n\n token {}",
            token.expose(),
            token.expose()
        ));
        let wire = e.wire_message([&token]);
        assert!(!wire.contains('\n'), "{wire}");
        assert!(!wire.contains(token.expose()), "{wire}");
        assert!(
            wire.contains("failed:; remote: denied; token [redacted]"),
            "{wire}"
        );
    }
}
