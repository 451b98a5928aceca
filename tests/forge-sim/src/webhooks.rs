//! Webhook deliveries as GitHub's Hookshot sends them: a POST of the event's JSON (or, for hooks
//! with `content_type = "form"`, `payload=<json>` form-encoded) with `X-GitHub-Event`,
//! `X-GitHub-Delivery`, `X-GitHub-Hook-ID`, `X-GitHub-Hook-Installation-Target-Type`/`-ID`,
//! `User-Agent: GitHub-Hookshot/sim` and, when the hook has a secret,
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//!
//! Deliveries go out in the background with a 10 s timeout; a receiver that fails or is not there
//! never affects what caused the event. Each is counted in `stats.counters.webhook_deliveries`
//! and, for repository and organisation hooks, recorded in `Hook::deliveries` as
//! `(event, HTTP status or 0 when the connection failed)`. `https://` receivers must present a
//! certificate from a public CA (none is trusted here, so they fail) unless the hook has
//! `insecure_ssl = "1"`.
//!
//! What the rest of the simulator calls:
//!
//! ```ignore
//! /// Where one delivery goes: a repository's hook, an organisation's hook or an app's webhook.
//! pub struct Target { pub owner: HookOwner, pub hook_id: u64, pub url: String,
//!     pub secret: Option<String>, pub content_type: String, pub insecure_ssl: bool,
//!     pub installation: Option<u64> }
//! pub enum HookOwner { Repo(u64), Org(String), App(u64) }
//! impl Target {
//!     pub fn repo_hook(repo_id: u64, hook: &Hook) -> Target;
//!     pub fn org_hook(org: &str, hook: &Hook) -> Target;
//! }
//! /// Sends one event now (e.g. `ping` from `POST .../hooks/{id}/pings`, whatever the hook's
//! /// `events` and `active`), records and counts it; returns the receiver's status, 0 when the
//! /// connection failed. An app target adds `installation` to the payload.
//! pub async fn deliver(sim: &Sim, target: &Target, event: &str, payload: &Value) -> u16;
//! /// The active targets subscribed to `event` (or `*`) for a repository: its hooks, its
//! /// organisation's hooks, and the webhooks of apps with an installation covering it.
//! pub fn targets(world: &World, repo: &Repo, event: &str) -> Vec<Target>;
//! /// Delivers `payload` as `event` to every target of the repository, in the background.
//! pub fn emit(sim: &Arc<Sim>, repo_id: u64, event: &str, payload: Value);
//! /// After a push (git_http): one `push` event per changed branch or tag, in the background.
//! pub fn on_push(sim: &Arc<Sim>, repo_id: u64, pusher: &Caller,
//!     before: Vec<(String, String)>, after: Vec<(String, String)>);
//! ```
//!
//! A ping, for example:
//! `webhooks::deliver(&sim, &Target::repo_hook(repo_id, &hook), "ping", &json!({"zen": ..,
//! "hook_id": hook.id, "hook": .., "repository": .., "sender": ..})).await`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::Sim;
use crate::auth::Caller;
use crate::gitrepo;
use crate::render;
use crate::state::{Hook, Repo, World};

/// 40 zeros: the `before` of a created ref and the `after` of a deleted one.
pub const ZERO: &str = "0000000000000000000000000000000000000000";

/// Whose webhook a [`Target`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOwner {
    /// A repository's hook (repository id).
    Repo(u64),
    /// An organisation's hook (login).
    Org(String),
    /// A GitHub App's webhook (app id).
    App(u64),
}

/// Where one delivery goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub owner: HookOwner,
    /// `X-GitHub-Hook-ID` (the app's id for an app's webhook).
    pub hook_id: u64,
    pub url: String,
    pub secret: Option<String>,
    /// `json` or `form`.
    pub content_type: String,
    /// Accept any certificate from an `https://` receiver (`insecure_ssl = "1"`).
    pub insecure_ssl: bool,
    /// For an app's webhook: the installation the event concerns (added to the payload).
    pub installation: Option<u64>,
}

impl Target {
    pub fn repo_hook(repo_id: u64, hook: &Hook) -> Target {
        Target::of_hook(HookOwner::Repo(repo_id), hook)
    }

    pub fn org_hook(org: &str, hook: &Hook) -> Target {
        Target::of_hook(HookOwner::Org(org.to_string()), hook)
    }

    fn of_hook(owner: HookOwner, hook: &Hook) -> Target {
        Target {
            owner,
            hook_id: hook.id,
            url: hook.url.clone(),
            secret: hook.secret.clone().filter(|s| !s.is_empty()),
            content_type: hook.content_type.clone(),
            insecure_ssl: hook.insecure_ssl == "1",
            installation: None,
        }
    }
}

