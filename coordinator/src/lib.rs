//! The coordinator: state store, queue, leases, catalog and the gRPC services.

pub mod admin_roles;
pub mod audit;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod config_check;
pub mod config_env;
pub mod coordinator;
pub mod downloads;
pub mod error;
pub mod forge_access;
pub mod health;
pub mod http;
pub mod ids;
pub mod kv;
pub mod maintenance;
pub mod metric_families;
pub mod model;
pub mod readiness;
pub mod schedule;
pub mod secrets;
pub mod server;
pub mod service;
pub mod store;
pub mod tasks;
pub mod verification;
