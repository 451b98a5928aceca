//! Where a GitHub token may be sent: the API's own scheme and host, and on github.com the hosts
//! GitHub serves the same account's content from. Everything else (a pre-signed download URL, a
//! link in an issue body to another site) gets no token.

/// A URL's scheme and authority, lower-case.
pub(super) type Origin = (String, String);

/// Whether a request to `to` may carry the token of the API at `api`. On github.com the API is
/// `api.github.com`, release assets are uploaded to `uploads.github.com`, and attachments
/// (`/user-attachments/...`, `/OWNER/REPO/assets/...`) are served by `github.com`, which answers
/// a private repository's only to a reader; GitHub Enterprise serves all of them on its one host.
pub(super) fn token_may_go_to(api: &Origin, to: &Origin) -> bool {
    to == api
        || (api.0 == "https"
            && api.1 == "api.github.com"
            && to.0 == "https"
            && matches!(to.1.as_str(), "uploads.github.com" | "github.com"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(scheme: &str, host: &str) -> Origin {
        (scheme.into(), host.into())
    }

    #[test]
    fn the_token_goes_to_the_api_and_githubs_own_content_hosts_only() {
        let dotcom = o("https", "api.github.com");
        for host in ["api.github.com", "uploads.github.com", "github.com"] {
            assert!(token_may_go_to(&dotcom, &o("https", host)), "{host}");
        }
        for to in [
            o("http", "github.com"),
            o("https", "objects.githubusercontent.com"),
            o("https", "github.com.evil.example"),
            o("https", "ghe.example.com"),
        ] {
            assert!(!token_may_go_to(&dotcom, &to), "{to:?}");
        }
        let ghe = o("https", "ghe.example.com:8443");
        assert!(token_may_go_to(&ghe, &ghe));
        assert!(!token_may_go_to(&ghe, &o("https", "github.com")));
        assert!(!token_may_go_to(&ghe, &o("https", "ghe.example.com")));
    }
}
