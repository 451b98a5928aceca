//! Lists read whole: `per_page=100`, `Link: rel="next"` followed, lists wrapped in an object
//! unwrapped, and a conditional first page (`If-None-Match`) that answers "unchanged" without
//! reading further.

use serde_json::Value;

use super::rest_client::GitHubClient;
use crate::forge::ForgeError;

/// GitHub's largest `per_page` ("Using pagination in the REST API").
pub const PER_PAGE: u32 = 100;

/// A whole list read with [`GitHubClient::get_list`].
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Every item of every page (empty when `not_modified`).
    pub items: Vec<Value>,
    /// The first page's `ETag`, only when the list fit in one page (so a 304 on it means the
    /// whole list is unchanged).
    pub etag: Option<String>,
    /// The conditional request was answered 304: nothing changed.
    pub not_modified: bool,
}

/// See [`GitHubClient::get_list`].
pub(super) async fn read_list(
    client: &GitHubClient,
    path: &str,
    if_none_match: Option<&str>,
) -> Result<Listing, ForgeError> {
    let first = with_per_page(path);
    let page = client.get_json(&first, if_none_match).await?;
    if page.status == 304 {
        return Ok(Listing {
            items: Vec::new(),
            etag: if_none_match.map(str::to_string),
            not_modified: true,
        });
    }
    let etag = page.etag.clone().filter(|_| page.next.is_none());
    let mut next = page.next.clone();
    let mut items = list_items(page.body, &first)?;
    while let Some(url) = next {
        let page = client.get_json(&url, None).await?;
        next = page.next.clone();
        items.extend(list_items(page.body, &url)?);
    }
    Ok(Listing {
        items,
        etag,
        not_modified: false,
    })
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link_rel(link, "next")
}

/// The URL of relation `rel` in a `Link` header.
pub fn link_rel(link: &str, rel: &str) -> Option<String> {
    let wanted = format!("rel=\"{rel}\"");
    link.split(',').find_map(|part| {
        let (url, rels) = part.split_once(';')?;
        rels.contains(&wanted).then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// `path` with `per_page=100` unless it names one.
fn with_per_page(path: &str) -> String {
    if path.contains("per_page=") {
        path.to_string()
    } else if path.contains('?') {
        format!("{path}&per_page={PER_PAGE}")
    } else {
        format!("{path}?per_page={PER_PAGE}")
    }
}

/// The items of one list page: an array, or the array field of a wrapping object.
fn list_items(body: Option<Value>, path: &str) -> Result<Vec<Value>, ForgeError> {
    let not_a_list = || ForgeError::Decode {
        method: "GET".into(),
        path: path.to_string(),
        detail: "a list was expected".into(),
    };
    match body {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Object(map)) => map
            .into_iter()
            .find_map(|(_, v)| match v {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .ok_or_else(not_a_list),
        Some(_) => Err(not_a_list()),
    }
}
