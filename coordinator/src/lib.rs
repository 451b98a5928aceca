//! The coordinator: state store, queue, leases, catalog and the gRPC services.

pub mod audit;
pub mod config;
pub mod core;
pub mod discovery;
pub mod downloads;
pub mod error;
pub mod forge_tokens;
pub mod health;
pub mod http;
pub mod ids;
pub mod kv;
pub mod lease;
pub mod model;
pub mod progress;
pub mod queue;
pub mod rate_budget;
pub mod reconcile;
pub mod retention;
pub mod roles;
pub mod schedule;
pub mod server;
pub mod service;
pub mod store;
pub mod verification;
pub mod webhooks;
pub mod workers;
