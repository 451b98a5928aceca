//! git smart HTTP, Git LFS, wikis and push webhooks of the simulator, driven by the real git and
//! git-lfs CLIs over HTTPS: mirror clones equal the bare repository, pushes deliver signed `push`
//! events to repository, organisation and app webhooks, `refs/pull/*` is refused as a hidden ref,
//! private repositories need credentials and installation tokens are held to their permissions,
//! LFS objects come down and go up through the batch API, wikis clone with their pages and take
//! pushes once they exist (a push never makes one, as on GitHub).
//!
//! Tokens reach git through `GIT_CONFIG_COUNT`/`KEY`/`VALUE` (`http.extraHeader`), never through
//! URLs or arguments.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const OWNER_TOKEN: &str = "ghp_owner00000000000000000000000000000";
const OUTSIDER_TOKEN: &str = "ghp_outsider000000000000000000000000000";
const LFS_BIG: &str = "large binary-ish content that git keeps outside the repository\n";
const LFS_MODEL: &str = "model weights, pretend\n";

fn seed(hooks: &str) -> Seed {
    let text = format!(
        r##"
[[users]]
login = "owner"
email = "owner@acme.example"
tokens = ["{OWNER_TOKEN}"]
[[users]]
login = "outsider"
tokens = ["{OUTSIDER_TOKEN}"]

[[orgs]]
login = "acme"
[[orgs.hooks]]
url = "{hooks}/org"
events = ["push"]
secret = "org-secret"

[[orgs.repos]]
name = "widgets"
wiki = {{ "Home.md" = "# Welcome to widgets\n", "Usage.md" = "Turn the crank.\n" }}
[[orgs.repos.commits]]
message = "first"
files = {{ "README.md" = "hello\n" }}
[[orgs.repos.commits]]
message = "on a feature"
branch = "feature"
files = {{ "feature.txt" = "f\n" }}
[[orgs.repos.tags]]
name = "v1"
message = "release 1"
[[orgs.repos.hooks]]
url = "{hooks}/repo"
events = ["push"]
secret = "repo-secret"
[[orgs.repos.hooks]]
url = "http://127.0.0.1:9/nobody-listens"
events = ["push"]

[[orgs.repos]]
name = "secret"
private = true
[[orgs.repos.commits]]
message = "classified"
files = {{ "plan.txt" = "top secret\n" }}

[[orgs.repos]]
name = "assets"
private = true
lfs = {{ "big.bin" = "{big}", "models/model.dat" = "{model}" }}
[[orgs.repos.commits]]
message = "readme"
files = {{ "README.md" = "assets\n" }}

[[orgs.repos]]
name = "museum"
archived = true
[[orgs.repos.commits]]
message = "old"
files = {{ "old.txt" = "old\n" }}

[[apps]]
slug = "vault"
permissions = {{ contents = "read", metadata = "read" }}
events = ["push"]
webhook_url = "{hooks}/app"
webhook_secret = "app-secret"
[[apps.installations]]
account = "acme"
"##,
        big = LFS_BIG.replace('\n', "\\n"),
        model = LFS_MODEL.replace('\n', "\\n"),
    );
    toml::from_str(&text).unwrap()
}

/// One webhook delivery the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A plain-HTTP webhook receiver on a free port; answers 200 to everything.
async fn receiver() -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let g = g.clone();
        async move {
            let path = req.uri().path().to_string();
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
                .collect();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec();
            g.lock().unwrap().push(Delivery {
                path,
                headers,
                body,
            });
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, got)
}

/// Waits until `pred` holds for the deliveries (10 s at most) and returns them.
async fn wait_for(
    got: &Arc<Mutex<Vec<Delivery>>>,
    pred: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    for _ in 0..200 {
        let now = got.lock().unwrap().clone();
        if pred(&now) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = got.lock().unwrap().clone();
    panic!(
        "deliveries never matched: {:#?}",
        now.iter()
            .map(|d| (d.path.clone(), d.header("x-github-event").to_string()))
            .collect::<Vec<_>>()
    )
}

fn verify_signature(d: &Delivery, secret: &str) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&d.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(d.header("x-hub-signature-256"), expected, "{}", d.path);
}

