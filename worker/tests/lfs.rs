//! LFS objects of a mirror, fetched through the batch API of the forge simulator
//! (tests/forge-sim, seed acme.toml, repository `acme/lfs-data`).
//!
//! The mirror is cloned with the git CLI; the token reaches git through `GIT_CONFIG_*`
//! environment variables, never through arguments.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use base64::Engine as _;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_common::secret::Secret;
use repovault_worker::lfs::{
    LfsError, LfsReport, LfsSource, fetch, find_pointers, object_path, parse_pointer,
};
use sha2::{Digest as _, Sha256};

/// The first user's token in seeds/acme.toml.
const OWNER: &str = "ghp_acmeOwner0000000000000000000000000";
const REPO: &str = "lfs-data";

fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/forge-sim/seeds/acme.toml")
}

fn seed() -> Seed {
    Seed::from_file(&seed_path()).unwrap()
}

/// The seed's LFS files of `acme/lfs-data`: oid → content.
fn seeded_objects() -> BTreeMap<String, String> {
    let seed = seed();
    let repo = seed.orgs[0].repos.iter().find(|r| r.name == REPO).unwrap();
    assert!(!repo.lfs.is_empty(), "the seed has LFS files in {REPO}");
    repo.lfs
        .values()
        .map(|c| (hex::encode(Sha256::digest(c.as_bytes())), c.clone()))
        .collect()
}

struct Fixture {
    sim: ForgeSim,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A simulator and a bare mirror of `acme/lfs-data` in `dir/mirror.git`.
    async fn start() -> Fixture {
        repovault_common::tls::install_crypto_provider();
        let sim = ForgeSim::start(&seed(), "127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { sim, dir };
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{OWNER}"));
        // On the blocking pool: the simulator runs on this test's runtime.
        let (url, bare, ca) = (f.repo_url(), f.bare(), f.sim.ready().ca_cert.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("git")
                .args(["clone", "--mirror", "--quiet"])
                .arg(url)
                .arg(bare)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_SSL_CAINFO", ca)
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {auth}"))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "git clone --mirror: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f
    }

    fn repo_url(&self) -> String {
        format!("{}/acme/{REPO}.git", self.sim.ready().git_url)
    }

    fn bare(&self) -> PathBuf {
        self.dir.path().join("mirror.git")
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("lfs")
    }

    fn source(&self, token: &str) -> LfsSource {
        LfsSource {
            repo_url: self.repo_url(),
            token: Some(Secret::new(token)),
            ca_cert_pem: Some(std::fs::read_to_string(&self.sim.ready().ca_cert).unwrap()),
        }
    }

    async fn fetch(&self, token: &str) -> Result<LfsReport, LfsError> {
        let never = AtomicBool::new(false);
        fetch(
            &self.bare(),
            &self.store(),
            &self.source(token),
            &never,
            |_, _, _| {},
        )
        .await
    }

    fn lfs_requests(&self) -> u64 {
        self.sim.stats().lfs_requests
    }

    fn reset_stats(&self) {
        self.sim.sim().stats.reset();
    }
}

/// Every object of `expected` is in `store` with exactly its content.
fn assert_stored(store: &Path, expected: &BTreeMap<String, String>) {
    for (oid, content) in expected {
        let bytes = std::fs::read(object_path(store, oid)).unwrap();
        assert_eq!(bytes, content.as_bytes(), "object {oid}");
        assert_eq!(hex::encode(Sha256::digest(&bytes)), *oid);
    }
}

#[test]
fn pointers_parse_as_the_spec_says() {
    let oid = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";
    let ok = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12345\n");
    assert_eq!(parse_pointer(ok.as_bytes()), Some((oid.to_string(), 12345)));
    // Extension keys sort before oid.
    let ext = format!(
        "version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{oid}\noid sha256:{oid}\nsize 1\n"
    );
    assert_eq!(parse_pointer(ext.as_bytes()), Some((oid.to_string(), 1)));
    for bad in [
        // no final newline
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 1"),
        // wrong version line
        format!("version https://example.com/spec/v9\noid sha256:{oid}\nsize 1\n"),
        // upper-case oid, short oid, other hash
        format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 1\n",
            oid.to_uppercase()
        ),
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n".to_string(),
        format!("version https://git-lfs.github.com/spec/v1\noid sha1:{oid}\nsize 1\n"),
        // bad or missing size, keys out of order, duplicates
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize -1\n"),
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize +1\n"),
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"),
        format!("version https://git-lfs.github.com/spec/v1\nsize 1\noid sha256:{oid}\n"),
        format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\noid sha256:{oid}\nsize 1\n"
        ),
        // CRLF, empty, plain text
        format!("version https://git-lfs.github.com/spec/v1\r\noid sha256:{oid}\r\nsize 1\r\n"),
        String::new(),
        "hello\n".to_string(),
    ] {
        assert_eq!(parse_pointer(bad.as_bytes()), None, "{bad:?}");
    }
    // Too large to be a pointer, even if it starts like one.
    let big = format!("{ok}{}", "x".repeat(2000));
    assert_eq!(parse_pointer(big.as_bytes()), None);
}

