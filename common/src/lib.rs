//! Pieces shared by the coordinator, the workers and the CLI.

pub mod crypto;
pub mod domain;
pub mod forge;
pub mod grpc;
pub mod leader_channel;
pub mod links;
pub mod manifest;
pub mod names;
pub mod redact;
pub mod repo;
pub mod secret;
pub mod storage;
pub mod telemetry;
pub mod timing;
pub mod tls;
pub mod units;
pub mod worker_metrics;
