//! Where peers depend on GitHub's exact behaviour, against `seeds/acme.toml` over real HTTPS:
//! a private repository's release asset comes down through a pre-signed, expiring URL that needs
//! no token (and refuses a changed or expired one); the attachments issue bodies link to are
//! served on the simulator's host in both of GitHub's forms, a private repository's only with a
//! token; fine-grained personal access tokens reach their own organisation only (and the
//! repositories and permissions they were narrowed to).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The asset named `name` of the releases of `acme/REPO`, as the owner lists them.
async fn asset(api: &Api, repo: &str, name: &str) -> Value {
    let releases = api
        .get(&format!("/repos/acme/{repo}/releases"), OWNER)
        .await;
    assert_eq!(releases.status, 200, "{:?}", releases.body);
    releases
        .body
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["assets"].as_array().unwrap().iter())
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no asset {name} in acme/{repo}"))
        .clone()
}

/// The asset's download: the 302 answered to `token` with `Accept: application/octet-stream`.
async fn redirect_of(api: &Api, asset: &Value, token: &str) -> String {
    let r = api
        .raw(
            api.http
                .get(asset["url"].as_str().unwrap())
                .bearer_auth(token)
                .header("accept", "application/octet-stream"),
        )
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    r.header("location").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_release_asset_downloads_through_a_presigned_url_without_a_token() {
    let sim = start(&acme_seed()).await;
    let api = Api::new(&sim);
    let git_url = sim.ready().git_url.clone();
    let tarball = asset(&api, "secret-plans", "plans-0.1.0.tar.gz").await;
    let text = asset(&api, "secret-plans", "PLANS.txt").await;

    // Without a token the private repository's asset does not exist.
    let anonymous = api
        .raw(
            api.http
                .get(tarball["url"].as_str().unwrap())
                .header("accept", "application/octet-stream"),
        )
        .await;
    assert_eq!(anonymous.status, 404);

    // With one: a 302 to the download host, whose URL serves without any token.
    let location = redirect_of(&api, &tarball, OWNER).await;
    assert!(
        location.starts_with(&format!("{git_url}/_objects/release-assets/")),
        "{location}"
    );
    assert!(!location.contains(OWNER), "no token in the URL: {location}");
    let got = api.raw(api.http.get(&location)).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.bytes));
    assert_eq!(got.bytes.len(), 3000);
    assert_eq!(
        tarball["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&got.bytes))
    );
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert!(
        got.header("content-disposition")
            .contains("plans-0.1.0.tar.gz"),
        "{:?}",
        got.headers
    );
    // A client that keeps its token on the same-host redirect is served too.
    let kept = api.raw(api.http.get(&location).bearer_auth(OWNER)).await;
    assert_eq!(kept.bytes, got.bytes);
    let text_location = redirect_of(&api, &text, DEV).await;
    let got_text = api.raw(api.http.get(&text_location)).await;
    assert_eq!(got_text.bytes, b"Step 1: widgets. Step 2: the world.\n");

    // Changing anything the signature covers is refused as S3 refuses it.
    let (path, query) = location.split_once('?').unwrap();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (expires, signature) = (param("expires"), param("signature"));
    let now = forge_sim::server::unix_now();
    let expires_at: u64 = expires.parse().unwrap();
    assert!(
        expires_at > now && expires_at <= now + forge_sim::objects::TTL_SECS,
        "expires {expires_at}, now {now}"
    );
    let flipped = format!(
        "{}{}",
        &signature[..signature.len() - 1],
        if signature.ends_with('0') { "1" } else { "0" }
    );
    let text_asset_id = text["id"].as_u64().unwrap();
    let tarball_id = tarball["id"].as_u64().unwrap();
    let other_path = path.replace(&format!("/{tarball_id}"), &format!("/{text_asset_id}"));
    assert_ne!(other_path, path);
    for tampered in [
        format!("{path}?expires={expires}&signature={flipped}"),
        format!("{path}?expires={}&signature={signature}", expires_at + 3600),
        format!("{other_path}?expires={expires}&signature={signature}"),
        format!("{path}?expires={expires}"),
        path.to_string(),
    ] {
        let r = api.raw(api.http.get(&tampered)).await;
        assert_eq!(r.status, 403, "{tampered}");
        assert_ne!(r.bytes, got.bytes, "{tampered}");
    }
    let r = api
        .raw(
            api.http
                .get(format!("{path}?expires={expires}&signature={flipped}")),
        )
        .await;
    assert!(
        String::from_utf8_lossy(&r.bytes).contains("SignatureDoesNotMatch"),
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );

    // A URL signed correctly that has expired is refused too.
    let repo_id = {
        let world = sim.sim().world.lock();
        world.repo_id("acme", "secret-plans").unwrap()
    };
    let expired = forge_sim::objects::presign_until(
        sim.sim(),
        &format!("release-assets/{repo_id}/{tarball_id}"),
        now - 1,
    )
    .unwrap();
    let r = api.raw(api.http.get(&expired)).await;
    assert_eq!(r.status, 403);
    assert!(
        String::from_utf8_lossy(&r.bytes).contains("Request has expired"),
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );

    // Each download that was served counts, as GitHub counts them.
    let again = asset(&api, "secret-plans", "plans-0.1.0.tar.gz").await;
    assert_eq!(again["download_count"], 2);
}

