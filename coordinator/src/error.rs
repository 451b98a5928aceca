//! The coordinator's error policy.
//!
//! - **Every error names what failed and on what** (the organisation, repository, backup or
//!   task by name or id, the field of a request), in words an operator can act on; never a
//!   secret (tokens and keys are sealed or held in `Secret`, whose Display is redacted).
//! - **Each variant maps to exactly one gRPC code** ([`From<CoreError> for tonic::Status`]), and
//!   the code says whether a caller may retry: `unavailable` (the store or storage failed: try
//!   again), `failed_precondition` (the state must change first: a lease lost, a backup not
//!   completed), `invalid_argument` (the request can never succeed as it is; the CLI exits 2),
//!   `not_found`, `already_exists`, `permission_denied` (the caller's role), `internal` (a bug or
//!   a panic in a blocking step).
//! - **Context is attached where the failure happens**: the message is built at the call site
//!   that knows what was being done, not by a generic wrapper.
//! - **Sources**: a store error is kept as it is ([`CoreError::Store`]); storage and snapshot
//!   repository errors are rendered to one line where they cross into the coordinator (their
//!   own types already render their causes once, without backtraces), because the gRPC status
//!   carries only a message.

use crate::store::StoreError;
use crate::tasks::lease_state::LeaseError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("lease rejected: {0}")]
    Lease(#[from] LeaseError),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's role does not allow this particular change (the method itself it may
    /// call: e.g. an operator shortening retention so that backups would go).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("unknown worker {0:?}: register again")]
    UnknownWorker(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { what, name } => {
                CoreError::AlreadyExists(format!("{what} {name:?} already exists"))
            }
            other => CoreError::Store(other),
        }
    }
}

/// A request field that does not decode (an id that is empty or malformed, ...): the message
/// names the field.
impl From<repovault_common::domain::WireError> for CoreError {
    fn from(e: repovault_common::domain::WireError) -> Self {
        CoreError::InvalidArgument(e.to_string())
    }
}

impl From<opendal::Error> for CoreError {
    fn from(e: opendal::Error) -> Self {
        CoreError::Storage(e.to_string())
    }
}

impl From<CoreError> for tonic::Status {
    fn from(e: CoreError) -> Self {
        let msg = e.to_string();
        match e {
            CoreError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            CoreError::NotFound { .. } => tonic::Status::not_found(msg),
            CoreError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            CoreError::Lease(_) | CoreError::FailedPrecondition(_) => {
                tonic::Status::failed_precondition(msg)
            }
            CoreError::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            CoreError::UnknownWorker(_) => tonic::Status::not_found(msg),
            CoreError::Store(_) | CoreError::Storage(_) => tonic::Status::unavailable(msg),
            CoreError::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

pub fn not_found(what: &'static str, name: impl Into<String>) -> CoreError {
    CoreError::NotFound {
        what,
        name: name.into(),
    }
}
