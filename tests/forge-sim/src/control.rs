//! The simulator's own routes under `/_sim/` (no authentication; loopback test tool):
//! - `GET /_sim/stats`: [`crate::stats::Counters`]; `POST /_sim/stats/reset` zeroes them.
//! - `GET /_sim/exchanges`: recorded REST exchanges (with `record_exchanges`).
//! - `GET /_sim/options`, `PATCH /_sim/options` (a partial [`crate::options::Options`]).
//! - `POST /_sim/repos/{owner}/{repo}/delete|block|unblock`: simulate GitHub-side events.
//! - `POST /_sim/repos/{owner}/{repo}/wiki`: save the wiki's first page as GitHub's web
//!   interface does (`Home.md`), which makes the wiki; `created` is false when it existed.
//! - `POST /_sim/tokens/{token}/expire`: make a token expire now.
//! - `POST /_sim/hooks/deliver`: no body; delivers nothing, returns past deliveries.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Sim;
use crate::error::ApiError;

pub async fn handle(sim: Arc<Sim>, req: Request) -> Response {
    match handle_inner(sim, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle_inner(sim: Arc<Sim>, req: Request) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().trim_start_matches("/_sim").to_string();
    let bytes = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let json_ok = |v: Value| Ok(axum::Json(v).into_response());
    match (method, parts.as_slice()) {
        (Method::GET, ["stats"]) => json_ok(json!(sim.stats.snapshot())),
        (Method::POST, ["stats", "reset"]) => {
            sim.stats.reset();
            json_ok(json!({"ok": true}))
        }
        (Method::GET, ["exchanges"]) => json_ok(json!(sim.stats.exchanges.lock().clone())),
        (Method::GET, ["options"]) => json_ok(json!(sim.options.read().clone())),
        (Method::PATCH, ["options"]) => {
            let patch: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::invalid_body(e.to_string()))?;
            let mut current = serde_json::to_value(sim.options.read().clone())
                .map_err(|e| ApiError::invalid_body(e.to_string()))?;
            if let (Some(c), Some(p)) = (current.as_object_mut(), patch.as_object()) {
                for (k, v) in p {
                    c.insert(k.clone(), v.clone());
                }
            }
            let new: crate::options::Options = serde_json::from_value(current)
                .map_err(|e| ApiError::invalid_body(e.to_string()))?;
            *sim.options.write() = new.clone();
            json_ok(json!(new))
        }
        (Method::POST, ["repos", owner, repo, "wiki"]) => {
            let (sim, owner, repo) = (sim.clone(), owner.to_string(), repo.to_string());
            let created = tokio::task::spawn_blocking(move || {
                crate::git_http::create_wiki(&sim, &owner, &repo)
            })
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, format!("{e:#}")))?;
            json_ok(json!({"ok": true, "created": created}))
        }
        (Method::POST, ["repos", owner, repo, action]) => {
            let mut world = sim.world.lock();
            let id = world.repo_id(owner, repo).ok_or_else(ApiError::not_found)?;
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            match *action {
                "delete" => r.deleted = true,
                "block" => r.blocked = true,
                "unblock" => r.blocked = false,
                other => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("unknown action {other:?}: delete, block or unblock"),
                    ));
                }
            }
            json_ok(json!({"ok": true, "id": id}))
        }
        (Method::POST, ["tokens", token, "expire"]) => {
            let mut world = sim.world.lock();
            let t = world
                .tokens
                .get_mut(*token)
                .ok_or_else(ApiError::not_found)?;
            t.expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
            json_ok(json!({"ok": true}))
        }
        _ => Err(ApiError::not_found()),
    }
}
