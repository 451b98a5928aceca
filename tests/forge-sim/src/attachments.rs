//! Attachments: the files issue and pull request bodies link to, uploaded through GitHub's web
//! interface (GitHub has no API to upload or list them). GitHub links them in two forms, both
//! on its web host:
//!
//! - `https://github.com/user-attachments/assets/UUID` (since 2024);
//! - `https://github.com/OWNER/REPO/assets/ID/UUID` (before; `ID` is the uploader's account id).
//!
//! Here the web host is the simulator's own (`https://127.0.0.1:PORT/user-attachments/assets/UUID`,
//! as a GitHub Enterprise server serves them on its host). An attachment belongs to the
//! repository it was uploaded in, and GitHub's access rules follow it: one of a public
//! repository is served to anyone, one of a private repository only to a caller that may read
//! that repository (a token in `Authorization`), and to anyone else it does not exist (404).
//! A request that may have it is answered, as GitHub answers it, with a 302 to a pre-signed URL
//! of the download host ([`crate::objects`]), which serves the bytes with their content type.
//!
//! Attachments come from the seed (`[[orgs.repos.attachments]]`, GitHub's URL on
//! `https://github.com/`); links to them in the seed's bodies are rewritten to the simulator's
//! host when the seed is loaded.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Sim;
use crate::auth::{self, Need};
use crate::seed::{AttachmentSeed, RepoSeed, Seed};
use crate::state::{Attachment, World};

/// GitHub's web host, as the seed writes attachment links.
const GITHUB: &str = "https://github.com";

/// An attachment's path on the web host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentPath {
    /// `/user-attachments/assets/UUID`.
    User { uuid: String },
    /// `/OWNER/REPO/assets/ID/UUID`.
    Repo {
        owner: String,
        repo: String,
        id: u64,
        uuid: String,
    },
}

impl AttachmentPath {
    pub fn uuid(&self) -> &str {
        match self {
            AttachmentPath::User { uuid } | AttachmentPath::Repo { uuid, .. } => uuid,
        }
    }
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Parses a request path of either form (see the module documentation).
pub fn parse_path(path: &str) -> Option<AttachmentPath> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segments.as_slice() {
        ["user-attachments", "assets", uuid] if is_uuid(uuid) => Some(AttachmentPath::User {
            uuid: uuid.to_ascii_lowercase(),
        }),
        [owner, repo, "assets", id, uuid] if is_uuid(uuid) && !owner.is_empty() => {
            Some(AttachmentPath::Repo {
                owner: owner.to_string(),
                repo: repo.to_string(),
                id: id.parse().ok()?,
                uuid: uuid.to_ascii_lowercase(),
            })
        }
        _ => None,
    }
}

