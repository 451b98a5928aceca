//! What the conformance tests share: the acme seed and its tokens, an HTTPS client that trusts
//! the simulator's CA, the git CLI pointed at the simulator, octocrab pointed at the simulator.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use reqwest::Method;
use serde_json::Value;

/// Tokens of seeds/acme.toml.
pub const OWNER: &str = "ghp_acmeOwner0000000000000000000000000";
pub const DEV: &str = "ghp_acmeDev000000000000000000000000000";
pub const REV: &str = "ghp_acmeReviewer0000000000000000000000";
pub const OUTSIDER: &str = "ghp_acmeOutsider0000000000000000000000";

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn acme_seed() -> Seed {
    Seed::from_file(&crate_dir().join("seeds/acme.toml")).unwrap()
}

pub async fn start(seed: &Seed) -> ForgeSim {
    ForgeSim::start(seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

pub fn client(sim: &ForgeSim) -> reqwest::Client {
    let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("forge-sim-conformance")
        .build()
        .unwrap()
}

/// octocrab as a user, over a reqwest client that trusts only the simulator's CA.
pub fn octocrab(sim: &ForgeSim, token: &str) -> octocrab::Octocrab {
    octocrab::Octocrab::builder()
        .base_uri(sim.ready().api_url.as_str())
        .unwrap()
        .upload_uri(sim.ready().uploads_url.as_str())
        .unwrap()
        .personal_token(token.to_string())
        .build_with_reqwest(octocrab_http(sim))
        .unwrap()
}

pub fn octocrab_http(sim: &ForgeSim) -> reqwest13::Client {
    let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
    reqwest13::Client::builder()
        .tls_certs_only([reqwest13::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap()
}

/// One answer, with the body parsed as JSON when it is JSON (`Null` otherwise).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A REST client for the simulator.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub uploads: String,
}

impl Api {
    pub fn new(sim: &ForgeSim) -> Api {
        Api {
            http: client(sim),
            base: sim.ready().api_url.clone(),
            uploads: sim.ready().uploads_url.clone(),
        }
    }

    /// `path` is relative to `/api/v3` (or absolute, e.g. a Link or upload URL).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut rb = self
            .http
            .request(method, &url)
            .header("accept", "application/vnd.github+json");
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        finish(rb.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn raw(&self, rb: reqwest::RequestBuilder) -> Resp {
        finish(rb.send().await.unwrap()).await
    }
}

async fn finish(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap().to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        bytes,
    }
}

/// The `next` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// The git CLI against the simulator, as a user would run it: the CA through `GIT_SSL_CAINFO`,
/// the token through an `http.extraHeader` in the environment (never in the URL), no user or
/// system configuration. Blocking: call it from `spawn_blocking` (the simulator answers on the
/// same runtime).
pub fn git(ca: &Path, dir: &Path, token: &str, args: &[&str]) -> Result<String, String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSL_CAINFO", ca)
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        )
        .env("GIT_AUTHOR_NAME", "Conformance")
        .env("GIT_AUTHOR_EMAIL", "conformance@acme.example")
        .env("GIT_COMMITTER_NAME", "Conformance")
        .env("GIT_COMMITTER_EMAIL", "conformance@acme.example")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Which of the simulator's modules serves a route template (for reports).
pub fn module_of(route: &str) -> &'static str {
    let r = route.trim_start_matches("(no route) ");
    let tail = r
        .strip_prefix("/repos/{owner}/{repo}")
        .or_else(|| r.strip_prefix("/uploads/repos/{owner}/{repo}"));
    if r.starts_with("/app") || r.starts_with("/installation") || r.ends_with("/installation") {
        return "api/apps.rs";
    }
    if r.starts_with("/orgs/{org}/teams") {
        return "api/access.rs";
    }
    if r.starts_with("/orgs/{org}/hooks") {
        return "api/hooks.rs";
    }
    let Some(tail) = tail else {
        return "api/repos.rs";
    };
    let first = tail.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "issues" | "labels" | "milestones" => "api/issues.rs",
        "pulls" => "api/pulls.rs",
        "commits" | "tags" | "git" | "compare" => "api/commits.rs",
        "branches" if tail.contains("/protection") => "api/settings.rs",
        "branches" => "api/commits.rs",
        "releases" => "api/releases.rs",
        "hooks" => "api/hooks.rs",
        "collaborators" | "teams" | "invitations" => "api/access.rs",
        "actions" | "rulesets" | "keys" | "topics" => "api/settings.rs",
        _ => "api/repos.rs",
    }
}
