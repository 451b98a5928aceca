//! The one scrub of secrets from text that leaves the process: error messages, log lines and
//! anything a server or a child process said that we repeat.
//!
//! [`scrub`] removes, in this order:
//! 1. every value the caller knows to be secret (a lease's token, the `Authorization` header
//!    line built from it), and every whitespace-separated part of it of at least
//!    [`MIN_SECRET_PART`] characters (the base64 blob of a header line echoed without its
//!    `Basic` word);
//! 2. the value of any `Authorization:` (or `Proxy-Authorization:`) header, keeping its scheme
//!    word (`Basic`, `Bearer`, `token`, ...), whoever's credential it is;
//! 3. the user-info of every URL (`https://user:token@host` → `https://[redacted]@host`);
//! 4. the value of every URL query or fragment parameter whose name carries a credential
//!    ([`crate::names::is_credential_key`]: `token`, `access_token`, `X-Amz-Signature`, `sig`,
//!    ...), keeping the name, so a pre-signed download link can still be told from another.
//!
//! Steps 2 to 4 catch secrets the caller did not know of (a token of another party, a
//! pre-signed link a server echoed). What is removed is replaced by [`REDACTED`]; the rest of the
//! text is left byte for byte, so the message still says what failed and where.

use crate::names::is_credential_key;
use crate::secret::Secret;

/// What replaces a removed secret (the same word `Secret`'s `Debug` prints).
pub const REDACTED: &str = "[redacted]";

/// The shortest part of a known secret that is removed on its own. Shorter parts (`Basic`,
/// `Authorization:`) are words of the header syntax, not secret; a token or a base64 blob is
/// longer (GitHub's tokens are 40 characters and more).
pub const MIN_SECRET_PART: usize = 16;

/// Authorization schemes kept in front of a redacted header value (IANA's HTTP Authentication
/// Scheme Registry, plus GitHub's legacy `token`), compared lower-cased.
const AUTH_SCHEMES: &[&str] = &[
    "basic",
    "bearer",
    "token",
    "digest",
    "negotiate",
    "ntlm",
    "hoba",
    "mutual",
    "vapid",
];

/// `text` with the secrets described in the module documentation replaced by [`REDACTED`].
/// `secrets` are the values the caller holds (empty ones are ignored): pass `None` when there
/// are none, `Some(&token)` or an iterator of `&Secret` otherwise.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let value = secret.expose();
        if value.is_empty() {
            continue;
        }
        out = out.replace(value, REDACTED);
        for part in value
            .split_whitespace()
            .filter(|p| p.len() >= MIN_SECRET_PART)
        {
            out = out.replace(part, REDACTED);
        }
    }
    let out = replace_ranges(&out, &authorization_values(&out));
    replace_ranges(&out, &url_credentials(&out))
}

