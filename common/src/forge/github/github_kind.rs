//! GitHub as a [`ForgeKind`]: its public API by default (GitHub Enterprise names its own),
//! tokens and GitHub Apps as organisation credentials, installation tokens minted with the App's
//! key, and the `core` rate limit as the fleet's budget.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::Provider;
use crate::forge::ForgeError;
use crate::forge::kind::{AppInstallation, ForgeCredential, ForgeKind};
use crate::forge::seam::{Credentials, Forge, ForgeEndpoint};
use crate::secret::Secret;

use super::GitHubForge;

/// GitHub's public API; GitHub Enterprise is `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// GitHub and GitHub Enterprise; see the module documentation.
pub struct GitHubKind;

#[async_trait::async_trait]
impl ForgeKind for GitHubKind {
    fn provider(&self) -> Provider {
        Provider::Github
    }

    fn name(&self) -> &'static str {
        "GitHub"
    }

    fn default_api_url(&self) -> Option<&'static str> {
        Some(DEFAULT_API_URL)
    }

    fn check_credential(&self, credential: &ForgeCredential) -> Result<(), String> {
        match credential {
            ForgeCredential::Token(t) if t.expose().trim().is_empty() => {
                Err("the GitHub token is empty".into())
            }
            ForgeCredential::Token(_) => Ok(()),
            ForgeCredential::App(app) => {
                if app.app_id == 0 || app.installation_id == 0 {
                    return Err("a GitHub App needs a non-zero app id and installation id".into());
                }
                super::app::check_app_private_key(&app.private_key_pem)
            }
        }
    }

    async fn mint_installation_token(
        &self,
        endpoint: &ForgeEndpoint,
        app: &AppInstallation,
    ) -> Result<(Secret, DateTime<Utc>), ForgeError> {
        super::mint_installation_token(
            endpoint,
            app.app_id,
            &app.private_key_pem,
            app.installation_id,
        )
        .await
    }

    fn minting_context(
        &self,
        endpoint: &ForgeEndpoint,
        app: &AppInstallation,
        e: &ForgeError,
    ) -> String {
        let hint = match e.status() {
            Some(404) => " (no such installation of this App: check the installation id)",
            Some(401) => " (the App id or its private key is wrong)",
            _ => "",
        };
        format!(
            "GitHub App {}, installation {} at {}: minting an installation token{hint}",
            app.app_id, app.installation_id, endpoint.api_url
        )
    }

    fn budgeted_resource(&self, resource: &str) -> bool {
        super::rate::budgeted_resource(resource)
    }

    fn open(
        &self,
        endpoint: &ForgeEndpoint,
        credentials: Credentials,
    ) -> Result<Arc<dyn Forge>, ForgeError> {
        Ok(Arc::new(GitHubForge::new(endpoint, credentials)?))
    }
}
