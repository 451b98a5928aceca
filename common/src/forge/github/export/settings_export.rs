//! `meta/settings/`: branch protection, rulesets, webhooks (without secrets), deploy keys, and
//! who has access and how: the collaborators with `affiliation=all` (`collaborators.json`),
//! `direct` and `outside` (`collaborators_direct.json`, `collaborators_outside.json`), the
//! repository's teams with their permission (`teams.json`), and from those and each team's
//! members, `access.json` (see [`crate::forge::github::access`]). Each is read conditionally
//! (ETag); a document whose reads GitHub refuses (a token without administration rights gets
//! 403/404) is left out, and the component is `skipped` naming the permission and the refused
//! request. A team whose members cannot be read (an App without `members: read`) leaves its
//! members' access as "a team or the organisation", noted on the component.

use std::path::Path;

use serde_json::{Map, Value};

use super::export_store::{Fetched, aggregate_mtime};
use super::{ComponentStatus, Ctx, refusal};
use crate::forge::ForgeError;
use crate::forge::github::access::{AccessDoc, TeamAccess};
use crate::forge::github::blocking::blocking;

/// The permission settings reads need (GitHub App permission names; for a user's token, the
/// admin role on the repository).
const PERMISSION: &str = "administration: read";
/// Webhooks have their own App permission.
const HOOKS_PERMISSION: &str = "administration: read (for an App: repository_hooks: read)";
/// A team's members need the organisation's `members` permission.
const MEMBERS_PERMISSION: &str = "members: read (organisation)";

fn identity(v: Value) -> Value {
    v
}

/// Hooks without their secrets (GitHub masks them; we drop even the mask).
fn without_secrets(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|mut hook| {
                    if let Some(config) = hook.get_mut("config").and_then(Value::as_object_mut) {
                        config.remove("secret");
                    }
                    hook
                })
                .collect(),
        ),
        other => other,
    }
}

