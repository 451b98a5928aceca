//! The Git LFS API of a repository, at `https://HOST/OWNER/REPO.git/info/lfs/` (the URL git-lfs
//! derives from the clone URL):
//!
//! - `POST objects/batch` (`application/vnd.git-lfs+json`): `download` (needs `contents: read`)
//!   and `upload` (needs `contents: write`) with the `basic` transfer. Each object gets
//!   `actions.download`/`actions.upload` (`href` `https://HOST/OWNER/REPO.git/info/lfs/objects/OID`,
//!   the request's `Authorization` as `header`, `expires_in`); a missing object on download gets
//!   `error: {code: 404, message: "Object does not exist"}`; an object the server already has
//!   gets no upload action.
//! - `GET objects/OID` serves an object's bytes; `PUT objects/OID` stores them after checking
//!   that their SHA-256 is `OID` (422 otherwise); `POST objects/verify` confirms an upload.
//! - `GET locks` and `POST locks/verify` answer "no locks", so that `git lfs push` does not warn.
//!
//! Credentials and refusals are those of git smart HTTP ([`crate::git_http::resolve`]), with
//! LFS's JSON error bodies and `LFS-Authenticate` on 401. Objects live in `Repo::lfs_dir`
//! (`OID[0..2]/OID[2..4]/OID`) and are listed in `Repo::lfs` (oid → size).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::Sim;
use crate::auth::Need;
use crate::git_http::{self, Access, Refusal};
use crate::gitrepo;
use crate::seed::RepoSeed;

pub const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// How long batch actions say their hrefs stay valid.
const EXPIRES_IN: i64 = 3600;

fn lfs_json(status: StatusCode, v: Value) -> Response {
    (status, [(header::CONTENT_TYPE, MEDIA_TYPE)], v.to_string()).into_response()
}

fn lfs_error(status: StatusCode, message: &str) -> Response {
    lfs_json(
        status,
        json!({
            "message": message,
            "documentation_url": "https://docs.github.com/repositories/working-with-files/managing-large-files",
        }),
    )
}

fn refused(r: Refusal) -> Response {
    let unauthorized = matches!(r, Refusal::Unauthorized(_));
    let mut resp = lfs_error(r.status(), &r.message());
    if unauthorized {
        let v = HeaderValue::from_static("Basic realm=\"GitHub\"");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, v.clone());
        resp.headers_mut().insert("lfs-authenticate", v);
    }
    resp
}

