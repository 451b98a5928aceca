//! (being written)
use crate::Sim;
use crate::seed::RepoSeed;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn handle(_sim: Arc<Sim>, _req: Request) -> Response {
    crate::error::ApiError::not_found().into_response()
}

pub fn seed_repo(_sim: &Sim, _repo: u64, _seed: &RepoSeed) -> anyhow::Result<()> {
    Ok(())
}
