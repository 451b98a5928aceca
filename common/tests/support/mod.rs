//! What the GitHub integration tests share: the forge simulator on the `acme` seed, its owner
//! token, and an endpoint that trusts the simulator's CA.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_common::forge::github::GitHubEndpoint;

/// The owner's token in seeds/acme.toml.
pub const OWNER: &str = "ghp_acmeOwner0000000000000000000000000";
/// A developer's token in seeds/acme.toml (no administration rights).
pub const DEV: &str = "ghp_acmeDev000000000000000000000000000";

pub fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/forge-sim/seeds/acme.toml")
}

/// The simulator on the `acme` seed, on a free loopback port.
pub async fn start() -> ForgeSim {
    let seed = Seed::from_file(&seed_path()).unwrap();
    ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

/// The simulator's API, trusting its CA.
pub fn endpoint(sim: &ForgeSim) -> GitHubEndpoint {
    GitHubEndpoint {
        api_url: sim.ready().api_url.clone(),
        ca_cert_pem: Some(std::fs::read_to_string(&sim.ready().ca_cert).unwrap()),
    }
}
