//! The gRPC services and their authentication.

pub mod admin;
mod admin_escrow;
mod admin_fleet;
mod admin_health;
mod admin_lists;
mod admin_orgs;
mod admin_storage;
mod admin_streams;
pub mod call_auth;
pub mod convert;
pub mod guard;
mod paged;
pub mod refusals;
mod restore_links;
pub mod worker;
pub mod worker_convert;

#[cfg(test)]
#[path = "id_fields_tests.rs"]
mod id_fields_tests;

#[cfg(test)]
#[path = "paging_tests.rs"]
mod paging_tests;
