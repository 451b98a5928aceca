//! GitHub's pagination: `page` and `per_page` (default 30, at most 100) and a `Link` header with
//! `next`, `last`, `first` and `prev` as GitHub sends them (only those that apply).

use std::collections::BTreeMap;

use axum::http::{HeaderValue, Uri, header};
use axum::response::IntoResponse;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_PER_PAGE: usize = 30;
pub const MAX_PER_PAGE: usize = 100;

/// The query string as a map (last value wins), percent-decoded.
pub fn query(uri: &Uri) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Answers one page of `items` for a request to `public_base` + `uri`, with GitHub's `Link`.
pub fn paginate(public_base: &str, uri: &Uri, items: Vec<Value>) -> ApiResult {
    paginate_wrapped(public_base, uri, items, Value::Array)
}

/// [`paginate`] for routes that wrap the page in an object (e.g. `{"total_count": N,
/// "repositories": [...]}`): `wrap` builds the body from the page's items.
pub fn paginate_wrapped(
    public_base: &str,
    uri: &Uri,
    items: Vec<Value>,
    wrap: impl FnOnce(Vec<Value>) -> Value,
) -> ApiResult {
    let q = query(uri);
    let (page, per_page) = page_params(&q)?;
    let last = items.len().div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = (start + per_page).min(items.len());
    let body: Vec<Value> = items[start..end].to_vec();
    let mut resp = axum::Json(wrap(body)).into_response();
    let link = link_header(public_base, uri, &q, page, last);
    if let Some(link) = link
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    Ok(resp)
}

/// `page` and `per_page` of a query: (page ≥ 1, per_page in 1..=100, default 30).
pub fn page_params(q: &BTreeMap<String, String>) -> Result<(usize, usize), ApiError> {
    let per_page = match q.get("per_page") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_body(format!("per_page: {v:?} is not a number")))?
            .clamp(1, MAX_PER_PAGE),
        None => DEFAULT_PER_PAGE,
    };
    let page = match q.get("page") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_body(format!("page: {v:?} is not a number")))?
            .max(1),
        None => 1,
    };
    Ok((page, per_page))
}

/// Answers one page of a list of `total` items of which only the page (`items`) was made, with
/// the `Link` header [`paginate`] would send for the whole list. For lists too long to render
/// whole just to answer one page (a repository's commits).
pub fn paginate_counted(
    public_base: &str,
    uri: &Uri,
    total: usize,
    items: Vec<Value>,
) -> ApiResult {
    let q = query(uri);
    let (page, per_page) = page_params(&q)?;
    let last = total.div_ceil(per_page).max(1);
    let mut resp = axum::Json(Value::Array(items)).into_response();
    if let Some(link) = link_header(public_base, uri, &q, page, last)
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    Ok(resp)
}

fn link_header(
    public_base: &str,
    uri: &Uri,
    q: &BTreeMap<String, String>,
    page: usize,
    last: usize,
) -> Option<String> {
    if last <= 1 && page <= 1 {
        return None;
    }
    let url_for = |p: usize| {
        let mut q = q.clone();
        q.insert("page".into(), p.to_string());
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        format!("{public_base}{}?{qs}", uri.path())
    };
    let mut parts = Vec::new();
    if page > 1 {
        parts.push(format!("<{}>; rel=\"prev\"", url_for(page - 1)));
    }
    if page < last {
        parts.push(format!("<{}>; rel=\"next\"", url_for(page + 1)));
        parts.push(format!("<{}>; rel=\"last\"", url_for(last)));
    }
    if page > 1 {
        parts.push(format!("<{}>; rel=\"first\"", url_for(1)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn page_of(uri: &str, n: usize) -> (Vec<Value>, Option<String>) {
        let uri: Uri = uri.parse().unwrap();
        let items = (0..n).map(|i| Value::from(i as u64)).collect();
        let resp = paginate("https://h", &uri, items).unwrap();
        let link = resp
            .headers()
            .get(header::LINK)
            .map(|v| v.to_str().unwrap().to_string());
        let body =
            futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 20)).unwrap();
        (serde_json::from_slice(&body).unwrap(), link)
    }

    #[test]
    fn pages_and_links_follow_github() {
        let (items, link) = page_of("/api/v3/repos/o/r/issues?state=all&per_page=100", 250);
        assert_eq!(items.len(), 100);
        let link = link.unwrap();
        assert!(
            link.contains("page=2&per_page=100&state=all>; rel=\"next\""),
            "{link}"
        );
        assert!(
            link.contains("page=3&per_page=100&state=all>; rel=\"last\""),
            "{link}"
        );
        let (items, link) = page_of("/x?per_page=100&page=3", 250);
        assert_eq!(items.len(), 50);
        let link = link.unwrap();
        assert!(link.contains("rel=\"prev\"") && link.contains("rel=\"first\""));
        assert!(!link.contains("rel=\"next\""));
        let (items, link) = page_of("/x", 10);
        assert_eq!((items.len(), link), (10, None));
        // per_page is capped at 100, as GitHub caps it.
        let (items, _) = page_of("/x?per_page=500", 250);
        assert_eq!(items.len(), 100);
    }
}
