//! `download_zip` restores: `backup download --to FILE`, the ZIP's contents and listing,
//! `git clone` of the mirror inside, links that work with curl, expired (410) and tampered (403)
//! links refused, and the expiry loop deleting an expired artifact.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use repovault_coordinator::clock::system_now_ms as now_ms;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{git, refs, rich_repo};
use repovault_tests::gitserver::GitDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

fn cli(c: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--coordinator")
        .arg(c.url())
        .args(args)
        .output()
        .unwrap()
}

/// Serves the coordinator's HTTP router on a free port (test clusters run without one) and
/// points download links at it.
async fn serve_http(c: &Cluster) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let app = repovault_coordinator::http::router(
        c.core().clone(),
        std::sync::Arc::new(repovault_coordinator::readiness::Readiness::default()),
        true,
    );
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    c.core().downloads.set_base_url(&base);
    base
}

/// `curl` the URL into `out`; returns the HTTP status and the body when it is not 200.
pub(crate) fn curl(url: &str, out: &Path) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", url])
        .output()
        .unwrap();
    let code: u16 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let body = if code == 200 {
        String::new()
    } else {
        std::fs::read_to_string(out).unwrap_or_default()
    };
    (code, body)
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_download_zip_links_expire_and_are_deleted() {
    let c = Cluster::start(1).await.unwrap();
    serve_http(&c).await;
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/rich", &daemon.url("rich.git"), None)
        .await
        .unwrap();
    let b = c.backup_ok("org/rich").await.unwrap();

    // A link lifetime outside 30m..7d is refused before anything starts.
    let work = tempfile::tempdir().unwrap();
    let zip_path = work.path().join("rich.zip");
    let o = cli(
        &c,
        &[
            "backup",
            "download",
            b.id.as_str(),
            "--to",
            zip_path.to_str().unwrap(),
            "--expires",
            "1m",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // backup download: waits, fetches, checks, writes the file.
    let o = cli(
        &c,
        &[
            "--output",
            "json",
            "backup",
            "download",
            b.id.as_str(),
            "--to",
            zip_path.to_str().unwrap(),
            "--expires",
            "1h",
        ],
    );
    assert!(
        o.status.success(),
        "backup download: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let restore_id: repovault_common::domain::RestoreId =
        r["id"].as_str().unwrap().parse().unwrap();
    let url = r["download_url"].as_str().unwrap().to_string();
    assert_eq!(r["type"], "download_zip");
    assert_eq!(r["status"], "completed");
    assert_eq!(
        sha256_file(&zip_path),
        r["artifact_sha256"].as_str().unwrap()
    );
    let record = c.core().restores.get_restore(&restore_id).await.unwrap();
    let artifact = record.artifact_path.clone().unwrap();
    assert!(
        artifact.ends_with(&format!("/downloads/{restore_id}.zip")),
        "{artifact}"
    );
    assert!(c.storage_root().join(&artifact).is_file());
    // The first link expires after the requested hour.
    let expires: i64 = url
        .split("expires=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap()
        .parse()
        .unwrap();
    let hour_from_finish = record.finished_at_ms.unwrap() / 1000 + 3600;
    assert!(
        (expires - hour_from_finish).abs() <= 1,
        "{expires} vs {hour_from_finish}"
    );

    // Unzipped: every listed entry's hash matches, the listing names every file, and the mirror
    // inside clones.
    let unzipped = work.path().join("unzipped");
    let f = std::fs::File::open(&zip_path).unwrap();
    zip::ZipArchive::new(f).unwrap().extract(&unzipped).unwrap();
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unzipped.join("repovault-zip.json")).unwrap())
            .unwrap();
    assert_eq!(listing["restore_id"], restore_id.as_str());
    assert_eq!(listing["backup_id"], b.id.as_str());
    let mut listed = BTreeMap::new();
    for e in listing["entries"].as_array().unwrap() {
        let p = e["path"].as_str().unwrap();
        let file = unzipped.join(p);
        assert_eq!(sha256_file(&file), e["sha256"].as_str().unwrap(), "{p}");
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            e["bytes"].as_u64().unwrap()
        );
        listed.insert(p.to_string(), ());
    }
    let mut files = Vec::new();
    collect_files(&unzipped, &unzipped, &mut files);
    files.retain(|f| f != "repovault-zip.json");
    assert_eq!(files, listed.keys().cloned().collect::<Vec<_>>());
    assert!(listed.contains_key("manifest.json"));
    assert!(
        listed
            .keys()
            .any(|k| k.starts_with("code.git/objects/pack/"))
    );
    let mirror = unzipped.join("code.git");
    let expected: BTreeMap<String, String> = refs(&rich)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !(k.starts_with("refs/pull/") && k.ends_with("/merge")))
        .collect();
    assert_eq!(refs(&mirror).unwrap(), expected);
    git(
        work.path(),
        &["clone", "-q", mirror.to_str().unwrap(), "clone"],
    )
    .unwrap();
    assert_eq!(
        git(&work.path().join("clone"), &["rev-parse", "HEAD"]).unwrap(),
        git(&rich, &["rev-parse", "HEAD"]).unwrap()
    );
    // Same through the `unzip` tool (the ZIP is standard).
    let o = Command::new("unzip")
        .args(["-tq"])
        .arg(&zip_path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "unzip -t: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // `restore show` carries the link and its expiry.
    let o = cli(&c, &["restore", "show", restore_id.as_str()]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains(&url), "{shown}");

    // A valid link works with curl, with Content-Disposition.
    let fetched = work.path().join("curl.zip");
    assert_eq!(curl(&url, &fetched).0, 200);
    assert_eq!(sha256_file(&fetched), sha256_file(&zip_path));
    let head = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(
        head.contains("content-disposition: attachment; filename=\"org-rich-"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}", record.artifact_bytes)),
        "{head}"
    );

    // `restore link` mints another working link; a lifetime out of bounds is refused.
    let o = cli(
        &c,
        &[
            "--output",
            "json",
            "restore",
            "link",
            restore_id.as_str(),
            "--expires",
            "2h",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let minted: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let url2 = minted["url"].as_str().unwrap();
    assert_ne!(url2, url);
    assert_eq!(curl(url2, &work.path().join("2.zip")).0, 200);
    let o = cli(
        &c,
        &["restore", "link", restore_id.as_str(), "--expires", "8d"],
    );
    assert_eq!(o.status.code(), Some(2));

    // Expired: a genuine link past its expiry is refused with 410.
    let (_, expired) = c
        .core()
        .downloads
        .mint_download_link(&restore_id, now_ms() - 60_000)
        .await
        .unwrap();
    let (code, body) = curl(&expired.url, &work.path().join("x"));
    assert_eq!(code, 410, "{body}");
    assert!(body.contains("link expired at"), "{body}");

    // Tampered: one hex digit of the signature, or a later expiry, is refused with 403.
    let flip = |u: &str| {
        let mut s = u.to_string();
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    let (code, body) = curl(&flip(&url), &work.path().join("x"));
    assert_eq!(code, 403, "{body}");
    let (code, body) = curl(&flip(&expired.url), &work.path().join("x"));
    assert_eq!(
        code, 403,
        "an expired link with a changed signature: {body}"
    );
    let later = expired.url.replace(
        &format!("expires={}", expired.expires_at),
        &format!("expires={}", expired.expires_at + 86_400),
    );
    let (code, body) = curl(&later, &work.path().join("x"));
    assert_eq!(code, 403, "{body}");
    // Another restore's id with this signature.
    let other = url.replace(restore_id.as_str(), "r-0000000000");
    assert_eq!(curl(&other, &work.path().join("x")).0, 404);

    // The expiry loop's pass: nothing is due now; past the latest link (2 h) the ZIP is deleted
    // and the record marked.
    assert!(
        c.core()
            .downloads
            .expire_downloads(now_ms())
            .await
            .unwrap()
            .is_empty()
    );
    let deleted = c
        .core()
        .downloads
        .expire_downloads(now_ms() + 3 * 3600 * 1000)
        .await
        .unwrap();
    assert_eq!(deleted, vec![restore_id.clone()]);
    assert!(
        !c.storage_root().join(&artifact).exists(),
        "the ZIP is deleted"
    );
    let record = c.core().restores.get_restore(&restore_id).await.unwrap();
    assert!(record.download.artifact_expired_at_ms.is_some());
    let (code, body) = curl(&url, &work.path().join("x"));
    assert_eq!(code, 410, "{body}");
    assert!(
        c.core()
            .downloads
            .mint_download_link(&restore_id, now_ms() + 3_600_000)
            .await
            .is_err()
    );
    let o = cli(
        &c,
        &["--output", "json", "restore", "show", restore_id.as_str()],
    );
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["artifact_expired"], true);
    assert!(
        shown
            .get("download_url")
            .is_none_or(serde_json::Value::is_null),
        "{shown}"
    );
    // A second pass has nothing left to do.
    assert!(
        c.core()
            .downloads
            .expire_downloads(now_ms() + 3 * 3600 * 1000)
            .await
            .unwrap()
            .is_empty()
    );
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            collect_files(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_str().unwrap().to_string());
        }
    }
    out.sort();
}

/// GitHub backups (forge simulator): the ZIP holds the mirror and the metadata as JSON and
/// release assets (acme/widgets), the wiki mirror (acme/docs), the LFS objects (acme/lfs-data),
/// each entry as listed; both mirrors clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn github_backups_zip_mirror_wiki_lfs_and_metadata() {
    let sim = super::github_org::sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    serve_http(&c).await;
    let ca = ready.ca_cert.display().to_string();
    let add = super::github_org::cli(
        &c,
        &[
            "org",
            "add",
            "acme",
            "--provider",
            "github",
            "--api-url",
            &ready.api_url,
            "--token-env",
            "GH_TOKEN",
            "--ca-cert",
            &ca,
        ],
        &[("GH_TOKEN", &ready.token)],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let work = tempfile::tempdir().unwrap();
    for (repo, want) in [
        (
            "widgets",
            &[
                "code.git/objects/pack/",
                "meta/issues/",
                "meta/releases/",
                "releases/",
                "manifest.json",
            ][..],
        ),
        ("docs", &["code.git/", "wiki.git/"][..]),
        ("lfs-data", &["code.git/", "lfs/objects/"][..]),
    ] {
        let b = c.backup_ok(&format!("acme/{repo}")).await.unwrap();
        let r = c
            .core()
            .restores
            .start_restore(
                &b.id,
                repovault_common::domain::RestoreType::DownloadZip,
                repovault_common::domain::RestoreTarget::Download,
                "",
                None,
            )
            .await
            .unwrap();
        let r = c
            .wait_restore(&r.id, std::time::Duration::from_secs(180))
            .await
            .unwrap();
        assert_eq!(
            r.status,
            repovault_coordinator::model::Status::Completed,
            "{:?}",
            r.error
        );
        let link = c.core().downloads.download_link(&r).await.unwrap();
        let zip_path = work.path().join(format!("{repo}.zip"));
        assert_eq!(curl(&link.url, &zip_path).0, 200);
        assert_eq!(Some(sha256_file(&zip_path)), r.artifact_sha256);

        let unzipped = work.path().join(repo);
        zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap())
            .unwrap()
            .extract(&unzipped)
            .unwrap();
        let listing: serde_json::Value =
            serde_json::from_slice(&std::fs::read(unzipped.join("repovault-zip.json")).unwrap())
                .unwrap();
        let paths: Vec<&str> = listing["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let p = e["path"].as_str().unwrap();
                assert_eq!(
                    sha256_file(&unzipped.join(p)),
                    e["sha256"].as_str().unwrap(),
                    "{p}"
                );
                p
            })
            .collect();
        for prefix in want {
            assert!(
                paths.iter().any(|p| p.starts_with(prefix)),
                "{repo}: no {prefix} in {paths:?}"
            );
        }
        for mirror in ["code.git", "wiki.git"] {
            if unzipped.join(mirror).is_dir() {
                let dest = format!("{repo}-{mirror}-clone");
                git(
                    work.path(),
                    &[
                        "clone",
                        "-q",
                        unzipped.join(mirror).to_str().unwrap(),
                        &dest,
                    ],
                )
                .unwrap();
            }
        }
    }
}