#[tokio::test]
async fn fetches_every_object_then_reuses_them_without_requests() {
    let f = Fixture::start().await;
    let expected = seeded_objects();

    let pointers = find_pointers(&f.bare()).unwrap();
    let want: BTreeMap<String, u64> = expected
        .iter()
        .map(|(oid, c)| (oid.clone(), c.len() as u64))
        .collect();
    assert_eq!(pointers, want);

    let calls = Mutex::new(Vec::new());
    let never = AtomicBool::new(false);
    let report = fetch(
        &f.bare(),
        &f.store(),
        &f.source(OWNER),
        &never,
        |o, b, t| calls.lock().unwrap().push((o, b, t)),
    )
    .await
    .unwrap();
    let total: u64 = want.values().sum();
    assert_eq!(
        report,
        LfsReport {
            pointers: 2,
            fetched: 2,
            reused: 0,
            bytes_fetched: total,
            missing: vec![],
        }
    );
    assert_stored(&f.store(), &expected);
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.first(), Some(&(0, 0, total)));
    assert_eq!(calls.last(), Some(&(2, total, total)));
    // No temporary file is left behind.
    let tmp = f.store().join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // Second run: everything reused, not one LFS request.
    f.reset_stats();
    let again = f.fetch(OWNER).await.unwrap();
    assert_eq!(again.reused, 2);
    assert_eq!(again.fetched, 0);
    assert_eq!(again.bytes_fetched, 0);
    assert_eq!(f.lfs_requests(), 0);
    assert_stored(&f.store(), &expected);
}

#[tokio::test]
async fn a_corrupted_stored_object_is_fetched_again() {
    let f = Fixture::start().await;
    let expected = seeded_objects();
    f.fetch(OWNER).await.unwrap();

    let (victim, content) = expected.iter().next().unwrap();
    let path = object_path(&f.store(), victim);
    // Same size, one byte flipped: only the hash tells.
    let mut bytes = content.as_bytes().to_vec();
    bytes[0] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    f.reset_stats();
    let report = f.fetch(OWNER).await.unwrap();
    assert_eq!(report.fetched, 1);
    assert_eq!(report.reused, 1);
    assert_eq!(report.bytes_fetched, content.len() as u64);
    // One batch request and one download.
    assert_eq!(f.lfs_requests(), 2);
    assert_stored(&f.store(), &expected);

    // A truncated one too.
    std::fs::write(&path, &content.as_bytes()[..3]).unwrap();
    let report = f.fetch(OWNER).await.unwrap();
    assert_eq!((report.fetched, report.reused), (1, 1));
    assert_stored(&f.store(), &expected);
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_error_without_the_token() {
    let f = Fixture::start().await;
    let wrong = "ghp_wrongWrongWrong000000000000000000000";
    let err = f.fetch(wrong).await.unwrap_err();
    let text = err.to_string();
    let debug = format!("{err:?}");
    assert!(
        matches!(err, LfsError::Unauthorized { status: 401, .. }),
        "{debug}"
    );
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("info/lfs/objects/batch"), "{text}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{wrong}"));
    for shown in [&text, &debug] {
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!shown.contains(&basic), "{shown}");
    }
    // Nothing was stored.
    assert!(
        !f.store().join("tmp").exists()
            || std::fs::read_dir(f.store().join("tmp")).unwrap().count() == 0
    );
    for oid in seeded_objects().keys() {
        assert!(!object_path(&f.store(), oid).exists());
    }
    // The source's Debug does not show the token either.
    assert!(!format!("{:?}", f.source(wrong)).contains(wrong));
}