fn subscribed(events: &[String], event: &str) -> bool {
    events.iter().any(|e| e == event || e == "*")
}

/// The active targets subscribed to `event` for `repo` (see the module documentation).
pub fn targets(world: &World, repo: &Repo, event: &str) -> Vec<Target> {
    let mut out: Vec<Target> = repo
        .hooks
        .values()
        .filter(|h| h.active && subscribed(&h.events, event))
        .map(|h| Target::repo_hook(repo.id, h))
        .collect();
    if let Some(org) = world.org(&repo.owner) {
        out.extend(
            org.hooks
                .values()
                .filter(|h| h.active && subscribed(&h.events, event))
                .map(|h| Target::org_hook(&org.login, h)),
        );
    }
    for inst in world.installations.values() {
        let covers = inst.account.eq_ignore_ascii_case(&repo.owner)
            && inst
                .repositories
                .as_ref()
                .is_none_or(|r| r.contains(&repo.id));
        if !covers {
            continue;
        }
        let Some(app) = world.apps.get(&inst.app_id) else {
            continue;
        };
        let Some(url) = app.webhook_url.clone().filter(|u| !u.is_empty()) else {
            continue;
        };
        if !subscribed(&app.events, event) {
            continue;
        }
        out.push(Target {
            owner: HookOwner::App(app.id),
            hook_id: app.id,
            url,
            secret: app.webhook_secret.clone().filter(|s| !s.is_empty()),
            content_type: "json".into(),
            insecure_ssl: false,
            installation: Some(inst.id),
        });
    }
    out
}

/// A GUID for `X-GitHub-Delivery`.
fn delivery_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature_256(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        // HMAC takes keys of any length; this is not reached.
        Err(_) => String::new(),
    }
}

fn client(insecure: bool) -> reqwest::Result<reqwest::Client> {
    // One client per delivery: a client kept across deliveries would keep connections bound to
    // the runtime that made them, and simulators live in many runtimes (one per test).
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(insecure)
        .pool_max_idle_per_host(0)
        .build()
}

/// Sends one event to one target now; see the module documentation.
pub async fn deliver(sim: &Sim, target: &Target, event: &str, payload: &Value) -> u16 {
    let mut payload = payload.clone();
    if let (Some(iid), Some(obj)) = (target.installation, payload.as_object_mut()) {
        obj.insert(
            "installation".into(),
            json!({"id": iid, "node_id": render::node_id("Integration::Installation", iid)}),
        );
    }
    let json_text = payload.to_string();
    let (body, content_type) = if target.content_type == "form" {
        (
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &json_text)
                .finish(),
            "application/x-www-form-urlencoded",
        )
    } else {
        (json_text, "application/json")
    };
    let (target_type, target_id) = match &target.owner {
        HookOwner::Repo(id) => ("repository", *id),
        HookOwner::Org(login) => (
            "organization",
            sim.world.lock().account(login).map(|a| a.id).unwrap_or(0),
        ),
        HookOwner::App(id) => ("integration", *id),
    };
    let status = match client(target.insecure_ssl) {
        Ok(c) => {
            let mut req = c
                .post(&target.url)
                .header("Content-Type", content_type)
                .header("User-Agent", "GitHub-Hookshot/sim")
                .header("X-GitHub-Event", event)
                .header("X-GitHub-Delivery", delivery_id())
                .header("X-GitHub-Hook-ID", target.hook_id.to_string())
                .header("X-GitHub-Hook-Installation-Target-Type", target_type)
                .header(
                    "X-GitHub-Hook-Installation-Target-ID",
                    target_id.to_string(),
                );
            if let Some(secret) = &target.secret {
                req = req.header(
                    "X-Hub-Signature-256",
                    signature_256(secret, body.as_bytes()),
                );
            }
            match req.body(body).send().await {
                Ok(r) => r.status().as_u16(),
                Err(e) => {
                    tracing::debug!("webhook {event} to hook {}: {e}", target.hook_id);
                    0
                }
            }
        }
        Err(e) => {
            tracing::warn!("webhook client: {e}");
            0
        }
    };
    record(sim, target, event, status);
    status
}

fn record(sim: &Sim, target: &Target, event: &str, status: u16) {
    sim.stats.counters.lock().webhook_deliveries += 1;
    let mut world = sim.world.lock();
    let hook = match &target.owner {
        HookOwner::Repo(id) => world
            .repos
            .get_mut(id)
            .and_then(|r| r.hooks.get_mut(&target.hook_id)),
        HookOwner::Org(login) => world
            .org_mut(login)
            .and_then(|o| o.hooks.get_mut(&target.hook_id)),
        HookOwner::App(_) => None,
    };
    if let Some(h) = hook {
        h.deliveries.push((event.to_string(), status));
    }
}