/// Replaces each byte range of `ranges` (sorted, not overlapping, on char boundaries) by
/// [`REDACTED`].
fn replace_ranges(text: &str, ranges: &[(usize, usize)]) -> String {
    if ranges.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for &(start, end) in ranges {
        out.push_str(&text[pos..start]);
        out.push_str(REDACTED);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Whether `b` can be part of a credential as headers and URLs carry it (tokens, base64,
/// percent-encoding): anything but white space, quotes and the brackets and separators text
/// puts around a value.
fn credential_byte(b: u8) -> bool {
    !b.is_ascii_whitespace() && !b"\"'`<>()[]{},;".contains(&b)
}

/// The end of the run of [`credential_byte`]s starting at `i`.
fn credential_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && credential_byte(bytes[i]) {
        i += 1;
    }
    i
}

fn skip(bytes: &[u8], mut i: usize, what: impl Fn(u8) -> bool) -> usize {
    while i < bytes.len() && what(bytes[i]) {
        i += 1;
    }
    i
}

/// The byte ranges of the credentials of `Authorization` headers in `text`: after
/// `authorization` (any case, optionally closing a quoted key), `:` or `=`, an optional quote
/// and an optional scheme word, the run of credential bytes that follows.
fn authorization_values(text: &str) -> Vec<(usize, usize)> {
    const NAME: &str = "authorization";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(NAME) {
        let mut i = pos + found + NAME.len();
        pos = i;
        i = skip(bytes, i, |b| b == b'"' || b == b'\'');
        i = skip(bytes, i, |b| b == b' ' || b == b'\t');
        if !matches!(bytes.get(i), Some(b':' | b'=')) {
            continue;
        }
        i = skip(bytes, i + 1, |b| {
            b == b' ' || b == b'\t' || b == b'"' || b == b'\''
        });
        let word_end = credential_end(bytes, i);
        let after_word = skip(bytes, word_end, |b| b == b' ' || b == b'\t');
        let start = if AUTH_SCHEMES.contains(&&lower[i..word_end]) && after_word > word_end {
            after_word
        } else {
            i
        };
        let end = credential_end(bytes, start);
        if end > start {
            ranges.push((start, end));
        }
        pos = end.max(pos);
    }
    ranges
}

/// The byte ranges of URL credentials in `text`: the user-info of every `scheme://` URL and the
/// values of its query and fragment parameters named like credentials.
fn url_credentials(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut pos = 0;
    while let Some(found) = text[pos..].find("://") {
        let sep = pos + found;
        pos = sep + 3;
        // A scheme is ASCII letters, digits, '+', '-', '.', starting with a letter.
        let scheme_start = bytes[..sep]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .map_or(0, |p| p + 1);
        if !bytes.get(scheme_start).is_some_and(u8::is_ascii_alphabetic) || scheme_start == sep {
            continue;
        }
        let url_end = skip(bytes, pos, |b| {
            !b.is_ascii_whitespace() && !b"\"'`<>".contains(&b)
        });
        let authority_end = bytes[pos..url_end]
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .map_or(url_end, |p| pos + p);
        if let Some(at) = bytes[pos..authority_end].iter().rposition(|&b| b == b'@')
            && at > 0
        {
            ranges.push((pos, pos + at));
        }
        if let Some(p) = bytes[authority_end..url_end]
            .iter()
            .position(|b| matches!(b, b'?' | b'#'))
        {
            query_credentials(text, authority_end + p, url_end, &mut ranges);
        }
        pos = url_end.max(pos);
    }
    ranges
}

/// Pushes onto `ranges` the values of the `key=value` parameters of `text[start..end]` (a
/// URL's query and fragment, from its `?` or `#`) whose key names a credential.
fn query_credentials(text: &str, start: usize, end: usize, ranges: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < end {
        // Each parameter starts after a separator.
        let param_start = i + 1;
        let param_end = bytes[param_start..end]
            .iter()
            .position(|b| matches!(b, b'&' | b'?' | b'#' | b';'))
            .map_or(end, |p| param_start + p);
        let param = &text[param_start..param_end];
        if let Some(eq) = param.find('=') {
            // The key as a server reads it (percent-decoded, '+' as a space).
            let key = url::form_urlencoded::parse(&param.as_bytes()[..eq])
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            let mut value_end = param_end;
            if param_end == end {
                // Punctuation ending a sentence around the URL is not part of the value.
                while value_end > param_start + eq + 1
                    && matches!(
                        bytes[value_end - 1],
                        b'.' | b',' | b';' | b':' | b'!' | b')'
                    )
                {
                    value_end -= 1;
                }
            }
            let value_start = param_start + eq + 1;
            if is_credential_key(&key) && value_end > value_start {
                ranges.push((value_start, value_end));
            }
        }
        i = param_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> String {
        scrub(text, None)
    }

    #[test]
    fn text_without_secrets_is_left_as_is() {
        for text in [
            "",
            "plain",
            "fetching https://github.com/acme/web.git: HTTP 404 (Not Found)",
            "GET repos/acme/web/releases?per_page=100&page=2: GitHub answered 500",
            "authorization failed for http://127.0.0.1:8080/o/r.git: HTTP status 401",
            "a basic transfer; 3 of 4 objects",
            "ratio 3://4",
        ] {
            assert_eq!(clean(text), text);
        }
    }

    #[test]
    fn known_secrets_are_removed_wherever_they_appear() {
        let token = Secret::new("ghp_acmeOwner0000000000000000000000000");
        let text = "bad credentials ghp_acmeOwner0000000000000000000000000 (token=ghp_acme...)";
        assert_eq!(
            scrub(text, Some(&token)),
            "bad credentials [redacted] (token=ghp_acme...)"
        );
        // A short token is still removed whole.
        let short = Secret::new("hunter2");
        assert_eq!(scrub("pw hunter2!", Some(&short)), "pw [redacted]!");
        // Empty secrets do not touch the text.
        assert_eq!(scrub("plain", Some(&Secret::new(""))), "plain");
        // Several at once.
        let both = [Secret::new("first-secret"), Secret::new("second-secret")];
        assert_eq!(
            scrub("first-secret and second-secret", &both),
            "[redacted] and [redacted]"
        );
    }

    /// The case the git module's own scrub handled: a header line as the secret, echoed whole
    /// and as its base64 part alone.
    #[test]
    fn a_header_line_and_its_long_parts_are_removed() {
        let header = Secret::new("Authorization: Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0");
        let text = "failed: Authorization: Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0 and \
                    eC1hY2Nlc3MtdG9rZW46c2VjcmV0 again";
        let out = scrub(text, Some(&header));
        assert!(!out.contains("eC1hY2Nlc3MtdG9rZW46c2VjcmV0"), "{out}");
        assert_eq!(out, "failed: [redacted] and [redacted] again");
        // The words of the header syntax alone are not removed.
        assert_eq!(
            scrub("Basic auth needs an Authorization header", Some(&header)),
            "Basic auth needs an Authorization header"
        );
    }

    /// The case the LFS module's own scrub handled: a token a server echoes in its message.
    #[test]
    fn a_token_echoed_in_a_server_message_is_removed() {
        let token = Secret::new("ghp_wrongWrongWrong000000000000000000000");
        let message = "Bad credentials for ghp_wrongWrongWrong000000000000000000000";
        assert_eq!(
            scrub(message, Some(&token)),
            "Bad credentials for [redacted]"
        );
    }

    #[test]
    fn authorization_header_values_are_removed_whoever_they_belong_to() {
        for (text, want) in [
            (
                "sent Authorization: Basic eC1hY2Nlc3M6eA== and failed",
                "sent Authorization: Basic [redacted] and failed",
            ),
            (
                "authorization: bearer ghs_abc123",
                "authorization: bearer [redacted]",
            ),
            (
                "Authorization: token ghp_abc, then",
                "Authorization: token [redacted], then",
            ),
            ("AUTHORIZATION:ghp_noscheme", "AUTHORIZATION:[redacted]"),
            (
                "Proxy-Authorization: Basic dXNlcjpwdw==\nnext line",
                "Proxy-Authorization: Basic [redacted]\nnext line",
            ),
            (
                r#"headers {"authorization": "Bearer eyJhbGciOi.x.y", "accept": "*/*"}"#,
                r#"headers {"authorization": "Bearer [redacted]", "accept": "*/*"}"#,
            ),
            (
                "GIT_CONFIG_VALUE_0=Authorization: Basic Zm9vOmJhcg==",
                "GIT_CONFIG_VALUE_0=Authorization: Basic [redacted]",
            ),
            // A scheme word without a value after it is the value.
            ("Authorization: Bearer", "Authorization: [redacted]"),
        ] {
            assert_eq!(clean(text), want, "{text}");
        }
    }

    #[test]
    fn user_info_in_urls_is_removed() {
        for (text, want) in [
            (
                "cannot reach https://x-access-token:ghp_abc@github.com/acme/web.git: refused",
                "cannot reach https://[redacted]@github.com/acme/web.git: refused",
            ),
            (
                "clone of http://ghp_tokenonly@host:8080/r.git failed",
                "clone of http://[redacted]@host:8080/r.git failed",
            ),
            (
                "(see https://user:p%40ss@host/path?q=1)",
                "(see https://[redacted]@host/path?q=1)",
            ),
            // An '@' in the path is not user-info.
            ("https://host/users/@me/repo", "https://host/users/@me/repo"),
            (
                "two: https://a:b@one/x and git://c@two/y",
                "two: https://[redacted]@one/x and git://[redacted]@two/y",
            ),
        ] {
            assert_eq!(clean(text), want, "{text}");
        }
    }

    #[test]
    fn credential_query_parameters_are_removed_and_their_names_kept() {
        for (text, want) in [
            (
                "GET https://host/o/r.git?access_token=abc123&page=2 failed",
                "GET https://host/o/r.git?access_token=[redacted]&page=2 failed",
            ),
            (
                "download https://s3.example/b/o?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef: 403",
                "download https://s3.example/b/o?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]: 403",
            ),
            (
                "href \"https://blob.example/c?sv=2021&sig=abc%3D&se=2030\" refused",
                "href \"https://blob.example/c?sv=2021&sig=[redacted]&se=2030\" refused",
            ),
            (
                "https://h/p?PRIVATE_TOKEN=glpat-x.",
                "https://h/p?PRIVATE_TOKEN=[redacted].",
            ),
            (
                "https://h/cb#access_token=abc&state=1",
                "https://h/cb#access_token=[redacted]&state=1",
            ),
            // A percent-encoded name is read as the server reads it.
            ("https://h/p?%74oken=abc", "https://h/p?%74oken=[redacted]"),
            // Not credentials: kept.
            (
                "https://h/p?ref=main&per_page=100",
                "https://h/p?ref=main&per_page=100",
            ),
            ("https://h/p?token=", "https://h/p?token="),
        ] {
            assert_eq!(clean(text), want, "{text}");
        }
    }

    #[test]
    fn every_kind_at_once_and_non_ascii_text_around() {
        let token = Secret::new("lease-token-0123456789abcdef");
        let text = "échec « https://u:lease-token-0123456789abcdef@h/r?sig=zz » \
                    Authorization: Bearer other-party-token";
        let out = scrub(text, Some(&token));
        assert_eq!(
            out,
            "échec « https://[redacted]@h/r?sig=[redacted] » Authorization: Bearer [redacted]"
        );
    }
}