/// A settings document read with one list: file name, path under the repository, shape,
/// permission named when refused.
type SimpleDoc = (&'static str, &'static str, fn(Value) -> Value, &'static str);

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

pub(crate) async fn export(ctx: &mut Ctx<'_>) -> ComponentStatus {
    let mut results: Vec<(Result<(), ForgeError>, &str)> = Vec::new();
    let simple: [SimpleDoc; 6] = [
        ("hooks", "/hooks", without_secrets, HOOKS_PERMISSION),
        ("deploy_keys", "/keys", identity, PERMISSION),
        (
            "collaborators",
            "/collaborators?affiliation=all",
            identity,
            PERMISSION,
        ),
        (
            "collaborators_direct",
            "/collaborators?affiliation=direct",
            identity,
            PERMISSION,
        ),
        (
            "collaborators_outside",
            "/collaborators?affiliation=outside",
            identity,
            PERMISSION,
        ),
        ("teams", "/teams", identity, PERMISSION),
    ];
    let mut access_lists = true;
    for (doc, tail, shape, permission) in simple {
        let path = ctx.repo_path(tail);
        let rel = format!("meta/settings/{doc}.json");
        let r = ctx
            .aggregate(&format!("settings/{doc}"), &rel, &path, true, shape)
            .await;
        access_lists &= r.is_ok() || !ACCESS_LISTS.contains(&doc);
        results.push((r, permission));
    }
    // Only from complete lists: a partial document would call someone "organisation" whose
    // direct grant was not read.
    let mut note = None;
    if access_lists {
        match access(ctx).await {
            Ok(unreadable) if unreadable.is_empty() => {}
            Ok(unreadable) => {
                note = Some(format!(
                    "the members of team {} could not be read (token lacks {MEMBERS_PERMISSION}): their access is recorded as \"a team or the organisation\"",
                    unreadable.join(", ")
                ));
            }
            Err(e) => results.push((Err(e), PERMISSION)),
        }
    }
    let branches = ctx.repo_path("/branches?protected=true");
    results.push((
        keyed(
            ctx,
            "branch_protection",
            &branches,
            |v| v.get("name").and_then(Value::as_str).map(str::to_string),
            |ctx, name| ctx.repo_path(&format!("/branches/{}/protection", encode(name))),
        )
        .await,
        PERMISSION,
    ));
    let rulesets = ctx.repo_path("/rulesets");
    results.push((
        keyed(
            ctx,
            "rulesets",
            &rulesets,
            |v| v.get("id").and_then(Value::as_u64).map(|id| id.to_string()),
            |ctx, id| ctx.repo_path(&format!("/rulesets/{id}")),
        )
        .await,
        PERMISSION,
    ));

    let mut refused = Vec::new();
    let mut failed = Vec::new();
    for (r, permission) in results {
        if let Err(e) = r {
            match refusal(&e, permission) {
                Some(reason) => refused.push(reason),
                None => failed.push(e.to_string()),
            }
        }
    }
    if !failed.is_empty() {
        failed.extend(refused);
        ComponentStatus::failed(failed.join("; "))
    } else if !refused.is_empty() {
        ComponentStatus::skipped(refused.join("; "))
    } else {
        ComponentStatus::included(note)
    }
}

/// The lists `access.json` is derived from.
const ACCESS_LISTS: [&str; 4] = [
    "collaborators",
    "collaborators_direct",
    "collaborators_outside",
    "teams",
];

/// Writes `meta/settings/access.json` from this tree's access lists and each team's members
/// (`GET /orgs/{org}/teams/{team_slug}/members`, conditionally: unchanged members are taken
/// from the previous `access.json`). Returns the teams whose members GitHub refused.
async fn access(ctx: &mut Ctx<'_>) -> Result<Vec<String>, ForgeError> {
    let settings = ctx.tree.out.join("meta/settings");
    let dir = settings.clone();
    let [all, direct, outside, teams] = blocking(&settings, move || {
        Ok(ACCESS_LISTS.map(|doc| read_list(&dir.join(format!("{doc}.json")))))
    })
    .await?;
    let rel = "meta/settings/access.json";
    let previous: Option<AccessDoc> = ctx
        .tree
        .previous_json(rel)
        .await
        .and_then(|v| serde_json::from_value(v).ok());
    let mut unreadable = Vec::new();
    let mut with_members = Vec::new();
    for mut team in teams?.iter().filter_map(TeamAccess::from_github) {
        let key = format!("settings/team_members/{}", team.slug);
        let old = previous
            .as_ref()
            .and_then(|p| p.teams.iter().find(|t| t.slug == team.slug))
            .and_then(|t| t.members.clone());
        if old.is_none() {
            ctx.cond.forget(&key);
        }
        let path = format!(
            "/orgs/{}/teams/{}/members",
            encode(ctx.owner),
            encode(&team.slug)
        );
        match ctx.cond.list(ctx.client, &key, &path).await {
            Ok(Fetched::Fresh(members)) => {
                let mut logins: Vec<String> = members
                    .iter()
                    .filter_map(|m| m.get("login").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                logins.sort();
                team.members = Some(logins);
            }
            Ok(Fetched::Unchanged) => team.members = old,
            Err(e) => match refusal(&e, MEMBERS_PERMISSION) {
                Some(reason) => {
                    unreadable.push(team.slug.clone());
                    team.members_unreadable = Some(reason);
                }
                None => return Err(e),
            },
        }
        with_members.push(team);
    }
    let doc = AccessDoc::classify(&all?, &direct?, &outside?, with_members);
    let value = serde_json::to_value(&doc).map_err(|e| {
        ForgeError::io(
            ctx.tree.out.join(rel),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    ctx.tree.write_json(rel, value, aggregate_mtime()).await?;
    Ok(unreadable)
}

/// Blocking: the list a settings document at `path` holds (empty when it is not a list).
fn read_list(path: &Path) -> Result<Vec<Value>, ForgeError> {
    let bytes = std::fs::read(path).map_err(|e| ForgeError::io(path, e))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(ForgeError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )),
    }
}

/// `meta/settings/<doc>.json` = { key → item }: the keys from a list, each item from its own
/// (conditional) GET; an unchanged item is taken from the previous document.
async fn keyed(
    ctx: &mut Ctx<'_>,
    doc: &str,
    list_path: &str,
    key_of: fn(&Value) -> Option<String>,
    item_path: fn(&Ctx<'_>, &str) -> String,
) -> Result<(), ForgeError> {
    let rel = format!("meta/settings/{doc}.json");
    let list_key = format!("settings/{doc}");
    let previous: Map<String, Value> = ctx
        .tree
        .previous_json(&rel)
        .await
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if ctx.tree.previous_file(&rel).await.is_none() {
        ctx.cond.forget(&list_key);
    }
    let keys: Vec<String> = match ctx.cond.list(ctx.client, &list_key, list_path).await? {
        Fetched::Fresh(items) => items.iter().filter_map(key_of).collect(),
        Fetched::Unchanged => previous.keys().cloned().collect(),
    };
    let mut out = Map::new();
    for key in keys {
        let item_key = format!("{list_key}/{key}");
        let old = previous.get(&key);
        if old.is_none() {
            ctx.cond.forget(&item_key);
        }
        let path = item_path(ctx, &key);
        let value = match ctx.cond.get(ctx.client, &item_key, &path).await? {
            Fetched::Fresh(v) => v,
            Fetched::Unchanged => old.cloned().unwrap_or(Value::Null),
        };
        out.insert(key, value);
    }
    ctx.tree
        .write_json(&rel, Value::Object(out), aggregate_mtime())
        .await
}