#[tokio::test]
async fn an_object_gone_from_the_server_is_reported_missing() {
    let f = Fixture::start().await;
    let expected = seeded_objects();
    let (gone, _) = expected.iter().next().unwrap();
    {
        let mut world = f.sim.sim().world.lock();
        let repo = world
            .repos
            .values_mut()
            .find(|r| r.owner == "acme" && r.name == REPO)
            .unwrap();
        assert!(repo.lfs.remove(gone).is_some());
        std::fs::remove_file(object_path(&repo.lfs_dir, gone)).unwrap();
    }
    let report = f.fetch(OWNER).await.unwrap();
    assert_eq!(report.pointers, 2);
    assert_eq!(report.fetched, 1);
    assert_eq!(report.missing.len(), 1);
    assert_eq!(&report.missing[0].0, gone);
    assert!(report.missing[0].1.contains("404"), "{:?}", report.missing);
    assert!(!object_path(&f.store(), gone).exists());
    let kept: BTreeMap<String, String> = expected
        .iter()
        .filter(|(oid, _)| *oid != gone)
        .map(|(o, c)| (o.clone(), c.clone()))
        .collect();
    assert_stored(&f.store(), &kept);
}

#[tokio::test]
async fn an_interrupt_stops_before_any_request() {
    let f = Fixture::start().await;
    f.reset_stats();
    let stop = AtomicBool::new(true);
    let err = fetch(&f.bare(), &f.store(), &f.source(OWNER), &stop, |_, _, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, LfsError::Interrupted), "{err:?}");
    assert_eq!(f.lfs_requests(), 0);
}

/// What the scripted LFS server below saw.
#[derive(Default)]
struct Seen {
    batches: u64,
    /// (path, Authorization present, X-Custom value)
    downloads: Vec<(String, bool, Option<String>)>,
}

