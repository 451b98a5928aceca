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
    // Appended directly rather than by three `git config` processes (seeding speed).
    use std::io::Write as _;
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("config"))
        .with_context(|| format!("opening {}/config", dir.display()))?;
    config.write_all(
        b"[receive]\n\thideRefs = refs/pull\n[http]\n\treceivepack = true\n[uploadpack]\n\tallowFilter = true\n",
    )?;
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

/// Who a commit the simulator makes (a merge) is by, as git's `GIT_AUTHOR_*`/`GIT_COMMITTER_*`.
#[derive(Debug, Clone)]
pub struct Signature {
    pub name: String,
    pub email: String,
    pub date: chrono::DateTime<chrono::Utc>,
}

/// `git merge-tree --write-tree [--merge-base=BASE] OURS THEIRS`: the merged tree, or `None`
/// when the merge conflicts. Writes objects but moves no ref.
pub fn merge_tree(
    dir: &Path,
    merge_base: Option<&str>,
    ours: &str,
    theirs: &str,
) -> anyhow::Result<Option<String>> {
    let mb = merge_base.map(|b| format!("--merge-base={b}"));
    let mut args = vec!["merge-tree", "--write-tree", "--no-messages"];
    if let Some(mb) = &mb {
        args.push(mb);
    }
    args.extend([ours, theirs]);
    let out = git(dir)
        .args(&args)
        .output()
        .context("running git merge-tree")?;
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(|l| l.trim().to_string())),
        // 1 is git's "conflicted" answer (the tree is written, with conflict markers).
        Some(1) => Ok(None),
        _ => bail!(
            "git merge-tree {ours} {theirs} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `git commit-tree TREE -p PARENT... -m MESSAGE` with the given author and committer.
pub fn commit_tree(
    dir: &Path,
    tree: &str,
    parents: &[&str],
    message: &str,
    author: &Signature,
    committer: &Signature,
) -> anyhow::Result<String> {
    let mut args = vec!["commit-tree", tree];
    for p in parents {
        args.extend(["-p", p]);
    }
    args.extend(["-m", message]);
    let out = git(dir)
        .args(&args)
        .env("GIT_AUTHOR_NAME", &author.name)
        .env("GIT_AUTHOR_EMAIL", &author.email)
        .env("GIT_AUTHOR_DATE", author.date.to_rfc3339())
        .env("GIT_COMMITTER_NAME", &committer.name)
        .env("GIT_COMMITTER_EMAIL", &committer.email)
        .env("GIT_COMMITTER_DATE", committer.date.to_rfc3339())
        .output()
        .context("running git commit-tree")?;
    if !out.status.success() {
        bail!(
            "git commit-tree in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// How a pull request is merged (GitHub's `merge_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

/// Makes the commits GitHub's merge button makes, without a work tree: `Merge` one merge commit
/// with parents (base, head); `Squash` one commit on base with head's combined change; `Rebase`
/// head's non-merge commits replayed on base (original authors, `committer` as committer).
/// Returns the new tip for the base branch, or `None` when the change conflicts. Moves no ref:
/// the caller updates the branch with [`update_ref`].
pub fn merge(
    dir: &Path,
    base: &str,
    head: &str,
    method: MergeMethod,
    message: &str,
    author: &Signature,
    committer: &Signature,
) -> anyhow::Result<Option<String>> {
    match method {
        MergeMethod::Merge | MergeMethod::Squash => {
            let Some(tree) = merge_tree(dir, None, base, head)? else {
                return Ok(None);
            };
            let parents: Vec<&str> = if method == MergeMethod::Merge {
                vec![base, head]
            } else {
                vec![base]
            };
            commit_tree(dir, &tree, &parents, message, author, committer).map(Some)
        }
        MergeMethod::Rebase => {
            let list = run(
                dir,
                &[
                    "rev-list",
                    "--reverse",
                    "--no-merges",
                    &format!("{base}..{head}"),
                ],
            )?;
            let mut tip = base.to_string();
            for c in list.lines() {
                let meta = run(dir, &["log", "-1", "--format=%an%x00%ae%x00%aI%x00%B", c])?;
                let mut f = meta.splitn(4, '\0');
                let (name, email, date, msg) = (
                    f.next().unwrap_or_default(),
                    f.next().unwrap_or_default(),
                    f.next().unwrap_or_default(),
                    f.next().unwrap_or_default(),
                );
                let parent = format!("{c}^");
                let Some(tree) = merge_tree(dir, Some(&parent), &tip, c)? else {
                    return Ok(None);
                };
                let original = Signature {
                    name: name.to_string(),
                    email: email.to_string(),
                    date: chrono::DateTime::parse_from_rfc3339(date)
                        .map(|d| d.with_timezone(&chrono::Utc))
                        .unwrap_or(committer.date),
                };
                tip = commit_tree(
                    dir,
                    &tree,
                    &[&tip],
                    msg.trim_end_matches('\n'),
                    &original,
                    committer,
                )?;
            }
            Ok(Some(tip))
        }
    }
}

/// `git update-ref REF NEW [OLD]`: moves (or makes) a ref; with `old`, only if it still points
/// there, so a push that raced a merge is not lost.
pub fn update_ref(dir: &Path, refname: &str, new: &str, old: Option<&str>) -> anyhow::Result<()> {
    let mut args = vec!["update-ref", refname, new];
    if let Some(o) = old {
        args.push(o);
    }
    run(dir, &args).map(drop)
}

/// Per-file line counts between two commits (`git diff --numstat -M FROM TO`): (path,
/// additions, deletions), binary files counting 0 lines. `FROM...TO` diffs from their merge base.
pub fn numstat(dir: &Path, range: &[&str]) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let mut args = vec!["diff", "--numstat", "-z", "-M"];
    args.extend_from_slice(range);
    let out = run(dir, &args)?;
    let mut files = Vec::new();
    let mut it = out.split('\0');
    while let Some(rec) = it.next() {
        if rec.is_empty() {
            continue;
        }
        let mut f = rec.splitn(3, '\t');
        let add = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let del = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut path = f.next().unwrap_or_default().to_string();
        if path.is_empty() {
            // A rename: the old and the new path follow as their own fields.
            let _old = it.next();
            path = it.next().unwrap_or_default().to_string();
        }
        files.push((path, add, del));
    }
    Ok(files)
}

/// One changed file between two commits (`git diff --raw -M`).
#[derive(Debug, Clone)]
pub struct Change {
    /// `A`, `D`, `M`, `R`, `C`, `T`.
    pub status: char,
    pub path: String,
    pub previous_path: Option<String>,
    /// The blob after the change (the old blob for a deletion).
    pub blob: String,
    pub additions: u64,
    pub deletions: u64,
}

/// The empty tree, which git knows without storing it: the "parent" of a root commit.
pub const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The changed files between `from` and `to` (commits or trees), with line counts.
pub fn changes(dir: &Path, from: &str, to: &str) -> anyhow::Result<Vec<Change>> {
    let raw = run(dir, &["diff", "--raw", "-z", "-M", "--no-abbrev", from, to])?;
    let counts = numstat(dir, &[from, to])?;
    let mut out = Vec::new();
    let mut it = raw.split('\0');
    while let Some(meta) = it.next() {
        let Some(meta) = meta.strip_prefix(':') else {
            continue;
        };
        let f: Vec<&str> = meta.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        let status = f[4].chars().next().unwrap_or('M');
        let (previous_path, path) = if matches!(status, 'R' | 'C') {
            let old = it.next().unwrap_or_default().to_string();
            (Some(old), it.next().unwrap_or_default().to_string())
        } else {
            (None, it.next().unwrap_or_default().to_string())
        };
        let blob = if status == 'D' { f[2] } else { f[3] }.to_string();
        let (additions, deletions) = counts
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(_, a, d)| (*a, *d))
            .unwrap_or((0, 0));
        out.push(Change {
            status,
            path,
            previous_path,
            blob,
            additions,
            deletions,
        });
    }
    Ok(out)
}
