//! Attachments: files that issue, pull request, comment, review and release bodies link to on
//! the forge's own host (`https://HOST/user-attachments/...`, `https://HOST/OWNER/REPO/files/...`,
//! `https://HOST/OWNER/REPO/assets/...`). Fetched by reference and stored by checksum
//! (`attachments/<sha256>`); `meta/attachments.json` maps each URL to `{sha256, size}`, or to
//! `{error}` when it could not be fetched. In an incremental export a URL already held by the
//! previous tree is carried over without a request.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::export_store::aggregate_mtime;
use super::{ComponentStatus, Ctx};
use crate::forge::ForgeError;
use crate::forge::github::blocking::blocking;

const REL: &str = "meta/attachments.json";

/// The web host of an API base: `api.github.com` → `github.com`, `HOST/api/v3` → `HOST`
/// (with its port).
fn web_host(api_url: &str) -> Option<String> {
    let url = url::Url::parse(api_url).ok()?;
    let host = url.host_str()?;
    let host = if host == "api.github.com" {
        "github.com"
    } else {
        host
    };
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Attachment URLs in `text` on `host`.
fn urls_in(text: &str, host: &str, owner: &str, name: &str, found: &mut BTreeSet<String>) {
    let repo_files = format!("/{owner}/{name}/files/");
    let repo_assets = format!("/{owner}/{name}/assets/");
    for scheme in ["https://", "http://"] {
        let prefix = format!("{scheme}{host}/");
        let mut rest = text;
        while let Some(at) = rest.find(&prefix) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| {
                    c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ']')
                })
                .unwrap_or(tail.len());
            let url = tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
            let path = &url[prefix.len() - 1..];
            if path.starts_with("/user-attachments/")
                || path.starts_with(&repo_files)
                || path.starts_with(&repo_assets)
            {
                found.insert(url.to_string());
            }
            rest = &tail[end.max(1)..];
        }
    }
}

/// Every string under a `body` key, recursively.
fn bodies<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                match inner {
                    Value::String(s) if k == "body" => out.push(s),
                    _ => bodies(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| bodies(i, out)),
        _ => {}
    }
}

/// Blocking: every `*.json` under `dir`, recursively.
fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Blocking: the attachment URLs on `host` in every issue, pull request and release document
/// under `out`.
fn linked_urls(
    out: &Path,
    host: &str,
    owner: &str,
    name: &str,
) -> Result<BTreeSet<String>, ForgeError> {
    let mut files = Vec::new();
    for dir in ["meta/issues", "meta/pulls", "meta/releases"] {
        json_files(&out.join(dir), &mut files);
    }
    let mut urls = BTreeSet::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| ForgeError::io(&file, e))?;
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let mut texts = Vec::new();
        bodies(&doc, &mut texts);
        for text in texts {
            urls_in(text, host, owner, name, &mut urls);
        }
    }
    Ok(urls)
}

pub(crate) async fn export(ctx: &mut Ctx<'_>) -> ComponentStatus {
    match run(ctx).await {
        Ok(0) => ComponentStatus::included(None),
        Ok(unreachable) => ComponentStatus::included(Some(format!(
            "{unreachable} attachment(s) unreachable, recorded with the error in {REL}"
        ))),
        Err(e) => ComponentStatus::failed(e.to_string()),
    }
}

/// Returns how many attachments could not be fetched.
async fn run(ctx: &mut Ctx<'_>) -> Result<usize, ForgeError> {
    let Some(host) = web_host(ctx.client.api_url()) else {
        return Ok(0);
    };
    let (out, owner, name) = (
        ctx.tree.out.clone(),
        ctx.owner.to_string(),
        ctx.name.to_string(),
    );
    let urls = blocking(&ctx.tree.out, move || {
        linked_urls(&out, &host, &owner, &name)
    })
    .await?;
    let previous: Map<String, Value> = ctx
        .tree
        .previous_json(REL)
        .await
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let mut index = Map::new();
    let mut unreachable = 0;
    for url in urls {
        if let Some(old) = previous.get(&url)
            && let Some(sha) = old.get("sha256").and_then(Value::as_str)
            && ctx.tree.carry_over(&format!("attachments/{sha}")).await?
        {
            index.insert(url, old.clone());
            continue;
        }
        // Streamed and hashed on the way; stored under its checksum once whole.
        let stored = ctx
            .tree
            .download(
                ctx.client,
                &url,
                |d| format!("attachments/{}", d.sha256),
                aggregate_mtime(),
            )
            .await;
        match stored {
            Ok(d) => {
                index.insert(url, json!({ "sha256": d.sha256, "size": d.size }));
            }
            // The tree itself failing is the component's failure, not the attachment's.
            Err(e @ ForgeError::Io { .. }) => return Err(e),
            Err(e) => {
                unreachable += 1;
                index.insert(url, json!({ "error": e.to_string() }));
            }
        }
    }
    ctx.tree
        .write_json(REL, Value::Object(index), aggregate_mtime())
        .await?;
    Ok(unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_attachment_urls_on_the_forge_host_only() {
        let mut found = BTreeSet::new();
        let text = "See ![x](https://h:1/user-attachments/assets/abc) and \
                    https://h:1/acme/w/files/12/log.txt, not https://h:1/acme/w/issues/2 \
                    nor https://other/user-attachments/assets/z";
        urls_in(text, "h:1", "acme", "w", &mut found);
        let found: Vec<_> = found.into_iter().collect();
        assert_eq!(
            found,
            vec![
                "https://h:1/acme/w/files/12/log.txt".to_string(),
                "https://h:1/user-attachments/assets/abc".to_string(),
            ]
        );
        assert_eq!(
            web_host("https://api.github.com").as_deref(),
            Some("github.com")
        );
        assert_eq!(web_host("https://h:1/api/v3").as_deref(), Some("h:1"));
    }
}
