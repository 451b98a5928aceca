//! Issues and pull requests: one document per item, sharded by `number / 100`.
//!
//! Full: the repository-wide lists (`/issues`, `/issues/comments`, `/issues/events`,
//! `/pulls/comments`: a page holds 100 items of any issue) plus, per pull request, the pull and
//! its reviews. Incremental: the items changed since the cursor (`/issues?since=`, whose answer
//! holds pull requests too, `/issues/comments?since=`, `/pulls/comments?since=`) are re-read
//! whole; every other document is carried over from the previous tree.
//!
//! The three `since` queries are conditional: GitHub's ETag is a hash of the answer, not of the
//! URL, so sending the previous answer's ETag makes an answer equal to it a 304, which GitHub
//! does not count against the limit. An answer equal to the previous one holds nothing this
//! tree does not have already (those items were rewritten when it was first read). A full export
//! ends by running the same queries from its own start (priming): items that changed while it
//! ran are rewritten, and the next incremental of an unchanged repository is answered with 304s
//! only.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::export_store::{Doc, mtime_of, timestamp};
use super::{ComponentStatus, Ctx, classify};
use crate::forge::ForgeError;

/// `meta/issues/<shard>/<n>.json` (`kind` = `issues` or `pulls`).
pub(crate) fn doc_path(kind: &str, number: u64) -> String {
    format!("meta/{kind}/{}/{number}.json", number / 100)
}

fn number_of(v: &Value) -> Option<u64> {
    v.get("number").and_then(Value::as_u64)
}

fn id_of(v: &Value) -> u64 {
    v.get("id").and_then(Value::as_u64).unwrap_or(0)
}

/// The number at the end of an `issue_url` / `pull_request_url`.
fn number_in_url(v: &Value, field: &str) -> Option<u64> {
    v.get(field)?.as_str()?.rsplit('/').next()?.parse().ok()
}

fn is_pull(issue: &Value) -> bool {
    issue.get("pull_request").is_some_and(|p| !p.is_null())
}

fn sorted(mut items: Vec<Value>) -> Vec<Value> {
    items.sort_by_key(id_of);
    items
}

/// Groups items by the issue/pull number `key` finds in each.
fn group(items: Vec<Value>, key: impl Fn(&Value) -> Option<u64>) -> BTreeMap<u64, Vec<Value>> {
    let mut out: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for item in items {
        if let Some(n) = key(&item) {
            out.entry(n).or_default().push(item);
        }
    }
    out
}

/// The latest of `fields` over `values`, as the document's mtime.
fn latest<'a>(
    values: impl IntoIterator<Item = &'a Value>,
    fields: &[&str],
) -> Option<chrono::DateTime<chrono::Utc>> {
    values
        .into_iter()
        .flat_map(|v| fields.iter().filter_map(move |f| timestamp(v, f)))
        .max()
}

/// An issue's document (`None` without a number).
fn issue_doc(issue: Value, comments: Vec<Value>, events: Vec<Value>) -> Option<Doc> {
    let n = number_of(&issue)?;
    let comments = sorted(comments);
    let events: Vec<Value> = sorted(events)
        .into_iter()
        .map(|mut e| {
            // The repository-wide event list embeds the issue; the per-issue one does not.
            if let Some(map) = e.as_object_mut() {
                map.remove("issue");
            }
            e
        })
        .collect();
    let mtime = latest(
        std::iter::once(&issue)
            .chain(comments.iter())
            .chain(events.iter()),
        &["updated_at", "created_at"],
    );
    Some(Doc {
        rel: doc_path("issues", n),
        value: json!({ "issue": issue, "comments": comments, "events": events }),
        mtime: mtime_of(mtime),
    })
}

async fn write_pull(
    ctx: &Ctx<'_>,
    pull: Value,
    comments: Vec<Value>,
    reviews: Vec<Value>,
    review_comments: Vec<Value>,
) -> Result<(), ForgeError> {
    let Some(n) = number_of(&pull) else {
        return Ok(());
    };
    let comments = sorted(comments);
    let reviews = sorted(reviews);
    let review_comments = sorted(review_comments);
    let mtime = latest(
        std::iter::once(&pull)
            .chain(comments.iter())
            .chain(reviews.iter())
            .chain(review_comments.iter()),
        &["updated_at", "submitted_at"],
    );
    let doc = json!({
        "pull": pull,
        "comments": comments,
        "reviews": reviews,
        "review_comments": review_comments,
    });
    ctx.tree
        .write_json(&doc_path("pulls", n), doc, mtime_of(mtime))
        .await
}

