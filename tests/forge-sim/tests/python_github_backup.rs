//! An independent client against the simulator: python-github-backup 0.65.1 backs up the seeded
//! organisation `acme` (seeds/acme.toml), and its output holds exactly the seed's issues,
//! comments, pull requests, reviews, releases and assets, the repositories, the wiki and the LFS
//! objects. Private repositories too: their release assets come down through GitHub's redirect
//! to a pre-signed URL, which python-github-backup follows without its token.
//!
//! `github-backup` is found on PATH or at `$REPOVAULT_GITHUB_BACKUP`; without it the test fails
//! (install with: pip install github-backup==0.65.1). `.ci/run` installs it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn github_backup() -> PathBuf {
    if let Some(p) = std::env::var_os("REPOVAULT_GITHUB_BACKUP") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("github-backup"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("github-backup is not on PATH (nor in $REPOVAULT_GITHUB_BACKUP): install with: pip install github-backup==0.65.1")
        })
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `*.json` files of a directory, by file stem.
fn json_files(dir: &Path) -> BTreeMap<String, Value> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    rd.map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                read_json(&p),
            )
        })
        .collect()
}

fn bodies(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["body"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_github_backup_backs_up_the_seeded_organisation() {
    let exe = github_backup();
    let seed = acme_seed();
    let sim = start(&seed).await;
    let host = format!("127.0.0.1:{}", sim.ready().listen.port());
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let ca = sim.ready().ca_cert.clone();
    let output = tokio::process::Command::new(&exe)
        .args(["-t", OWNER, "-H", &host, "-O", "-P", "-o"])
        .arg(out.path())
        .args([
            "--issues",
            "--issue-comments",
            "--pulls",
            "--pull-comments",
            "--pull-reviews",
            "--labels",
            "--milestones",
            "--hooks",
            "--releases",
            "--assets",
            "--wikis",
            "--repositories",
            "--lfs",
            "--retries",
            "0",
            "acme",
        ])
        .env("SSL_CERT_FILE", &ca)
        .env("GIT_SSL_CAINFO", &ca)
        .env("HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "github-backup failed:\n{log}");
    for bad in ["Traceback", "ERROR", "Skipping download of asset"] {
        assert!(!log.contains(bad), "github-backup reported {bad:?}:\n{log}");
    }

    let org = &seed.orgs[0];
    // A private repository with release assets is among those checked below: GitHub redirects
    // an asset download to a pre-signed URL that needs no token, and python-github-backup drops
    // the token on that redirect (as it must), so a redirect that needed it stored nothing.
    let private_with_assets: Vec<&str> = org
        .repos
        .iter()
        .filter(|r| r.private && r.releases.iter().any(|rel| !rel.assets.is_empty()))
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        !private_with_assets.is_empty(),
        "the seed has a private repository with release assets"
    );
    let repos_dir = out.path().join("repositories");
    let got: BTreeSet<String> = std::fs::read_dir(&repos_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = org.repos.iter().map(|r| r.name.clone()).collect();
    assert_eq!(got, want, "repositories backed up");

    let api = Api::new(&sim);
    for rs in &org.repos {
        let name = rs.name.as_str();
        let dir = repos_dir.join(name);

        // Issues (pull requests are kept apart, under pulls/): the seed's, by title, each
        // with its comments in order; generated issues and comments by count.
        let issues = json_files(&dir.join("issues"));
        let titles: BTreeMap<String, &Value> = issues
            .values()
            .map(|i| (i["title"].as_str().unwrap_or("").to_string(), i))
            .collect();
        let generated = rs.generate.as_ref().map_or(0, |g| g.issues);
        assert_eq!(
            issues.len() as u64,
            rs.issues.len() as u64 + generated,
            "{name}: issues"
        );
        for si in &rs.issues {
            let i = titles
                .get(&si.title)
                .unwrap_or_else(|| panic!("{name}: issue {:?} missing", si.title));
            assert!(i.get("pull_request").is_none());
            let comments = bodies(&i["comment_data"]);
            assert_eq!(
                comments.len() as u64,
                si.comments.len() as u64 + si.generate_comments,
                "{name}: comments of {:?}",
                si.title
            );
            let want: Vec<String> = si.comments.iter().map(|c| c.body.clone()).collect();
            assert_eq!(comments[..want.len()], want[..], "{name}: {:?}", si.title);
            assert_eq!(
                i["state"].as_str().unwrap_or(""),
                si.state.as_deref().unwrap_or("open"),
                "{name}: state of {:?}",
                si.title
            );
        }
        if let Some(g) = &rs.generate {
            for n in 1..=g.issues {
                let t = format!("Generated issue {n}");
                let i = titles
                    .get(&t)
                    .unwrap_or_else(|| panic!("{name}: {t:?} missing"));
                assert_eq!(
                    bodies(&i["comment_data"]).len() as u64,
                    g.comments_each,
                    "{name}: comments of {t:?}"
                );
            }
        }

        // Pull requests: titles, merged or not, reviews' states, review comments, comments.
        let pulls = json_files(&dir.join("pulls"));
        assert_eq!(pulls.len(), rs.pulls.len(), "{name}: pull requests");
        for sp in &rs.pulls {
            let p = pulls
                .values()
                .find(|p| p["title"] == sp.title.as_str())
                .unwrap_or_else(|| panic!("{name}: pull {:?} missing", sp.title));
            assert_eq!(
                p["merged_at"].is_string(),
                sp.merged,
                "{name}: merged {:?}",
                sp.title
            );
            let states: Vec<String> = p["review_data"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|r| r["state"].as_str().unwrap_or("").to_string())
                .collect();
            let want: Vec<String> = sp.reviews.iter().map(|r| r.state.clone()).collect();
            assert_eq!(states, want, "{name}: reviews of {:?}", sp.title);
            let review_comments = bodies(&p["comment_data"]);
            let want: Vec<String> = sp
                .reviews
                .iter()
                .flat_map(|r| r.comments.iter().map(|c| c.body.clone()))
                .collect();
            assert_eq!(
                review_comments, want,
                "{name}: review comments of {:?}",
                sp.title
            );
            let comments = bodies(&p["comment_regular_data"]);
            let want: Vec<String> = sp.comments.iter().map(|c| c.body.clone()).collect();
            assert_eq!(comments, want, "{name}: comments of {:?}", sp.title);
        }

        // Releases by tag, with every asset's bytes.
        let releases = json_files(&dir.join("releases"));
        let tags: BTreeSet<String> = releases.keys().cloned().collect();
        let want: BTreeSet<String> = rs.releases.iter().map(|r| r.tag.clone()).collect();
        assert_eq!(tags, want, "{name}: releases");
        for sr in &rs.releases {
            let rel = &releases[&sr.tag];
            for sa in &sr.assets {
                let path = dir.join("releases").join(&sr.tag).join(&sa.name);
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                match (&sa.content, sa.size) {
                    (Some(text), _) => assert_eq!(bytes, text.as_bytes(), "{}", path.display()),
                    (None, Some(size)) => {
                        assert_eq!(bytes.len() as u64, size, "{}", path.display());
                        // The same bytes the simulator serves to anyone else.
                        let asset = rel["assets"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|a| a["name"] == sa.name.as_str())
                            .unwrap();
                        let served = api
                            .raw(
                                api.http
                                    .get(asset["url"].as_str().unwrap())
                                    .bearer_auth(OWNER)
                                    .header("accept", "application/octet-stream"),
                            )
                            .await;
                        // Followed without the token, as python-github-backup follows it.
                        assert_eq!(served.status, 302, "{}", path.display());
                        let served = api.raw(api.http.get(served.header("location"))).await;
                        assert_eq!(bytes, served.bytes, "{}", path.display());
                    }
                    (None, None) => {}
                }
            }
        }

        // Labels, milestones, hooks.
        let labels = read_json(&dir.join("labels/labels.json"));
        let got: BTreeSet<String> = labels
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = rs.labels.iter().map(|l| l.name.clone()).collect();
        assert_eq!(got, want, "{name}: labels");
        let milestones = json_files(&dir.join("milestones"));
        let got: BTreeSet<String> = milestones
            .values()
            .map(|m| m["title"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = rs.milestones.iter().map(|m| m.title.clone()).collect();
        assert_eq!(got, want, "{name}: milestones");
        let hooks = read_json(&dir.join("hooks/hooks.json"));
        let got: BTreeSet<String> = hooks
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["config"]["url"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = rs.hooks.iter().map(|h| h.url.clone()).collect();
        assert_eq!(got, want, "{name}: hooks");

        // The clone, the wiki, the LFS objects.
        let clone = dir.join("repository");
        if rs.commits.is_empty() {
            assert!(
                !clone.join(".git").join("refs/heads/main").exists(),
                "{name}: an empty repository has no main"
            );
        } else {
            assert!(clone.join(".git").is_dir(), "{name}: cloned");
        }
        for (path, content) in &rs.lfs {
            let oid = hex::encode(Sha256::digest(content.as_bytes()));
            let obj = clone
                .join(".git/lfs/objects")
                .join(&oid[..2])
                .join(&oid[2..4])
                .join(&oid);
            let bytes = std::fs::read(&obj).unwrap_or_else(|e| {
                panic!("{name}: LFS object of {path} ({}): {e}", obj.display())
            });
            assert_eq!(bytes, content.as_bytes(), "{name}: LFS {path}");
        }
        for (page, content) in &rs.wiki {
            let p = dir.join("wiki").join(page);
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{name}: wiki page {}: {e}", p.display()));
            assert_eq!(&text, content, "{name}: wiki {page}");
        }
    }
}
