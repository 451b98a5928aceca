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
/// scheme needs one, and no credentials in it (they would land in logs, process lists and config).
/// The error never echoes a URL that carries credentials.
pub fn validate_git_url(raw: &str) -> Result<Url, NameError> {
    let bad = |reason: &str| NameError::BadUrl {
        url: raw.to_string(),
        reason: reason.to_string(),
    };
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
}
