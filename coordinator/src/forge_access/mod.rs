//! Access to source forges: discovering an organisation's repositories (`discovery_plan.rs`
//! pure, `org_discovery.rs` its shell), installation tokens (`installation_tokens.rs`), and the
//! fleet-wide rate budget per credential (`rate_budgets.rs` pure, `rate_permits.rs` its shell).

pub mod discovery_plan;
pub mod installation_tokens;
pub mod org_discovery;
pub mod rate_budgets;
pub mod rate_permits;
