//! Authentication, rate limits and repository states of the simulator, over real HTTPS:
//! tokens in each form clients send them, app JWTs and expiring installation tokens, primary and
//! secondary limits with GitHub's headers and bodies, 304s that do not count, 301 for a renamed
//! repository, 404 for a deleted one, 451 for a blocked one.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEED: &str = r#"
[[users]]
login = "owner"
tokens = ["ghp_owner"]
[[users]]
login = "outsider"
tokens = ["ghp_outsider"]

[[orgs]]
login = "acme"
[[orgs.repos]]
name = "widgets"
[[orgs.repos.commits]]
message = "first"
files = { "README.md" = "hello" }
[[orgs.repos]]
name = "secret"
private = true
[[orgs.repos]]
name = "other"

[[apps]]
slug = "vault"
permissions = { contents = "read", metadata = "read", issues = "read" }
[[apps.installations]]
account = "acme"
repositories = ["widgets", "secret"]
"#;

async fn start(extra: &str) -> (ForgeSim, reqwest::Client) {
    let seed: Seed = toml::from_str(&format!("{extra}\n{SEED}")).unwrap();
    let sim = ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("forge-sim-tests")
        .build()
        .unwrap();
    (sim, client)
}

fn api(sim: &ForgeSim, path: &str) -> String {
    format!("{}{path}", sim.ready().api_url)
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn tokens_are_accepted_in_every_form_clients_send() {
    let (sim, c) = start("").await;
    let url = api(&sim, "/repos/acme/secret");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for auth in [
        "token ghp_owner".to_string(),
        "Bearer ghp_owner".to_string(),
        format!("Basic {}", b64("x-access-token:ghp_owner")),
        format!("Basic {}", b64("ghp_owner:x-oauth-basic")),
    ] {
        let r = c
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{auth}");
    }
    // A private repository does not exist for the anonymous or for an outsider.
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(&url)
        .bearer_auth("ghp_outsider")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");
    // An unknown token is 401 "Bad credentials", not anonymous access.
    let r = c
        .get(api(&sim, "/repos/acme/widgets"))
        .bearer_auth("ghp_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    // Writes without permission: an outsider cannot rename a public repository.
    let r = c
        .patch(api(&sim, "/repos/acme/widgets"))
        .bearer_auth("ghp_outsider")
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

fn app_jwt(sim: &ForgeSim, exp_in: i64) -> String {
    let key = std::fs::read(sim.ready().app_private_key.as_ref().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iat": now - 60, "exp": now + exp_in, "iss": sim.ready().app_id.unwrap().to_string()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn app_jwt_mints_scoped_installation_tokens_that_expire() {
    let (sim, c) = start("[options]\ninstallation_token_ttl_secs = 2\n").await;
    let inst = sim.ready().installation_id.unwrap();
    let jwt = app_jwt(&sim, 540);
    let r = c
        .get(api(&sim, "/app"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let app: Value = r.json().await.unwrap();
    assert_eq!(app["slug"], "vault");

    // A JWT signed by another key is refused.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let now = chrono::Utc::now().timestamp();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iat": now - 60, "exp": now + 540, "iss": sim.ready().app_id.unwrap()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(other.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let r = c
        .get(api(&sim, "/app"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A JWT living longer than GitHub's ten minutes is refused.
    let r = c
        .get(api(&sim, "/app"))
        .bearer_auth(app_jwt(&sim, 3600))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = c
        .post(api(
            &sim,
            &format!("/app/installations/{inst}/access_tokens"),
        ))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tok: Value = r.json().await.unwrap();
    let token = tok["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"));

    // Scoped to the installation's repositories.
    let r = c
        .get(api(&sim, "/repos/acme/secret"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(api(&sim, "/repos/acme/other"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(api(&sim, "/installation/repositories"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["total_count"], 2);
    // Read-only: no administration permission, so no repository settings change.
    let r = c
        .patch(api(&sim, "/repos/acme/widgets"))
        .bearer_auth(&token)
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Resource not accessible by integration");
    // Narrowing works; widening is refused.
    let r = c
        .post(api(
            &sim,
            &format!("/app/installations/{inst}/access_tokens"),
        ))
        .bearer_auth(&jwt)
        .json(&json!({"permissions": {"contents": "write"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = c
        .post(api(
            &sim,
            &format!("/app/installations/{inst}/access_tokens"),
        ))
        .bearer_auth(&jwt)
        .json(&json!({"repositories": ["widgets"]}))
        .send()
        .await
        .unwrap();
    let narrow: Value = r.json().await.unwrap();
    let narrow = narrow["token"].as_str().unwrap();
    let r = c
        .get(api(&sim, "/repos/acme/secret"))
        .bearer_auth(narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The token expires after the configured lifetime: 401 Bad credentials.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = c
        .get(api(&sim, "/repos/acme/secret"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn primary_limit_spends_refuses_and_304s_do_not_count() {
    let (sim, c) = start("[options]\nrate_limit_user = 3\n").await;
    let url = api(&sim, "/repos/acme/widgets");
    let r = c.get(&url).bearer_auth("ghp_owner").send().await.unwrap();
    assert_eq!(header(&r, "x-ratelimit-limit"), "3");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "2");
    assert_eq!(header(&r, "x-ratelimit-used"), "1");
    assert_eq!(header(&r, "x-ratelimit-resource"), "core");
    let etag = header(&r, "etag").to_string();
    assert!(!etag.is_empty());
    // Conditional requests that match are 304 and do not spend the limit.
    for _ in 0..5 {
        let r = c
            .get(&url)
            .bearer_auth("ghp_owner")
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&r, "x-ratelimit-remaining"), "2");
    }
    // /rate_limit does not count either.
    let r = c
        .get(api(&sim, "/rate_limit"))
        .bearer_auth("ghp_owner")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resources"]["core"]["remaining"], 2);
    for _ in 0..2 {
        let r = c.get(&url).bearer_auth("ghp_owner").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = c.get(&url).bearer_auth("ghp_owner").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let reset: u64 = header(&r, "x-ratelimit-reset").parse().unwrap();
    assert!(reset > chrono::Utc::now().timestamp() as u64);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("API rate limit exceeded")
    );
    // Another principal has its own budget.
    let r = c
        .get(&url)
        .bearer_auth("ghp_outsider")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s = sim.stats();
    assert_eq!(s.primary_refusals, 1);
    assert_eq!(s.not_modified, 5);
    assert_eq!(s.counted_requests, 4);
}

#[tokio::test]
async fn content_creation_and_injected_failures_are_secondary_limits_with_retry_after() {
    let (sim, c) =
        start("[options]\ncontent_per_minute = 2\nsecondary_retry_after_secs = 7\n").await;
    let url = api(&sim, "/repos/acme/widgets");
    for _ in 0..2 {
        let r = c
            .patch(&url)
            .bearer_auth("ghp_owner")
            .json(&json!({"description": "d"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = c
        .patch(&url)
        .bearer_auth("ghp_owner")
        .json(&json!({"description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&r, "retry-after"), "7");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    // Until retry-after passes, reads are refused too.
    let r = c.get(&url).bearer_auth("ghp_owner").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(sim.stats().secondary_refusals, 2);

    // Failure injection through the control route: one 502, then normal answers.
    let r = c
        .patch(format!("{}/_sim/options", sim.ready().git_url))
        .json(&json!({"failures": [{"path_contains": "/repos/acme/other", "status": 502, "count": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other = api(&sim, "/repos/acme/other");
    let r = c
        .get(&other)
        .bearer_auth("ghp_outsider")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let r = c
        .get(&other)
        .bearer_auth("ghp_outsider")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn renamed_deleted_and_blocked_repositories_answer_as_github() {
    let (sim, c) = start("").await;
    let r = c
        .patch(api(&sim, "/repos/acme/widgets"))
        .bearer_auth("ghp_owner")
        .json(&json!({"name": "gadgets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let renamed: Value = r.json().await.unwrap();
    assert_eq!(renamed["full_name"], "acme/gadgets");
    let id = renamed["id"].as_u64().unwrap();

    let r = c
        .get(api(&sim, "/repos/acme/widgets"))
        .bearer_auth("ghp_owner")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    let location = header(&r, "location").to_string();
    assert_eq!(location, api(&sim, &format!("/repositories/{id}")));
    // Following the redirect lands on the same repository.
    let r = c
        .get(&location)
        .bearer_auth("ghp_owner")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], id);

    let control = |path: &str| format!("{}/_sim/repos/acme/{path}", sim.ready().git_url);
    c.post(control("other/block")).send().await.unwrap();
    let r = c
        .get(api(&sim, "/repos/acme/other"))
        .bearer_auth("ghp_owner")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    c.post(control("gadgets/delete")).send().await.unwrap();
    let r = c
        .get(api(&sim, "/repos/acme/gadgets"))
        .bearer_auth("ghp_owner")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The listing no longer shows it.
    let r = c
        .get(api(&sim, "/orgs/acme/repos"))
        .bearer_auth("ghp_owner")
        .send()
        .await
        .unwrap();
    let list: Vec<Value> = r.json().await.unwrap();
    let names: Vec<&str> = list.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["other", "secret"]);
}