/// Issues and pulls; returns their statuses.
pub(crate) async fn export(ctx: &mut Ctx<'_>) -> (ComponentStatus, ComponentStatus) {
    let since = ctx.cursors_in.since.get("issues").cloned();
    match since.filter(|_| ctx.incremental) {
        Some(since) => match incremental(ctx, &since).await {
            Ok(()) => (
                ComponentStatus::included(None),
                ComponentStatus::included(None),
            ),
            Err(e) => {
                let s = classify(Err(e), "issues: read and pull_requests: read");
                (s.clone(), s)
            }
        },
        None => full(ctx).await,
    }
}

async fn full(ctx: &mut Ctx<'_>) -> (ComponentStatus, ComponentStatus) {
    let (issues, pulls) = full_lists(ctx).await;
    if issues.is_complete()
        && pulls.is_complete()
        && let Some(started) = ctx.started.clone()
        && let Err(e) = apply_changes(ctx, &started).await
    {
        let s = classify(Err(e), "issues: read and pull_requests: read");
        return (s.clone(), s);
    }
    (issues, pulls)
}

async fn full_lists(ctx: &mut Ctx<'_>) -> (ComponentStatus, ComponentStatus) {
    // Conversation comments of issues and pulls alike, by number.
    let comments = ctx
        .client
        .get_all(&ctx.repo_path("/issues/comments"))
        .await
        .map(|c| group(c, |v| number_in_url(v, "issue_url")));
    let (issues, comments) = match comments {
        Ok(map) => (
            classify(full_issues(ctx, &map).await, "issues: read"),
            Some(map),
        ),
        Err(e) => (classify(Err(e), "issues: read"), None),
    };
    let pulls = classify(
        full_pulls(ctx, comments.as_ref()).await,
        "pull_requests: read",
    );
    (issues, pulls)
}

async fn full_issues(
    ctx: &mut Ctx<'_>,
    comments: &BTreeMap<u64, Vec<Value>>,
) -> Result<(), ForgeError> {
    let issues = ctx
        .client
        .get_all(&ctx.repo_path("/issues?state=all"))
        .await?;
    let events = ctx.client.get_all(&ctx.repo_path("/issues/events")).await?;
    let mut events = group(events, |e| e.get("issue").and_then(number_of));
    let mut docs = Vec::new();
    for issue in issues.into_iter().filter(|i| !is_pull(i)) {
        let Some(n) = number_of(&issue) else { continue };
        let c = comments.get(&n).cloned().unwrap_or_default();
        let e = events.remove(&n).unwrap_or_default();
        docs.extend(issue_doc(issue, c, e));
    }
    // Every issue was read already: one hand-off to the blocking pool writes them all.
    ctx.tree.write_docs(docs).await
}

async fn full_pulls(
    ctx: &mut Ctx<'_>,
    comments: Option<&BTreeMap<u64, Vec<Value>>>,
) -> Result<(), ForgeError> {
    let pulls = ctx
        .client
        .get_all(&ctx.repo_path("/pulls?state=all"))
        .await?;
    let review_comments = ctx
        .client
        .get_all(&ctx.repo_path("/pulls/comments"))
        .await?;
    let mut review_comments = group(review_comments, |v| number_in_url(v, "pull_request_url"));
    for n in pulls.iter().filter_map(number_of) {
        let c = match comments {
            Some(all) => all.get(&n).cloned().unwrap_or_default(),
            None => {
                ctx.client
                    .get_all(&ctx.repo_path(&format!("/issues/{n}/comments")))
                    .await?
            }
        };
        let rc = review_comments.remove(&n).unwrap_or_default();
        pull_document(ctx, n, c, rc).await?;
    }
    Ok(())
}

