//! Issues and pull requests, their comments, reviews and review comments, state and lock.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::source::{Item, Source};
use super::text::{self, compose, header, marker, rewrite_refs};
use super::{Converted, Engine, decode, login, str_field};
use crate::forge::ForgeError;

/// GitHub's state reasons a closing PATCH takes ("Update an issue").
const CLOSE_REASONS: &[&str] = &["completed", "not_planned"];

/// GitHub's message of a refusal, else the whole error.
fn message(e: &ForgeError) -> String {
    match e {
        ForgeError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Names of a list of objects (`labels` → `name`, `assignees` → `login`).
fn names(v: &Value, list: &str, field: &str) -> Vec<String> {
    v.get(list)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get(field).and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// One comment-like entry to restore on an item.
struct Entry {
    time: String,
    id: u64,
    /// Marker kind and report kind: `comment`, `review`, `review_comment`.
    kind: &'static str,
    what: String,
    body: String,
}

pub(super) async fn issues(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    // What earlier runs restored: the markers of this backup in the target.
    let listed = engine
        .client
        .get_all(&engine.repo_path("/issues?state=all"))
        .await?;
    let mut by_number: BTreeMap<u64, Value> = BTreeMap::new();
    let mut marked: BTreeMap<String, u64> = BTreeMap::new();
    let mut real_pulls: BTreeSet<u64> = BTreeSet::new();
    for v in listed {
        let Some(n) = v.get("number").and_then(Value::as_u64) else {
            continue;
        };
        if let Some(source) = str_field(&v, "body").and_then(text::parse_marker)
            && source.backup == engine.opts.backup_id.as_str()
        {
            marked.insert(source.journal_key(), n);
        }
        if v.get("pull_request").is_some_and(|p| !p.is_null()) {
            real_pulls.insert(n);
        }
        by_number.insert(n, v);
    }

    let mut fresh: BTreeSet<u64> = BTreeSet::new();
    for item in &src.items {
        let key = format!("{}:{}", item.kind(), item.number);
        if let Some(new) = marked
            .get(&key)
            .copied()
            .or_else(|| engine.journal.get(&key))
        {
            engine.report.numbers.insert(item.number, new);
            engine.journal.record(key, new).await?;
            if item.pull && !real_pulls.contains(&new) {
                engine.report.converted.push(Converted {
                    number: item.number,
                    new_number: new,
                    reason: "restored as an issue by an earlier run (its header says why)".into(),
                });
            }
            engine.reused(item.kind(), "issues");
            continue;
        }
        let (new, value, real_pull) = create_item(engine, item).await?;
        engine.report.numbers.insert(item.number, new);
        engine.journal.record(key, new).await?;
        if real_pull {
            real_pulls.insert(new);
        }
        by_number.insert(new, value);
        fresh.insert(item.number);
        engine.created(item.kind(), "issues");
    }

    // Every number is known now: comments, then references, metadata, state and lock.
    for item in &src.items {
        let Some(&new) = engine.report.numbers.get(&item.number) else {
            continue;
        };
        comments(engine, item, new, fresh.contains(&item.number)).await?;
        let target = match by_number.get(&new) {
            Some(v) => v.clone(),
            None => engine
                .client
                .get_json(&engine.repo_path(&format!("/issues/{new}")), None)
                .await?
                .body
                .unwrap_or(Value::Null),
        };
        reconcile(engine, item, new, &target, real_pulls.contains(&new)).await?;
    }
    Ok(())
}

/// The header of `item`; `converted`: why a pull request comes back as an issue.
fn item_header(engine: &Engine<'_>, item: &Item, converted: Option<&str>) -> String {
    let m = item.main();
    let author = m.get("user").map(login).unwrap_or_else(|| "ghost".into());
    let when = str_field(m, "created_at").unwrap_or("an unknown date");
    let mut what = if item.pull {
        format!(
            "Originally pull request #{} by @{author} on {when}, {} into {}",
            item.number,
            str_field(&m["head"], "label")
                .or_else(|| str_field(&m["head"], "ref"))
                .unwrap_or("?"),
            str_field(&m["base"], "ref").unwrap_or("?"),
        )
    } else {
        format!("Originally #{} by @{author} on {when}", item.number)
    };
    if let Some(merged_at) = str_field(m, "merged_at") {
        what.push_str(&format!(", merged on {merged_at}"));
        if let Some(by) = m.get("merged_by").filter(|v| !v.is_null()) {
            what.push_str(&format!(" by @{}", login(by)));
        }
    }
    if let Some(reason) = converted {
        what.push_str(&format!("; restored as an issue: {reason}"));
    }
    header(&what, engine.backup())
}

/// Why `item` (a pull request) cannot be one in the target, if it cannot.
fn pull_blocker(engine: &Engine<'_>, item: &Item) -> Option<String> {
    let m = item.main();
    let head = str_field(&m["head"], "ref").unwrap_or("");
    let base = str_field(&m["base"], "ref").unwrap_or("");
    let head_repo = m["head"]["repo"]["full_name"].as_str();
    let base_repo = m["base"]["repo"]["full_name"].as_str();
    if head_repo != base_repo {
        return Some(format!(
            "its head branch {head} is in another repository ({})",
            head_repo.unwrap_or("deleted")
        ));
    }
    for branch in [head, base] {
        if !engine.opts.branches_present.contains(branch) {
            return Some(format!("branch {branch} does not exist in this repository"));
        }
    }
    None
}

/// Labels (that exist in the target), milestone (restored) and assignees (users that
/// exist) of `item`.
async fn meta(
    engine: &mut Engine<'_>,
    item: &Item,
) -> Result<(Vec<String>, Option<u64>, Vec<String>), ForgeError> {
    let m = item.main();
    let labels: Vec<String> = names(m, "labels", "name")
        .into_iter()
        .filter(|l| engine.labels.contains(l))
        .collect();
    let milestone = m
        .get("milestone")
        .and_then(|v| v.get("number"))
        .and_then(Value::as_u64)
        .and_then(|n| engine.milestones.get(&n).copied());
    let mut assignees = Vec::new();
    for a in names(m, "assignees", "login") {
        if engine.user_exists(&a).await? {
            assignees.push(a);
        }
    }
    Ok((labels, milestone, assignees))
}

/// Creates `item`: (new number, the answer, created as a pull request).
async fn create_item(
    engine: &mut Engine<'_>,
    item: &Item,
) -> Result<(u64, Value, bool), ForgeError> {
    let m = item.main();
    let title = str_field(m, "title")
        .filter(|t| !t.is_empty())
        .unwrap_or("(untitled)")
        .to_string();
    let middle = rewrite_refs(str_field(m, "body").unwrap_or(""), &engine.report.numbers);
    let mark = marker(engine.backup(), item.kind(), item.number);
    let mut reason = None;
    if item.pull {
        reason = pull_blocker(engine, item);
        if reason.is_none() {
            let path = engine.repo_path("/pulls");
            let body = json!({
                "title": title,
                "head": str_field(&m["head"], "ref").unwrap_or(""),
                "base": str_field(&m["base"], "ref").unwrap_or(""),
                "body": compose(&item_header(engine, item, None), &middle, &mark),
                "draft": m.get("draft").and_then(Value::as_bool).unwrap_or(false),
            });
            match engine.post(&path, &body).await {
                Ok(v) => {
                    let n = v
                        .get("number")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| decode("POST", &path, "no number"))?;
                    return Ok((n, v, true));
                }
                Err(e) if e.status() == Some(422) => {
                    reason = Some(format!("GitHub refused the pull request: {}", message(&e)));
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (labels, milestone, assignees) = meta(engine, item).await?;
    let path = engine.repo_path("/issues");
    let mut body = json!({
        "title": title,
        "body": compose(&item_header(engine, item, reason.as_deref()), &middle, &mark),
        "labels": labels,
        "assignees": assignees,
    });
    if let Some(ms) = milestone {
        body["milestone"] = json!(ms);
    }
    let created = match engine.post(&path, &body).await {
        Err(e) if e.status() == Some(422) && !assignees.is_empty() => {
            engine.skip(format!("assignees of #{}", item.number), message(&e));
            body["assignees"] = json!([]);
            engine.post(&path, &body).await?
        }
        other => other?,
    };
    let n = created
        .get("number")
        .and_then(Value::as_u64)
        .ok_or_else(|| decode("POST", &path, "no number"))?;
    if let Some(reason) = reason {
        engine.report.converted.push(Converted {
            number: item.number,
            new_number: n,
            reason,
        });
    }
    Ok((n, created, false))
}

/// Comments, reviews and review comments of `item` onto `new`, oldest first; the target's
/// comments are listed first unless the item was created by this run (`fresh`).
async fn comments(
    engine: &mut Engine<'_>,
    item: &Item,
    new: u64,
    fresh: bool,
) -> Result<(), ForgeError> {
    let mut entries = Vec::new();
    for c in item.comments() {
        entries.push(Entry {
            time: str_field(c, "created_at").unwrap_or("").to_string(),
            id: c.get("id").and_then(Value::as_u64).unwrap_or(0),
            kind: "comment",
            what: format!(
                "Comment by @{} on {}",
                c.get("user").map(login).unwrap_or_else(|| "ghost".into()),
                str_field(c, "created_at").unwrap_or("an unknown date")
            ),
            body: str_field(c, "body").unwrap_or("").to_string(),
        });
    }
    for r in item.reviews() {
        let verdict = match str_field(r, "state").unwrap_or("") {
            "APPROVED" => "approved".to_string(),
            "CHANGES_REQUESTED" => "changes requested".to_string(),
            "COMMENTED" => "commented".to_string(),
            "DISMISSED" => "dismissed".to_string(),
            other => other.to_ascii_lowercase(),
        };
        entries.push(Entry {
            time: str_field(r, "submitted_at").unwrap_or("").to_string(),
            id: r.get("id").and_then(Value::as_u64).unwrap_or(0),
            kind: "review",
            what: format!(
                "Review by @{} on {}: {verdict}",
                r.get("user").map(login).unwrap_or_else(|| "ghost".into()),
                str_field(r, "submitted_at").unwrap_or("an unknown date")
            ),
            body: str_field(r, "body").unwrap_or("").to_string(),
        });
    }
    for c in item.review_comments() {
        let line = c
            .get("line")
            .or_else(|| c.get("original_line"))
            .and_then(Value::as_u64)
            .map(|l| format!(" line {l}"))
            .unwrap_or_default();
        let reply = if c.get("in_reply_to_id").is_some_and(|v| !v.is_null()) {
            ", in reply"
        } else {
            ""
        };
        entries.push(Entry {
            time: str_field(c, "created_at").unwrap_or("").to_string(),
            id: c.get("id").and_then(Value::as_u64).unwrap_or(0),
            kind: "review_comment",
            what: format!(
                "Review comment by @{} on {} on `{}`{line}{reply}",
                c.get("user").map(login).unwrap_or_else(|| "ghost".into()),
                str_field(c, "created_at").unwrap_or("an unknown date"),
                str_field(c, "path").unwrap_or("?"),
            ),
            body: str_field(c, "body").unwrap_or("").to_string(),
        });
    }
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort_by(|a, b| (&a.time, a.id).cmp(&(&b.time, b.id)));
    let path = engine.repo_path(&format!("/issues/{new}/comments"));
    let mut existing: BTreeMap<String, u64> = BTreeMap::new();
    if !fresh {
        for c in engine.client.get_all(&path).await? {
            if let Some(source) = str_field(&c, "body").and_then(text::parse_marker)
                && source.backup == engine.opts.backup_id.as_str()
            {
                existing.insert(
                    source.journal_key(),
                    c.get("id").and_then(Value::as_u64).unwrap_or(0),
                );
            }
        }
    }
    for e in entries {
        let key = format!("{}:{}", e.kind, e.id);
        if let Some(id) = existing
            .get(&key)
            .copied()
            .or_else(|| engine.journal.get(&key))
        {
            engine.journal.record(key, id).await?;
            engine.reused(e.kind, "comments");
            continue;
        }
        let body = compose(
            &header(&e.what, engine.backup()),
            &rewrite_refs(&e.body, &engine.report.numbers),
            &marker(engine.backup(), e.kind, e.id),
        );
        let created = engine.post(&path, &json!({ "body": body })).await?;
        let id = created
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| decode("POST", &path, "no id"))?;
        engine.journal.record(key, id).await?;
        engine.created(e.kind, "comments");
    }
    Ok(())
}

/// Brings `target` (restored `item`) to the source's references, labels, milestone,
/// assignees, state and lock, adding only (append-only).
async fn reconcile(
    engine: &mut Engine<'_>,
    item: &Item,
    new: u64,
    target: &Value,
    real_pull: bool,
) -> Result<(), ForgeError> {
    let m = item.main();
    let mut patch = Map::new();
    let have_body = str_field(target, "body").unwrap_or("");
    let want = rewrite_refs(str_field(m, "body").unwrap_or(""), &engine.report.numbers);
    if text::strip(have_body) != want
        && let Some(h) = text::header_of(have_body)
    {
        let mark = marker(engine.backup(), item.kind(), item.number);
        patch.insert("body".into(), json!(compose(h, &want, &mark)));
    }
    let (labels, milestone, assignees) = meta(engine, item).await?;
    let have_labels: BTreeSet<String> = names(target, "labels", "name").into_iter().collect();
    if !labels.iter().all(|l| have_labels.contains(l)) {
        let all: BTreeSet<String> = have_labels.iter().cloned().chain(labels).collect();
        patch.insert("labels".into(), json!(all));
    }
    if let Some(ms) = milestone
        && target.get("milestone").is_none_or(Value::is_null)
    {
        patch.insert("milestone".into(), json!(ms));
    }
    let have_assignees: BTreeSet<String> =
        names(target, "assignees", "login").into_iter().collect();
    if !assignees.iter().all(|a| have_assignees.contains(a)) {
        let all: BTreeSet<String> = have_assignees.iter().cloned().chain(assignees).collect();
        patch.insert("assignees".into(), json!(all));
    }
    let open = str_field(target, "state") != Some("closed");
    if !real_pull && item.closed() && open {
        patch.insert("state".into(), json!("closed"));
        if let Some(r) = str_field(m, "state_reason").filter(|r| CLOSE_REASONS.contains(r)) {
            patch.insert("state_reason".into(), json!(r));
        }
    }
    let issue_path = engine.repo_path(&format!("/issues/{new}"));
    if !patch.is_empty() {
        let mut body = Value::Object(patch);
        match engine.patch(&issue_path, &body).await {
            Err(e) if e.status() == Some(422) && body.get("assignees").is_some() => {
                engine.skip(format!("assignees of #{}", item.number), message(&e));
                if let Some(map) = body.as_object_mut() {
                    map.remove("assignees");
                }
                if body.as_object().is_some_and(|m| !m.is_empty()) {
                    engine.patch(&issue_path, &body).await?;
                }
            }
            other => {
                other?;
            }
        }
    }
    if real_pull && item.closed() && open {
        let path = engine.repo_path(&format!("/pulls/{new}"));
        engine.patch(&path, &json!({ "state": "closed" })).await?;
    }
    if item.locked() && target.get("locked").and_then(Value::as_bool) != Some(true) {
        let mut body = json!({});
        if let Some(reason) = str_field(m, "active_lock_reason") {
            body["lock_reason"] = json!(reason);
        }
        engine
            .put(&format!("{issue_path}/lock"), Some(&body))
            .await?;
    }
    Ok(())
}
