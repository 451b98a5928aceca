//! Releases and repository settings of the simulator, over real HTTPS: releases and their tags,
//! asset uploads through `upload_url` and downloads of the same bytes, hooks whose secrets never
//! come back, admin-only settings refused to members, branch protection, rulesets, deploy keys,
//! workflows, topics, collaborators and teams. Every exchange is then held to GitHub's OpenAPI
//! description.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const OWNER: &str = "ghp_rsOwner";
const MEMBER: &str = "ghp_rsMember";
const WRITER: &str = "ghp_rsWriter";
const OUTSIDER: &str = "ghp_rsOutsider";

/// An OpenSSH ed25519 public key line whose 32 key bytes are all `fill`.
fn ed25519(fill: u8, comment: &str) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&[fill; 32]);
    format!(
        "ssh-ed25519 {} {comment}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

fn seed() -> Seed {
    let text = format!(
        r#"
[options]
record_exchanges = true

[[users]]
login = "owner"
tokens = ["{OWNER}"]
[[users]]
login = "member"
tokens = ["{MEMBER}"]
[[users]]
login = "writer"
tokens = ["{WRITER}"]
[[users]]
login = "outsider"
tokens = ["{OUTSIDER}"]

[[orgs]]
login = "acme"
members = {{ member = "member", writer = "member" }}

[[orgs.teams]]
slug = "devs"
name = "Devs"
members = ["writer"]

[[orgs.hooks]]
url = "http://127.0.0.1:9/org-hook"
secret = "org-hook-secret-value"

[[orgs.repos]]
name = "widgets"
teams = {{ devs = "write" }}

[[orgs.repos.commits]]
message = "first"
files = {{ "README.md" = "hello" }}

[[orgs.repos.commits]]
message = "develop"
branch = "develop"
files = {{ "dev.txt" = "dev" }}

[[orgs.repos.releases]]
tag = "v1.0.0"
name = "One"
body = "The first."
[[orgs.repos.releases.assets]]
name = "notes.txt"
content_type = "text/plain"
content = "release notes\n"
[[orgs.repos.releases.assets]]
name = "blob.bin"
size = 5000

[[orgs.repos.releases]]
tag = "v2.0.0-rc1"
prerelease = true

[[orgs.repos.releases]]
tag = "v3.0.0"
name = "Draft"
draft = true

[[orgs.repos.workflows]]
name = "CI"
path = ".github/workflows/ci.yml"
content = "on: push\njobs: {{}}\n"

[[orgs.repos.workflows]]
name = "Nightly"
path = ".github/workflows/nightly.yml"
state = "disabled_manually"

[orgs.repos.protection.main]
required_status_checks = {{ strict = true, contexts = ["ci"] }}
enforce_admins = true
required_pull_request_reviews = {{ required_approving_review_count = 2 }}

[[orgs.repos.rulesets]]
name = "tags are immutable"
target = "tag"
enforcement = "active"
conditions = {{ ref_name = {{ include = ["refs/tags/v*"], exclude = [] }} }}
rules = [{{ type = "deletion" }}, {{ type = "non_fast_forward" }}]

[[orgs.repos.hooks]]
url = "http://127.0.0.1:9/hook"
secret = "repo-hook-secret-value"
content_type = "json"

[[orgs.repos.deploy_keys]]
title = "seeded"
key = "{key}"
read_only = true

[orgs.repos.collaborators]
outsider = "triage"

[[apps]]
slug = "reader"
permissions = {{ contents = "read", metadata = "read" }}
[[apps.installations]]
account = "acme"
"#,
        key = ed25519(1, "seed@acme"),
    );
    toml::from_str(&text).unwrap()
}

struct T {
    sim: ForgeSim,
    http: reqwest::Client,
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
    bytes: Vec<u8>,
    json: Value,
}

impl T {
    async fn start() -> T {
        let sim = ForgeSim::start(&seed(), "127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("forge-sim-tests")
            .build()
            .unwrap();
        T { sim, http }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.sim.ready().api_url)
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            bytes,
            json,
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .header("accept", "application/vnd.github+json")
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    /// Every recorded exchange must match GitHub's description, except refusals with a status
    /// the description does not list for the route (printed), which need GitHub's error body.
    fn assert_conforms(&self) {
        let exchanges = self.sim.sim().stats.exchanges.lock().clone();
        assert!(!exchanges.is_empty());
        let mut failures = Vec::new();
        for x in &exchanges {
            // A download answers bytes, not the JSON the description documents for the route.
            let download = x.route.ends_with("/releases/assets/{asset_id}")
                && x.status == 200
                && x.response.is_none();
            if download {
                continue;
            }
            if let Err(e) = forge_sim::openapi::validate_response(
                &x.method,
                &x.route,
                x.status,
                x.response.as_ref(),
            ) {
                // GitHub's description does not list every refusal GitHub sends (a 403 for
                // too little access, say); a refusal must still have GitHub's error body.
                let undocumented_refusal =
                    x.status >= 400 && e.iter().all(|m| m.contains("is not documented"));
                if undocumented_refusal {
                    let body = x.response.as_ref();
                    assert!(
                        body.is_some_and(|b| b["message"].is_string()),
                        "{} {} → {}: no error body",
                        x.method,
                        x.path,
                        x.status
                    );
                    eprintln!("undocumented: {} {} → {}", x.method, x.route, x.status);
                } else {
                    failures.push(format!("{} {} → {}: {e:?}", x.method, x.path, x.status));
                }
            }
            if x.status < 300
                && let Err(e) =
                    forge_sim::openapi::validate_request(&x.method, &x.route, x.request.as_ref())
            {
                failures.push(format!("request {} {}: {e:?}", x.method, x.path));
            }
        }
        assert!(
            failures.is_empty(),
            "{} exchanges do not match GitHub's description:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test]
async fn releases_tags_uploads_and_downloads() {
    let t = T::start().await;
    let r = "/repos/acme/widgets";

    // Newest first; the draft only for those with push access.
    let owner_list = t.get(&format!("{r}/releases"), OWNER).await;
    assert_eq!(owner_list.status, 200);
    let tags: Vec<&str> = owner_list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["tag_name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["v3.0.0", "v2.0.0-rc1", "v1.0.0"]);
    let member_list = t.get(&format!("{r}/releases"), MEMBER).await;
    assert_eq!(member_list.json.as_array().unwrap().len(), 2);
    let draft_id = owner_list.json[0]["id"].as_u64().unwrap();
    assert_eq!(
        t.get(&format!("{r}/releases/{draft_id}"), MEMBER)
            .await
            .status,
        404
    );

    // The latest is the newest published non-prerelease; by tag finds it too.
    let latest = t.get(&format!("{r}/releases/latest"), MEMBER).await;
    assert_eq!(latest.json["tag_name"], "v1.0.0");
    let by_tag = t.get(&format!("{r}/releases/tags/v1.0.0"), MEMBER).await;
    assert_eq!(by_tag.json["id"], latest.json["id"]);
    assert_eq!(by_tag.json["author"]["login"], "owner");

    // Seeded assets: text content and deterministic pseudo-random bytes, both downloadable.
    let assets = by_tag.json["assets"].as_array().unwrap().clone();
    let blob = assets.iter().find(|a| a["name"] == "blob.bin").unwrap();
    assert_eq!(blob["size"], 5000);
    let dl = t
        .send(
            t.http
                .get(blob["url"].as_str().unwrap())
                .bearer_auth(MEMBER)
                .header("accept", "application/octet-stream"),
        )
        .await;
    // GitHub redirects to its storage: a pre-signed URL that serves without a token.
    assert_eq!(dl.status, 302);
    let location = dl.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!(
            "{}/_objects/release-assets/",
            t.sim.ready().git_url
        )),
        "{location}"
    );
    let dl = t.send(t.http.get(&location)).await;
    assert_eq!(dl.status, 200);
    assert_eq!(dl.bytes.len(), 5000);
    assert_eq!(
        dl.bytes,
        forge_sim::api::releases::pseudo_random_bytes("v1.0.0/blob.bin", 5000).to_vec()
    );
    assert_eq!(
        blob["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&dl.bytes))
    );

    // The seeded tags exist in git (the draft's does not, as on GitHub).
    let git_dir = {
        let world = t.sim.sim().world.lock();
        let id = world.repo_id("acme", "widgets").unwrap();
        world.repos[&id].git_dir.clone()
    };
    assert!(forge_sim::gitrepo::resolve(&git_dir, "refs/tags/v1.0.0").is_some());
    assert!(forge_sim::gitrepo::resolve(&git_dir, "refs/tags/v3.0.0").is_none());

    // Creating a release makes its tag at target_commitish.
    let created = t
        .call(
            Method::POST,
            &format!("{r}/releases"),
            OWNER,
            Some(json!({"tag_name": "v4.0.0", "target_commitish": "develop", "name": "Four", "body": "notes"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let develop = forge_sim::gitrepo::resolve(&git_dir, "refs/heads/develop").unwrap();
    assert_eq!(
        forge_sim::gitrepo::resolve(&git_dir, "refs/tags/v4.0.0").unwrap(),
        develop
    );
    assert_eq!(created.json["target_commitish"], "develop");
    assert!(created.json["published_at"].is_string());
    let rel_id = created.json["id"].as_u64().unwrap();
    // A second release of the same tag is 422 already_exists.
    let dup = t
        .call(
            Method::POST,
            &format!("{r}/releases"),
            OWNER,
            Some(json!({"tag_name": "v4.0.0"})),
        )
        .await;
    assert_eq!(dup.status, 422);
    assert_eq!(dup.json["errors"][0]["code"], "already_exists");
    // An unknown target is 422; read access is not enough to create.
    let bad = t
        .call(
            Method::POST,
            &format!("{r}/releases"),
            OWNER,
            Some(json!({"tag_name": "v9", "target_commitish": "no-such-branch"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let refused = t
        .call(
            Method::POST,
            &format!("{r}/releases"),
            MEMBER,
            Some(json!({"tag_name": "v5.0.0"})),
        )
        .await;
    assert_eq!(refused.status, 403);

    // Upload through upload_url (the uploads host), with a name GitHub renames.
    let upload_url = created.json["upload_url"]
        .as_str()
        .unwrap()
        .replace("{?name,label}", "");
    assert!(upload_url.starts_with(&t.sim.ready().uploads_url));
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let up = t
        .send(
            t.http
                .post(format!(
                    "{upload_url}?name=my%20tool%20(linux).tar.gz&label=Linux"
                ))
                .bearer_auth(OWNER)
                .header("content-type", "application/gzip")
                .body(payload.clone()),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.text);
    assert_eq!(up.json["name"], "my.tool.linux.tar.gz");
    assert_eq!(up.json["label"], "Linux");
    assert_eq!(up.json["size"], 70_000);
    assert_eq!(up.json["content_type"], "application/gzip");
    assert_eq!(up.json["uploader"]["login"], "owner");
    assert_eq!(
        up.json["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&payload))
    );
    let asset_id = up.json["id"].as_u64().unwrap();
    // The same name again is 422 already_exists; no name is 422 too.
    let again = t
        .send(
            t.http
                .post(format!("{upload_url}?name=my.tool.linux.tar.gz"))
                .bearer_auth(OWNER)
                .body("x"),
        )
        .await;
    assert_eq!(again.status, 422);
    assert_eq!(again.json["errors"][0]["code"], "already_exists");
    let nameless = t
        .send(t.http.post(&upload_url).bearer_auth(OWNER).body("x"))
        .await;
    assert_eq!(nameless.status, 422);
    let member_up = t
        .send(
            t.http
                .post(format!("{upload_url}?name=m.bin"))
                .bearer_auth(MEMBER)
                .body("x"),
        )
        .await;
    assert_eq!(member_up.status, 403);

    // Download the same bytes back through the API ...
    let back = t
        .send(
            t.http
                .get(t.url(&format!("{r}/releases/assets/{asset_id}")))
                .bearer_auth(OWNER)
                .header("accept", "application/octet-stream"),
        )
        .await;
    assert_eq!(back.status, 302);
    let location = back.headers["location"].to_str().unwrap().to_string();
    let back = t.send(t.http.get(&location).bearer_auth(OWNER)).await;
    assert_eq!(back.status, 200);
    assert_eq!(
        back.headers["content-type"].to_str().unwrap(),
        "application/octet-stream"
    );
    assert_eq!(back.bytes, payload);
    // ... and through browser_download_url (served outside the REST API).
    let browser = up.json["browser_download_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        browser,
        format!(
            "{}/acme/widgets/releases/download/v4.0.0/my.tool.linux.tar.gz",
            t.sim.ready().git_url
        )
    );
    let path = browser
        .trim_start_matches(&t.sim.ready().git_url)
        .to_string();
    let peer = t.sim.ready().listen;
    let req = |token: Option<&str>| {
        let mut b = axum::http::Request::builder().uri(path.as_str());
        if let Some(tok) = token {
            b = b.header("authorization", format!("token {tok}"));
        }
        b.body(axum::body::Body::empty()).unwrap()
    };
    let resp = forge_sim::api::releases::browser_download(t.sim.sim(), peer, &req(None));
    assert_eq!(resp.status(), 200);
    let got = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(got.as_ref(), payload.as_slice());
    // Downloads count.
    let meta = t
        .get(&format!("{r}/releases/assets/{asset_id}"), OWNER)
        .await;
    assert_eq!(meta.json["download_count"], 2);
    assert_eq!(meta.json["state"], "uploaded");

    // Rename the asset, list, delete.
    let renamed = t
        .call(
            Method::PATCH,
            &format!("{r}/releases/assets/{asset_id}"),
            OWNER,
            Some(json!({"name": "tool.tgz", "label": "Tool"})),
        )
        .await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.json["name"], "tool.tgz");
    assert!(
        renamed.json["browser_download_url"]
            .as_str()
            .unwrap()
            .ends_with("/v4.0.0/tool.tgz")
    );
    let listed = t.get(&format!("{r}/releases/{rel_id}/assets"), OWNER).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("{r}/releases/assets/{asset_id}"),
            OWNER,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        t.get(&format!("{r}/releases/assets/{asset_id}"), OWNER)
            .await
            .status,
        404
    );

    // Publishing the draft makes its tag; deleting a release keeps the tag.
    let published = t
        .call(
            Method::PATCH,
            &format!("{r}/releases/{draft_id}"),
            OWNER,
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.text);
    assert_eq!(published.json["draft"], false);
    assert!(published.json["published_at"].is_string());
    assert!(forge_sim::gitrepo::resolve(&git_dir, "refs/tags/v3.0.0").is_some());
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("{r}/releases/{rel_id}"),
            OWNER,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        t.get(&format!("{r}/releases/{rel_id}"), OWNER).await.status,
        404
    );
    assert!(forge_sim::gitrepo::resolve(&git_dir, "refs/tags/v4.0.0").is_some());

    t.assert_conforms();
}

/// A receiver for webhook deliveries: (event, headers' signature, body) per delivery.
async fn receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, Vec<u8>)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let _ = tx.send((h("x-github-event"), h("x-hub-signature-256"), body.to_vec()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn hook_secrets_never_appear_in_any_response() {
    let t = T::start().await;
    let r = "/repos/acme/widgets";
    let (hook_url, mut deliveries) = receiver().await;
    let secrets = [
        "repo-hook-secret-value",
        "org-hook-secret-value",
        "brand-new-secret",
        "rotated-secret",
        "org-new-secret",
    ];
    let mut seen: Vec<String> = Vec::new();

    let list = t.get(&format!("{r}/hooks"), OWNER).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json[0]["config"]["secret"], "********");
    assert_eq!(list.json[0]["config"]["url"], "http://127.0.0.1:9/hook");
    assert_eq!(list.json[0]["last_response"]["status"], "unused");
    seen.push(list.text);

    // Creating a hook pings it, signed with its secret.
    let created = t
        .call(
            Method::POST,
            &format!("{r}/hooks"),
            OWNER,
            Some(json!({"name": "web", "events": ["push", "release"], "config": {"url": hook_url, "content_type": "json", "secret": "brand-new-secret", "insecure_ssl": "0"}})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["config"]["secret"], "********");
    assert_eq!(created.json["events"], json!(["push", "release"]));
    let hook_id = created.json["id"].as_u64().unwrap();
    seen.push(created.text.clone());
    let (event, signature, body) =
        tokio::time::timeout(std::time::Duration::from_secs(10), deliveries.recv())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(event, "ping");
    assert_eq!(
        signature,
        forge_sim::webhooks::signature_256("brand-new-secret", &body)
    );
    let ping: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ping["hook_id"], hook_id);
    assert_eq!(ping["hook"]["config"]["secret"], "********");
    // The same URL with an overlapping event is refused.
    let dup = t
        .call(
            Method::POST,
            &format!("{r}/hooks"),
            OWNER,
            Some(json!({"config": {"url": hook_url}, "events": ["push"]})),
        )
        .await;
    assert_eq!(dup.status, 422);
    seen.push(dup.text);

    // A new secret through PATCH; then a ping signed with it.
    let patched = t
        .call(
            Method::PATCH,
            &format!("{r}/hooks/{hook_id}"),
            OWNER,
            Some(json!({"config": {"url": hook_url, "secret": "rotated-secret"}, "add_events": ["issues"]})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["events"], json!(["push", "release", "issues"]));
    seen.push(patched.text);
    let ping = t
        .call(
            Method::POST,
            &format!("{r}/hooks/{hook_id}/pings"),
            OWNER,
            None,
        )
        .await;
    assert_eq!(ping.status, 204);
    let (event, signature, body) =
        tokio::time::timeout(std::time::Duration::from_secs(10), deliveries.recv())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(event, "ping");
    assert_eq!(
        signature,
        forge_sim::webhooks::signature_256("rotated-secret", &body)
    );
    // A release event reaches the hook too.
    let rel = t
        .call(
            Method::POST,
            &format!("{r}/releases"),
            OWNER,
            Some(json!({"tag_name": "v7.0.0"})),
        )
        .await;
    assert_eq!(rel.status, 201);
    let mut actions = Vec::new();
    for _ in 0..3 {
        let (event, _, body) =
            tokio::time::timeout(std::time::Duration::from_secs(10), deliveries.recv())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(event, "release");
        let v: Value = serde_json::from_slice(&body).unwrap();
        actions.push(v["action"].as_str().unwrap().to_string());
    }
    actions.sort();
    assert_eq!(actions, ["created", "published", "released"]);

    let one = t.get(&format!("{r}/hooks/{hook_id}"), OWNER).await;
    assert_eq!(one.json["last_response"]["code"], 200);
    assert_eq!(one.json["last_response"]["status"], "active");
    seen.push(one.text);

    // Organisation hooks: owners only.
    let org_list = t.get("/orgs/acme/hooks", OWNER).await;
    assert_eq!(org_list.status, 200);
    assert_eq!(org_list.json[0]["config"]["secret"], "********");
    seen.push(org_list.text);
    let org_new = t
        .call(
            Method::POST,
            "/orgs/acme/hooks",
            OWNER,
            Some(json!({"name": "web", "config": {"url": "http://127.0.0.1:9/org2", "secret": "org-new-secret"}, "events": ["repository"]})),
        )
        .await;
    assert_eq!(org_new.status, 201, "{}", org_new.text);
    let org_hook = org_new.json["id"].as_u64().unwrap();
    seen.push(org_new.text);
    let org_patch = t
        .call(
            Method::PATCH,
            &format!("/orgs/acme/hooks/{org_hook}"),
            OWNER,
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(org_patch.status, 200);
    assert_eq!(org_patch.json["active"], false);
    assert_eq!(org_patch.json["config"]["secret"], "********");
    seen.push(org_patch.text);
    seen.push(
        t.get(&format!("/orgs/acme/hooks/{org_hook}"), OWNER)
            .await
            .text,
    );
    assert_eq!(t.get("/orgs/acme/hooks", MEMBER).await.status, 404);
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("/orgs/acme/hooks/{org_hook}"),
            OWNER,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        t.call(Method::DELETE, &format!("{r}/hooks/{hook_id}"), OWNER, None)
            .await
            .status,
        204
    );

    for text in &seen {
        for s in secrets {
            assert!(!text.contains(s), "a response shows the secret {s}: {text}");
        }
    }
    // Nor does any recorded response.
    for x in t.sim.sim().stats.exchanges.lock().iter() {
        let text = x
            .response
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        for s in secrets {
            assert!(!text.contains(s), "{} {} shows {s}", x.method, x.path);
        }
    }
    t.assert_conforms();
}

#[tokio::test]
async fn admin_settings_are_refused_to_members_and_integrations_without_the_permission() {
    let t = T::start().await;
    let r = "/repos/acme/widgets";
    let key_id = t.get(&format!("{r}/keys"), OWNER).await.json[0]["id"]
        .as_u64()
        .unwrap();
    let hook_id = t.get(&format!("{r}/hooks"), OWNER).await.json[0]["id"]
        .as_u64()
        .unwrap();
    let reads = [
        format!("{r}/hooks"),
        format!("{r}/hooks/{hook_id}"),
        format!("{r}/keys"),
        format!("{r}/keys/{key_id}"),
        format!("{r}/branches/main/protection"),
    ];
    for path in &reads {
        assert_eq!(t.get(path, OWNER).await.status, 200, "owner: {path}");
        // Read (member) and write (team) access are not admin: GitHub hides these (404).
        for token in [MEMBER, WRITER] {
            let resp = t.get(path, token).await;
            assert_eq!(resp.status, 404, "{token}: {path}");
            assert_eq!(resp.json["message"], "Not Found");
        }
        // Nor for an outsider, who may read this public repository.
        assert_eq!(t.get(path, OUTSIDER).await.status, 404, "outsider: {path}");
    }
    // Writes are refused the same way and change nothing.
    let key = ed25519(9, "member@acme");
    let w = t
        .call(
            Method::POST,
            &format!("{r}/keys"),
            WRITER,
            Some(json!({"key": key})),
        )
        .await;
    assert_eq!(w.status, 404);
    let w = t
        .call(
            Method::PUT,
            &format!("{r}/branches/develop/protection"),
            WRITER,
            Some(json!({"required_status_checks": null, "enforce_admins": null, "required_pull_request_reviews": null, "restrictions": null})),
        )
        .await;
    assert_eq!(w.status, 404);
    let w = t
        .call(
            Method::DELETE,
            &format!("{r}/hooks/{hook_id}"),
            MEMBER,
            None,
        )
        .await;
    assert_eq!(w.status, 404);
    assert_eq!(
        t.get(&format!("{r}/keys"), OWNER)
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.get(&format!("{r}/branches/develop/protection"), OWNER)
            .await
            .status,
        404
    );
    assert_eq!(
        t.get(&format!("{r}/hooks"), OWNER).await.json[0]["id"],
        hook_id
    );

    // An installation without `administration`/`repository_hooks` gets GitHub's 403.
    let inst_token = "ghs_readerInstallation";
    {
        let mut world = t.sim.sim().world.lock();
        let inst = *world.installations.keys().next().unwrap();
        world.tokens.insert(
            inst_token.to_string(),
            forge_sim::state::Token {
                principal: forge_sim::state::Principal::Installation(inst),
                expires_at: None,
                repositories: None,
                permissions: None,
                resource_owner: None,
            },
        );
    }
    for path in &reads {
        let resp = t.get(path, inst_token).await;
        assert_eq!(resp.status, 403, "installation: {path}");
        assert_eq!(
            resp.json["message"],
            "Resource not accessible by integration"
        );
    }
    // It may read releases (contents: read) but not create one.
    assert_eq!(
        t.get(&format!("{r}/releases"), inst_token).await.status,
        200
    );
    let w = t
        .call(
            Method::POST,
            &format!("{r}/releases"),
            inst_token,
            Some(json!({"tag_name": "v8"})),
        )
        .await;
    assert_eq!(w.status, 403);
}

#[tokio::test]
async fn branch_protection_round_trip() {
    let t = T::start().await;
    let r = "/repos/acme/widgets";
    let p = format!("{r}/branches/develop/protection");

    // Unprotected, and a branch that does not exist.
    let none = t.get(&p, OWNER).await;
    assert_eq!(none.status, 404);
    assert_eq!(none.json["message"], "Branch not protected");
    let missing = t.get(&format!("{r}/branches/nope/protection"), OWNER).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json["message"], "Branch not found");

    // All four keys are required (each may be null).
    let incomplete = t
        .call(
            Method::PUT,
            &p,
            OWNER,
            Some(json!({"required_status_checks": null, "enforce_admins": true})),
        )
        .await;
    assert_eq!(incomplete.status, 422);

    let body = json!({
        "required_status_checks": {"strict": true, "contexts": ["ci/build", "lint"]},
        "enforce_admins": true,
        "required_pull_request_reviews": {
            "dismissal_restrictions": {"users": ["owner"], "teams": ["devs"]},
            "dismiss_stale_reviews": true,
            "require_code_owner_reviews": true,
            "required_approving_review_count": 2
        },
        "restrictions": {"users": ["writer"], "teams": ["devs"], "apps": ["reader"]},
        "required_linear_history": true,
        "allow_force_pushes": false,
        "allow_deletions": false,
        "required_conversation_resolution": true
    });
    let put = t.call(Method::PUT, &p, OWNER, Some(body)).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let v = &put.json;
    assert!(v["url"].as_str().unwrap().ends_with(&p));
    assert_eq!(v["required_status_checks"]["strict"], true);
    assert_eq!(
        v["required_status_checks"]["contexts"],
        json!(["ci/build", "lint"])
    );
    assert_eq!(
        v["required_status_checks"]["checks"][1],
        json!({"context": "lint", "app_id": null})
    );
    assert_eq!(v["enforce_admins"]["enabled"], true);
    let reviews = &v["required_pull_request_reviews"];
    assert_eq!(reviews["required_approving_review_count"], 2);
    assert_eq!(reviews["dismiss_stale_reviews"], true);
    assert_eq!(reviews["require_code_owner_reviews"], true);
    assert_eq!(
        reviews["dismissal_restrictions"]["users"][0]["login"],
        "owner"
    );
    assert_eq!(
        reviews["dismissal_restrictions"]["teams"][0]["slug"],
        "devs"
    );
    assert_eq!(v["restrictions"]["users"][0]["login"], "writer");
    assert_eq!(v["restrictions"]["teams"][0]["slug"], "devs");
    assert_eq!(v["restrictions"]["apps"][0]["slug"], "reader");
    assert_eq!(v["required_linear_history"]["enabled"], true);
    assert_eq!(v["allow_force_pushes"]["enabled"], false);
    assert_eq!(v["required_conversation_resolution"]["enabled"], true);

    // GET gives back what PUT answered.
    let got = t.get(&p, OWNER).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json, put.json);

    // PUT replaces: nulls drop the sections.
    let put2 = t
        .call(
            Method::PUT,
            &p,
            OWNER,
            Some(json!({"required_status_checks": null, "enforce_admins": false, "required_pull_request_reviews": null, "restrictions": null})),
        )
        .await;
    assert_eq!(put2.status, 200);
    assert!(put2.json.get("required_status_checks").is_none());
    assert!(put2.json.get("restrictions").is_none());
    assert_eq!(put2.json["enforce_admins"]["enabled"], false);

    // An unknown user in a restriction is 422.
    let unknown = t
        .call(
            Method::PUT,
            &p,
            OWNER,
            Some(json!({"required_status_checks": null, "enforce_admins": null, "required_pull_request_reviews": null, "restrictions": {"users": ["nobody-here"], "teams": []}})),
        )
        .await;
    assert_eq!(unknown.status, 422);

    // Delete, then it is unprotected again.
    assert_eq!(t.call(Method::DELETE, &p, OWNER, None).await.status, 204);
    assert_eq!(
        t.get(&p, OWNER).await.json["message"],
        "Branch not protected"
    );

    // The seeded protection of main.
    let main = t.get(&format!("{r}/branches/main/protection"), OWNER).await;
    assert_eq!(main.status, 200);
    assert_eq!(
        main.json["required_status_checks"]["contexts"],
        json!(["ci"])
    );
    assert_eq!(
        main.json["required_pull_request_reviews"]["required_approving_review_count"],
        2
    );
    assert!(main.json.get("restrictions").is_none());

    t.assert_conforms();
}

#[tokio::test]
async fn workflows_rulesets_keys_topics() {
    let t = T::start().await;
    let r = "/repos/acme/widgets";

    // Workflows: listed with a total; by id or file name; the file is on the default branch.
    let wf = t.get(&format!("{r}/actions/workflows"), MEMBER).await;
    assert_eq!(wf.status, 200);
    assert_eq!(wf.json["total_count"], 2);
    let ci = wf.json["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "CI")
        .unwrap()
        .clone();
    assert_eq!(ci["state"], "active");
    assert_eq!(ci["path"], ".github/workflows/ci.yml");
    let by_id = t
        .get(&format!("{r}/actions/workflows/{}", ci["id"]), MEMBER)
        .await;
    assert_eq!(by_id.json, ci);
    let by_file = t
        .get(&format!("{r}/actions/workflows/nightly.yml"), MEMBER)
        .await;
    assert_eq!(by_file.json["state"], "disabled_manually");
    assert_eq!(
        t.get(&format!("{r}/actions/workflows/none.yml"), MEMBER)
            .await
            .status,
        404
    );
    let git_dir = {
        let world = t.sim.sim().world.lock();
        let id = world.repo_id("acme", "widgets").unwrap();
        world.repos[&id].git_dir.clone()
    };
    let content =
        forge_sim::gitrepo::run(&git_dir, &["show", "main:.github/workflows/ci.yml"]).unwrap();
    assert_eq!(content, "on: push\njobs: {}\n");
    // The history seeded before is still there.
    forge_sim::gitrepo::run(&git_dir, &["show", "main:README.md"]).unwrap();

    // Rulesets: the seeded one, then create, read, update, delete.
    let list = t.get(&format!("{r}/rulesets"), MEMBER).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json[0]["name"], "tags are immutable");
    assert_eq!(list.json[0]["source"], "acme/widgets");
    let created = t
        .call(
            Method::POST,
            &format!("{r}/rulesets"),
            OWNER,
            Some(json!({
                "name": "main is protected",
                "target": "branch",
                "enforcement": "active",
                "bypass_actors": [{"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}],
                "conditions": {"ref_name": {"include": ["~DEFAULT_BRANCH"], "exclude": []}},
                "rules": [{"type": "deletion"}, {"type": "pull_request", "parameters": {
                    "dismiss_stale_reviews_on_push": true, "require_code_owner_review": false,
                    "require_last_push_approval": false, "required_approving_review_count": 1,
                    "required_review_thread_resolution": false}}]
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["source_type"], "Repository");
    assert_eq!(created.json["rules"][1]["type"], "pull_request");
    let rs_id = created.json["id"].as_u64().unwrap();
    let dup = t
        .call(
            Method::POST,
            &format!("{r}/rulesets"),
            OWNER,
            Some(json!({"name": "main is protected", "enforcement": "active"})),
        )
        .await;
    assert_eq!(dup.status, 422);
    let bad = t
        .call(
            Method::POST,
            &format!("{r}/rulesets"),
            OWNER,
            Some(json!({"name": "x", "enforcement": "sometimes"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        t.call(
            Method::POST,
            &format!("{r}/rulesets"),
            WRITER,
            Some(json!({"name": "y", "enforcement": "active"}))
        )
        .await
        .status,
        404
    );
    let updated = t
        .call(
            Method::PUT,
            &format!("{r}/rulesets/{rs_id}"),
            OWNER,
            Some(json!({"enforcement": "evaluate"})),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json["enforcement"], "evaluate");
    assert_eq!(updated.json["name"], "main is protected");
    assert_eq!(
        t.get(&format!("{r}/rulesets/{rs_id}"), MEMBER).await.json,
        updated.json
    );
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("{r}/rulesets/{rs_id}"),
            OWNER,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        t.get(&format!("{r}/rulesets/{rs_id}"), OWNER).await.status,
        404
    );

    // Deploy keys: the seeded one; invalid, duplicate and new keys.
    let keys = t.get(&format!("{r}/keys"), OWNER).await;
    assert_eq!(keys.json[0]["title"], "seeded");
    assert_eq!(keys.json[0]["read_only"], true);
    let seeded_key = ed25519(1, "seed@acme");
    assert_eq!(
        keys.json[0]["key"].as_str().unwrap(),
        seeded_key.rsplit_once(' ').unwrap().0
    );
    let invalid = t
        .call(
            Method::POST,
            &format!("{r}/keys"),
            OWNER,
            Some(json!({"title": "x", "key": "ssh-ed25519 bm90IGEga2V5"})),
        )
        .await;
    assert_eq!(invalid.status, 422);
    assert!(invalid.text.contains("key is invalid"));
    let in_use = t
        .call(
            Method::POST,
            &format!("{r}/keys"),
            OWNER,
            Some(json!({"title": "again", "key": seeded_key})),
        )
        .await;
    assert_eq!(in_use.status, 422);
    assert!(in_use.text.contains("key is already in use"));
    let new_key = t
        .call(
            Method::POST,
            &format!("{r}/keys"),
            OWNER,
            Some(json!({"title": "ci", "key": ed25519(2, "ci@acme")})),
        )
        .await;
    assert_eq!(new_key.status, 201, "{}", new_key.text);
    assert_eq!(new_key.json["read_only"], false);
    let kid = new_key.json["id"].as_u64().unwrap();
    assert_eq!(
        t.get(&format!("{r}/keys/{kid}"), OWNER).await.json["title"],
        "ci"
    );
    assert_eq!(
        t.call(Method::DELETE, &format!("{r}/keys/{kid}"), OWNER, None)
            .await
            .status,
        204
    );
    assert_eq!(t.get(&format!("{r}/keys/{kid}"), OWNER).await.status, 404);

    // Topics.
    let put = t
        .call(
            Method::PUT,
            &format!("{r}/topics"),
            OWNER,
            Some(json!({"names": ["Backup", "git", "backup"]})),
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(put.json["names"], json!(["backup", "git"]));
    assert_eq!(
        t.get(&format!("{r}/topics"), MEMBER).await.json["names"],
        json!(["backup", "git"])
    );
    let bad = t
        .call(
            Method::PUT,
            &format!("{r}/topics"),
            OWNER,
            Some(json!({"names": ["not a topic"]})),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        t.call(
            Method::PUT,
            &format!("{r}/topics"),
            MEMBER,
            Some(json!({"names": ["x"]}))
        )
        .await
        .status,
        403
    );

    t.assert_conforms();
}

#[tokio::test]
async fn collaborators_and_teams() {
    let t = T::start().await;
    let r = "/repos/acme/widgets";

    // Everyone with access, with their highest role.
    let list = t.get(&format!("{r}/collaborators"), WRITER).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let roles: Vec<(String, String)> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["login"].as_str().unwrap().to_string(),
                c["role_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("owner".to_string(), "admin".to_string()),
            ("member".to_string(), "read".to_string()),
            ("writer".to_string(), "write".to_string()),
            ("outsider".to_string(), "triage".to_string()),
        ]
    );
    let outside = t
        .get(&format!("{r}/collaborators?affiliation=outside"), OWNER)
        .await;
    assert_eq!(outside.json.as_array().unwrap().len(), 1);
    assert_eq!(outside.json[0]["login"], "outsider");
    assert_eq!(outside.json[0]["permissions"]["triage"], true);
    assert_eq!(outside.json[0]["permissions"]["push"], false);
    // Read access is not enough to list them.
    assert_eq!(
        t.get(&format!("{r}/collaborators"), MEMBER).await.status,
        403
    );

    // Permission levels (legacy names: maintain → write, triage → read).
    let perm = t
        .get(&format!("{r}/collaborators/outsider/permission"), OWNER)
        .await;
    assert_eq!(perm.json["permission"], "read");
    assert_eq!(perm.json["role_name"], "triage");
    assert_eq!(perm.json["user"]["login"], "outsider");
    assert_eq!(
        t.get(&format!("{r}/collaborators/nobody-here/permission"), OWNER)
            .await
            .status,
        404
    );

    // Grant maintain to the member, then take the outsider off.
    let put = t
        .call(
            Method::PUT,
            &format!("{r}/collaborators/member"),
            OWNER,
            Some(json!({"permission": "maintain"})),
        )
        .await;
    assert_eq!(put.status, 204, "{}", put.text);
    let perm = t
        .get(&format!("{r}/collaborators/member/permission"), OWNER)
        .await;
    assert_eq!(perm.json["role_name"], "maintain");
    assert_eq!(perm.json["permission"], "write");
    assert_eq!(
        t.call(
            Method::PUT,
            &format!("{r}/collaborators/nobody-here"),
            OWNER,
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        t.call(
            Method::PUT,
            &format!("{r}/collaborators/outsider"),
            WRITER,
            Some(json!({"permission": "admin"}))
        )
        .await
        .status,
        403
    );
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("{r}/collaborators/outsider"),
            OWNER,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        t.get(&format!("{r}/collaborators/outsider"), OWNER)
            .await
            .status,
        404
    );

    // Someone outside the organisation is invited, and has access once they accept.
    let invite = t
        .call(
            Method::PUT,
            &format!("{r}/collaborators/outsider"),
            OWNER,
            Some(json!({"permission": "push"})),
        )
        .await;
    assert_eq!(invite.status, 201, "{}", invite.text);
    assert_eq!(invite.json["invitee"]["login"], "outsider");
    assert_eq!(invite.json["inviter"]["login"], "owner");
    assert_eq!(invite.json["permissions"], "write");
    assert_eq!(invite.json["repository"]["full_name"], "acme/widgets");
    let iid = invite.json["id"].as_u64().unwrap();
    assert!(
        invite.headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/user/repository_invitations/{iid}"))
    );
    let pending = t.get(&format!("{r}/invitations"), OWNER).await;
    assert_eq!(pending.json.as_array().unwrap().len(), 1);
    assert_eq!(
        t.get(&format!("{r}/collaborators/outsider"), OWNER)
            .await
            .status,
        404
    );
    let mine = t.get("/user/repository_invitations", OUTSIDER).await;
    assert_eq!(mine.json[0]["id"], iid);
    let invitation = format!("/user/repository_invitations/{iid}");
    assert_eq!(
        t.call(Method::PATCH, &invitation, MEMBER, None)
            .await
            .status,
        404
    );
    assert_eq!(
        t.call(Method::PATCH, &invitation, OUTSIDER, None)
            .await
            .status,
        204
    );
    let perm = t
        .get(&format!("{r}/collaborators/outsider/permission"), OWNER)
        .await;
    assert_eq!(perm.json["role_name"], "write");
    assert!(
        t.get(&format!("{r}/invitations"), OWNER)
            .await
            .json
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.get(&format!("{r}/collaborators/writer"), OWNER)
            .await
            .status,
        204
    );

    // Teams of the repository and of the organisation.
    let teams = t.get(&format!("{r}/teams"), MEMBER).await;
    assert_eq!(teams.json[0]["slug"], "devs");
    assert_eq!(teams.json[0]["permission"], "push");
    let org_teams = t.get("/orgs/acme/teams", OWNER).await;
    assert_eq!(org_teams.json.as_array().unwrap().len(), 1);
    assert_eq!(t.get("/orgs/acme/teams", OUTSIDER).await.status, 403);
    let team = t.get("/orgs/acme/teams/devs", OWNER).await;
    assert_eq!(team.json["members_count"], 1);
    assert_eq!(team.json["repos_count"], 1);
    assert_eq!(team.json["organization"]["login"], "acme");
    let members = t.get("/orgs/acme/teams/devs/members", OWNER).await;
    assert_eq!(members.json[0]["login"], "writer");

    // A new team, granted a repository; its member gains access.
    let created = t
        .call(
            Method::POST,
            "/orgs/acme/teams",
            OWNER,
            Some(
                json!({"name": "Release Managers", "privacy": "closed", "maintainers": ["member"]}),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["slug"], "release-managers");
    let dup = t
        .call(
            Method::POST,
            "/orgs/acme/teams",
            OWNER,
            Some(json!({"name": "Release Managers"})),
        )
        .await;
    assert_eq!(dup.status, 422);
    let grant = t
        .call(
            Method::PUT,
            "/orgs/acme/teams/release-managers/repos/acme/widgets",
            OWNER,
            Some(json!({"permission": "admin"})),
        )
        .await;
    assert_eq!(grant.status, 204, "{}", grant.text);
    assert_eq!(
        t.get(
            "/orgs/acme/teams/release-managers/repos/acme/widgets",
            OWNER
        )
        .await
        .status,
        204
    );
    // The member now administers the repository through the team.
    assert_eq!(t.get(&format!("{r}/hooks"), MEMBER).await.status, 200);
    let perm = t
        .get(&format!("{r}/collaborators/member/permission"), OWNER)
        .await;
    assert_eq!(perm.json["role_name"], "admin");

    t.assert_conforms();
}