async fn start(hooks: &str) -> ForgeSim {
    ForgeSim::start(&seed(hooks), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

/// The real git CLI against the simulator: its CA, no user or system configuration, no prompts,
/// and credentials only through `GIT_CONFIG_*` environment variables.
#[derive(Clone)]
struct Git {
    ca: PathBuf,
    config: Vec<(String, String)>,
}

impl Git {
    fn new(sim: &ForgeSim) -> Git {
        Git {
            ca: sim.ready().ca_cert.clone(),
            config: vec![
                ("user.name".into(), "Tester".into()),
                ("user.email".into(), "tester@example.com".into()),
                (
                    "http.sslCAInfo".into(),
                    sim.ready().ca_cert.display().to_string(),
                ),
                ("init.defaultBranch".into(), "main".into()),
            ],
        }
    }

    fn token(mut self, user: &str, token: &str) -> Git {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        self.config.push((
            "http.extraHeader".into(),
            format!("Authorization: Basic {b64}"),
        ));
        self
    }

    fn lfs(mut self) -> Git {
        for (k, v) in [
            ("filter.lfs.clean", "git-lfs clean -- %f"),
            ("filter.lfs.smudge", "git-lfs smudge -- %f"),
            ("filter.lfs.process", "git-lfs filter-process"),
            ("filter.lfs.required", "true"),
        ] {
            self.config.push((k.into(), v.into()));
        }
        self
    }

    async fn run(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = tokio::process::Command::new("git");
        c.current_dir(dir)
            .args(args)
            .env("GIT_SSL_CAINFO", &self.ca)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env("GIT_CONFIG_COUNT", self.config.len().to_string());
        for (i, (k, v)) in self.config.iter().enumerate() {
            c.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        c.output().await.unwrap()
    }

    /// Runs git and fails the test with its stderr unless it succeeds; returns stdout.
    async fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.run(dir, args).await;
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs git, expects it to fail, returns its stderr.
    async fn fails(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.run(dir, args).await;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "git {args:?} succeeded: {err}");
        err
    }
}

fn url(sim: &ForgeSim, path: &str) -> String {
    format!("{}/{path}", sim.ready().git_url)
}

fn http(sim: &ForgeSim) -> reqwest::Client {
    let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

fn basic(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

fn repo_field<T>(sim: &ForgeSim, name: &str, f: impl FnOnce(&forge_sim::state::Repo) -> T) -> T {
    let world = sim.sim().world.lock();
    let id = world.repo_id("acme", name).unwrap();
    f(&world.repos[&id])
}

fn refs_of_dir(dir: &Path) -> Vec<(String, String)> {
    forge_sim::gitrepo::refs(dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_clone_push_webhooks_and_hidden_refs() {
    let (hooks, got) = receiver().await;
    let sim = start(&hooks).await;
    let git = Git::new(&sim).token("x-access-token", OWNER_TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // A mirror clone has exactly the bare repository's refs (branches, the tag).
    let counted_before = sim.stats().counted_requests;
    git.ok(
        t,
        &[
            "clone",
            "-q",
            "--mirror",
            &url(&sim, "acme/widgets.git"),
            "m.git",
        ],
    )
    .await;
    let bare = repo_field(&sim, "widgets", |r| r.git_dir.clone());
    let mirror = refs_of_dir(&t.join("m.git"));
    assert_eq!(mirror, refs_of_dir(&bare));
    let names: Vec<&str> = mirror.iter().map(|(r, _)| r.as_str()).collect();
    assert!(names.contains(&"refs/heads/main"), "{names:?}");
    assert!(names.contains(&"refs/heads/feature"), "{names:?}");
    assert!(names.contains(&"refs/tags/v1"), "{names:?}");
    // Git does not count against the REST limits; it is counted as git.
    let stats = sim.stats();
    assert_eq!(stats.counted_requests, counted_before);
    assert!(stats.git_requests >= 2, "{stats:?}");

    // A public repository clones anonymously too, under any letter case.
    let anon = Git::new(&sim);
    anon.ok(t, &["clone", "-q", &url(&sim, "ACME/Widgets.git"), "anon"])
        .await;
    assert_eq!(
        std::fs::read_to_string(t.join("anon/README.md")).unwrap(),
        "hello\n"
    );
    // ...but anonymous pushes are asked for credentials.
    let err = anon
        .fails(&t.join("anon"), &["push", "origin", "HEAD:refs/heads/anon"])
        .await;
    assert!(
        err.contains("terminal prompts disabled") || err.contains("401"),
        "{err}"
    );

    // Push a new branch: signed push events reach the repository's hook, the organisation's
    // hook and the app's webhook.
    git.ok(t, &["clone", "-q", &url(&sim, "acme/widgets.git"), "w"])
        .await;
    let w = t.join("w");
    std::fs::write(w.join("topic.txt"), "topic\n").unwrap();
    git.ok(&w, &["checkout", "-q", "-b", "topic"]).await;
    git.ok(&w, &["add", "topic.txt"]).await;
    git.ok(&w, &["commit", "-q", "-m", "Add the topic"]).await;
    let head = git.ok(&w, &["rev-parse", "HEAD"]).await.trim().to_string();
    let pushed_before = repo_field(&sim, "widgets", |r| r.pushed_at);
    git.ok(&w, &["push", "-q", "origin", "topic"]).await;
    assert_eq!(
        forge_sim::gitrepo::resolve(&bare, "refs/heads/topic").as_deref(),
        Some(head.as_str())
    );
    assert!(repo_field(&sim, "widgets", |r| r.pushed_at) > pushed_before);

    let all = wait_for(&got, |d| d.len() >= 3).await;
    assert_eq!(all.len(), 3, "one event per target");
    let installation_id = sim.ready().installation_id.unwrap();
    for (path, secret) in [
        ("/repo", "repo-secret"),
        ("/org", "org-secret"),
        ("/app", "app-secret"),
    ] {
        let d = all.iter().find(|d| d.path == path).unwrap();
        verify_signature(d, secret);
        assert_eq!(d.header("x-github-event"), "push");
        assert_eq!(d.header("content-type"), "application/json");
        assert!(d.header("user-agent").starts_with("GitHub-Hookshot/"));
        assert_eq!(d.header("x-github-delivery").len(), 36);
        assert!(!d.header("x-github-hook-id").is_empty());
        let v = d.json();
        assert_eq!(v["ref"], "refs/heads/topic");
        assert_eq!(v["before"], "0000000000000000000000000000000000000000");
        assert_eq!(v["after"], head.as_str());
        assert_eq!(v["created"], true);
        assert_eq!(v["deleted"], false);
        assert_eq!(v["forced"], false);
        assert_eq!(v["repository"]["full_name"], "acme/widgets");
        assert_eq!(v["pusher"]["name"], "owner");
        assert_eq!(v["pusher"]["email"], "owner@acme.example");
        assert_eq!(v["sender"]["login"], "owner");
        assert_eq!(v["organization"]["login"], "acme");
        let commits = v["commits"].as_array().unwrap();
        assert_eq!(commits.len(), 1, "only the new commit: {commits:?}");
        assert_eq!(commits[0]["id"], head.as_str());
        assert_eq!(commits[0]["message"], "Add the topic");
        assert_eq!(commits[0]["author"]["email"], "tester@example.com");
        assert_eq!(commits[0]["added"], json!(["topic.txt"]));
        assert_eq!(v["head_commit"]["id"], head.as_str());
        if path == "/app" {
            assert_eq!(v["installation"]["id"], installation_id);
        } else {
            assert!(v.get("installation").is_none());
        }
    }
    // The hook whose receiver is not there recorded a failed delivery; the push did not care.
    let recorded = wait_for_recorded(&sim, "widgets", 2).await;
    assert!(
        recorded.contains(&("push".to_string(), 200)),
        "{recorded:?}"
    );
    assert!(recorded.contains(&("push".to_string(), 0)), "{recorded:?}");
    assert!(sim.stats().webhook_deliveries >= 4);

    // One push of a branch update and a new tag: one event per ref, per target.
    got.lock().unwrap().clear();
    std::fs::write(w.join("topic.txt"), "topic, again\n").unwrap();
    git.ok(&w, &["commit", "-q", "-am", "Again"]).await;
    git.ok(&w, &["tag", "v2"]).await;
    let head2 = git.ok(&w, &["rev-parse", "HEAD"]).await.trim().to_string();
    git.ok(&w, &["push", "-q", "origin", "topic", "v2"]).await;
    let all = wait_for(&got, |d| d.len() >= 6).await;
    let repo_events: Vec<Value> = all
        .iter()
        .filter(|d| d.path == "/repo")
        .map(Delivery::json)
        .collect();
    assert_eq!(repo_events.len(), 2);
    let topic = repo_events
        .iter()
        .find(|v| v["ref"] == "refs/heads/topic")
        .unwrap();
    assert_eq!(topic["before"], head.as_str());
    assert_eq!(topic["after"], head2.as_str());
    assert_eq!(topic["created"], false);
    assert_eq!(topic["commits"].as_array().unwrap().len(), 1);
    let tag = repo_events
        .iter()
        .find(|v| v["ref"] == "refs/tags/v2")
        .unwrap();
    assert_eq!(tag["created"], true);
    assert_eq!(tag["head_commit"]["id"], head2.as_str());

    // A forced push and a deletion say so.
    got.lock().unwrap().clear();
    git.ok(&w, &["reset", "-q", "--hard", "HEAD~1"]).await;
    git.ok(&w, &["push", "-q", "-f", "origin", "topic"]).await;
    git.ok(&w, &["push", "-q", "origin", ":refs/tags/v2"]).await;
    let all = wait_for(&got, |d| {
        d.iter().filter(|d| d.path == "/repo").count() >= 2
    })
    .await;
    let repo_events: Vec<Value> = all
        .iter()
        .filter(|d| d.path == "/repo")
        .map(Delivery::json)
        .collect();
    // (Two pushes: their events may arrive in either order.)
    let forced = repo_events
        .iter()
        .find(|v| v["ref"] == "refs/heads/topic")
        .unwrap();
    assert_eq!(forced["forced"], true);
    assert_eq!(forced["deleted"], false);
    assert_eq!(forced["after"], head.as_str());
    assert_eq!(forced["commits"], json!([]));
    let deleted = repo_events
        .iter()
        .find(|v| v["ref"] == "refs/tags/v2")
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["forced"], false);
    assert_eq!(deleted["before"], head2.as_str());
    assert_eq!(deleted["after"], "0000000000000000000000000000000000000000");
    assert_eq!(deleted["head_commit"], Value::Null);

    // refs/pull/* is GitHub's: pushes to it are refused as hidden refs.
    let err = git
        .fails(&w, &["push", "origin", "HEAD:refs/pull/1/head"])
        .await;
    assert!(err.contains("hidden ref"), "{err}");
    assert!(forge_sim::gitrepo::resolve(&bare, "refs/pull/1/head").is_none());

    // An archived repository can be cloned but refuses pushes.
    git.ok(t, &["clone", "-q", &url(&sim, "acme/museum.git"), "museum"])
        .await;
    let museum = t.join("museum");
    git.ok(&museum, &["commit", "-q", "--allow-empty", "-m", "late"])
        .await;
    let err = git.fails(&museum, &["push", "origin", "HEAD"]).await;
    assert!(err.contains("archived") && err.contains("403"), "{err}");
}

async fn wait_for_recorded(sim: &ForgeSim, repo: &str, n: usize) -> Vec<(String, u16)> {
    for _ in 0..200 {
        let d: Vec<(String, u16)> = repo_field(sim, repo, |r| {
            r.hooks
                .values()
                .flat_map(|h| h.deliveries.clone())
                .collect()
        });
        if d.len() >= n {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} deliveries recorded");
}

async fn installation_token(sim: &ForgeSim, c: &reqwest::Client) -> String {
    let key = std::fs::read(sim.ready().app_private_key.as_ref().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iat": now - 60, "exp": now + 540, "iss": sim.ready().app_id.unwrap()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap(),
    )
    .unwrap();
    let inst = sim.ready().installation_id.unwrap();
    let r = c
        .post(format!(
            "{}/app/installations/{inst}/access_tokens",
            sim.ready().api_url
        ))
        .bearer_auth(jwt)
        .header("user-agent", "forge-sim-tests")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_repositories_need_credentials_and_installation_tokens_are_scoped() {
    let (hooks, _got) = receiver().await;
    let sim = start(&hooks).await;
    let c = http(&sim);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let info = url(&sim, "acme/secret.git/info/refs?service=git-upload-pack");

    // No credentials: 401 with GitHub's challenge, and git (which may not prompt) gives up.
    let r = c.get(&info).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"GitHub\""
    );
    let err = Git::new(&sim)
        .fails(t, &["clone", "-q", &url(&sim, "acme/secret.git"), "anon"])
        .await;
    assert!(err.contains("terminal prompts disabled"), "{err}");
    // An unknown repository looks the same to an anonymous caller.
    let r = c
        .get(url(&sim, "acme/nope.git/info/refs?service=git-upload-pack"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Every form of credential GitHub takes; a wrong token is 401 too.
    for auth in [
        basic("x-access-token", OWNER_TOKEN),
        basic("owner", OWNER_TOKEN),
        basic(OWNER_TOKEN, "x-oauth-basic"),
    ] {
        let r = c
            .get(&info)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/x-git-upload-pack-advertisement"
        );
    }
    let r = c
        .get(&info)
        .header("authorization", basic("x-access-token", "ghp_wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A user without access does not see it.
    let r = c
        .get(&info)
        .header("authorization", basic("x-access-token", OUTSIDER_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let err = Git::new(&sim)
        .token("x-access-token", OUTSIDER_TOKEN)
        .fails(t, &["clone", "-q", &url(&sim, "acme/secret.git"), "out"])
        .await;
    assert!(err.contains("not found") || err.contains("404"), "{err}");

    // A read-only installation token fetches but may not push.
    let token = installation_token(&sim, &c).await;
    let inst = Git::new(&sim).token("x-access-token", &token);
    inst.ok(t, &["clone", "-q", &url(&sim, "acme/secret.git"), "s"])
        .await;
    let s = t.join("s");
    assert_eq!(
        std::fs::read_to_string(s.join("plan.txt")).unwrap(),
        "top secret\n"
    );
    inst.ok(&s, &["commit", "-q", "--allow-empty", "-m", "nope"])
        .await;
    let err = inst
        .fails(&s, &["push", "origin", "HEAD:refs/heads/x"])
        .await;
    assert!(
        err.contains("403") && err.contains("denied to vault[bot]"),
        "{err}"
    );
    let r = c
        .get(url(
            &sim,
            "acme/secret.git/info/refs?service=git-receive-pack",
        ))
        .header("authorization", basic("x-access-token", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The owner may.
    Git::new(&sim)
        .token("x-access-token", OWNER_TOKEN)
        .ok(&s, &["push", "-q", "origin", "HEAD:refs/heads/x"])
        .await;

    // Blocked: 451; deleted: 404.
    let owner = basic("x-access-token", OWNER_TOKEN);
    let ctl = |action: &str| format!("{}/_sim/repos/acme/secret/{action}", sim.ready().git_url);
    c.post(ctl("block")).send().await.unwrap();
    let r = c
        .get(&info)
        .header("authorization", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Repository access blocked")
    );
    c.post(ctl("unblock")).send().await.unwrap();
    c.post(ctl("delete")).send().await.unwrap();
    for auth in [Some(owner.as_str()), None] {
        let mut req = c.get(&info);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lfs_objects_come_down_and_go_up() {
    let (hooks, _got) = receiver().await;
    let sim = start(&hooks).await;
    let version = Git::new(&sim).ok(Path::new("/"), &["lfs", "version"]).await;
    assert!(version.starts_with("git-lfs/"), "{version}");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let git = Git::new(&sim).token("x-access-token", OWNER_TOKEN).lfs();

    // The seed committed pointers; a clone with git-lfs gets the real content.
    let before = sim.stats().lfs_requests;
    git.ok(t, &["clone", "-q", &url(&sim, "acme/assets.git"), "a"])
        .await;
    let a = t.join("a");
    assert_eq!(std::fs::read_to_string(a.join("big.bin")).unwrap(), LFS_BIG);
    assert_eq!(
        std::fs::read_to_string(a.join("models/model.dat")).unwrap(),
        LFS_MODEL
    );
    assert!(sim.stats().lfs_requests > before);
    // ...and what git stores is the pointer.
    let blob = git.ok(&a, &["show", "HEAD:big.bin"]).await;
    let oid = hex::encode(Sha256::digest(LFS_BIG.as_bytes()));
    assert_eq!(
        blob,
        format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n",
            LFS_BIG.len()
        )
    );
    let attrs = std::fs::read_to_string(a.join(".gitattributes")).unwrap();
    assert!(
        attrs.contains("big.bin filter=lfs diff=lfs merge=lfs -text"),
        "{attrs}"
    );
    assert_eq!(
        std::fs::read_to_string(a.join("README.md")).unwrap(),
        "assets\n"
    );

    // Upload through git lfs's pre-push hook.
    git.ok(&a, &["lfs", "install", "--local"]).await;
    git.ok(&a, &["lfs", "track", "*.iso"]).await;
    let new_content = "an image of a disc\n".repeat(1000);
    std::fs::write(a.join("disc.iso"), &new_content).unwrap();
    git.ok(&a, &["add", ".gitattributes", "disc.iso"]).await;
    git.ok(&a, &["commit", "-q", "-m", "Add a disc"]).await;
    git.ok(&a, &["push", "-q", "origin", "HEAD"]).await;
    let new_oid = hex::encode(Sha256::digest(new_content.as_bytes()));
    let (size, lfs_dir) = repo_field(&sim, "assets", |r| {
        (r.lfs.get(&new_oid).copied(), r.lfs_dir.clone())
    });
    assert_eq!(size, Some(new_content.len() as u64));
    assert_eq!(
        std::fs::read_to_string(forge_sim::lfs::object_path(&lfs_dir, &new_oid)).unwrap(),
        new_content
    );
    // A fresh clone gets it back.
    git.ok(t, &["clone", "-q", &url(&sim, "acme/assets.git"), "b"])
        .await;
    assert_eq!(
        std::fs::read_to_string(t.join("b/disc.iso")).unwrap(),
        new_content
    );

    // The batch API by hand.
    let c = http(&sim);
    let batch = url(&sim, "acme/assets.git/info/lfs/objects/batch");
    let owner = basic("x-access-token", OWNER_TOKEN);
    let missing = "0".repeat(64);
    let r = c
        .post(&batch)
        .header("authorization", &owner)
        .header("accept", "application/vnd.git-lfs+json")
        .header("content-type", "application/vnd.git-lfs+json")
        .body(
            json!({"operation": "download", "transfers": ["basic"], "objects": [
                {"oid": oid, "size": LFS_BIG.len()}, {"oid": missing, "size": 1}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.git-lfs+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["transfer"], "basic");
    let found = &v["objects"][0];
    let href = format!(
        "{}/acme/assets.git/info/lfs/objects/{oid}",
        sim.ready().git_url
    );
    assert_eq!(found["actions"]["download"]["href"], href.as_str());
    assert_eq!(
        found["actions"]["download"]["header"]["Authorization"],
        owner.as_str()
    );
    assert!(found["actions"]["download"]["expires_in"].as_i64().unwrap() > 0);
    assert_eq!(v["objects"][1]["error"]["code"], 404);
    assert_eq!(v["objects"][1]["error"]["message"], "Object does not exist");
    let body = c
        .get(&href)
        .header("authorization", &owner)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, LFS_BIG);
    // Anonymous: the private repository's LFS asks for credentials.
    let r = c
        .post(&batch)
        .header("content-type", "application/vnd.git-lfs+json")
        .body(json!({"operation": "download", "objects": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("lfs-authenticate"));
    // Upload of bytes that are not the oid: 422, nothing stored.
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let r = c
        .put(url(
            &sim,
            &format!("acme/assets.git/info/lfs/objects/{wrong}"),
        ))
        .header("authorization", &owner)
        .body("not that")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(!repo_field(&sim, "assets", |r| r.lfs.contains_key(&wrong)));
    // An installation token with contents: read may download but not upload.
    let token = installation_token(&sim, &c).await;
    let inst = basic("x-access-token", &token);
    let ask = |op: &str| {
        c.post(&batch)
            .header("authorization", &inst)
            .header("content-type", "application/vnd.git-lfs+json")
            .body(json!({"operation": op, "objects": [{"oid": wrong, "size": 14}]}).to_string())
            .send()
    };
    assert_eq!(ask("download").await.unwrap().status(), 200);
    assert_eq!(ask("upload").await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wikis_clone_with_their_pages_and_a_push_to_a_wiki_nobody_made_is_refused() {
    let (hooks, _got) = receiver().await;
    let sim = start(&hooks).await;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let git = Git::new(&sim).token("x-access-token", OWNER_TOKEN);

    // The seeded wiki: branch master, the pages.
    Git::new(&sim)
        .ok(
            t,
            &["clone", "-q", &url(&sim, "acme/widgets.wiki.git"), "wiki"],
        )
        .await;
    let wiki = t.join("wiki");
    assert_eq!(
        std::fs::read_to_string(wiki.join("Home.md")).unwrap(),
        "# Welcome to widgets\n"
    );
    assert_eq!(
        std::fs::read_to_string(wiki.join("Usage.md")).unwrap(),
        "Turn the crank.\n"
    );
    assert_eq!(
        git.ok(&wiki, &["symbolic-ref", "HEAD"]).await.trim(),
        "refs/heads/master"
    );

    // A push to a wiki that exists (the seed made it) works.
    std::fs::write(wiki.join("Usage.md"), "Turn the crank twice.\n").unwrap();
    git.ok(&wiki, &["commit", "-q", "-am", "twice"]).await;
    git.ok(
        &wiki,
        &["push", "-q", &url(&sim, "acme/widgets.wiki.git"), "master"],
    )
    .await;
    git.ok(
        t,
        &["clone", "-q", &url(&sim, "acme/widgets.wiki.git"), "again"],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(t.join("again/Usage.md")).unwrap(),
        "Turn the crank twice.\n"
    );

    // A wiki nobody made: 404 to fetch, and a push is refused as GitHub refuses it ("Repository
    // not found"): GitHub makes a wiki only when its first page is saved in the web interface.
    let r = http(&sim)
        .get(url(
            &sim,
            "acme/secret.wiki.git/info/refs?service=git-upload-pack",
        ))
        .header("authorization", basic("x-access-token", OWNER_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let err = git
        .fails(t, &["clone", "-q", &url(&sim, "acme/secret.wiki.git"), "x"])
        .await;
    assert!(err.contains("not found") || err.contains("404"), "{err}");
    let new = t.join("new");
    std::fs::create_dir(&new).unwrap();
    git.ok(&new, &["init", "-q", "-b", "master"]).await;
    std::fs::write(new.join("Home.md"), "secret wiki\n").unwrap();
    git.ok(&new, &["add", "Home.md"]).await;
    git.ok(&new, &["commit", "-q", "-m", "wiki"]).await;
    let err = git
        .fails(
            &new,
            &["push", "-q", &url(&sim, "acme/secret.wiki.git"), "master"],
        )
        .await;
    assert!(err.contains("not found"), "{err}");
    let secret_wiki = repo_field(&sim, "secret", |r| r.wiki_dir.clone());
    assert!(
        !secret_wiki.join("HEAD").exists(),
        "a refused push makes no wiki"
    );

    // The first page saved in the web interface makes it; then pushes work.
    let made = http(&sim)
        .post(format!(
            "{}/_sim/repos/acme/secret/wiki",
            sim.ready().git_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    git.ok(t, &["clone", "-q", &url(&sim, "acme/secret.wiki.git"), "y"])
        .await;
    let y = t.join("y");
    assert_eq!(
        std::fs::read_to_string(y.join("Home.md")).unwrap(),
        "Welcome to the secret wiki!\n"
    );
    std::fs::write(y.join("Plans.md"), "secret wiki\n").unwrap();
    git.ok(&y, &["add", "Plans.md"]).await;
    git.ok(&y, &["commit", "-q", "-m", "plans"]).await;
    git.ok(
        &y,
        &["push", "-q", &url(&sim, "acme/secret.wiki.git"), "master"],
    )
    .await;
    git.ok(t, &["clone", "-q", &url(&sim, "acme/secret.wiki.git"), "z"])
        .await;
    assert_eq!(
        std::fs::read_to_string(t.join("z/Plans.md")).unwrap(),
        "secret wiki\n"
    );

    // A renamed repository (and its wiki) answers under its new name, and its old one.
    let r = http(&sim)
        .patch(format!("{}/repos/acme/widgets", sim.ready().api_url))
        .header("authorization", format!("token {OWNER_TOKEN}"))
        .header("user-agent", "forge-sim-tests")
        .json(&json!({"name": "gadgets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (name, file) in [
        ("acme/gadgets.git", "README.md"),
        ("acme/gadgets.wiki.git", "Home.md"),
        ("acme/widgets.git", "README.md"),
    ] {
        let dir = name.replace(['/', '.'], "_");
        git.ok(t, &["clone", "-q", &url(&sim, name), &dir]).await;
        assert!(t.join(&dir).join(file).exists(), "{name}");
    }
}