/// A SHA-256 in lowercase hex.
pub fn valid_oid(oid: &str) -> bool {
    oid.len() == 64 && oid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where an object's bytes live.
pub fn object_path(lfs_dir: &Path, oid: &str) -> PathBuf {
    lfs_dir.join(&oid[0..2]).join(&oid[2..4]).join(oid)
}

/// Answers one request under `/OWNER/REPO.git/info/lfs/`.
pub async fn handle(sim: Arc<Sim>, req: Request) -> Response {
    let decoded = String::from_utf8_lossy(&git_http::percent_decode(req.uri().path())).into_owned();
    let Some(p) = git_http::parse_path(&decoded) else {
        return lfs_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(sub) = p.rest.strip_prefix("/info/lfs") else {
        return lfs_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sub = sub.to_string();
    let method = req.method().clone();
    let need = match (&method, sub.as_str()) {
        (&Method::GET, _) => Need::read("contents"),
        (&Method::POST, "/objects/batch") => {
            // The operation is in the body: read it first.
            return batch(sim, p, req).await;
        }
        _ => Need::write("contents"),
    };
    let access = match git_http::resolve(&sim, req.headers(), "lfs", &p.owner, &p.name, false, need)
    {
        Ok(a) => a,
        Err(r) => return refused(r),
    };
    match (&method, sub.as_str()) {
        (&Method::GET, "/locks") => lfs_json(StatusCode::OK, json!({"locks": []})),
        (&Method::POST, "/locks/verify") => lfs_json(
            StatusCode::OK,
            json!({"ours": [], "theirs": [], "next_cursor": ""}),
        ),
        (&Method::POST, "/objects/verify") => verify(&sim, &access, req).await,
        (&Method::GET, s) if s.starts_with("/objects/") => {
            download(&sim, &access, &s["/objects/".len()..]).await
        }
        (&Method::PUT, s) if s.starts_with("/objects/") => {
            let oid = s["/objects/".len()..].to_string();
            upload(&sim, &access, &oid, req).await
        }
        _ => lfs_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Deserialize)]
struct BatchRequest {
    operation: String,
    #[serde(default)]
    transfers: Vec<String>,
    #[serde(default)]
    objects: Vec<ObjectSpec>,
    #[serde(default)]
    hash_algo: Option<String>,
}

#[derive(Deserialize)]
struct ObjectSpec {
    oid: String,
    size: i64,
}

async fn batch(sim: Arc<Sim>, p: git_http::GitPath, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return lfs_error(StatusCode::BAD_REQUEST, "Request body too large");
    };
    let Ok(breq) = serde_json::from_slice::<BatchRequest>(&bytes) else {
        return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid batch request");
    };
    let need = match breq.operation.as_str() {
        "download" => Need::read("contents"),
        "upload" => Need::write("contents"),
        _ => return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid operation"),
    };
    if !breq.transfers.is_empty() && !breq.transfers.iter().any(|t| t == "basic") {
        return lfs_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Only the basic transfer adapter is supported",
        );
    }
    if breq.hash_algo.as_deref().is_some_and(|h| h != "sha256") {
        return lfs_error(StatusCode::CONFLICT, "Unsupported hash algorithm");
    }
    let access =
        match git_http::resolve(&sim, &parts.headers, "lfs", &p.owner, &p.name, false, need) {
            Ok(a) => a,
            Err(r) => return refused(r),
        };
    let stored = sim
        .world
        .lock()
        .repos
        .get(&access.repo_id)
        .map(|r| r.lfs.clone())
        .unwrap_or_default();
    let base = format!(
        "{}/{}/{}.git/info/lfs/objects",
        sim.web_base, access.owner, access.name
    );
    let expires_at =
        crate::render::ts(&(chrono::Utc::now() + chrono::Duration::seconds(EXPIRES_IN)));
    let action = |href: String| {
        let mut a = json!({"href": href, "expires_in": EXPIRES_IN, "expires_at": expires_at});
        if let Some(auth) = &access.authorization {
            a["header"] = json!({"Authorization": auth});
        }
        a
    };
    let upload = breq.operation == "upload";
    let objects: Vec<Value> = breq
        .objects
        .iter()
        .map(|o| {
            if !valid_oid(&o.oid) || o.size < 0 {
                return json!({"oid": o.oid, "size": o.size,
                    "error": {"code": 422, "message": "Invalid object"}});
            }
            let have = stored.get(&o.oid).copied();
            match (upload, have) {
                (false, Some(size)) => json!({
                    "oid": o.oid, "size": size, "authenticated": true,
                    "actions": {"download": action(format!("{base}/{}", o.oid))},
                }),
                (false, None) => json!({
                    "oid": o.oid, "size": o.size,
                    "error": {"code": 404, "message": "Object does not exist"},
                }),
                (true, Some(size)) if size == o.size as u64 => {
                    json!({"oid": o.oid, "size": size, "authenticated": true})
                }
                (true, _) => json!({
                    "oid": o.oid, "size": o.size, "authenticated": true,
                    "actions": {
                        "upload": action(format!("{base}/{}", o.oid)),
                        "verify": action(format!("{base}/verify")),
                    },
                }),
            }
        })
        .collect();
    lfs_json(
        StatusCode::OK,
        json!({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}),
    )
}

async fn download(sim: &Sim, access: &Access, oid: &str) -> Response {
    let not_found = || lfs_error(StatusCode::NOT_FOUND, "Object does not exist");
    if !valid_oid(oid) {
        return not_found();
    }
    let (known, lfs_dir) = {
        let world = sim.world.lock();
        match world.repos.get(&access.repo_id) {
            Some(r) => (r.lfs.contains_key(oid), r.lfs_dir.clone()),
            None => return not_found(),
        }
    };
    if !known {
        return not_found();
    }
    let path = object_path(&lfs_dir, oid);
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return not_found();
    };
    let len = file.metadata().await.map(|m| m.len()).ok();
    let stream = futures::stream::unfold(Some(file), |f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len
        && let Ok(v) = HeaderValue::from_str(&len.to_string())
    {
        h.insert(header::CONTENT_LENGTH, v);
    }
    resp
}

async fn upload(sim: &Sim, access: &Access, oid: &str, req: Request) -> Response {
    if !valid_oid(oid) {
        return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid object id");
    }
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let Some(lfs_dir) = sim
        .world
        .lock()
        .repos
        .get(&access.repo_id)
        .map(|r| r.lfs_dir.clone())
    else {
        return lfs_error(StatusCode::NOT_FOUND, "Repository not found.");
    };
    match receive_object(&lfs_dir, oid, declared, req.into_body()).await {
        Ok(Ok(size)) => {
            let mut world = sim.world.lock();
            if let Some(r) = world.repos.get_mut(&access.repo_id) {
                r.lfs.insert(oid.to_string(), size);
                r.version += 1;
            }
            StatusCode::OK.into_response()
        }
        Ok(Err(msg)) => lfs_error(StatusCode::UNPROCESSABLE_ENTITY, &msg),
        Err(e) => {
            tracing::warn!("storing LFS object {oid}: {e:#}");
            lfs_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Could not store the object",
            )
        }
    }
}

