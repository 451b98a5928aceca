//! The text a restored item carries: a header naming what GitHub cannot keep (original number,
//! author, time), the original body with its cross-references rewritten, and a hidden marker
//! naming the item's source, which makes a restore safe to repeat.
//!
//! ```text
//! > Originally #12 by @dev on 2024-02-01T09:00:00Z (restored by repovault from backup B)
//!
//! <original body, `#N` rewritten to the new numbers>
//!
//! <!-- repovault:source backup=B kind=issue number=12 -->
//! ```

use std::collections::BTreeMap;

/// Where every marker starts.
pub const MARKER_PREFIX: &str = "<!-- repovault:source ";
const MARKER_SUFFIX: &str = " -->";
/// Every header ends with this (its start varies by kind).
const HEADER_TAIL: &str = "(restored by repovault from backup ";

/// What a marker names: the item's source in a backup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub backup: String,
    /// `issue`, `pull`, `comment`, `review`, `review_comment`, `release`.
    pub kind: String,
    /// The original number (issues, pulls) or id (everything else).
    pub key: u64,
}

impl Source {
    /// The journal's key for this source: `KIND:KEY`.
    pub fn journal_key(&self) -> String {
        format!("{}:{}", self.kind, self.key)
    }
}

/// The hidden marker of `kind` `key` from `backup` (`number=` for issues and pulls, `id=` for
/// the rest).
pub fn marker(backup: &str, kind: &str, key: u64) -> String {
    let field = if matches!(kind, "issue" | "pull") {
        "number"
    } else {
        "id"
    };
    format!("{MARKER_PREFIX}backup={backup} kind={kind} {field}={key}{MARKER_SUFFIX}")
}

/// The marker in `body`, if it has one.
pub fn parse_marker(body: &str) -> Option<Source> {
    let start = body.rfind(MARKER_PREFIX)? + MARKER_PREFIX.len();
    let rest = &body[start..];
    let end = rest.find(MARKER_SUFFIX)?;
    let (mut backup, mut kind, mut key) = (None, None, None);
    for field in rest[..end].split_whitespace() {
        match field.split_once('=') {
            Some(("backup", v)) => backup = Some(v.to_string()),
            Some(("kind", v)) => kind = Some(v.to_string()),
            Some(("number" | "id", v)) => key = v.parse().ok(),
            _ => {}
        }
    }
    Some(Source {
        backup: backup?,
        kind: kind?,
        key: key?,
    })
}

/// The header line: `> {what} (restored by repovault from backup {backup})`. `what` is kept
/// on one line (newlines become spaces) so the header is one paragraph.
pub fn header(what: &str, backup: &str) -> String {
    let what = what.replace(['\r', '\n'], " ");
    format!("> {what} {HEADER_TAIL}{backup})")
}

/// Header, body (when not empty) and marker, separated by blank lines.
pub fn compose(header: &str, body: &str, marker: &str) -> String {
    if body.is_empty() {
        format!("{header}\n\n{marker}")
    } else {
        format!("{header}\n\n{body}\n\n{marker}")
    }
}

/// The header paragraph of a restored item's `body`, if it starts with one.
pub fn header_of(body: &str) -> Option<&str> {
    if !body.starts_with("> ") {
        return None;
    }
    let end = body.find("\n\n").unwrap_or(body.len());
    body[..end].contains(HEADER_TAIL).then_some(&body[..end])
}

/// The original body of a restored item: `body` without the header and the marker (unchanged
/// when it has neither).
pub fn strip(body: &str) -> String {
    let mut rest = body;
    if rest.starts_with("> ")
        && let Some(end) = rest.find("\n\n")
        && rest[..end].contains(HEADER_TAIL)
    {
        rest = &rest[end + 2..];
    } else if rest.starts_with("> ") && !rest.contains("\n\n") && rest.contains(HEADER_TAIL) {
        rest = "";
    }
    if let Some(at) = rest.rfind(MARKER_PREFIX)
        && rest[at..].trim_end().ends_with(MARKER_SUFFIX.trim_start())
    {
        rest = rest[..at].strip_suffix("\n\n").unwrap_or(&rest[..at]);
    }
    rest.to_string()
}

/// The cross-references in `text`: (start, end, number) of each `#N` not preceded by a word
/// character, `&`, `/` or `#` (so `owner/repo#3`, `&#39;` and URL fragments are left alone) and
/// not followed by a word character.
fn find_refs(text: &str) -> Vec<(usize, usize, u64)> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'#' {
            i += 1;
            continue;
        }
        let before_ok =
            i == 0 || !(word(bytes[i - 1]) || matches!(bytes[i - 1], b'&' | b'/' | b'#'));
        let mut j = i + 1;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        let after_ok = j == bytes.len() || !word(bytes[j]);
        if before_ok
            && after_ok
            && j > i + 1
            && let Ok(n) = text[i + 1..j].parse::<u64>()
        {
            found.push((i, j, n));
        }
        i = j.max(i + 1);
    }
    found
}

/// `text` with every cross-reference `#N` (see [`refs`]) whose `N` is in `numbers` rewritten
/// to its new number.
pub fn rewrite_refs(text: &str, numbers: &BTreeMap<u64, u64>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end, n) in find_refs(text) {
        if let Some(new) = numbers.get(&n) {
            out.push_str(&text[copied..start]);
            out.push('#');
            out.push_str(&new.to_string());
            copied = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Every number `text` cross-references: `#N` not preceded by a word character, `&`, `/` or
/// `#` and not followed by a word character.
pub fn refs(text: &str) -> Vec<u64> {
    find_refs(text).into_iter().map(|(_, _, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_strip_round_trip() {
        let h = header("Originally #12 by @dev on 2024-01-02T00:00:00Z", "B1");
        let m = marker("B1", "issue", 12);
        for body in ["", "text", "a\n\nb", "> quoted\n\nthen"] {
            let full = compose(&h, body, &m);
            assert_eq!(strip(&full), body, "{full:?}");
            assert_eq!(
                parse_marker(&full),
                Some(Source {
                    backup: "B1".into(),
                    kind: "issue".into(),
                    key: 12
                })
            );
        }
        assert_eq!(strip("plain\n\nbody"), "plain\n\nbody");
        assert_eq!(parse_marker("no marker"), None);
        let c = marker("B1", "review_comment", 99);
        assert_eq!(
            parse_marker(&c).map(|s| s.journal_key()),
            Some("review_comment:99".to_string())
        );
    }

    #[test]
    fn rewrites_only_references() {
        let numbers = BTreeMap::from([(2, 3), (10, 11)]);
        assert_eq!(
            rewrite_refs(
                "See #2, #10 and #5; not a#2, o/r#2, &#2; or #2x. #2",
                &numbers
            ),
            "See #3, #11 and #5; not a#2, o/r#2, &#2; or #2x. #3"
        );
        assert_eq!(rewrite_refs("#", &numbers), "#");
        assert_eq!(rewrite_refs("ünï #2 ü", &numbers), "ünï #3 ü");
        assert_eq!(refs("x #2 y#3 #4"), vec![2, 4]);
    }
}
