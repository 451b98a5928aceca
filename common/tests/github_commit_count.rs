//! [`commit_count`] against the forge simulator: the count equals `git rev-list --count` of the
//! simulator's bare repository for the default branch's tip, for an older commit, and for
//! histories long enough to need several pages (one ending in a short page, one in a full
//! page); an empty repository (409) is `Some(0)`; every request goes through the rate gate.

#![allow(clippy::unwrap_used)]

mod support;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{OWNER, endpoint, start};

use chrono::{DateTime, Utc};
use forge_sim::ForgeSim;
use repovault_common::forge::github::{
    Admission, ForgeError, GitHubClient, RateGate, RateSnapshot, commit_count,
};
use repovault_common::secret::Secret;

/// Counts admissions, to show every request went through the gate.
#[derive(Default)]
struct CountingGate {
    admitted: AtomicU64,
}

#[async_trait::async_trait]
impl RateGate for CountingGate {
    async fn admit(&self) -> Result<Admission, ForgeError> {
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Ok(Admission::free())
    }
    fn observe(&self, _snapshot: &RateSnapshot) {}
    async fn limited(&self, _until: DateTime<Utc>, _secondary: bool) {}
}

fn git_dir(sim: &ForgeSim, owner: &str, name: &str) -> PathBuf {
    let world = sim.sim().world.lock();
    world
        .repos
        .values()
        .find(|r| r.owner == owner && r.name == name)
        .map(|r| r.git_dir.clone())
        .unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn rev_list_count(dir: &Path, tip: &str) -> u64 {
    git(dir, &["rev-list", "--count", tip]).parse().unwrap()
}

/// Writes a linear history of `n` commits to `branch` of the bare repository `dir`.
fn add_history(dir: &Path, branch: &str, n: usize) {
    let mut stream = String::new();
    for i in 0..n {
        let message = format!("commit {i}");
        stream.push_str(&format!(
            "commit refs/heads/{branch}\nmark :{}\ncommitter C <c@example.com> {} +0000\ndata {}\n{message}\n",
            i + 1,
            1_700_000_000 + i,
            message.len() + 1
        ));
        if i > 0 {
            stream.push_str(&format!("from :{i}\n"));
        }
        let content = format!("{i}\n");
        stream.push_str(&format!(
            "M 100644 inline f.txt\ndata {}\n{content}\n",
            content.len()
        ));
    }
    let mut child = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn commit_count_matches_rev_list_of_the_simulators_repository() {
    let sim = start().await;
    let gate = Arc::new(CountingGate::default());
    let client = GitHubClient::new(&endpoint(&sim), Secret::new(OWNER))
        .unwrap()
        .with_gate(gate.clone());
    let dir = git_dir(&sim, "acme", "widgets");

    // The default branch's tip, by id and by name.
    let tip = git(&dir, &["rev-parse", "HEAD"]);
    let expected = rev_list_count(&dir, &tip);
    assert!(expected > 1, "the seed has a history");
    let before = client.requests();
    assert_eq!(
        commit_count(&client, "acme", "widgets", &tip)
            .await
            .unwrap(),
        Some(expected)
    );
    assert_eq!(client.requests() - before, 1, "one request");
    let head = git(&dir, &["symbolic-ref", "--short", "HEAD"]);
    assert_eq!(
        commit_count(&client, "acme", "widgets", &head)
            .await
            .unwrap(),
        Some(expected)
    );

    // An older commit.
    let older = git(&dir, &["rev-parse", "HEAD~1"]);
    assert_eq!(
        commit_count(&client, "acme", "widgets", &older)
            .await
            .unwrap(),
        Some(rev_list_count(&dir, &older))
    );

    // Long histories: the last page short (250), the last page full (300), and a big one.
    for (branch, n) in [
        ("long-250", 250usize),
        ("long-300", 300),
        ("long-1234", 1234),
    ] {
        add_history(&dir, branch, n);
        let tip = git(&dir, &["rev-parse", &format!("refs/heads/{branch}")]);
        assert_eq!(rev_list_count(&dir, &tip), n as u64);
        let before = client.requests();
        assert_eq!(
            commit_count(&client, "acme", "widgets", &tip)
                .await
                .unwrap(),
            Some(n as u64),
            "{branch}"
        );
        // One request whatever the length: the `last` link's page number at per_page=1.
        assert_eq!(client.requests() - before, 1, "{branch}");
    }
    // Every request went through the gate.
    assert_eq!(gate.admitted.load(Ordering::SeqCst), client.requests());
}

#[tokio::test]
async fn an_empty_repository_has_no_commits() {
    let sim = start().await;
    let client = GitHubClient::new(&endpoint(&sim), Secret::new(OWNER)).unwrap();
    assert_eq!(
        commit_count(&client, "acme", "empty", "main")
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test]
async fn an_unknown_repository_or_commit_is_an_error() {
    let sim = start().await;
    let client = GitHubClient::new(&endpoint(&sim), Secret::new(OWNER)).unwrap();
    let err = commit_count(&client, "acme", "no-such-repo", "main")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = commit_count(
        &client,
        "acme",
        "widgets",
        "0123456789abcdef0123456789abcdef01234567",
    )
    .await
    .unwrap_err();
    assert!(err.status().is_some(), "{err}");
}
