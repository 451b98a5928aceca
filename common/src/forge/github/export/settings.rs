//! `meta/settings/`: branch protection, rulesets, webhooks (without secrets), deploy keys,
//! collaborators and teams. Each is read conditionally (ETag); a document whose reads GitHub
//! refuses (a token without administration rights gets 403/404) is left out, and the component
//! is `skipped` naming the permission and the refused request.

use serde_json::{Map, Value};

use super::store::{Fetched, aggregate_mtime};
use super::{ComponentStatus, Ctx, refusal};
use crate::forge::github::error::ForgeError;

/// The permission settings reads need (GitHub App permission names; for a user's token, the
/// admin role on the repository).
const PERMISSION: &str = "administration: read";
/// Webhooks have their own App permission.
const HOOKS_PERMISSION: &str = "administration: read (for an App: repository_hooks: read)";

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
    let simple: [SimpleDoc; 4] = [
        ("hooks", "/hooks", without_secrets, HOOKS_PERMISSION),
        ("deploy_keys", "/keys", identity, PERMISSION),
        (
            "collaborators",
            "/collaborators?affiliation=all",
            identity,
            PERMISSION,
        ),
        ("teams", "/teams", identity, PERMISSION),
    ];
    for (doc, tail, shape, permission) in simple {
        let path = ctx.repo_path(tail);
        let rel = format!("meta/settings/{doc}.json");
        let r = ctx
            .aggregate(&format!("settings/{doc}"), &rel, &path, true, shape)
            .await;
        results.push((r, permission));
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
        ComponentStatus::included(None)
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
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if ctx.tree.previous_file(&rel).is_none() {
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
        .write_json(&rel, &Value::Object(out), aggregate_mtime())
}