/// Does `owner/name` name repository `id` (by its current name, or an old one)?
fn names_repo(world: &World, owner: &str, name: &str, id: u64) -> bool {
    world.repo_id(owner, name) == Some(id)
        || world
            .renamed
            .get(&format!("{owner}/{name}").to_ascii_lowercase())
            == Some(&id)
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// Answers a request for an attachment (see the module documentation).
pub fn handle(sim: &Sim, peer: SocketAddr, req: &Request) -> Response {
    let not_found = || plain(StatusCode::NOT_FOUND, "Not Found");
    let Some(path) = parse_path(req.uri().path()) else {
        return not_found();
    };
    let uuid = path.uuid().to_string();
    {
        let world = sim.world.lock();
        let Some(a) = world.attachments.get(&uuid) else {
            return not_found();
        };
        let same_form = match &path {
            AttachmentPath::User { .. } => a.repo_asset_id.is_none(),
            AttachmentPath::Repo {
                owner, repo, id, ..
            } => a.repo_asset_id == Some(*id) && names_repo(&world, owner, repo, a.repo),
        };
        let Some(repo) = world.repos.get(&a.repo).filter(|r| !r.deleted && same_form) else {
            return not_found();
        };
        if repo.blocked {
            return plain(
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                "Repository access blocked",
            );
        }
        // The web host answers every "may not" (no token, a bad one, too little access) as it
        // answers a file that does not exist.
        let Ok(caller) = auth::authenticate(&world, req.headers(), &peer.ip().to_string()) else {
            return not_found();
        };
        if auth::check(&world, &caller, repo, Need::read("metadata")).is_err() {
            return not_found();
        }
    }
    match crate::objects::presign(sim, &format!("attachments/{uuid}")) {
        Ok(url) => {
            let mut resp = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// The seeded attachment links of every repository: (GitHub's URL as the seed writes it, the
/// same on the simulator's host `web_base`).
pub fn seeded_links(seed: &Seed, web_base: &str) -> Vec<(String, String)> {
    seed.orgs
        .iter()
        .flat_map(|o| o.repos.iter())
        .flat_map(|r| r.attachments.iter())
        .filter_map(|a| {
            let path = a.url.strip_prefix(GITHUB)?;
            Some((a.url.clone(), format!("{web_base}{path}")))
        })
        .collect()
}

/// Every body text of a repository seed, mutably: issues, pull requests, their comments,
/// reviews and review comments, releases.
fn bodies_mut(r: &mut RepoSeed) -> Vec<&mut String> {
    let mut out: Vec<&mut String> = Vec::new();
    for i in &mut r.issues {
        out.extend(i.body.as_mut());
        out.extend(i.comments.iter_mut().map(|c| &mut c.body));
    }
    for p in &mut r.pulls {
        out.extend(p.body.as_mut());
        out.extend(p.comments.iter_mut().map(|c| &mut c.body));
        for review in &mut p.reviews {
            out.extend(review.body.as_mut());
            out.extend(review.comments.iter_mut().map(|c| &mut c.body));
        }
    }
    for rel in &mut r.releases {
        out.extend(rel.body.as_mut());
    }
    out
}

/// `r` with the seed's attachment links in its bodies on the simulator's host (`links`: from
/// [`seeded_links`]).
pub fn on_sim_host(r: &RepoSeed, links: &[(String, String)]) -> RepoSeed {
    let mut r = r.clone();
    for body in bodies_mut(&mut r) {
        for (github, sim) in links {
            if body.contains(github.as_str()) {
                *body = body.replace(github.as_str(), sim);
            }
        }
    }
    r
}

/// How many distinct seeded attachments the bodies of `org/r` link to: `user-attachments`
/// links wherever the file was uploaded, `/OWNER/REPO/assets/` links of this repository only.
pub fn linked_from(seed: &Seed, org: &str, r: &RepoSeed) -> u64 {
    let mut copy = r.clone();
    let texts: Vec<String> = bodies_mut(&mut copy)
        .into_iter()
        .map(|b| b.as_str().to_owned())
        .collect();
    let mut linked = BTreeSet::new();
    for a in seed
        .orgs
        .iter()
        .flat_map(|o| o.repos.iter())
        .flat_map(|uploaded_in| uploaded_in.attachments.iter())
    {
        let counts = match a.url.strip_prefix(GITHUB).and_then(parse_path) {
            Some(AttachmentPath::User { .. }) => true,
            Some(AttachmentPath::Repo { owner, repo, .. }) => {
                owner.eq_ignore_ascii_case(org) && repo.eq_ignore_ascii_case(&r.name)
            }
            None => false,
        };
        if counts && texts.iter().any(|t| t.contains(&a.url)) {
            linked.insert(a.url.clone());
        }
    }
    linked.len() as u64
}

/// The bytes a seeded attachment holds: its `content`, or `size` pseudo-random bytes that
/// depend only on its UUID (so a test can compute what a backup must hold).
pub fn content(a: &AttachmentSeed) -> anyhow::Result<bytes::Bytes> {
    Ok(match (&a.content, a.size) {
        (Some(text), _) => bytes::Bytes::from(text.clone().into_bytes()),
        (None, Some(size)) => {
            let path = a
                .url
                .strip_prefix(GITHUB)
                .and_then(parse_path)
                .with_context(|| format!("attachment {:?}: not a GitHub attachment URL", a.url))?;
            crate::api::releases::pseudo_random_bytes(path.uuid(), size)
        }
        (None, None) => bail!("attachment {:?}: give content or size", a.url),
    })
}

/// Registers the attachments uploaded in repository `repo` (`owner/r.name`).
pub fn seed_repo(sim: &Sim, repo: u64, owner: &str, r: &RepoSeed) -> anyhow::Result<()> {
    for a in &r.attachments {
        let path = a
            .url
            .strip_prefix(GITHUB)
            .and_then(parse_path)
            .with_context(|| {
                format!(
                    "attachment {:?}: not {GITHUB}/user-attachments/assets/UUID nor {GITHUB}/OWNER/REPO/assets/ID/UUID",
                    a.url
                )
            })?;
        let repo_asset_id = match &path {
            AttachmentPath::User { .. } => None,
            AttachmentPath::Repo {
                owner: o,
                repo: n,
                id,
                ..
            } => {
                if !o.eq_ignore_ascii_case(owner) || !n.eq_ignore_ascii_case(&r.name) {
                    bail!(
                        "attachment {:?}: uploaded in {owner}/{}, so its URL names that repository",
                        a.url,
                        r.name
                    );
                }
                Some(*id)
            }
        };
        let data = content(a)?;
        let uuid = path.uuid().to_string();
        let mut world = sim.world.lock();
        if world.attachments.contains_key(&uuid) {
            bail!("attachment {uuid} is seeded twice");
        }
        world.attachments.insert(
            uuid.clone(),
            Attachment {
                uuid,
                repo,
                repo_asset_id,
                content_type: a
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
                data,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_both_forms() {
        let uuid = "0b6ad1d4-2f3e-4c5d-8e9f-a0b1c2d3e4f5";
        assert_eq!(
            parse_path(&format!("/user-attachments/assets/{uuid}")),
            Some(AttachmentPath::User { uuid: uuid.into() })
        );
        assert_eq!(
            parse_path(&format!(
                "/acme/docs/assets/1000001/{}",
                uuid.to_uppercase()
            )),
            Some(AttachmentPath::Repo {
                owner: "acme".into(),
                repo: "docs".into(),
                id: 1000001,
                uuid: uuid.into()
            })
        );
        for not in [
            "/user-attachments/assets/not-a-uuid".to_string(),
            format!("/user-attachments/files/{uuid}"),
            format!("/acme/docs/assets/x1/{uuid}"),
            format!("/acme/docs/issues/1/{uuid}"),
            format!("/acme/docs.git/assets/1/{uuid}/x"),
        ] {
            assert_eq!(parse_path(&not), None, "{not}");
        }
    }
}