/// Streams `body` into a temporary file while hashing it; keeps it as the object `oid` when the
/// hash (and the declared size) match. The inner error is the client's fault (422).
async fn receive_object(
    lfs_dir: &Path,
    oid: &str,
    declared: Option<u64>,
    body: Body,
) -> anyhow::Result<Result<u64, String>> {
    let tmp_dir = lfs_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir).await?;
    let tmp = tmp_dir.join(format!("{oid}.{}", rand::random::<u64>()));
    let mut file = tokio::fs::File::create(&tmp).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                hasher.update(&c);
                size += c.len() as u64;
                if let Err(e) = file.write_all(&c).await {
                    failure = Some(anyhow::Error::from(e));
                    break;
                }
            }
            Err(e) => {
                failure = Some(anyhow::anyhow!("reading the body: {e}"));
                break;
            }
        }
    }
    if failure.is_none()
        && let Err(e) = file.flush().await
    {
        failure = Some(e.into());
    }
    drop(file);
    if let Some(e) = failure {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let actual = hex::encode(hasher.finalize());
    let verdict = if actual != oid {
        Err(format!(
            "Object digest {actual} does not match the oid {oid}"
        ))
    } else if declared.is_some_and(|d| d != size) {
        Err(format!(
            "Object size {size} does not match the declared size"
        ))
    } else {
        Ok(size)
    };
    if verdict.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Ok(verdict);
    }
    let dest = object_path(lfs_dir, oid);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::rename(&tmp, &dest).await?;
    Ok(verdict)
}

async fn verify(sim: &Sim, access: &Access, req: Request) -> Response {
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
        return lfs_error(StatusCode::BAD_REQUEST, "Request body too large");
    };
    let Ok(spec) = serde_json::from_slice::<ObjectSpec>(&bytes) else {
        return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid verify request");
    };
    let have = sim
        .world
        .lock()
        .repos
        .get(&access.repo_id)
        .and_then(|r| r.lfs.get(&spec.oid).copied());
    match have {
        Some(size) if size as i64 == spec.size => lfs_json(StatusCode::OK, json!({})),
        Some(_) => lfs_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Object size does not match",
        ),
        None => lfs_error(StatusCode::NOT_FOUND, "Object does not exist"),
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding.

/// The pointer file git keeps for an LFS object.
pub fn pointer(oid: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n")
}

/// Stores `bytes` as an LFS object of the repository (synchronously; for seeds). Returns the oid.
pub fn store(sim: &Sim, repo: u64, bytes: &[u8]) -> anyhow::Result<String> {
    let oid = hex::encode(Sha256::digest(bytes));
    let lfs_dir = sim
        .world
        .lock()
        .repos
        .get(&repo)
        .map(|r| r.lfs_dir.clone())
        .context("no such repository")?;
    let dest = object_path(&lfs_dir, &oid);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
    let mut world = sim.world.lock();
    if let Some(r) = world.repos.get_mut(&repo) {
        r.lfs.insert(oid.clone(), bytes.len() as u64);
    }
    Ok(oid)
}

/// Stores the seed's `lfs` files as LFS objects and commits their pointers, with a
/// `.gitattributes` line `PATH filter=lfs diff=lfs merge=lfs -text` each, on the default branch
/// (after the seed's commits, if any) through a scratch clone.
pub fn seed_repo(sim: &Sim, repo: u64, seed: &RepoSeed) -> anyhow::Result<()> {
    if seed.lfs.is_empty() {
        return Ok(());
    }
    let (git_dir, branch) = {
        let world = sim.world.lock();
        let r = world.repos.get(&repo).context("no such repository")?;
        (r.git_dir.clone(), r.default_branch.clone())
    };
    let mut attrs = gitrepo::run(
        &git_dir,
        &["show", &format!("refs/heads/{branch}:.gitattributes")],
    )
    .unwrap_or_default();
    let mut files = std::collections::BTreeMap::new();
    for (path, content) in &seed.lfs {
        if path.contains("..") || path.starts_with('/') || path.contains(char::is_whitespace) {
            bail!("LFS file {path:?}: a relative path without spaces is needed");
        }
        let oid = store(sim, repo, content.as_bytes())?;
        files.insert(path.clone(), Some(pointer(&oid, content.len() as u64)));
        let line = format!("{path} filter=lfs diff=lfs merge=lfs -text");
        if !attrs.lines().any(|l| l == line) {
            if !attrs.is_empty() && !attrs.ends_with('\n') {
                attrs.push('\n');
            }
            attrs.push_str(&line);
            attrs.push('\n');
        }
    }
    files.insert(".gitattributes".to_string(), Some(attrs));
    crate::seeding::commit_files(&git_dir, &branch, files, "Add files through Git LFS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_and_pointers() {
        assert!(valid_oid(&"a".repeat(64)));
        assert!(!valid_oid(&"A".repeat(64)));
        assert!(!valid_oid("abc"));
        assert_eq!(
            pointer("ab", 3),
            "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 3\n"
        );
        assert_eq!(
            object_path(Path::new("/x"), &"ab12".repeat(16)),
            Path::new("/x/ab/12").join("ab12".repeat(16))
        );
    }
}
