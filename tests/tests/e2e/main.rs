//! End-to-end tests: real git servers, real processes, the real coordinator and workers.
#![allow(clippy::unwrap_used)]

mod autoscale;
mod backup_restore;
mod bad_input;
mod cli;
mod cli_json_schemas;
mod cli_progress;
mod cli_robustness;
mod download_zip;
mod escrow;
mod escrow_agreements;
mod etcd_store;
mod fleet_scaling;
mod github_backup;
mod github_gix_https;
mod github_org;
mod github_restore;
mod health;
mod immutable_escrow;
mod least_privilege_s3;
mod list_paging;
mod metrics_lint;
mod multi_process;
mod object_storage;
mod observability;
mod placement;
mod pool_tokens;
mod rate_budget;
mod restart;
mod restic_golden;
mod retention;
mod roles;
mod schedules;
mod tls;
mod verification;
mod worker_metrics;
