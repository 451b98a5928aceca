//! Settings: branch protection, rulesets, webhooks (without secrets), deploy keys, then access
//! (see [`super::access`]: direct collaborators by default, team grants and the rest only when
//! the restore asks). Each is matched in the target first (by branch, name, URL, key) and only
//! added, never changed; what the target refuses (403, 404, 409, 410, 422) is skipped with
//! GitHub's answer.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::source::Source;
use super::{Engine, encode, refused, str_field};
use crate::forge::ForgeError;

/// The `{"enabled": bool}` of a protection field.
fn enabled(p: &Value, field: &str) -> Value {
    p.get(field)
        .and_then(|v| v.get("enabled"))
        .and_then(Value::as_bool)
        .map_or(Value::Null, Value::Bool)
}

/// Logins / slugs of an actor list (`users` → login, `teams`/`apps` → slug).
fn actors(v: &Value) -> Value {
    let pick = |list: &str, field: &str| -> Vec<String> {
        v.get(list)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get(field).and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "users": pick("users", "login"),
        "teams": pick("teams", "slug"),
        "apps": pick("apps", "slug"),
    })
}

/// `GET .../protection`'s answer as the body `PUT .../protection` takes ("Update branch
/// protection"): its four required keys (each may be null) and the `enabled` flags.
/// `required_signatures` has its own endpoint and is not restored.
pub(crate) fn protection_body(p: &Value) -> Value {
    let checks = p
        .get("required_status_checks")
        .filter(|v| !v.is_null())
        .map_or(Value::Null, |c| {
            json!({
                "strict": c.get("strict").and_then(Value::as_bool).unwrap_or(false),
                "contexts": c.get("contexts").cloned().unwrap_or_else(|| json!([])),
            })
        });
    let reviews = p
        .get("required_pull_request_reviews")
        .filter(|v| !v.is_null())
        .map_or(Value::Null, |r| {
            let flag = |f: &str| r.get(f).and_then(Value::as_bool).unwrap_or(false);
            let mut out = json!({
                "dismiss_stale_reviews": flag("dismiss_stale_reviews"),
                "require_code_owner_reviews": flag("require_code_owner_reviews"),
                "require_last_push_approval": flag("require_last_push_approval"),
            });
            if let Some(n) = r
                .get("required_approving_review_count")
                .and_then(Value::as_u64)
            {
                out["required_approving_review_count"] = json!(n);
            }
            for list in ["dismissal_restrictions", "bypass_pull_request_allowances"] {
                if let Some(a) = r.get(list).filter(|v| !v.is_null()) {
                    out[list] = actors(a);
                }
            }
            out
        });
    let restrictions = p
        .get("restrictions")
        .filter(|v| !v.is_null())
        .map_or(Value::Null, actors);
    let mut out = Map::new();
    out.insert("required_status_checks".into(), checks);
    out.insert("enforce_admins".into(), enabled(p, "enforce_admins"));
    out.insert("required_pull_request_reviews".into(), reviews);
    out.insert("restrictions".into(), restrictions);
    for f in [
        "required_linear_history",
        "allow_force_pushes",
        "allow_deletions",
        "block_creations",
        "required_conversation_resolution",
        "lock_branch",
        "allow_fork_syncing",
    ] {
        let v = enabled(p, f);
        if !v.is_null() {
            out.insert(f.into(), v);
        }
    }
    Value::Object(out)
}

