//! GitHub's JSON shapes for the objects every route shares: users, organisations, repositories,
//! plus small helpers (timestamps, node ids). Each function fills every field GitHub's OpenAPI
//! description marks required for that schema (`simple-user`, `organization-full`,
//! `full-repository`, `repository`, `minimal-repository`), so the schema test holds them to it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::Sim;
use crate::state::{Account, AccountKind, Repo, World};

/// GitHub's timestamp format: `2011-01-26T19:01:12Z`.
pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn ts_opt(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref()
        .map(|t| Value::String(ts(t)))
        .unwrap_or(Value::Null)
}

/// A global node id in GitHub's legacy style (base64 of `NN:Kind<id>`); clients treat it as
/// opaque.
pub fn node_id(kind: &str, id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// `simple-user` for a login; an unknown login (a deleted user) renders as GitHub's `ghost`.
pub fn user(sim: &Sim, world: &World, login: &str) -> Value {
    match world.account(login) {
        Some(a) => account(sim, a),
        None => account(
            sim,
            &Account {
                id: 10137,
                login: "ghost".into(),
                kind: AccountKind::User,
                name: None,
                email: None,
                site_admin: false,
                created_at: DateTime::<Utc>::UNIX_EPOCH,
            },
        ),
    }
}

pub fn user_opt(sim: &Sim, world: &World, login: &Option<String>) -> Value {
    login
        .as_ref()
        .map(|l| user(sim, world, l))
        .unwrap_or(Value::Null)
}

pub fn account(sim: &Sim, a: &Account) -> Value {
    let api = &sim.api_base;
    let base = if a.kind == AccountKind::Organization {
        format!("{api}/orgs/{}", a.login)
    } else {
        format!("{api}/users/{}", a.login)
    };
    let u = format!("{api}/users/{}", a.login);
    json!({
        "login": a.login,
        "id": a.id,
        "node_id": node_id(a.kind.as_str(), a.id),
        "avatar_url": format!("{}/avatars/u/{}?v=4", sim.web_base, a.id),
        "gravatar_id": "",
        "url": base,
        "html_url": format!("{}/{}", sim.web_base, a.login),
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{base}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": a.kind.as_str(),
        "user_view_type": "public",
        "site_admin": a.site_admin,
    })
}

/// `organization-full`.
pub fn org(sim: &Sim, world: &World, login: &str) -> Value {
    let Some(a) = world.account(login) else {
        return Value::Null;
    };
    let o = world.org(login);
    let api = &sim.api_base;
    let repos: Vec<&Repo> = world
        .repos
        .values()
        .filter(|r| !r.deleted && r.owner.eq_ignore_ascii_case(login))
        .collect();
    let public = repos.iter().filter(|r| !r.private).count();
    let private = repos.len() - public;
    json!({
        "login": a.login,
        "id": a.id,
        "node_id": node_id("Organization", a.id),
        "url": format!("{api}/orgs/{}", a.login),
        "repos_url": format!("{api}/orgs/{}/repos", a.login),
        "events_url": format!("{api}/orgs/{}/events", a.login),
        "hooks_url": format!("{api}/orgs/{}/hooks", a.login),
        "issues_url": format!("{api}/orgs/{}/issues", a.login),
        "members_url": format!("{api}/orgs/{}/members{{/member}}", a.login),
        "public_members_url": format!("{api}/orgs/{}/public_members{{/member}}", a.login),
        "avatar_url": format!("{}/avatars/u/{}?v=4", sim.web_base, a.id),
        "description": o.and_then(|o| o.description.clone()),
        "name": a.name,
        // GitHub sends null for unset profile fields, but its description says string: the
        // description wins (the recorded responses accept either).
        "company": "",
        "blog": format!("{}/{}", sim.web_base, a.login),
        "location": "",
        "email": a.email.clone().unwrap_or_else(|| format!("{}@noreply.example", a.login.to_ascii_lowercase())),
        "twitter_username": null,
        "is_verified": false,
        "has_organization_projects": true,
        "has_repository_projects": true,
        "public_repos": public,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "html_url": format!("{}/{}", sim.web_base, a.login),
        "created_at": ts(&a.created_at),
        "updated_at": ts(&a.created_at),
        "type": "Organization",
        "total_private_repos": private,
        "owned_private_repos": private,
        "private_gists": 0,
        "disk_usage": 0,
        "collaborators": 0,
        "billing_email": format!("billing@{}.example", a.login.to_ascii_lowercase()),
        "default_repository_permission": o.map(|o| o.default_repository_permission.as_str()),
        "members_can_create_repositories": true,
        "two_factor_requirement_enabled": false,
        "members_allowed_repository_creation_type": "all",
        "members_can_create_public_repositories": true,
        "members_can_create_private_repositories": true,
        "members_can_create_internal_repositories": false,
        "members_can_create_pages": true,
        "members_can_create_public_pages": true,
        "members_can_create_private_pages": true,
        "members_can_fork_private_repositories": false,
        "web_commit_signoff_required": false,
        "archived_at": null,
        "plan": {"name": "enterprise", "space": 976562499, "private_repos": 999999, "filled_seats": 1, "seats": 1},
    })
}

/// `full-repository` (a superset of `repository` and `minimal-repository`), with `permissions`
/// for the caller when `permissions` is given.
pub fn repo(
    sim: &Sim,
    world: &World,
    r: &Repo,
    permissions: Option<crate::state::Permission>,
) -> Value {
    use crate::state::Permission as P;
    let api = format!("{}/repos/{}/{}", sim.api_base, r.owner, r.name);
    let html = format!("{}/{}/{}", sim.web_base, r.owner, r.name);
    let host = sim.web_base.trim_start_matches("https://");
    let owner = user(sim, world, &r.owner);
    let org = world.org(&r.owner).map(|_| owner.clone());
    let size_kib = dir_size(&r.git_dir) / 1024;
    let mut v = json!({
        "id": r.id,
        "node_id": node_id("Repository", r.id),
        "name": r.name,
        "full_name": r.full_name(),
        "owner": owner,
        "private": r.private,
        "html_url": html,
        "description": r.description,
        "fork": false,
        "url": api,
        "archive_url": format!("{api}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{api}/assignees{{/user}}"),
        "blobs_url": format!("{api}/git/blobs{{/sha}}"),
        "branches_url": format!("{api}/branches{{/branch}}"),
        "collaborators_url": format!("{api}/collaborators{{/collaborator}}"),
        "comments_url": format!("{api}/comments{{/number}}"),
        "commits_url": format!("{api}/commits{{/sha}}"),
        "compare_url": format!("{api}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{api}/contents/{{+path}}"),
        "contributors_url": format!("{api}/contributors"),
        "deployments_url": format!("{api}/deployments"),
        "downloads_url": format!("{api}/downloads"),
        "events_url": format!("{api}/events"),
        "forks_url": format!("{api}/forks"),
        "git_commits_url": format!("{api}/git/commits{{/sha}}"),
        "git_refs_url": format!("{api}/git/refs{{/sha}}"),
        "git_tags_url": format!("{api}/git/tags{{/sha}}"),
        "git_url": format!("git://{host}/{}.git", r.full_name()),
        "issue_comment_url": format!("{api}/issues/comments{{/number}}"),
        "issue_events_url": format!("{api}/issues/events{{/number}}"),
        "issues_url": format!("{api}/issues{{/number}}"),
        "keys_url": format!("{api}/keys{{/key_id}}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "languages_url": format!("{api}/languages"),
        "merges_url": format!("{api}/merges"),
        "milestones_url": format!("{api}/milestones{{/number}}"),
        "notifications_url": format!("{api}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{api}/pulls{{/number}}"),
        "releases_url": format!("{api}/releases{{/id}}"),
        "ssh_url": format!("git@{}:{}.git", host.split(':').next().unwrap_or(host), r.full_name()),
        "stargazers_url": format!("{api}/stargazers"),
        "statuses_url": format!("{api}/statuses/{{sha}}"),
        "subscribers_url": format!("{api}/subscribers"),
        "subscription_url": format!("{api}/subscription"),
        "tags_url": format!("{api}/tags"),
        "teams_url": format!("{api}/teams"),
        "trees_url": format!("{api}/git/trees{{/sha}}"),
        "clone_url": format!("{html}.git"),
        "mirror_url": null,
        "hooks_url": format!("{api}/hooks"),
        "svn_url": html,
        "homepage": r.homepage,
        "language": null,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": size_kib,
        "default_branch": r.default_branch,
        "open_issues_count": r.issues.values().filter(|i| i.state == "open").count(),
        "open_issues": r.issues.values().filter(|i| i.state == "open").count(),
        "is_template": false,
        "topics": r.topics,
        "has_issues": r.has_issues,
        "has_projects": r.has_projects,
        "has_wiki": r.has_wiki,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": r.has_discussions,
        "archived": r.archived,
        "disabled": r.disabled,
        "visibility": r.visibility(),
        "pushed_at": ts(&r.pushed_at),
        "created_at": ts(&r.created_at),
        "updated_at": ts(&r.updated_at),
        "allow_rebase_merge": true,
        "allow_squash_merge": true,
        "allow_merge_commit": true,
        "allow_auto_merge": false,
        "delete_branch_on_merge": false,
        "allow_forking": true,
        "web_commit_signoff_required": false,
        "subscribers_count": 0,
        "network_count": 0,
        "license": null,
        "temp_clone_token": "",
        "allow_update_branch": false,
        "use_squash_pr_title_as_default": false,
        "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
        "squash_merge_commit_message": "COMMIT_MESSAGES",
        "merge_commit_title": "MERGE_MESSAGE",
        "merge_commit_message": "PR_TITLE",
    });
    if let Some(org) = org {
        v["organization"] = org;
    }
    if let Some(p) = permissions {
        v["permissions"] = json!({
            "admin": p >= P::Admin,
            "maintain": p >= P::Maintain,
            "push": p >= P::Write,
            "triage": p >= P::Triage,
            "pull": p >= P::Read,
        });
    }
    v
}

/// Bytes under `dir` (the repository's `size`, which GitHub reports in KiB).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
