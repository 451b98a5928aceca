//! The gRPC services and their authentication.

pub mod admin;
pub mod call_auth;
pub mod convert;
pub mod guard;
pub mod refusals;
pub mod worker;
