//! What a provider is before any request is sent: [`ForgeKind`], picked by [`kind`] from the
//! [`Provider`] (the one place a provider is mapped to its implementation; [`super::open`] goes
//! through it).
//!
//! The coordinator connects organisations and mints installation tokens through it, so it never
//! names a provider: which API a forge has by default, whether a credential an admin hands over
//! is well formed (checked before it is proven against the forge and stored), how an App
//! installation's token is minted and how the failure reads, and which rate-limit readings count
//! against the fleet's budget. Everything that needs a credential goes through [`Forge`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::Provider;
use crate::secret::Secret;

use super::ForgeError;
use super::seam::{Credentials, Forge, ForgeEndpoint};

/// An organisation's credential as the admin hands it over (once, in the request body).
#[derive(Debug, Clone)]
pub enum ForgeCredential {
    /// A token every request carries (a personal or organisation token).
    Token(Secret),
    /// An App installed on the organisation: the coordinator mints short-lived installation
    /// tokens with the App's private key, which never leaves the coordinator.
    App(AppInstallation),
}

/// An App's installation on an organisation, with the App's private key.
#[derive(Debug, Clone)]
pub struct AppInstallation {
    pub app_id: u64,
    pub installation_id: u64,
    /// The App's private key (PEM).
    pub private_key_pem: Secret,
}

/// A provider's own facts and its credential-less operations; see the module documentation.
#[async_trait::async_trait]
pub trait ForgeKind: Send + Sync {
    /// Which provider this is.
    fn provider(&self) -> Provider;

    /// How a reader knows it in messages ("GitHub", "plain git").
    fn name(&self) -> &'static str;

    /// The API base an organisation without its own uses; `None`: the provider has no API,
    /// hence no organisations to discover, no credential to prove and no webhooks.
    fn default_api_url(&self) -> Option<&'static str>;

    /// Checks the form of `credential` (not yet proven against the forge). The message is the
    /// admin's to read and never contains the secret.
    fn check_credential(&self, credential: &ForgeCredential) -> Result<(), String>;

    /// A new installation token for `app` at `endpoint`, with its expiry.
    async fn mint_installation_token(
        &self,
        endpoint: &ForgeEndpoint,
        app: &AppInstallation,
    ) -> Result<(Secret, DateTime<Utc>), ForgeError>;

    /// What a failed [`ForgeKind::mint_installation_token`] was doing, for the context in front
    /// of `e` (with a hint at the likely wrong input when the forge's answer says which).
    fn minting_context(
        &self,
        endpoint: &ForgeEndpoint,
        app: &AppInstallation,
        e: &ForgeError,
    ) -> String;

    /// Whether a rate-limit reading of `resource` counts against the budget the fleet shares
    /// per credential (a forge may report other, separately limited resources); an empty
    /// resource is a reading that did not say, taken as the budgeted one.
    fn budgeted_resource(&self, resource: &str) -> bool;

    /// The forge at `endpoint`, with `credentials`.
    fn open(
        &self,
        endpoint: &ForgeEndpoint,
        credentials: Credentials,
    ) -> Result<Arc<dyn Forge>, ForgeError>;
}

/// The kind of `provider`: the one place a provider is mapped to its implementation.
pub fn kind(provider: Provider) -> &'static dyn ForgeKind {
    match provider {
        Provider::Git => &super::plain_git::PlainGitKind,
        Provider::Github => &super::github::GitHubKind,
    }
}