/// Delivers `payload` as `event` to every target of the repository, in the background.
pub fn emit(sim: &Arc<Sim>, repo_id: u64, event: &str, payload: Value) {
    let found = {
        let world = sim.world.lock();
        world
            .repos
            .get(&repo_id)
            .map(|r| targets(&world, r, event))
            .unwrap_or_default()
    };
    if found.is_empty() {
        return;
    }
    let sim = sim.clone();
    let event = event.to_string();
    tokio::spawn(async move {
        futures::future::join_all(found.iter().map(|t| deliver(&sim, t, &event, &payload))).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Push events.

/// One commit as push events show it.
#[derive(Debug, Clone, Default)]
struct CommitInfo {
    id: String,
    tree_id: String,
    author: (String, String),
    committer: (String, String),
    timestamp: String,
    message: String,
    added: Vec<String>,
    removed: Vec<String>,
    modified: Vec<String>,
}

impl CommitInfo {
    fn json(&self, html: &str) -> Value {
        json!({
            "id": self.id,
            "tree_id": self.tree_id,
            "distinct": true,
            "message": self.message,
            "timestamp": self.timestamp,
            "url": format!("{html}/commit/{}", self.id),
            "author": {"name": self.author.0, "email": self.author.1},
            "committer": {"name": self.committer.0, "email": self.committer.1},
            "added": self.added,
            "removed": self.removed,
            "modified": self.modified,
        })
    }
}

/// GitHub lists at most this many commits in one push event.
const MAX_COMMITS: usize = 2048;

/// `git log` of `revs` (one per line: `OID` to include, `^OID` to exclude), oldest first, at most
/// `max` (the newest), with the files each changed.
fn commit_infos(dir: &Path, revs: &[String], max: usize) -> anyhow::Result<Vec<CommitInfo>> {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = gitrepo::git(dir)
        .args([
            "-c",
            "core.quotePath=false",
            "log",
            "--stdin",
            "--reverse",
            &format!("--max-count={max}"),
            "--no-renames",
            "--name-status",
            "--format=%x1e%H%x1f%T%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%B%x1f",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut text = revs.join("\n");
        text.push('\n');
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("git log: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut commits = Vec::new();
    for rec in text.split('\x1e').filter(|r| !r.trim().is_empty()) {
        let f: Vec<&str> = rec.splitn(9, '\x1f').collect();
        if f.len() < 9 {
            continue;
        }
        let mut c = CommitInfo {
            id: f[0].to_string(),
            tree_id: f[1].to_string(),
            author: (f[2].to_string(), f[3].to_string()),
            timestamp: f[4].to_string(),
            committer: (f[5].to_string(), f[6].to_string()),
            message: f[7].trim_end().to_string(),
            ..CommitInfo::default()
        };
        for line in f[8].lines() {
            let Some((st, path)) = line.split_once('\t') else {
                continue;
            };
            match st.chars().next() {
                Some('A') => c.added.push(path.to_string()),
                Some('D') => c.removed.push(path.to_string()),
                Some(_) => c.modified.push(path.to_string()),
                None => {}
            }
        }
        commits.push(c);
    }
    Ok(commits)
}

/// What changed for one ref.
struct RefChange {
    name: String,
    before: String,
    after: String,
    forced: bool,
    commits: Vec<CommitInfo>,
    head: Option<CommitInfo>,
}

/// The branch and tag changes between two ref listings, with their commits.
fn ref_changes(
    dir: &Path,
    before: &[(String, String)],
    after: &[(String, String)],
) -> Vec<RefChange> {
    let old: BTreeMap<&str, &str> = before
        .iter()
        .map(|(r, o)| (r.as_str(), o.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = after
        .iter()
        .map(|(r, o)| (r.as_str(), o.as_str()))
        .collect();
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            continue;
        }
        let (b, a) = (old.get(name).copied(), new.get(name).copied());
        if b == a {
            continue;
        }
        let before_oid = b.unwrap_or(ZERO).to_string();
        let after_oid = a.unwrap_or(ZERO).to_string();
        let peeled = a.and_then(|a| gitrepo::resolve(dir, a));
        let forced = match (b, &peeled) {
            (Some(b), Some(p)) => match gitrepo::resolve(dir, b) {
                Some(bp) => !gitrepo::git(dir)
                    .args(["merge-base", "--is-ancestor", &bp, p])
                    .status()
                    .is_ok_and(|s| s.success()),
                None => true,
            },
            _ => false,
        };
        let commits = match (&peeled, name.starts_with("refs/heads/")) {
            (Some(p), true) => {
                // The pushed commits: new on this branch and (for a new branch) in no ref the
                // repository had before.
                let mut revs = vec![p.clone()];
                match b {
                    Some(b) => revs.push(format!("^{b}")),
                    None => revs.extend(before.iter().map(|(_, o)| format!("^{o}"))),
                }
                commit_infos(dir, &revs, MAX_COMMITS).unwrap_or_else(|e| {
                    tracing::warn!("commits of {name}: {e:#}");
                    Vec::new()
                })
            }
            _ => Vec::new(),
        };
        let head = match &peeled {
            Some(p) => match commits.last() {
                Some(c) if &c.id == p => Some(c.clone()),
                _ => commit_infos(dir, std::slice::from_ref(p), 1)
                    .ok()
                    .and_then(|mut v| v.pop()),
            },
            None => None,
        };
        out.push(RefChange {
            name: name.to_string(),
            before: before_oid,
            after: after_oid,
            forced,
            commits,
            head,
        });
    }
    out
}

/// GitHub's `push` event payload for one ref.
fn push_payload(sim: &Sim, world: &World, repo: &Repo, pusher: &Caller, c: &RefChange) -> Value {
    let html = format!("{}/{}/{}", sim.web_base, repo.owner, repo.name);
    let created = c.before == ZERO;
    let deleted = c.after == ZERO;
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let compare = if created {
        let short_ref = c
            .name
            .strip_prefix("refs/heads/")
            .or_else(|| c.name.strip_prefix("refs/tags/"))
            .unwrap_or(&c.name);
        format!("{html}/compare/{short_ref}")
    } else {
        format!("{html}/compare/{}...{}", short(&c.before), short(&c.after))
    };
    let actor = pusher.actor(world).unwrap_or_else(|| "ghost".into());
    let email = world
        .account(&actor)
        .and_then(|a| a.email.clone())
        .unwrap_or_else(|| format!("{actor}@users.noreply.github.com"));
    let mut repository = render::repo(sim, world, repo, None);
    repository["master_branch"] = json!(repo.default_branch);
    repository["stargazers"] = json!(0);
    let mut v = json!({
        "ref": c.name,
        "before": c.before,
        "after": c.after,
        "base_ref": null,
        "created": created,
        "deleted": deleted,
        "forced": c.forced,
        "compare": compare,
        "commits": c.commits.iter().map(|x| x.json(&html)).collect::<Vec<_>>(),
        "head_commit": c.head.as_ref().map(|x| x.json(&html)),
        "repository": repository,
        "pusher": {"name": actor, "email": email},
        "sender": render::user(sim, world, &actor),
    });
    if let Some(org) = world.org(&repo.owner)
        && let Some(a) = world.account(&org.login)
    {
        let mut o = render::account(sim, a);
        o["description"] = json!(org.description);
        v["organization"] = o;
    }
    v
}

/// After a push that changed refs: one `push` event per changed branch or tag, delivered in the
/// background to [`targets`] (in ref order, each event to all targets at once).
pub fn on_push(
    sim: &Arc<Sim>,
    repo_id: u64,
    pusher: &Caller,
    before: Vec<(String, String)>,
    after: Vec<(String, String)>,
) {
    let has_targets = {
        let world = sim.world.lock();
        world
            .repos
            .get(&repo_id)
            .is_some_and(|r| !targets(&world, r, "push").is_empty())
    };
    if !has_targets {
        return;
    }
    let sim = sim.clone();
    let pusher = pusher.clone();
    tokio::spawn(async move {
        let s = sim.clone();
        let built = tokio::task::spawn_blocking(move || {
            let dir = s.world.lock().repos.get(&repo_id)?.git_dir.clone();
            let changes = ref_changes(&dir, &before, &after);
            let world = s.world.lock();
            let repo = world.repos.get(&repo_id)?;
            let payloads: Vec<Value> = changes
                .iter()
                .map(|c| push_payload(&s, &world, repo, &pusher, c))
                .collect();
            Some((payloads, targets(&world, repo, "push")))
        })
        .await;
        let Ok(Some((payloads, found))) = built else {
            return;
        };
        for p in &payloads {
            futures::future::join_all(found.iter().map(|t| deliver(&sim, t, "push", p))).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_example() {
        // The example of GitHub's "Validating webhook deliveries".
        assert_eq!(
            signature_256("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let id = delivery_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
