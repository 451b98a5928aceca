//! Access to source forges, one component ([`ForgeAccess`], `forge_credentials.rs`): the
//! credentials requests carry and the installation tokens minted for them
//! (`installation_tokens.rs` the cache), the fleet-wide rate budget per credential
//! (`rate_budgets.rs` the pure rules, `forge_credentials.rs` the glue to leases), and
//! discovering an organisation's repositories (`discovery_plan.rs` pure, `org_discovery.rs` its
//! shell).

pub mod discovery_plan;
pub mod forge_credentials;
pub mod installation_tokens;
pub mod org_discovery;
pub mod rate_budgets;

pub use forge_credentials::ForgeAccess;
