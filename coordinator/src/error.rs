//! The coordinator's error policy: every error names what failed; each maps to one gRPC code.

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