/// The seed's two attachments: (URL on github.com as the seed writes it, SHA-256 of the
/// bytes, content type, uploaded in a private repository).
const ATTACHMENTS: [(&str, &str, &str, bool); 2] = [
    (
        "https://github.com/user-attachments/assets/3f1c5a52-7a3e-4b8e-9c41-2d6f0b7e8a19",
        "49fbcd4506277e698ef378888a7d9d4342741a0805397565f67798f5a58a0f4c",
        "image/svg+xml",
        true,
    ),
    (
        "https://github.com/acme/docs/assets/1000001/8d2e4b6a-1c3f-4a5e-b7d9-0e1f2a3b4c5d",
        "94107a80263adac17377cdd0260ee18a83cb958c1dba8667e31e501ad25bec9d",
        "text/plain",
        false,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_served_on_the_simulator_s_host_with_github_s_access_rules() {
    let seed = acme_seed();
    let sim = start(&seed).await;
    let api = Api::new(&sim);
    let git_url = sim.ready().git_url.clone();

    // The seeded issue of acme/docs links both, on the simulator's host.
    let issues = api.get("/repos/acme/docs/issues", OWNER).await;
    let issue = issues
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"] == "Screenshots of the broken page")
        .unwrap()
        .clone();
    let body = issue["body"].as_str().unwrap();
    assert!(!body.contains("https://github.com"), "{body}");
    // The seed says the same bytes (what an end-to-end test computes its checksums from).
    let mut seeded: Vec<(String, String)> = seed
        .orgs
        .iter()
        .flat_map(|o| o.repos.iter())
        .flat_map(|r| r.attachments.iter())
        .map(|a| {
            let bytes = forge_sim::attachments::content(a).unwrap();
            (a.url.clone(), sha256_hex(&bytes))
        })
        .collect();
    let mut want: Vec<(String, String)> = ATTACHMENTS
        .iter()
        .map(|(url, sha, ..)| (url.to_string(), sha.to_string()))
        .collect();
    want.sort();
    seeded.sort();
    assert_eq!(seeded, want);
    let counts = seed.counts("acme", "docs").unwrap();
    assert_eq!(counts.attachments, 2);
    assert_eq!(seed.counts("acme", "secret-plans").unwrap().attachments, 0);

    for (github, sha, content_type, private) in ATTACHMENTS {
        let url = github.replace("https://github.com", &git_url);
        assert!(body.contains(&url), "{url} in {body}");

        // Anonymous: a private repository's attachment does not exist; a public one's is
        // served. A user who cannot read the private repository is answered the same way.
        let anonymous = api.raw(api.http.get(&url)).await;
        let outsider = api.raw(api.http.get(&url).bearer_auth(OUTSIDER)).await;
        if private {
            assert_eq!(anonymous.status, 404, "{url}");
            assert_eq!(outsider.status, 404, "{url}");
        } else {
            assert_eq!(anonymous.status, 302, "{url}");
            assert_eq!(outsider.status, 302, "{url}");
        }

        // With a token that reads the repository: a 302 to the download host, whose URL
        // serves the bytes without a token.
        for token in [OWNER, DEV] {
            let r = api.raw(api.http.get(&url).bearer_auth(token)).await;
            assert_eq!(r.status, 302, "{url}");
            let location = r.header("location").to_string();
            assert!(
                location.starts_with(&format!("{git_url}/_objects/attachments/")),
                "{location}"
            );
            let got = api.raw(api.http.get(&location)).await;
            assert_eq!(got.status, 200, "{location}");
            assert_eq!(sha256_hex(&got.bytes), sha, "{url}");
            assert_eq!(got.header("content-type"), content_type, "{url}");
        }
    }

    // Each form answers only under its own path.
    let user_uuid = ATTACHMENTS[0].0.rsplit('/').next().unwrap();
    let repo_uuid = ATTACHMENTS[1].0.rsplit('/').next().unwrap();
    for wrong in [
        format!("{git_url}/user-attachments/assets/{repo_uuid}"),
        format!("{git_url}/acme/docs/assets/1000001/{user_uuid}"),
        format!("{git_url}/acme/widgets/assets/1000001/{repo_uuid}"),
        format!("{git_url}/acme/docs/assets/1000002/{repo_uuid}"),
        format!("{git_url}/user-attachments/assets/00000000-0000-4000-8000-000000000000"),
    ] {
        let r = api.raw(api.http.get(&wrong).bearer_auth(OWNER)).await;
        assert_eq!(r.status, 404, "{wrong}");
    }
}

/// Fine-grained tokens of seeds/acme.toml, one per organisation.
const ACME_PAT: &str = "github_pat_acmeOwner_000000000000000000000000000000000000";
const GLOBEX_PAT: &str = "github_pat_globexOwner_0000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_grained_tokens_reach_their_own_organisation_only() {
    let sim = start(&acme_seed()).await;
    let api = Api::new(&sim);
    const NOT_BY_PAT: &str = "Resource not accessible by personal access token";

    // The classic token of the owner of both reaches both.
    for repo in ["/repos/acme/secret-plans", "/repos/globex/intake"] {
        assert_eq!(api.get(repo, OWNER).await.status, 200, "{repo}");
    }

    // Each fine-grained token: its own organisation's repositories, private ones included.
    assert_eq!(
        api.get("/repos/acme/secret-plans", ACME_PAT).await.status,
        200
    );
    assert_eq!(
        api.get("/repos/globex/intake", GLOBEX_PAT).await.status,
        200
    );

    // Another organisation's private repository does not exist for it; a public one it reads
    // as anyone may, and may not write to.
    assert_eq!(api.get("/repos/globex/intake", ACME_PAT).await.status, 404);
    assert_eq!(
        api.get("/repos/acme/secret-plans", GLOBEX_PAT).await.status,
        404
    );
    assert_eq!(
        api.get("/repos/acme/secret-plans/issues", GLOBEX_PAT)
            .await
            .status,
        404
    );
    assert_eq!(api.get("/repos/acme/widgets", GLOBEX_PAT).await.status, 200);
    let write = api
        .call(
            Method::POST,
            "/repos/acme/widgets/issues",
            Some(GLOBEX_PAT),
            Some(&json!({"title": "from globex"})),
        )
        .await;
    assert_eq!(write.status, 403);
    assert_eq!(write.body["message"], NOT_BY_PAT);

    // Organisation routes: creating a repository in the other organisation is refused with
    // GitHub's answer; in its own it works, and so do the writes a restore makes there.
    let create = |org: &'static str, token: &'static str, name: &'static str| {
        let api = api.clone();
        async move {
            api.call(
                Method::POST,
                &format!("/orgs/{org}/repos"),
                Some(token),
                Some(&json!({"name": name, "private": true})),
            )
            .await
        }
    };
    let refused = create("acme", GLOBEX_PAT, "from-globex").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["message"], NOT_BY_PAT);
    let refused = create("globex", ACME_PAT, "from-acme").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["message"], NOT_BY_PAT);
    let made = create("globex", GLOBEX_PAT, "widgets-restored").await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let issue = api
        .call(
            Method::POST,
            "/repos/globex/widgets-restored/issues",
            Some(GLOBEX_PAT),
            Some(&json!({"title": "restored"})),
        )
        .await;
    assert_eq!(issue.status, 201, "{:?}", issue.body);
    let teams = api.get("/orgs/acme/teams", GLOBEX_PAT).await;
    assert_eq!(teams.status, 403);
    assert_eq!(teams.body["message"], NOT_BY_PAT);

    // The organisation's list shows the other organisation's token only public repositories.
    let listed = api.get("/orgs/globex/repos", ACME_PAT).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.body,
        json!([]),
        "globex has private repositories only"
    );
    let listed = api.get("/orgs/globex/repos", GLOBEX_PAT).await;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["intake", "widgets-restored"]);

    // A token narrowed to one repository and to reading: other repositories of its own
    // organisation are as another organisation's, and it writes nothing.
    const NARROW: &str = "github_pat_narrow_0000000000000000000000000000000000000000";
    {
        let mut world = sim.sim().world.lock();
        let widgets = world.repo_id("acme", "widgets").unwrap();
        world.tokens.insert(
            NARROW.to_string(),
            forge_sim::state::Token {
                principal: forge_sim::state::Principal::User("octo-admin".into()),
                expires_at: None,
                repositories: Some([widgets].into()),
                permissions: Some(
                    [("contents", "read"), ("issues", "read")]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                ),
                resource_owner: Some("acme".into()),
            },
        );
    }
    assert_eq!(
        api.get("/repos/acme/widgets/issues", NARROW).await.status,
        200
    );
    assert_eq!(api.get("/repos/acme/docs", NARROW).await.status, 200);
    assert_eq!(
        api.get("/repos/acme/secret-plans", NARROW).await.status,
        404
    );
    let write = api
        .call(
            Method::POST,
            "/repos/acme/widgets/issues",
            Some(NARROW),
            Some(&json!({"title": "narrow"})),
        )
        .await;
    assert_eq!(write.status, 403);
    assert_eq!(write.body["message"], NOT_BY_PAT);
    let hooks = api.get("/repos/acme/widgets/hooks", NARROW).await;
    assert_eq!(hooks.status, 403);
    let refused = create("acme", NARROW, "narrow").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["message"], NOT_BY_PAT);

    // git follows the same rules: its own organisation's repository clones, the other's
    // private one is not found, and the other's public one takes no push.
    let ca = sim.ready().ca_cert.clone();
    let git_url = sim.ready().git_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let own = git(
            &ca,
            t,
            GLOBEX_PAT,
            &[
                "clone",
                "-q",
                &format!("{git_url}/globex/intake.git"),
                "own",
            ],
        );
        let other = git(
            &ca,
            t,
            GLOBEX_PAT,
            &["ls-remote", &format!("{git_url}/acme/secret-plans.git")],
        );
        let public = git(
            &ca,
            t,
            GLOBEX_PAT,
            &[
                "clone",
                "-q",
                &format!("{git_url}/acme/widgets.git"),
                "public",
            ],
        );
        let push = git(
            &ca,
            &t.join("public"),
            GLOBEX_PAT,
            &["push", "origin", "HEAD:refs/heads/from-globex"],
        );
        (own, other, public, push)
    })
    .await
    .unwrap();
    let (own, other, public, push) = out;
    own.unwrap();
    let other = other.unwrap_err();
    assert!(other.contains("not found"), "{other}");
    public.unwrap();
    let push = push.unwrap_err();
    assert!(push.contains("403") || push.contains("denied"), "{push}");
}
