//! Names and URLs as users type them: validated once, at the edge, with errors that say what is
//! wrong.

use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} name is empty")]
    Empty { what: &'static str },
    #[error("{what} name {name:?} is too long ({len} characters; at most {max})")]
    TooLong {
        what: &'static str,
        name: String,
        len: usize,
        max: usize,
    },
    #[error(
        "{what} name {name:?} may contain only letters, digits, '-', '_' and '.', and may not start with '.'"
    )]
    BadChar { what: &'static str, name: String },
    #[error("{0:?} is not ORG/NAME")]
    NotQualified(String),
    #[error("URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("URL carries credentials; pass them with --token-env VAR or --token-file FILE instead")]
    CredentialsInUrl,
    /// The query names a credential ([`is_credential_key`]); only the parameter's name is
    /// echoed, never its value or the URL.
    #[error(
        "URL carries a credential in its query (parameter {key:?}); pass it with --token-env VAR or --token-file FILE instead"
    )]
    CredentialInQuery { key: String },
    #[error(
        "ssh URLs are not supported (yet): use the repository's https:// URL with a token (--token-env VAR or --token-file FILE)"
    )]
    SshUnsupported,
}

/// Query parameter names (lower-cased) that are credentials whatever their value: the names
/// forges and object stores use for tokens, passwords, keys and signed-URL signatures.
const CREDENTIAL_KEYS: &[&str] = &[
    "key",
    "sig",
    "auth",
    "authorization",
    "code",
    "jwt",
    "pass",
    "pwd",
    "session",
];

/// Parts of query parameter names (lower-cased) that make them credentials: `token` covers
/// `token`, `access_token`, `private_token` (GitLab), `job_token`, `x-amz-security-token`;
/// `signature` and `credential` cover signed URLs (`X-Amz-Signature`, `X-Goog-Credential`).
const CREDENTIAL_KEY_PARTS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "api_key",
    "api-key",
    "signature",
    "credential",
];

/// Whether a URL query parameter named `key` carries a credential (case-insensitive): one of
/// [`CREDENTIAL_KEYS`], or a name containing one of [`CREDENTIAL_KEY_PARTS`]. A URL stored
/// with one would print the secret in `repo list` and reach git's argv and logs.
pub fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    CREDENTIAL_KEYS.contains(&key.as_str()) || CREDENTIAL_KEY_PARTS.iter().any(|p| key.contains(p))
}

/// The first query parameter of `url` that carries a credential, by name.
pub fn credential_in_query(url: &Url) -> Option<String> {
    url.query_pairs()
        .map(|(k, _)| k.into_owned())
        .find(|k| is_credential_key(k))
}

/// Whether `raw` is an ssh URL as git reads it: `ssh://`, `git+ssh://`, `ssh+git://`, or the
/// scp-like `[user@]host:path` (a ':' before any '/', and no other scheme before it).
fn is_ssh(raw: &str) -> bool {
    let lower = raw.trim().to_ascii_lowercase();
    if let Some((scheme, _)) = lower.split_once("://") {
        return matches!(scheme, "ssh" | "git+ssh" | "ssh+git");
    }
    match lower.split_once(':') {
        Some((before, _)) => {
            !before.is_empty()
                && !before.contains('/')
                && !before.contains(char::is_whitespace)
                && !matches!(before, "git" | "http" | "https" | "file")
        }
        None => false,
    }
}

/// GitHub's limit for organisation and repository names is 100 characters (and 39 for
/// organisations); we accept the larger everywhere so other forges fit.
const MAX_NAME: usize = 100;

pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    let len = name.chars().count();
    if len > MAX_NAME {
        return Err(NameError::TooLong {
            what,
            name: name.to_string(),
            len,
            max: MAX_NAME,
        });
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok || name.starts_with('.') {
        return Err(NameError::BadChar {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Splits and validates "ORG/NAME".
pub fn parse_full_name(full: &str) -> Result<(String, String), NameError> {
    let (org, name) = full
        .split_once('/')
        .ok_or_else(|| NameError::NotQualified(full.to_string()))?;
    validate_name("organisation", org)?;
    validate_name("repository", name)?;
    Ok((org.to_string(), name.to_string()))
}

/// Checks a git source or target URL: git://, http(s):// or file://, with a host where the
/// scheme needs one, and no credentials in it, neither as user-info nor as a query parameter
/// ([`is_credential_key`]): they would land in logs, process lists, config and `repo list`.
/// ssh is refused as unsupported (before the user-info check: `git@` is not a credential).
/// The error never echoes a URL that carries credentials.
pub fn validate_git_url(raw: &str) -> Result<Url, NameError> {
    let bad = |reason: &str| NameError::BadUrl {
        url: raw.to_string(),
        reason: reason.to_string(),
    };
    if is_ssh(raw) {
        return Err(NameError::SshUnsupported);
    }
    let url = Url::parse(raw).map_err(|e| {
        if raw.contains('@') && raw.contains("://") {
            NameError::CredentialsInUrl
        } else {
            bad(&e.to_string())
        }
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NameError::CredentialsInUrl);
    }
    if let Some(key) = credential_in_query(&url) {
        return Err(NameError::CredentialInQuery { key });
    }
    match url.scheme() {
        "git" | "http" | "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("it has no host"));
            }
        }
        "file" => {
            if url.path().is_empty() || url.path() == "/" {
                return Err(bad("it has no path"));
            }
        }
        other => {
            return Err(bad(&format!(
                "scheme {other:?} is not supported (use git://, http://, https:// or file://)"
            )));
        }
    }
    if url.path().is_empty() || url.path() == "/" {
        return Err(bad("it names no repository"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("repository", "my-repo.v2_x").is_ok());
        assert!(matches!(
            validate_name("repository", ""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate_name("repository", ".hidden"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            validate_name("repository", "a/b"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            validate_name("repository", &"x".repeat(101)),
            Err(NameError::TooLong { .. })
        ));
        assert_eq!(
            parse_full_name("acme/web").expect("ok"),
            ("acme".to_string(), "web".to_string())
        );
        assert!(matches!(
            parse_full_name("acme"),
            Err(NameError::NotQualified(_))
        ));
    }

    #[test]
    fn urls() {
        for ok in [
            "git://127.0.0.1:9418/a.git",
            "https://github.com/acme/web.git",
            "http://host/x",
            "file:///srv/git/a.git",
        ] {
            assert!(validate_git_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            validate_git_url("https://x-access-token:ghp_abc@github.com/a/b"),
            Err(NameError::CredentialsInUrl)
        );
        assert_eq!(
            validate_git_url("https://user@github.com/a/b"),
            Err(NameError::CredentialsInUrl)
        );
        let e = validate_git_url("ftp://host/a").expect_err("bad scheme");
        assert!(e.to_string().contains("ftp"));
        assert!(validate_git_url("not a url").is_err());
        assert!(validate_git_url("https://host/").is_err());
        let e = validate_git_url("https://tok:secret@bad host/x").expect_err("bad");
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn a_credential_in_the_query_is_refused_without_echoing_it() {
        for url in [
            "https://host/a.git?token=s3cr3t",
            "https://host/a.git?x=1&access_token=s3cr3t",
            "https://host/a.git?PRIVATE_TOKEN=s3cr3t",
            "https://host/a.git?Password=s3cr3t",
            "https://host/a.git?key=s3cr3t",
            "https://host/a.git?sig=s3cr3t",
            "https://host/a.git?X-Amz-Signature=s3cr3t",
            "https://host/a.git?job_token=s3cr3t",
            "https://host/a.git?client_secret=s3cr3t",
            "git://host/a.git?api-key=s3cr3t",
            "file:///srv/a.git?auth=s3cr3t",
        ] {
            let e = validate_git_url(url).expect_err(url);
            assert!(
                matches!(e, NameError::CredentialInQuery { .. }),
                "{url}: {e}"
            );
            let text = e.to_string();
            assert!(!text.contains("s3cr3t"), "{url}: {text}");
            assert!(text.contains("--token-env"), "{url}: {text}");
        }
        // Harmless query parameters stay allowed.
        for ok in [
            "https://host/a.git?ref=main",
            "https://host/a.git?service=git-upload-pack",
            "https://host/a.git?monkey=1",
        ] {
            assert!(validate_git_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ssh_is_refused_as_unsupported_not_as_credentials() {
        for url in [
            "ssh://git@host/x.git",
            "ssh://host/x.git",
            "git+ssh://git@host/x.git",
            "ssh+git://host/x.git",
            "git@host:x.git",
            "git@github.com:acme/web.git",
            "host.example:acme/web.git",
        ] {
            let e = validate_git_url(url).expect_err(url);
            assert_eq!(e, NameError::SshUnsupported, "{url}");
            let text = e.to_string();
            assert!(
                text.contains("ssh") && text.contains("not supported"),
                "{text}"
            );
            assert!(
                text.contains("https://") && text.contains("token"),
                "{text}"
            );
        }
    }
}
