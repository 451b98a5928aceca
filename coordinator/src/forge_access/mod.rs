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

/// Where the forge delivers push webhooks on the HTTP port (a hook's URL is this under
/// `http_public_url`, with `?repo=<repo-id>`). Registered hooks carry it, so it never changes.
pub const PUSH_WEBHOOK_PATH: &str = "/webhooks/github";
/// The request header naming a webhook delivery's event (`push`, `ping`).
pub const WEBHOOK_EVENT_HEADER: &str = "x-github-event";
/// The request header carrying a webhook delivery's id (logged).
pub const WEBHOOK_DELIVERY_HEADER: &str = "x-github-delivery";
