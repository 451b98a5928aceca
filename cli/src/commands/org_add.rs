//! `org add`: the request from the flags. Secrets are read here, locally, from the variable or
//! file the flags name, and travel only in the request body: never in an argument, a URL or a
//! message.

use std::path::Path;

use repovault_common::domain::Provider;
use repovault_common::forge::{
    self as forges, AppInstallation, ForgeCredential, check_ca_cert, validate_api_url,
};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::admin_client::CliError;
use crate::args::OrgAddArgs;

fn read_file(flag: &str, p: &Path) -> Result<String, CliError> {
    let v = std::fs::read_to_string(p)
        .map_err(|e| CliError::usage(format!("{flag} {}: {e}", p.display())))?;
    if v.trim().is_empty() {
        return Err(CliError::usage(format!(
            "{flag} {}: the file is empty",
            p.display()
        )));
    }
    Ok(v)
}

/// Builds the request of `org add`, reading environment variables through `env`.
pub fn request(
    a: &OrgAddArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<pb::AddOrgRequest, CliError> {
    let has_token = a.credential.token_env.is_some() || a.credential.token_file.is_some();
    let has_app = a.credential.app_id.is_some()
        || a.credential.private_key.is_some()
        || a.credential.installation_id.is_some();
    let provider = a.provider.parse::<Provider>().map_err(|_| {
        CliError::usage(format!(
            "provider {:?} is not supported (supported: {})",
            a.provider,
            Provider::spellings()
        ))
    })?;
    if !provider.is_forge() {
        if has_token || has_app || a.api_url.is_some() || a.ca_cert.is_some() {
            return Err(CliError::usage(format!(
                "--provider {provider} takes no --api-url, credential or --ca-cert (tokens of plain git repositories go with `repo add`)"
            )));
        }
        return Ok(pb::AddOrgRequest {
            name: a.name.clone(),
            provider: provider.into(),
            ..Default::default()
        });
    }
    let kind = forges::kind(provider);
    let forge = kind.name();
    let api_url = match &a.api_url {
        Some(u) => validate_api_url(u).map_err(|e| CliError::usage(format!("--api-url: {e}")))?,
        None => String::new(),
    };
    let ca_cert_pem = match &a.ca_cert {
        Some(p) => {
            let pem = read_file("--ca-cert", p)?;
            check_ca_cert(&pem)
                .map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", p.display())))?;
            pem
        }
        None => String::new(),
    };
    let mut req = pb::AddOrgRequest {
        name: a.name.clone(),
        provider: provider.into(),
        api_url,
        ca_cert_pem,
        ..Default::default()
    };
    match (has_token, has_app) {
        (true, true) => Err(CliError::usage(format!(
            "give either a token (--token-env or --token-file) or a {forge} App (--app-id, --private-key, --installation-id), not both"
        ))),
        (false, false) => Err(CliError::usage(format!(
            "--provider {provider} needs a credential: --token-env VAR, --token-file FILE, or --app-id ID --private-key FILE --installation-id ID"
        ))),
        (true, false) => {
            if a.credential.token_env.is_some() && a.credential.token_file.is_some() {
                return Err(CliError::usage(
                    "give one of --token-env and --token-file, not both",
                ));
            }
            let token = match (&a.credential.token_env, &a.credential.token_file) {
                (Some(var), _) => {
                    let v = env(var).ok_or_else(|| {
                        CliError::usage(format!(
                            "--token-env {var}: that environment variable is not set"
                        ))
                    })?;
                    if v.trim().is_empty() {
                        return Err(CliError::usage(format!(
                            "--token-env {var}: the variable is empty"
                        )));
                    }
                    v
                }
                (None, Some(p)) => read_file("--token-file", p)?,
                (None, None) => String::new(),
            };
            req.token = token.trim().to_string();
            Ok(req)
        }
        (false, true) => {
            let (Some(app_id), Some(key), Some(installation_id)) = (
                a.credential.app_id,
                &a.credential.private_key,
                a.credential.installation_id,
            ) else {
                return Err(CliError::usage(format!(
                    "a {forge} App needs all of --app-id, --private-key and --installation-id"
                )));
            };
            if app_id == 0 || installation_id == 0 {
                return Err(CliError::usage(
                    "--app-id and --installation-id must be positive",
                ));
            }
            let pem = read_file("--private-key", key)?;
            let app = ForgeCredential::App(AppInstallation {
                app_id,
                installation_id,
                private_key_pem: Secret::new(pem.clone()),
            });
            kind.check_credential(&app)
                .map_err(|e| CliError::usage(format!("--private-key {}: {e}", key.display())))?;
            req.app_id = app_id;
            req.installation_id = installation_id;
            req.private_key_pem = pem;
            Ok(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(provider: &str) -> OrgAddArgs {
        OrgAddArgs {
            name: "acme".into(),
            provider: provider.into(),
            api_url: None,
            credential: Default::default(),
            ca_cert: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn err(a: &OrgAddArgs) -> String {
        request(a, |k| (k == "GH_TOKEN").then(|| "ghp_fromenv".to_string()))
            .expect_err("refused")
            .message
    }

    #[test]
    fn git_stays_as_it_was() {
        let r = request(&args("git"), no_env).expect("git");
        assert_eq!(
            (r.provider, r.token.as_str(), r.api_url.as_str()),
            (Provider::Git.into(), "", "")
        );
        let mut a = args("git");
        a.credential.token_env = Some("GH_TOKEN".into());
        assert!(err(&a).contains("--provider git takes no"));
    }

    #[test]
    fn clear_refusals() {
        assert!(err(&args("gitlab")).contains("not supported (supported: git, github)"));
        assert!(err(&args("github")).contains("needs a credential"));
        let mut both = args("github");
        both.credential.token_env = Some("GH_TOKEN".into());
        both.credential.app_id = Some(1);
        assert!(err(&both).contains("not both"));
        let mut partial = args("github");
        partial.credential.app_id = Some(1);
        assert!(err(&partial).contains("all of --app-id, --private-key and --installation-id"));
        let mut unset = args("github");
        unset.credential.token_env = Some("NOPE".into());
        assert!(err(&unset).contains("NOPE: that environment variable is not set"));
        let mut missing = args("github");
        missing.credential.token_file = Some("/nonexistent/token".into());
        assert!(err(&missing).contains("--token-file /nonexistent/token"));
        let mut http = args("github");
        http.credential.token_env = Some("GH_TOKEN".into());
        http.api_url = Some("http://ghe.example/api/v3".into());
        assert!(err(&http).contains("only https://"));
    }

    #[test]
    fn the_token_goes_in_the_body_and_is_never_in_an_error() {
        let mut a = args("github");
        a.credential.token_env = Some("GH_TOKEN".into());
        a.api_url = Some("https://ghe.example/api/v3/".into());
        let r = request(&a, |k| {
            (k == "GH_TOKEN").then(|| " ghp_fromenv\n".to_string())
        })
        .expect("ok");
        assert_eq!(r.token, "ghp_fromenv");
        assert_eq!(r.api_url, "https://ghe.example/api/v3");
    }

    #[test]
    fn app_keys_and_ca_files_are_checked_locally() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect("write");
        let mut a = args("github");
        a.credential.app_id = Some(1);
        a.credential.installation_id = Some(2);
        a.credential.private_key = Some(key);
        let e = err(&a);
        assert!(e.contains("not an RSA private key"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "the key is never echoed: {e}");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").expect("write");
        let mut b = args("github");
        b.credential.token_env = Some("GH_TOKEN".into());
        b.ca_cert = Some(ca);
        assert!(err(&b).contains("no PEM certificate"));
    }
}
