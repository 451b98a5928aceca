//! Releases: `meta/releases/<id>.json` (the release with its assets' metadata) and the asset
//! bytes under `releases/<id>/<asset name>`. Conditional on the list's ETag: a 304 carries the
//! whole previous set over; otherwise an asset whose id, size and `updated_at` are unchanged is
//! copied from the previous tree instead of downloaded again. Assets are streamed to disk (see
//! [`super::export_store::Tree::download`]), never held whole in memory.
//!
//! Assets' `download_count` is left out of the documents: it changes with every download (ours
//! included), so keeping it would rewrite every release document on every export, and it cannot
//! be restored anyway.

use serde_json::Value;

use super::export_store::{Fetched, mtime_of, timestamp};
use super::{ComponentStatus, Ctx, classify};
use crate::forge::ForgeError;

/// An asset's file name: GitHub's name with path separators replaced.
pub fn file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    }
}

fn same_asset(a: &Value, b: &Value) -> bool {
    ["id", "size", "updated_at"]
        .iter()
        .all(|k| a.get(k) == b.get(k))
}

pub(crate) async fn export(ctx: &mut Ctx<'_>) -> ComponentStatus {
    let result = run(ctx).await;
    if result.is_err() {
        // The documents may be incomplete: the next incremental export must not trust a 304.
        ctx.cond.new.remove(KEY);
    }
    classify(result, "contents: read")
}

const KEY: &str = "releases";

async fn run(ctx: &mut Ctx<'_>) -> Result<(), ForgeError> {
    let path = ctx.repo_path("/releases");
    let releases = match ctx.cond.list(ctx.client, KEY, &path).await? {
        Fetched::Unchanged => {
            ctx.tree.carry_over("meta/releases").await?;
            ctx.tree.carry_over("releases").await?;
            return Ok(());
        }
        Fetched::Fresh(items) => items,
    };
    let mut written = Vec::new();
    let mut downloaded = false;
    for mut release in releases {
        strip_download_counts(&mut release);
        written.push(release.clone());
        let Some(id) = release.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let doc_rel = format!("meta/releases/{id}.json");
        let previous = ctx.tree.previous_json(&doc_rel).await;
        let assets = release
            .get("assets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for asset in &assets {
            let Some(name) = asset.get("name").and_then(Value::as_str) else {
                continue;
            };
            let rel = format!("releases/{id}/{}", file_name(name));
            let unchanged = previous
                .as_ref()
                .and_then(|p| p.get("assets"))
                .and_then(Value::as_array)
                .is_some_and(|old| old.iter().any(|o| same_asset(o, asset)));
            if unchanged && ctx.tree.carry_over(&rel).await? {
                continue;
            }
            let url =
                asset
                    .get("url")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ForgeError::Decode {
                        method: "GET".into(),
                        path: path.clone(),
                        detail: format!("asset {name:?} of release {id} has no url"),
                    })?;
            // Streamed to a temporary file and renamed into place once whole.
            let mtime = mtime_of(timestamp(asset, "updated_at"));
            ctx.tree.download(ctx.client, url, |_| rel, mtime).await?;
            downloaded = true;
        }
        let mtime = std::iter::once(&release)
            .chain(assets.iter())
            .flat_map(|v| {
                ["updated_at", "published_at", "created_at"]
                    .iter()
                    .filter_map(move |f| timestamp(v, f))
            })
            .max();
        ctx.tree
            .write_json(&doc_rel, release, mtime_of(mtime))
            .await?;
    }
    if downloaded {
        // Our downloads changed the list (GitHub counts them in `download_count`), so its ETag
        // would never match again: read it once more and keep that ETag when, counts aside, it
        // is what was written; otherwise the next export reads it whole.
        ctx.cond.new.remove(KEY);
        let again = ctx.client.get_list(&path, None).await?;
        let mut items = again.items;
        items.iter_mut().for_each(strip_download_counts);
        if items == written
            && let Some(tag) = again.etag
        {
            ctx.cond.new.insert(KEY.to_string(), tag);
        }
    }
    Ok(())
}

fn strip_download_counts(release: &mut Value) {
    if let Some(assets) = release.get_mut("assets").and_then(Value::as_array_mut) {
        for asset in assets {
            if let Some(map) = asset.as_object_mut() {
                map.remove("download_count");
            }
        }
    }
}
