//! Sources ("forges"): the providers repovault backs up, behind one seam ([`Forge`], opened by
//! [`open`] from the repository's [`Provider`](crate::domain::Provider)), and what a provider
//! is before a request is sent ([`ForgeKind`], picked by [`kind`]: its default API, the form of
//! its credentials, minting App installation tokens, which rate limit is budgeted). Today: GitHub
//! and GitHub Enterprise ([`github`]), and plain git ([`plain_git`], no API). Code outside this
//! module never names a provider: a new one is a module implementing both traits and one arm in
//! [`kind`].
//!
//! Shared by every forge: the failure classification ([`ForgeError::class`]), the credential
//! and rate-budget traits ([`TokenSource`], [`RateGate`]) and the credential id the budget
//! keys on ([`token_credential_id`]).

mod forge_error;
pub mod github;
mod kind;
pub mod plain_git;
mod seam;

pub use forge_error::{FailureClass, ForgeError};
pub use github::access::{AccessPlan, AccessScope};
pub use github::app::check_app_private_key;
pub use github::rate::{
    Admission, RateGate, RateSnapshot, StaticToken, TokenSource, app_credential_id,
    token_credential_id,
};
pub use github::{
    Cursors, ExportMode, ExportReport, Progress, RemoteRepo, RestorePlan, RestoreReport,
};
pub use kind::{
    AppInstallation, ForgeCredential, ForgeKind, check_ca_cert, kind, validate_api_url,
};
pub use seam::{
    Credentials, Forge, ForgeEndpoint, GitRemote, MetadataRequest, ProgressFn, TargetRepo, open,
};
