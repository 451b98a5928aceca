//! (being written)

use axum::Router;

use crate::Sim;
use crate::seed::RepoSeed;

pub fn routes() -> Router {
    Router::new()
}

pub fn seed_repo(_sim: &Sim, _repo: u64, _seed: &RepoSeed) -> anyhow::Result<()> {
    Ok(())
}