/// Reads pull `n` and its reviews and writes its document.
async fn pull_document(
    ctx: &mut Ctx<'_>,
    n: u64,
    comments: Vec<Value>,
    review_comments: Vec<Value>,
) -> Result<(), ForgeError> {
    let pull = ctx
        .client
        .get_json(&ctx.repo_path(&format!("/pulls/{n}")), None)
        .await?
        .body
        .unwrap_or(Value::Null);
    let reviews = ctx
        .client
        .get_all(&ctx.repo_path(&format!("/pulls/{n}/reviews")))
        .await?;
    write_pull(ctx, pull, comments, reviews, review_comments).await
}

async fn incremental(ctx: &mut Ctx<'_>, since: &str) -> Result<(), ForgeError> {
    // Everything stays as it was but what changed since the cursor.
    ctx.tree.carry_over("meta/issues").await?;
    ctx.tree.carry_over("meta/pulls").await?;
    apply_changes(ctx, since).await
}

/// A `since` list, conditional on the previous answer's ETag (see the module's doc); a 304 is
/// an empty list: nothing the tree does not hold.
async fn changed_since(ctx: &mut Ctx<'_>, key: &str, path: &str) -> Result<Vec<Value>, ForgeError> {
    Ok(match ctx.cond.list(ctx.client, key, path).await? {
        super::export_store::Fetched::Fresh(items) => items,
        super::export_store::Fetched::Unchanged => Vec::new(),
    })
}

/// Rewrites every issue and pull request that changed (itself, a comment or a review comment)
/// since `since`.
async fn apply_changes(ctx: &mut Ctx<'_>, since: &str) -> Result<(), ForgeError> {
    let q = format!("since={since}");
    let path = ctx.repo_path(&format!("/issues?state=all&{q}"));
    let changed = changed_since(ctx, "since/issues", &path).await?;
    let path = ctx.repo_path(&format!("/issues/comments?{q}"));
    let comments = changed_since(ctx, "since/issue_comments", &path).await?;
    let path = ctx.repo_path(&format!("/pulls/comments?{q}"));
    let review_comments = changed_since(ctx, "since/review_comments", &path).await?;

    let mut issues: BTreeMap<u64, Option<Value>> = BTreeMap::new();
    let mut pulls: BTreeSet<u64> = BTreeSet::new();
    for item in changed {
        let Some(n) = number_of(&item) else { continue };
        if is_pull(&item) {
            pulls.insert(n);
        } else {
            issues.insert(n, Some(item));
        }
    }
    for n in review_comments
        .iter()
        .filter_map(|v| number_in_url(v, "pull_request_url"))
    {
        pulls.insert(n);
    }
    for n in comments
        .iter()
        .filter_map(|v| number_in_url(v, "issue_url"))
    {
        if pulls.contains(&n) || issues.contains_key(&n) {
            continue;
        }
        if ctx
            .tree
            .previous_file(&doc_path("pulls", n))
            .await
            .is_some()
        {
            pulls.insert(n);
        } else {
            // An issue (or a pull request new to us: `pull_request` tells).
            issues.insert(n, None);
        }
    }
    for (n, issue) in issues {
        let issue = match issue {
            Some(i) => i,
            None => ctx
                .client
                .get_json(&ctx.repo_path(&format!("/issues/{n}")), None)
                .await?
                .body
                .unwrap_or(Value::Null),
        };
        if is_pull(&issue) {
            pulls.insert(n);
            continue;
        }
        let comments = ctx
            .client
            .get_all(&ctx.repo_path(&format!("/issues/{n}/comments")))
            .await?;
        let events = ctx
            .client
            .get_all(&ctx.repo_path(&format!("/issues/{n}/events")))
            .await?;
        if let Some(doc) = issue_doc(issue, comments, events) {
            ctx.tree.write_docs(vec![doc]).await?;
        }
    }
    for n in pulls {
        let comments = ctx
            .client
            .get_all(&ctx.repo_path(&format!("/issues/{n}/comments")))
            .await?;
        let review_comments = ctx
            .client
            .get_all(&ctx.repo_path(&format!("/pulls/{n}/comments")))
            .await?;
        pull_document(ctx, n, comments, review_comments).await?;
    }
    Ok(())
}
