//! Releases and their assets (uploaded through the `upload_url` GitHub gives each release,
//! streamed from the export tree's files).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::source::{Release, Source};
use super::text::{self, compose, header, marker};
use super::{Engine, decode, encode, login, refused, str_field};
use crate::forge::ForgeError;
// The export wrote asset files under this name; the restore must read the same one.
use crate::forge::github::export::release_export::file_name;

pub(super) async fn releases(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    let listed = engine
        .client
        .get_all(&engine.repo_path("/releases"))
        .await?;
    let mut by_key: BTreeMap<String, Value> = BTreeMap::new();
    let mut by_id: BTreeMap<u64, Value> = BTreeMap::new();
    let mut by_tag: BTreeMap<String, Value> = BTreeMap::new();
    for v in listed {
        if let Some(source) = str_field(&v, "body").and_then(text::parse_marker)
            && source.backup == engine.opts.backup_id.as_str()
        {
            by_key.insert(source.journal_key(), v.clone());
        }
        if let Some(tag) = str_field(&v, "tag_name") {
            by_tag.insert(tag.to_string(), v.clone());
        }
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            by_id.insert(id, v);
        }
    }
    for r in &src.releases {
        let key = format!("release:{}", r.id);
        let tag = str_field(&r.doc, "tag_name").unwrap_or("");
        // Marker, journal, or a release of the same tag (GitHub allows one per tag).
        let existing = by_key
            .get(&key)
            .or_else(|| engine.journal.get(&key).and_then(|id| by_id.get(&id)))
            .or_else(|| by_tag.get(tag))
            .cloned();
        let target = match existing {
            Some(v) => {
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    engine.journal.record(key, id).await?;
                }
                engine.reused("release", "releases");
                v
            }
            None => match create_release(engine, r).await {
                Ok(v) => {
                    let id = v
                        .get("id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| decode("POST", &engine.repo_path("/releases"), "no id"))?;
                    engine.journal.record(key, id).await?;
                    engine.created("release", "releases");
                    v
                }
                Err(e) if refused(&e) => {
                    engine.skip(format!("release {tag}"), e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        assets(engine, r, &target).await?;
    }
    Ok(())
}

async fn create_release(engine: &mut Engine<'_>, r: &Release) -> Result<Value, ForgeError> {
    let d = &r.doc;
    let author = d.get("author").map(login).unwrap_or_else(|| "ghost".into());
    let draft = d.get("draft").and_then(Value::as_bool).unwrap_or(false);
    let what = match str_field(d, "published_at") {
        Some(at) if !draft => format!("Originally published by @{author} on {at}"),
        _ => format!(
            "Originally drafted by @{author} on {}",
            str_field(d, "created_at").unwrap_or("an unknown date")
        ),
    };
    let mut body = json!({
        "tag_name": str_field(d, "tag_name").unwrap_or(""),
        "body": compose(
            &header(&what, engine.backup()),
            str_field(d, "body").unwrap_or(""),
            &marker(engine.backup(), "release", r.id),
        ),
        "draft": draft,
        "prerelease": d.get("prerelease").and_then(Value::as_bool).unwrap_or(false),
    });
    for field in ["name", "target_commitish"] {
        if let Some(v) = str_field(d, field) {
            body[field] = json!(v);
        }
    }
    engine.post(&engine.repo_path("/releases"), &body).await
}

/// Uploads the assets of `r` that `target` (the restored release) lacks, by name.
async fn assets(engine: &mut Engine<'_>, r: &Release, target: &Value) -> Result<(), ForgeError> {
    let have: Vec<String> = target
        .get("assets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| str_field(x, "name").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let Some(upload_url) = str_field(target, "upload_url") else {
        if !r.assets().is_empty() {
            engine.skip(
                format!("assets of release {}", r.id),
                "GitHub gave the release no upload_url".into(),
            );
        }
        return Ok(());
    };
    // `https://uploads.github.com/repos/O/R/releases/ID/assets{?name,label}`
    let base = upload_url
        .split('{')
        .next()
        .unwrap_or(upload_url)
        .to_string();
    for asset in r.assets() {
        let Some(name) = str_field(asset, "name") else {
            continue;
        };
        let id = asset.get("id").and_then(Value::as_u64).unwrap_or(0);
        if have.iter().any(|h| h == name) {
            engine.reused("asset", "releases");
            continue;
        }
        let file = r.dir.join(file_name(name));
        match tokio::fs::metadata(&file).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                engine.skip(
                    format!("asset {name} of release {}", r.id),
                    "its bytes are not in the backup".into(),
                );
                continue;
            }
            Err(e) => return Err(ForgeError::io(&file, e)),
        }
        let mut url = format!("{base}?name={}", encode(name));
        if let Some(label) = str_field(asset, "label").filter(|l| !l.is_empty()) {
            url.push_str(&format!("&label={}", encode(label)));
        }
        let content_type = str_field(asset, "content_type")
            .filter(|c| !c.is_empty())
            .unwrap_or("application/octet-stream")
            .to_string();
        // Streamed from the file: an asset can be gigabytes.
        let created = engine.upload(&url, &content_type, &file).await?;
        if let Some(new) = created.get("id").and_then(Value::as_u64) {
            engine.journal.record(format!("asset:{id}"), new).await?;
        }
        engine.created("asset", "releases");
    }
    Ok(())
}