/// Checks a forge API base URL: https only (the credential travels with every request), a
/// host, no credentials, no query. Returns it without a trailing slash.
pub fn validate_api_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("API URL {raw:?} is not valid: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the API URL carries credentials; pass them with --token-env or --token-file".into(),
        );
    }
    if url.scheme() != "https" {
        return Err(format!(
            "API URL {raw:?}: only https:// is accepted (GitHub and GitHub Enterprise serve their API over https)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("API URL {raw:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("API URL {raw:?} may not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Checks that `pem` holds at least one PEM certificate.
pub fn check_ca_cert(pem: &str) -> Result<(), String> {
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err("the CA certificate file holds no PEM certificate".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::StaticToken;

    #[test]
    fn api_urls_are_https_only() {
        assert_eq!(
            validate_api_url("https://api.github.com/").expect("ok"),
            "https://api.github.com"
        );
        assert_eq!(
            validate_api_url("https://ghe.example/api/v3").expect("ok"),
            "https://ghe.example/api/v3"
        );
        let e = validate_api_url("http://ghe.example/api/v3").expect_err("http");
        assert!(e.contains("only https://"), "{e}");
        assert!(validate_api_url("not a url").is_err());
        let e = validate_api_url("https://x:ghp_secret@ghe.example/api/v3").expect_err("creds");
        assert!(!e.contains("ghp_secret"), "{e}");
        assert!(validate_api_url("https://ghe.example/api/v3?x=1").is_err());
    }

    #[test]
    fn ca_certs_must_hold_a_certificate() {
        assert!(check_ca_cert("-----BEGIN CERTIFICATE-----\nMII\n").is_ok());
        assert!(check_ca_cert("not a certificate").is_err());
    }

    #[test]
    fn every_provider_has_its_kind() {
        for p in [Provider::Git, Provider::Github] {
            assert_eq!(kind(p).provider(), p);
        }
    }

    #[tokio::test]
    async fn plain_git_has_no_organisations_and_no_credentials() {
        let git = kind(Provider::Git);
        assert_eq!(git.default_api_url(), None);
        let e = git
            .check_credential(&ForgeCredential::Token(Secret::new("tok_SECRET")))
            .expect_err("plain git takes no organisation credential");
        assert!(e.contains("plain git") && !e.contains("SECRET"), "{e}");
        let app = AppInstallation {
            app_id: 1,
            installation_id: 2,
            private_key_pem: Secret::new("KEY"),
        };
        let e = git
            .mint_installation_token(&ForgeEndpoint::default(), &app)
            .await
            .expect_err("no Apps");
        assert!(matches!(e, ForgeError::Unsupported { .. }), "{e}");
        let credentials = Credentials {
            tokens: Arc::new(StaticToken(Secret::default())),
            gate: None,
        };
        let forge = git
            .open(&ForgeEndpoint::default(), credentials)
            .expect("opens");
        let e = forge.list_org_repos("acme").await.expect_err("no API");
        assert_eq!(
            e.to_string(),
            "listing an organisation's repositories is not supported by plain git"
        );
    }

    #[test]
    fn github_checks_credentials_without_showing_them() {
        let gh = kind(Provider::Github);
        assert_eq!(gh.default_api_url(), Some("https://api.github.com"));
        assert!(
            gh.check_credential(&ForgeCredential::Token(Secret::new("ghp_x")))
                .is_ok()
        );
        let e = gh
            .check_credential(&ForgeCredential::Token(Secret::new("  ")))
            .expect_err("empty");
        assert_eq!(e, "the GitHub token is empty");
        let app = |app_id, installation_id, pem: &str| {
            ForgeCredential::App(AppInstallation {
                app_id,
                installation_id,
                private_key_pem: Secret::new(pem),
            })
        };
        let e = gh.check_credential(&app(0, 2, "")).expect_err("zero");
        assert!(e.contains("non-zero app id"), "{e}");
        let e = gh
            .check_credential(&app(1, 2, "-----BEGIN RSA PRIVATE KEY-----\nnope\n"))
            .expect_err("not a key");
        assert!(
            e.contains("not an RSA private key") && !e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn github_budgets_its_core_resource() {
        let gh = kind(Provider::Github);
        assert!(gh.budgeted_resource("core"));
        assert!(gh.budgeted_resource(""), "a reading that did not say");
        assert!(!gh.budgeted_resource("search"));
        assert!(!gh.budgeted_resource("graphql"));
    }
}