/// A plain-HTTP LFS server that fails its first batch request with a 503 and its first download
/// of every object with a truncated body, and whose hrefs point at `127.0.0.1` (the
/// repository's origin) and at `localhost` (another origin), each with an `X-Custom` header.
async fn scripted_server(
    objects: BTreeMap<String, String>,
) -> (String, std::sync::Arc<Mutex<Seen>>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    type Shared = std::sync::Arc<(Mutex<Seen>, BTreeMap<String, String>, String)>;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(Mutex::new(Seen::default()));
    let state: Shared = std::sync::Arc::new((Mutex::default(), objects, port.to_string()));
    let outer = seen.clone();
    let batch = move |State(s): State<Shared>, body: String| {
        let outer = outer.clone();
        async move {
            let n = {
                let mut seen = outer.lock().unwrap();
                seen.batches += 1;
                seen.batches
            };
            if n == 1 {
                return (StatusCode::SERVICE_UNAVAILABLE, String::new());
            }
            let req: serde_json::Value = serde_json::from_str(&body).unwrap();
            let objects: Vec<serde_json::Value> = req["objects"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let oid = o["oid"].as_str().unwrap();
                    let host = if i % 2 == 0 { "127.0.0.1" } else { "localhost" };
                    serde_json::json!({
                        "oid": oid, "size": o["size"],
                        "actions": {"download": {
                            "href": format!("http://{host}:{}/dl/{oid}?sig=presigned", s.2),
                            "header": {"X-Custom": format!("for-{oid}")},
                        }},
                    })
                })
                .collect();
            (
                StatusCode::OK,
                serde_json::json!({"transfer": "basic", "objects": objects}).to_string(),
            )
        }
    };
    let outer = seen.clone();
    let download =
        move |State(s): State<Shared>, UrlPath(oid): UrlPath<String>, headers: HeaderMap| {
            let outer = outer.clone();
            async move {
                let content = s.1.get(&oid).cloned().unwrap_or_default();
                let first = {
                    let mut seen = outer.lock().unwrap();
                    let first = !seen.downloads.iter().any(|d| d.0 == oid);
                    seen.downloads.push((
                        oid.clone(),
                        headers.contains_key("authorization"),
                        headers
                            .get("x-custom")
                            .map(|v| v.to_str().unwrap().to_string()),
                    ));
                    first
                };
                if first {
                    // A truncated transfer.
                    return content.as_bytes()[..content.len() / 2].to_vec();
                }
                content.into_bytes()
            }
        };
    let app = axum::Router::new()
        .route("/acme/scripted.git/info/lfs/objects/batch", post(batch))
        .route("/dl/{oid}", get(download))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}/acme/scripted.git"), seen)
}

/// A bare repository holding `blobs` as loose (unreachable) blob objects.
fn bare_with_blobs(dir: &Path, blobs: &[String]) -> PathBuf {
    let bare = dir.join("scripted.git");
    let git = |args: &[&str], input: Option<&str>| {
        use std::io::Write as _;
        let mut child = Command::new("git")
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_DIR", &bare)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(i) = input {
            child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    };
    git(&["init", "--bare", "--quiet", bare.to_str().unwrap()], None);
    for b in blobs {
        git(&["hash-object", "-w", "--stdin"], Some(b));
    }
    bare
}

#[tokio::test]
async fn retries_follow_the_batch_headers_and_keep_auth_on_the_origin() {
    let contents = ["first object\n", "second object, elsewhere\n", "third\n"];
    let objects: BTreeMap<String, String> = contents
        .iter()
        .map(|c| (hex::encode(Sha256::digest(c.as_bytes())), c.to_string()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut blobs: Vec<String> = objects
        .iter()
        .map(|(oid, c)| {
            format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n",
                c.len()
            )
        })
        .collect();
    blobs.push("not a pointer\n".into());
    let bare = bare_with_blobs(dir.path(), &blobs);
    let (repo_url, seen) = scripted_server(objects.clone()).await;
    let source = LfsSource {
        repo_url,
        token: Some(Secret::new(OWNER)),
        ca_cert_pem: None,
    };
    let store = dir.path().join("store");
    let never = AtomicBool::new(false);
    let report = fetch(&bare, &store, &source, &never, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!((report.pointers, report.fetched, report.reused), (3, 3, 0));
    assert!(report.missing.is_empty());
    assert_stored(&store, &objects);

    let seen = seen.lock().unwrap();
    // One 503, then the answer.
    assert_eq!(seen.batches, 2);
    // Every object downloaded twice (truncated, then whole), with the batch's header, and
    // with our credentials only on the repository's origin (127.0.0.1, even positions).
    assert_eq!(seen.downloads.len(), 6);
    for (i, oid) in objects.keys().enumerate() {
        let mine: Vec<_> = seen.downloads.iter().filter(|d| &d.0 == oid).collect();
        assert_eq!(mine.len(), 2, "{oid}");
        for d in mine {
            assert_eq!(d.2.as_deref(), Some(format!("for-{oid}").as_str()));
            assert_eq!(d.1, i % 2 == 0, "Authorization sent for {oid}: {}", d.1);
        }
    }
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}
