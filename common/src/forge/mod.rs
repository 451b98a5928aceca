//! Sources ("forges"): the providers repovault backs up, behind one seam ([`Forge`], picked by
//! [`open`] from the repository's [`Provider`](crate::domain::Provider)). Today: GitHub and
//! GitHub Enterprise ([`github`]), and plain git ([`plain_git`], no API).
//!
//! Shared by every forge: the failure classification ([`ForgeError::class`]), the credential
//! and rate-budget traits ([`TokenSource`], [`RateGate`]) and the credential id the budget
//! keys on ([`token_credential_id`]).

mod forge_error;
pub mod github;
pub mod plain_git;
mod seam;

pub use forge_error::{FailureClass, ForgeError};
pub use github::access::{AccessPlan, AccessScope};
pub use github::rate::{
    Admission, RateGate, RateSnapshot, StaticToken, TokenSource, app_credential_id,
    token_credential_id,
};
pub use github::{
    Cursors, ExportMode, ExportReport, Progress, RemoteRepo, RestorePlan, RestoreReport,
};
pub use seam::{
    Credentials, Forge, ForgeEndpoint, GitRemote, MetadataRequest, ProgressFn, TargetRepo, open,
};
