//! Sources ("forges"): the providers repovault backs up. Today: GitHub and GitHub
//! Enterprise ([`github`]).

mod forge_error;
pub mod github;

pub use forge_error::{FailureClass, ForgeError};
