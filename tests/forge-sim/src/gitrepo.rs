//! The simulator's bare repositories, driven by the real git CLI (as GitHub's are by git): made,
//! read for refs, commits and counts, and written by seeds.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context as _, bail};

/// A `git` command isolated from the user's and the system's configuration.
pub fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    c
}

/// Runs `git ARGS` in `dir`; fails with git's stderr.
pub fn run(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out: Output = git(dir)
        .args(args)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `git init --bare -b BRANCH DIR`, with GitHub's refusal of pushes to `refs/pull/*` (GitHub
/// hides them from receive-pack, so git itself answers "deny updating a hidden ref").
pub fn init_bare(dir: &Path, default_branch: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    run(dir, &["init", "--bare", "-q", "-b", default_branch])?;
    run(dir, &["config", "receive.hideRefs", "refs/pull"])?;
    run(dir, &["config", "http.receivepack", "true"])?;
    run(dir, &["config", "uploadpack.allowFilter", "true"])?;
    Ok(())
}

/// Every ref and the object it points at, sorted by name.
pub fn refs(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let out = run(dir, &["for-each-ref", "--format=%(refname) %(objectname)"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect())
}

/// The commit a revision names, if it exists.
pub fn resolve(dir: &Path, rev: &str) -> Option<String> {
    run(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

/// Commits reachable from `rev`, newest first (`git rev-list`), as GitHub's commit list orders
/// them.
pub fn rev_list(dir: &Path, rev: &str) -> anyhow::Result<Vec<String>> {
    let out = run(dir, &["rev-list", rev])?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Number of commits in `head` that are not in `base` (zero means GitHub refuses the pull
/// request: "No commits between base and head").
pub fn commits_between(dir: &Path, base: &str, head: &str) -> anyhow::Result<u64> {
    let out = run(dir, &["rev-list", "--count", &format!("{base}..{head}")])?;
    out.trim().parse().context("rev-list --count")
}
