//! The REST routes, one module per area of GitHub's API. Paths are GitHub's OpenAPI paths
//! verbatim (axum 0.8 spells parameters `{name}` as OpenAPI does), so the route an exchange
//! matched is the key of its schema.

pub mod access;
pub mod apps;
pub mod commits;
pub mod hooks;
pub mod issues;
pub mod pulls;
pub mod releases;
pub mod repos;
pub mod settings;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::Sim;
use crate::auth::{self, Caller, Need};
use crate::error::ApiError;
use crate::state::{Repo, World};

/// Every REST route. Unknown paths answer GitHub's 404 body.
pub fn router() -> Router {
    Router::new()
        .merge(repos::routes())
        .merge(apps::routes())
        .merge(commits::routes())
        .merge(issues::routes())
        .merge(pulls::routes())
        .merge(releases::routes())
        .merge(settings::routes())
        .merge(hooks::routes())
        .merge(access::routes())
        .route_layer(axum::middleware::from_fn(crate::server::tag_route))
        .fallback(|| async { ApiError::not_found() })
}

/// What every handler gets: the simulator, the authenticated caller and the request URI (for
/// pagination and query parameters). The pipeline in [`crate::server`] puts the first two in the
/// request's extensions.
pub struct Ctx {
    pub sim: Arc<Sim>,
    pub caller: Caller,
    pub uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Ctx, ApiError> {
        let sim = parts.extensions.get::<Arc<Sim>>().cloned().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "no simulator in request",
            )
        })?;
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::requires_auth)?;
        Ok(Ctx {
            sim,
            caller,
            uri: parts.uri.clone(),
        })
    }
}

impl Ctx {
    /// The query parameters.
    pub fn query(&self) -> std::collections::BTreeMap<String, String> {
        crate::page::query(&self.uri)
    }

    /// Resolves `owner/name` and checks `need`: a deleted repository is 404, a blocked one 451,
    /// and then [`auth::check`]'s answers. Returns the repository id.
    pub fn repo_id(
        &self,
        world: &World,
        owner: &str,
        name: &str,
        need: Need,
    ) -> Result<u64, ApiError> {
        let id = world.repo_id(owner, name).ok_or_else(ApiError::not_found)?;
        let repo = &world.repos[&id];
        if repo.blocked {
            return Err(ApiError::blocked());
        }
        auth::check(world, &self.caller, repo, need)?;
        if need.write && repo.archived {
            return Err(ApiError::forbidden(
                "Repository was archived so is read-only.",
            ));
        }
        Ok(id)
    }

    /// Runs `f` on the repository under the world lock, after [`Ctx::repo_id`]'s checks.
    pub fn with_repo<T>(
        &self,
        owner: &str,
        name: &str,
        need: Need,
        f: impl FnOnce(&Sim, &World, &Repo) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let world = self.sim.world.lock();
        let id = self.repo_id(&world, owner, name, need)?;
        f(&self.sim, &world, &world.repos[&id])
    }

    /// Like [`Ctx::with_repo`] for a change: `f` gets the whole world (ids come from it) and the
    /// repository's id; the repository's `version` and `updated_at` are bumped after `f` succeeds.
    pub fn with_repo_mut<T>(
        &self,
        owner: &str,
        name: &str,
        need: Need,
        f: impl FnOnce(&Sim, &mut World, u64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut world = self.sim.world.lock();
        let id = self.repo_id(&world, owner, name, need)?;
        let out = f(&self.sim, &mut world, id)?;
        if let Some(r) = world.repos.get_mut(&id) {
            r.version += 1;
            r.updated_at = chrono::Utc::now();
        }
        Ok(out)
    }

    /// The login a write is attributed to (the user, or the app's bot).
    pub fn actor(&self, world: &World) -> Result<String, ApiError> {
        self.caller.actor(world).ok_or_else(ApiError::requires_auth)
    }
}

/// Parses a JSON request body as GitHub does: malformed JSON is 400 "Problems parsing JSON"; a
/// body of the wrong shape (missing or mistyped fields) is 422; unknown fields are ignored. An
/// empty body reads as `{}`.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|_| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
    serde_json::from_value(value).map_err(|e| ApiError::invalid_body(e.to_string()))
}