/// A hook URL for the report: scheme, host and path (a query or user info may hold a secret).
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// The algorithm and key of an OpenSSH public key (its comment dropped).
fn key_material(key: &str) -> String {
    key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn list(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(m)) => m.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Branch protection, rulesets, webhooks, deploy keys, then access (the module doc says how).
pub(super) async fn settings(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    protection(engine, src).await?;
    rulesets(engine, src).await?;
    hooks(engine, src).await?;
    deploy_keys(engine, src).await?;
    super::access_restore::access(engine, src).await
}

/// Lists `tail` in the target; a refusal is skipped for `what` (`None`).
async fn target_list(
    engine: &mut Engine<'_>,
    tail: &str,
    what: &str,
) -> Result<Option<Vec<Value>>, ForgeError> {
    match engine.client.get_all(&engine.repo_path(tail)).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if refused(&e) => {
            engine.skip(what.to_string(), e.to_string());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn protection(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    let Some(Value::Object(map)) = src.settings.get("branch_protection") else {
        return Ok(());
    };
    for (branch, p) in map {
        let item = format!("protection {branch}");
        if !engine.opts.branches_present.contains(branch) {
            engine.skip(
                item,
                format!("branch {branch} does not exist in this repository"),
            );
            continue;
        }
        let path = engine.repo_path(&format!("/branches/{}/protection", encode(branch)));
        match engine.client.get_json(&path, None).await {
            Ok(_) => {
                engine.reused("protection", "settings");
                continue;
            }
            Err(e) if e.status() == Some(404) => {}
            Err(e) if refused(&e) => {
                engine.skip(item, e.to_string());
                continue;
            }
            Err(e) => return Err(e),
        }
        let body = protection_body(p);
        let r = engine.put(&path, Some(&body)).await;
        if engine.attempt(item, r).await? {
            engine.created("protection", "settings");
        }
    }
    Ok(())
}

async fn rulesets(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    let wanted = list(src.settings.get("rulesets"));
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(have) = target_list(engine, "/rulesets", "rulesets").await? else {
        return Ok(());
    };
    let names: BTreeSet<String> = have
        .iter()
        .filter_map(|r| str_field(r, "name").map(str::to_string))
        .collect();
    for r in wanted {
        let name = str_field(&r, "name").unwrap_or("").to_string();
        if names.contains(&name) {
            engine.reused("ruleset", "settings");
            continue;
        }
        let mut body = json!({ "name": name });
        for f in [
            "target",
            "enforcement",
            "conditions",
            "rules",
            "bypass_actors",
        ] {
            if let Some(v) = r.get(f).filter(|v| !v.is_null()) {
                body[f] = v.clone();
            }
        }
        let r = engine
            .post(&engine.repo_path("/rulesets"), &body)
            .await
            .map(Some);
        if engine.attempt(format!("ruleset {name}"), r).await? {
            engine.created("ruleset", "settings");
        }
    }
    Ok(())
}

async fn hooks(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    let wanted = list(src.settings.get("hooks"));
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(have) = target_list(engine, "/hooks", "hooks").await? else {
        return Ok(());
    };
    let urls: BTreeSet<String> = have
        .iter()
        .filter_map(|h| str_field(&h["config"], "url").map(str::to_string))
        .collect();
    for h in wanted {
        let Some(url) = str_field(&h["config"], "url").map(str::to_string) else {
            continue;
        };
        let shown = shown_url(&url);
        if urls.contains(&url) {
            engine.reused("hook", "settings");
            engine.report.webhooks_needing_secret.push(shown);
            continue;
        }
        let mut config = json!({ "url": url });
        for f in ["content_type", "insecure_ssl"] {
            if let Some(v) = h["config"].get(f).filter(|v| !v.is_null()) {
                config[f] = v.clone();
            }
        }
        let body = json!({
            "name": "web",
            "active": h.get("active").and_then(Value::as_bool).unwrap_or(true),
            "events": h.get("events").cloned().unwrap_or_else(|| json!(["push"])),
            "config": config,
        });
        let r = engine
            .post(&engine.repo_path("/hooks"), &body)
            .await
            .map(Some);
        if engine.attempt(format!("hook {shown}"), r).await? {
            engine.created("hook", "settings");
            engine.report.webhooks_needing_secret.push(shown);
        }
    }
    Ok(())
}

async fn deploy_keys(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    let wanted = list(src.settings.get("deploy_keys"));
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(have) = target_list(engine, "/keys", "deploy keys").await? else {
        return Ok(());
    };
    let keys: BTreeSet<String> = have
        .iter()
        .filter_map(|k| str_field(k, "key").map(key_material))
        .collect();
    for k in wanted {
        let Some(key) = str_field(&k, "key") else {
            continue;
        };
        let title = str_field(&k, "title").unwrap_or("deploy key").to_string();
        if keys.contains(&key_material(key)) {
            engine.reused("deploy_key", "settings");
            continue;
        }
        let body = json!({
            "title": title,
            "key": key,
            "read_only": k.get("read_only").and_then(Value::as_bool).unwrap_or(true),
        });
        let r = engine
            .post(&engine.repo_path("/keys"), &body)
            .await
            .map(Some);
        if engine.attempt(format!("deploy_key {title}"), r).await? {
            engine.created("deploy_key", "settings");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_urls_lose_query_and_credentials() {
        assert_eq!(
            shown_url("https://user:pw@hooks.example:8443/in?token=s3cret"),
            "https://hooks.example:8443/in"
        );
    }

    #[test]
    fn protection_round_trips_to_put_shape() {
        let got = json!({
            "enforce_admins": {"enabled": true, "url": "x"},
            "required_linear_history": {"enabled": true},
            "required_status_checks": {"strict": true, "contexts": ["CI"], "checks": []},
            "restrictions": {"users": [{"login": "a"}], "teams": [{"slug": "core"}], "apps": []},
        });
        let put = protection_body(&got);
        assert_eq!(put["enforce_admins"], json!(true));
        assert_eq!(put["required_pull_request_reviews"], Value::Null);
        assert_eq!(put["restrictions"]["users"], json!(["a"]));
        assert_eq!(put["required_linear_history"], json!(true));
    }
}
