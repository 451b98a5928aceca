//! The download host: where GitHub's 302s for release assets and attachments point
//! (`objects.githubusercontent.com`, `release-assets.githubusercontent.com`, S3). Its URLs are
//! pre-signed and expiring: the query carries an expiry and an HMAC-SHA256 over the object's path
//! and that expiry, made with a key only the simulator holds (drawn at start-up), so a URL
//! serves without any token until it expires, and a URL whose path, expiry or signature was
//! changed is refused. That is why clients drop `Authorization` when they follow the redirect
//! (python-github-backup does; GitHub's storage answers 400 to a request that carries both).
//!
//! Here the download host is the simulator's own host, under `/_objects/` (no login or
//! repository path starts with `_`):
//!
//! - `/_objects/release-assets/REPO_ID/ASSET_ID?expires=UNIX&signature=HEX`: the asset's bytes
//!   (`application/octet-stream`, `content-disposition: attachment`), counted in its
//!   `download_count`;
//! - `/_objects/attachments/UUID?expires=...&signature=...`: an attachment's bytes with its
//!   content type.
//!
//! A request that carries `Authorization` anyway is served: clients keep the header on a
//! redirect to the same host, and this host is the API's too, where GitHub's is not.
//! Refusals are S3's: 403 `SignatureDoesNotMatch`, 403 `AccessDenied` "Request has expired",
//! 404 `NoSuchKey`, as XML.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::Sim;
use crate::error::ApiError;

/// How long a pre-signed URL serves: GitHub's release-asset redirects carry
/// `X-Amz-Expires=300` (five minutes).
pub const TTL_SECS: u64 = 300;

/// Where the download host's paths start.
pub const PREFIX: &str = "/_objects/";

type HmacSha256 = Hmac<Sha256>;

fn mac(sim: &Sim, object: &str, expires: u64) -> Result<HmacSha256, ApiError> {
    let mut mac = HmacSha256::new_from_slice(&sim.signing_key).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("signing key: {e}"),
        )
    })?;
    mac.update(object.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    Ok(mac)
}

/// The pre-signed URL of `object` (e.g. `release-assets/REPO_ID/ASSET_ID`), serving until
/// [`TTL_SECS`] from now.
pub fn presign(sim: &Sim, object: &str) -> Result<String, ApiError> {
    presign_until(sim, object, crate::server::unix_now() + TTL_SECS)
}

/// The pre-signed URL of `object` serving until `expires` (Unix seconds). Public so that tests
/// can make one that has expired.
pub fn presign_until(sim: &Sim, object: &str, expires: u64) -> Result<String, ApiError> {
    let signature = hex::encode(mac(sim, object, expires)?.finalize().into_bytes());
    Ok(format!(
        "{}{PREFIX}{object}?expires={expires}&signature={signature}",
        sim.web_base
    ))
}

/// An S3-style refusal.
fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        Body::from(body),
    )
        .into_response()
}

fn no_such_key() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
    )
}

/// Serves one request under [`PREFIX`] (see the module documentation).
pub fn serve(sim: &Sim, req: &Request) -> Response {
    let Some(object) = req.uri().path().strip_prefix(PREFIX) else {
        return no_such_key();
    };
    let query = crate::page::query(req.uri());
    let expires = query.get("expires").and_then(|e| e.parse::<u64>().ok());
    let signature = query.get("signature").and_then(|s| hex::decode(s).ok());
    let (Some(expires), Some(signature)) = (expires, signature) else {
        return refusal(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the expires and signature parameters",
        );
    };
    let verified = match mac(sim, object, expires) {
        Ok(m) => m.verify_slice(&signature).is_ok(),
        Err(e) => return e.into_response(),
    };
    if !verified {
        return refusal(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    if crate::server::unix_now() > expires {
        return refusal(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    sim.stats.counters.lock().object_downloads += 1;
    let parts: Vec<&str> = object.split('/').collect();
    match parts.as_slice() {
        ["release-assets", repo, asset] => {
            let (Ok(repo), Ok(asset)) = (repo.parse::<u64>(), asset.parse::<u64>()) else {
                return no_such_key();
            };
            release_asset(sim, repo, asset)
        }
        ["attachments", uuid] => attachment(sim, uuid),
        _ => no_such_key(),
    }
}

fn release_asset(sim: &Sim, repo: u64, asset: u64) -> Response {
    let mut world = sim.world.lock();
    let found = world
        .repos
        .get_mut(&repo)
        .filter(|r| !r.deleted)
        .and_then(|r| {
            r.releases
                .values_mut()
                .find_map(|rel| rel.assets.get_mut(&asset))
        });
    match found {
        Some(a) => {
            a.download_count += 1;
            crate::api::releases::bytes_response(a)
        }
        None => no_such_key(),
    }
}

fn attachment(sim: &Sim, uuid: &str) -> Response {
    let world = sim.world.lock();
    let Some(a) = world
        .attachments
        .get(&uuid.to_ascii_lowercase())
        .filter(|a| world.repos.get(&a.repo).is_some_and(|r| !r.deleted))
    else {
        return no_such_key();
    };
    let mut resp = Response::new(Body::from(a.data.clone()));
    if let Ok(v) = HeaderValue::from_str(&a.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}
