//! The repository document and the simple lists: labels, milestones, workflows.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::export_store::aggregate_mtime;
use super::{ComponentStatus, Ctx, classify};
use crate::forge::ForgeError;

/// `meta/repo.json` (conditional on its ETag). Returns the server's time of the answer, the
/// start of this export for the next `since` cursor.
pub(crate) async fn repo(ctx: &mut Ctx<'_>) -> Result<DateTime<Utc>, ForgeError> {
    const KEY: &str = "repo";
    const REL: &str = "meta/repo.json";
    if ctx.tree.previous_file(REL).await.is_none() {
        ctx.cond.forget(KEY);
    }
    let old = ctx.cond.old.get(KEY).cloned();
    let path = ctx.repo_path("");
    let page = ctx.client.get_json(&path, old.as_deref()).await?;
    let started = page.date.unwrap_or_else(Utc::now);
    if page.status == 304 {
        ctx.tree.carry_over(REL).await?;
        if let Some(tag) = old {
            ctx.cond.new.insert(KEY.to_string(), tag);
        }
    } else {
        let body = page.body.unwrap_or(Value::Null);
        ctx.tree.write_json(REL, body, aggregate_mtime()).await?;
        if let Some(tag) = page.etag {
            ctx.cond.new.insert(KEY.to_string(), tag);
        }
    }
    Ok(started)
}

fn identity(v: Value) -> Value {
    v
}

/// Labels, milestones and workflows.
pub(crate) async fn export(ctx: &mut Ctx<'_>) -> Vec<(&'static str, ComponentStatus)> {
    let labels = ctx.repo_path("/labels");
    let r = ctx
        .aggregate("labels", "meta/labels.json", &labels, true, identity)
        .await;
    let labels_status = classify(r, "metadata: read");
    let milestones = ctx.repo_path("/milestones?state=all");
    let r = ctx
        .aggregate(
            "milestones",
            "meta/milestones.json",
            &milestones,
            true,
            identity,
        )
        .await;
    let milestones_status = classify(r, "issues: read");
    let workflows = ctx.repo_path("/actions/workflows");
    let r = ctx
        .aggregate(
            "workflows",
            "meta/workflows.json",
            &workflows,
            true,
            identity,
        )
        .await;
    let workflows_status = classify(r, "actions: read");
    vec![
        ("labels", labels_status),
        ("milestones", milestones_status),
        ("workflows", workflows_status),
    ]
}
