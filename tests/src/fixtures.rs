//! Git repositories for tests, made with the real git CLI.
//!
//! Every git command run from here is isolated from the machine's configuration:
//! `GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM=1`, a fixed identity
//! (`GIT_AUTHOR_*`/`GIT_COMMITTER_*`), `-c init.defaultBranch=main`, `core.quotePath=false`,
//! `GIT_TERMINAL_PROMPT=0` (an authentication failure fails instead of prompting), and the
//! `GIT_DIR`-style variables of the calling environment removed.
//!
//! The repositories the generators make are deterministic: the same call gives the same object
//! ids on every run (fixed dates, seeded pseudo-random content).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Name and e-mail of every author, committer and tagger.
pub const GIT_NAME: &str = "Repovault Test";
/// See [`GIT_NAME`].
pub const GIT_EMAIL: &str = "test@repovault.invalid";
/// Unix time of the first commit the generators make; later commits follow in order.
pub const BASE_TIME: i64 = 1_700_000_000;

/// The branch of [`rich_repo`] with a non-ASCII name (NFC: `feature/naïve-ü`).
pub const NON_ASCII_BRANCH: &str = "feature/na\u{ef}ve-\u{fc}";
/// The branch of [`rich_repo`] that [`evolve`] deletes.
pub const EVOLVE_DELETED_BRANCH: &str = "stale";
/// The branch of [`rich_repo`] that [`evolve`] force-pushes to a rewritten history.
pub const EVOLVE_REWRITTEN_BRANCH: &str = "topic";
/// Path (inside the tree of `main`) of the 4 MiB pseudo-random file of [`rich_repo`].
pub const BINARY_PATH: &str = "assets/blob.bin";
/// Size of [`BINARY_PATH`].
pub const BINARY_SIZE: usize = 4 * 1024 * 1024;

/// Every ref [`rich_repo`] creates (full names). `HEAD` is symbolic to `refs/heads/main`.
pub fn rich_repo_ref_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "refs/heads/main",
        "refs/heads/develop",
        "refs/heads/orphan",
        "refs/heads/stale",
        "refs/heads/topic",
        "refs/tags/v0.1",
        "refs/tags/v1.0",
        "refs/notes/commits",
        "refs/pull/1/head",
        "refs/pull/1/merge",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("refs/heads/{NON_ASCII_BRANCH}"));
    v.sort();
    v
}

/// A `git` [`Command`] with the isolated environment described in the module docs, running in
/// `dir`, author and committer dates fixed at [`BASE_TIME`]. Add arguments and run it yourself
/// when you need stdin, other environment variables or the raw output.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "core.quotePath=false",
        ])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", GIT_NAME)
        .env("GIT_AUTHOR_EMAIL", GIT_EMAIL)
        .env("GIT_COMMITTER_NAME", GIT_NAME)
        .env("GIT_COMMITTER_EMAIL", GIT_EMAIL)
        .env("GIT_AUTHOR_DATE", format!("{BASE_TIME} +0000"))
        .env("GIT_COMMITTER_DATE", format!("{BASE_TIME} +0000"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C.UTF-8");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_PROTOCOL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to completion and returns its stdout (UTF-8, trailing newlines removed).
/// Fails with the command line, exit status and stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let s = String::from_utf8(out.stdout).with_context(|| format!("{cmd:?}: stdout not UTF-8"))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs `git ARGS` in `dir` (isolated environment, see [`git_command`]) and returns stdout
/// without its trailing newlines. A non-zero exit is an error that carries stderr.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    run(git_command(dir).args(args))
}

/// A work tree whose commands get increasing, deterministic dates.
struct Work {
    dir: PathBuf,
    t: i64,
}

impl Work {
    fn git(&mut self, args: &[&str]) -> anyhow::Result<String> {
        self.t += 60;
        let date = format!("{} +0000", self.t);
        run(git_command(&self.dir)
            .args(args)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date))
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> anyhow::Result<()> {
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))
    }

    /// Writes the files, stages everything and commits with `msg`.
    fn commit(&mut self, files: &[(&str, &str)], msg: &str) -> anyhow::Result<()> {
        for (path, content) in files {
            self.write(path, content)?;
        }
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "-m", msg])?;
        Ok(())
    }
}

/// SplitMix64: a tiny deterministic generator for fixture content.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `len` pseudo-random bytes from `seed` (deterministic).
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Creates the bare repository `BASE/NAME` (HEAD -> `refs/heads/main`), creating `base` when
/// missing. Fails if it exists already.
fn init_bare(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
    let path = base.join(name);
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    let p = path.to_str().context("non-UTF-8 repository path")?;
    git(base, &["init", "-q", "--bare", "-b", "main", p])?;
    Ok(path)
}

/// Makes the bare repository `BASE/NAME` (e.g. `name = "rich.git"`), filled by pushing from a
/// temporary work clone, and returns its path. Contents (all deterministic):
/// - `main`: several commits, the 4 MiB pseudo-random [`BINARY_PATH`], and a `--no-ff` merge
///   commit of branch `develop` (which stays as a branch), then one more commit;
/// - tags: lightweight `v0.1` (first commit), annotated `v1.0` (the merge commit);
/// - a note on the tip of `main` in `refs/notes/commits`;
/// - `refs/pull/1/head` (a commit on top of `main`) and `refs/pull/1/merge` (merge of that into
///   `main`, parents `[main, pull head]`, as GitHub makes it);
/// - branches `stale` and `topic` (one and two commits on top of `main`; see [`evolve`]),
///   [`NON_ASCII_BRANCH`] (with a non-ASCII file name too), and `orphan` (no common history);
/// - `HEAD` -> `refs/heads/main`.
///
/// [`rich_repo_ref_names`] lists the refs. Fails if `BASE/NAME` exists.
pub fn rich_repo(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let bare = init_bare(base, name)?;
    let tmp = tempfile::tempdir()?;
    let work_dir = tmp.path().join("work");
    let bare_s = bare.to_str().context("non-UTF-8 repository path")?;
    let work_s = work_dir.to_str().context("non-UTF-8 temp path")?;
    git(tmp.path(), &["clone", "-q", bare_s, work_s])?;
    let mut w = Work {
        dir: work_dir,
        t: BASE_TIME,
    };
    w.git(&["checkout", "-q", "-B", "main"])?;

    w.commit(
        &[
            (
                "README.md",
                "# Rich\n\nA repository with every kind of ref.\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n"),
        ],
        "Initial commit",
    )?;
    w.git(&["tag", "v0.1"])?;
    w.write(BINARY_PATH, pseudo_random_bytes(0x5EED_0001, BINARY_SIZE))?;
    w.commit(&[], "Add binary asset")?;
    w.commit(
        &[(
            "src/main.rs",
            "fn main() {\n    println!(\"hello, world\");\n}\n",
        )],
        "Greet the world",
    )?;

    w.git(&["checkout", "-q", "-b", "develop"])?;
    w.commit(
        &[("src/feature.rs", "pub fn feature() -> u32 {\n    1\n}\n")],
        "Add feature",
    )?;
    w.commit(
        &[("src/feature.rs", "pub fn feature() -> u32 {\n    42\n}\n")],
        "Tune feature",
    )?;
    w.git(&["checkout", "-q", "main"])?;
    w.commit(
        &[(
            "README.md",
            "# Rich\n\nA repository with every kind of ref.\n\nSee src/.\n",
        )],
        "Document layout",
    )?;
    w.git(&[
        "merge",
        "-q",
        "--no-ff",
        "develop",
        "-m",
        "Merge branch 'develop'",
    ])?;
    w.git(&["tag", "-a", "v1.0", "-m", "Release 1.0"])?;
    w.commit(
        &[("CHANGELOG.md", "# 1.0\n\n- first release\n")],
        "Add changelog",
    )?;
    w.git(&["notes", "add", "-m", "Reviewed-by: Repovault Test", "HEAD"])?;

    w.git(&["checkout", "-q", "-b", EVOLVE_DELETED_BRANCH, "main"])?;
    w.commit(&[("stale.txt", "soon gone\n")], "Stale work")?;
    w.git(&["checkout", "-q", "-b", EVOLVE_REWRITTEN_BRANCH, "main"])?;
    w.commit(&[("topic.txt", "topic 1\n")], "Topic part 1")?;
    w.commit(&[("topic.txt", "topic 1\ntopic 2\n")], "Topic part 2")?;
    w.git(&["checkout", "-q", "-b", NON_ASCII_BRANCH, "main"])?;
    w.commit(
        &[(
            "docs/\u{fc}n\u{ef}c\u{f6}de.md",
            "Gr\u{fc}\u{df}e, na\u{ef}ve caf\u{e9}\n",
        )],
        "Non-ASCII: na\u{ef}ve \u{fc}",
    )?;

    w.git(&["checkout", "-q", "-b", "pr1", "main"])?;
    w.commit(&[("src/pr.rs", "pub fn pr() {}\n")], "Pull request change")?;
    w.git(&["update-ref", "refs/pull/1/head", "HEAD"])?;
    w.git(&["checkout", "-q", "--detach", "main"])?;
    w.git(&[
        "merge",
        "-q",
        "--no-ff",
        "pr1",
        "-m",
        "Merge pull request #1",
    ])?;
    w.git(&["update-ref", "refs/pull/1/merge", "HEAD"])?;

    w.git(&["checkout", "-q", "--orphan", "orphan"])?;
    w.git(&["rm", "-rfq", "."])?;
    w.commit(&[("ORPHAN.md", "No shared history.\n")], "Orphan root")?;
    w.git(&["checkout", "-q", "main"])?;
    w.git(&["branch", "-q", "-D", "pr1"])?;

    w.git(&[
        "push",
        "-q",
        "origin",
        "refs/heads/*:refs/heads/*",
        "refs/tags/*:refs/tags/*",
        "refs/notes/*:refs/notes/*",
        "refs/pull/*:refs/pull/*",
    ])?;
    Ok(bare)
}

/// Makes the bare repository `BASE/NAME` with no refs at all (HEAD -> `refs/heads/main`, unborn)
/// and returns its path. Fails if it exists.
pub fn empty_repo(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    init_bare(base, name)
}

/// Changes a repository made by [`rich_repo`] (`BASE/NAME`) by pushing to it from a temporary
/// clone, deterministically:
/// - `main` gets one new commit on top (a fast-forward);
/// - branch [`EVOLVE_DELETED_BRANCH`] is deleted (only if it still exists);
/// - branch [`EVOLVE_REWRITTEN_BRANCH`] is force-pushed: its last commit is replaced by a
///   different one, so the old tip is no longer reachable from it.
///
/// Other refs are untouched. It can be called again; each call moves `main` and rewrites the
/// topic branch once more.
pub fn evolve(base: &Path, name: &str) -> anyhow::Result<()> {
    let bare = base.join(name);
    let tmp = tempfile::tempdir()?;
    let work_dir = tmp.path().join("work");
    let bare_s = bare.to_str().context("non-UTF-8 repository path")?;
    let work_s = work_dir.to_str().context("non-UTF-8 temp path")?;
    git(tmp.path(), &["clone", "-q", bare_s, work_s])?;
    let t: i64 = git(&bare, &["log", "-1", "--format=%ct", "main"])?
        .parse()
        .context("parsing commit time")?;
    let mut w = Work {
        dir: work_dir,
        t: t + 3600,
    };
    let n = git(&bare, &["rev-list", "--count", "main"])?;

    w.git(&["checkout", "-q", "main"])?;
    w.commit(
        &[(
            "CHANGELOG.md",
            &format!("# 1.{n}\n\n- evolved\n\n# 1.0\n\n- first release\n"),
        )],
        &format!("Evolve main ({n})"),
    )?;
    w.git(&["push", "-q", "origin", "main"])?;

    let stale_ref = format!("refs/heads/{EVOLVE_DELETED_BRANCH}");
    if refs(&bare)?.contains_key(&stale_ref) {
        w.git(&["push", "-q", "origin", "--delete", EVOLVE_DELETED_BRANCH])?;
    }

    let topic = EVOLVE_REWRITTEN_BRANCH;
    w.git(&["checkout", "-q", "-B", topic, &format!("origin/{topic}")])?;
    w.git(&["reset", "-q", "--hard", "HEAD~1"])?;
    w.commit(
        &[("topic.txt", &format!("topic rewritten {n}\n"))],
        "Topic rewritten",
    )?;
    w.git(&["push", "-q", "--force", "origin", topic])?;
    Ok(())
}

/// Every ref of the repository at `git_dir` (bare or work tree) as `refname -> object id`
/// (`git for-each-ref`; annotated tags map to the tag object, not the commit). `HEAD` is not
/// included; see [`head`].
pub fn refs(git_dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let out = git(
        git_dir,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )?;
    out.lines()
        .map(|l| {
            let (name, oid) = l.rsplit_once(' ').context("bad for-each-ref line")?;
            Ok((name.to_string(), oid.to_string()))
        })
        .collect()
}

/// The ref `HEAD` points to (`git symbolic-ref HEAD`, e.g. `refs/heads/main`), `None` when HEAD
/// is detached. Fails when `git_dir` is not a repository.
pub fn head(git_dir: &Path) -> anyhow::Result<Option<String>> {
    let out = git_command(git_dir)
        .args(["symbolic-ref", "-q", "HEAD"])
        .stdin(Stdio::null())
        .output()?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8(out.stdout)?.trim_end().to_string())),
        Some(1) => Ok(None),
        _ => bail!(
            "git symbolic-ref HEAD in {}: {}",
            git_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Ids of every object (commits, trees, blobs, annotated tag objects) reachable from any ref of
/// the repository (`git rev-list --objects --all`: heads, tags, notes, pull refs, everything
/// under `refs/`, plus HEAD). Equal sets mean a restore holds the same history as its source.
pub fn reachable_objects(git_dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let out = git(git_dir, &["rev-list", "--objects", "--all"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(' ').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

const WORDS: &[&str] = &[
    "buffer", "index", "snapshot", "worker", "config", "stream", "packet", "handle", "reader",
    "writer", "chunk", "layer", "cache", "token", "client", "server", "error", "result", "state",
    "lease", "queue", "batch", "digest", "object", "remote", "mirror", "commit", "branch", "tree",
    "blob", "delta", "window", "offset", "length", "retry", "timeout", "schedule", "policy",
];

fn text_line(rng: &mut Rng, out: &mut String) {
    let w = |rng: &mut Rng| WORDS[rng.below(WORDS.len())];
    let indent = "    ".repeat(rng.below(3));
    out.push_str(&indent);
    // `write!` to a String cannot fail.
    let _ = match rng.below(8) {
        0 => write!(
            out,
            "// The {} keeps its {} until the {} is done.",
            w(rng),
            w(rng),
            w(rng)
        ),
        1 => write!(
            out,
            "fn {}_{}(&self, {}: usize) -> Result<{}> {{",
            w(rng),
            w(rng),
            w(rng),
            w(rng)
        ),
        2 => write!(
            out,
            "let {}_{} = self.{}.{}({})?;",
            w(rng),
            rng.below(100),
            w(rng),
            w(rng),
            rng.below(4096)
        ),
        3 => write!(
            out,
            "if {}.len() > {} {{ return Err(Error::{}); }}",
            w(rng),
            rng.below(1 << 16),
            w(rng)
        ),
        4 => write!(out, "}}"),
        5 => write!(
            out,
            "/// Returns the {} of the {} for {} {}.",
            w(rng),
            w(rng),
            w(rng),
            rng.below(1000)
        ),
        6 => write!(out, "{}.insert({:?}, {}::new());", w(rng), w(rng), w(rng)),
        _ => write!(
            out,
            "self.{} += {}; // {}",
            w(rng),
            rng.below(1 << 20),
            w(rng)
        ),
    };
}

fn new_line(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(64);
    text_line(rng, &mut s);
    s
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    let _ = writeln!(out, "data {}", data.len());
    out.extend_from_slice(data);
    out.push(b'\n');
}

/// Makes a realistic bare repository `BASE/NAME` quickly with `git fast-import` and returns its
/// path. Exactly `commits` commits (`commits >= 1`) are reachable from `main`; the first adds
/// `files` text files (source-like lines, 30-90 lines, 1-5 KiB each) spread over a dozen directories, every
/// later one edits 1-3 of them. Every 500 commits a 3-commit `feature` branch is merged into
/// `main` with a merge commit; an annotated tag `vN` marks every 1000th commit. Branch `feature`
/// (the last merged one, if any) remains. Deterministic; HEAD -> `refs/heads/main`.
pub fn big_repo(base: &Path, name: &str, commits: usize, files: usize) -> anyhow::Result<PathBuf> {
    if commits == 0 || files == 0 {
        bail!("big_repo needs at least one commit and one file");
    }
    let bare = init_bare(base, name)?;
    let dirs = [
        "src",
        "src/core",
        "src/net",
        "src/util",
        "src/storage",
        "src/api",
        "src/api/v1",
        "docs",
        "tests",
        "benches",
        "examples",
        "tools",
    ];
    let mut rng = Rng(0xB16_5EED);
    let paths: Vec<String> = (0..files)
        .map(|i| {
            let d = dirs[i % dirs.len()];
            let ext = if d == "docs" { "md" } else { "rs" };
            format!("{d}/{}_{i}.{ext}", WORDS[i % WORDS.len()])
        })
        .collect();
    let mut contents: Vec<Vec<String>> = (0..files)
        .map(|_| {
            let n = 30 + rng.below(50);
            (0..n).map(|_| new_line(&mut rng)).collect()
        })
        .collect();

    let mut child = git_command(&bare)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning git fast-import")?;
    let stdin = child.stdin.take().context("fast-import stdin")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);

    let emit_commit = |buf: &mut Vec<u8>,
                       branch: &str,
                       mark: usize,
                       from: Option<usize>,
                       merge: Option<usize>,
                       msg: &str,
                       changed: &[usize],
                       contents: &[Vec<String>]| {
        let t = BASE_TIME + mark as i64 * 60;
        let _ = writeln!(buf, "commit refs/heads/{branch}\nmark :{mark}");
        let _ = writeln!(buf, "author {GIT_NAME} <{GIT_EMAIL}> {t} +0000");
        let _ = writeln!(buf, "committer {GIT_NAME} <{GIT_EMAIL}> {t} +0000");
        push_data(buf, msg.as_bytes());
        if let Some(f) = from {
            let _ = writeln!(buf, "from :{f}");
        }
        if let Some(m) = merge {
            let _ = writeln!(buf, "merge :{m}");
        }
        for &i in changed {
            let _ = writeln!(buf, "M 100644 inline {}", paths[i]);
            let mut text = contents[i].join("\n");
            text.push('\n');
            push_data(buf, text.as_bytes());
        }
    };

    let edit = |rng: &mut Rng, lines: &mut Vec<String>| {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(lines.len());
            match rng.below(4) {
                0 if lines.len() > 30 => {
                    for _ in 0..(1 + rng.below(5)).min(lines.len() - at) {
                        lines.remove(at);
                    }
                }
                1 if lines.len() < 90 => {
                    for _ in 0..1 + rng.below(5) {
                        lines.insert(at, new_line(rng));
                    }
                }
                _ => lines[at] = new_line(rng),
            }
        }
    };

    // Marks are commit numbers 1..=commits.
    let all: Vec<usize> = (0..files).collect();
    emit_commit(
        &mut buf,
        "main",
        1,
        None,
        None,
        "Initial import",
        &all,
        &contents,
    );
    let mut main_tip = 1;
    let mut mark = 1;
    while mark < commits {
        // A feature branch of 3 commits plus the merge, when it fits.
        if mark % 500 == 250 && mark + 4 <= commits {
            let fork = main_tip;
            let mut touched = BTreeSet::new();
            let mut prev = fork;
            for k in 0..3 {
                mark += 1;
                let f = rng.below(files);
                edit(&mut rng, &mut contents[f]);
                touched.insert(f);
                let msg = format!("feature: rework {} ({k})\n", paths[f]);
                emit_commit(
                    &mut buf,
                    "feature",
                    mark,
                    Some(prev),
                    None,
                    &msg,
                    &[f],
                    &contents,
                );
                prev = mark;
            }
            mark += 1;
            let changed: Vec<usize> = touched.into_iter().collect();
            emit_commit(
                &mut buf,
                "main",
                mark,
                Some(fork),
                Some(prev),
                "Merge branch 'feature'\n",
                &changed,
                &contents,
            );
            main_tip = mark;
        } else {
            mark += 1;
            let n = 1 + rng.below(3);
            let mut changed: Vec<usize> = (0..n).map(|_| rng.below(files)).collect();
            changed.sort_unstable();
            changed.dedup();
            for &f in &changed {
                edit(&mut rng, &mut contents[f]);
            }
            let msg = format!(
                "Update {} {} in {}\n\nTouches {} file(s).\n",
                WORDS[rng.below(WORDS.len())],
                WORDS[rng.below(WORDS.len())],
                paths[changed[0]],
                changed.len()
            );
            emit_commit(
                &mut buf,
                "main",
                mark,
                Some(main_tip),
                None,
                &msg,
                &changed,
                &contents,
            );
            main_tip = mark;
        }
        if mark % 1000 == 0 && main_tip == mark {
            let _ = writeln!(buf, "tag v{}\nfrom :{mark}", mark / 1000);
            let _ = writeln!(
                buf,
                "tagger {GIT_NAME} <{GIT_EMAIL}> {} +0000",
                BASE_TIME + mark as i64 * 60
            );
            push_data(&mut buf, format!("Release {}\n", mark / 1000).as_bytes());
        }
        if buf.len() > 1 << 16 {
            if let Err(e) = out.write_all(&buf) {
                drop(out);
                let o = child.wait_with_output()?;
                bail!(
                    "writing to git fast-import: {e}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            buf.clear();
        }
    }
    buf.extend_from_slice(b"done\n");
    let res = out.write_all(&buf).and_then(|()| out.flush());
    drop(out);
    let o = child.wait_with_output()?;
    if !o.status.success() || res.is_err() {
        bail!(
            "git fast-import failed ({}, {res:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(bare)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rich_repo_has_every_ref_kind() {
        let base = tempfile::tempdir().unwrap();
        let repo = rich_repo(base.path(), "rich.git").unwrap();
        let r = refs(&repo).unwrap();
        assert_eq!(r.keys().cloned().collect::<Vec<_>>(), rich_repo_ref_names());
        assert_eq!(head(&repo).unwrap().as_deref(), Some("refs/heads/main"));
        // Annotated vs lightweight tags.
        assert_eq!(
            git(&repo, &["cat-file", "-t", "refs/tags/v1.0"]).unwrap(),
            "tag"
        );
        assert_eq!(
            git(&repo, &["cat-file", "-t", "refs/tags/v0.1"]).unwrap(),
            "commit"
        );
        // Merge commits on main and in the pull merge ref.
        let merges = git(&repo, &["rev-list", "--merges", "main"]).unwrap();
        assert_eq!(merges.lines().count(), 1);
        let pm = git(
            &repo,
            &["rev-list", "--parents", "-n1", "refs/pull/1/merge"],
        )
        .unwrap();
        assert_eq!(pm.split(' ').count(), 3);
        assert_eq!(pm.split(' ').nth(1).unwrap(), r["refs/heads/main"]);
        assert_eq!(pm.split(' ').nth(2).unwrap(), r["refs/pull/1/head"]);
        // The note.
        let note = git(&repo, &["notes", "show", "main"]).unwrap();
        assert!(note.contains("Reviewed-by"));
        // The orphan has no common history with main.
        let mb = git_command(&repo)
            .args(["merge-base", "main", "orphan"])
            .output()
            .unwrap();
        assert!(!mb.status.success());
        // The big binary.
        let size = git(&repo, &["cat-file", "-s", &format!("main:{BINARY_PATH}")]).unwrap();
        assert_eq!(size, BINARY_SIZE.to_string());
        // Objects: the annotated tag object and note tree are included.
        let objs = reachable_objects(&repo).unwrap();
        assert!(objs.contains(&r["refs/tags/v1.0"]));
        assert!(objs.contains(&r["refs/notes/commits"]));
        let note_tree = git(&repo, &["rev-parse", "refs/notes/commits^{tree}"]).unwrap();
        assert!(objs.contains(&note_tree));
        git(&repo, &["fsck", "--full", "--no-dangling"]).unwrap();
        // Deterministic: a second one has the same ids.
        let again = rich_repo(base.path(), "again.git").unwrap();
        assert_eq!(refs(&again).unwrap(), r);
        assert!(
            rich_repo(base.path(), "rich.git").is_err(),
            "existing repo must not be overwritten"
        );
    }

    #[test]
    fn empty_repo_has_no_refs() {
        let base = tempfile::tempdir().unwrap();
        let repo = empty_repo(base.path(), "e.git").unwrap();
        assert!(refs(&repo).unwrap().is_empty());
        assert!(reachable_objects(&repo).unwrap().is_empty());
        assert_eq!(head(&repo).unwrap().as_deref(), Some("refs/heads/main"));
    }

    #[test]
    fn evolve_moves_deletes_and_rewrites() {
        let base = tempfile::tempdir().unwrap();
        let repo = rich_repo(base.path(), "r.git").unwrap();
        let before = refs(&repo).unwrap();
        let objs_before = reachable_objects(&repo).unwrap();
        evolve(base.path(), "r.git").unwrap();
        let after = refs(&repo).unwrap();
        let main = "refs/heads/main";
        let topic = format!("refs/heads/{EVOLVE_REWRITTEN_BRANCH}");
        assert_ne!(before[main], after[main]);
        assert_eq!(
            git(&repo, &["rev-parse", &format!("{}~1", after[main])]).unwrap(),
            before[main]
        );
        assert!(!after.contains_key(&format!("refs/heads/{EVOLVE_DELETED_BRANCH}")));
        assert_ne!(before[&topic], after[&topic]);
        let is_anc = git_command(&repo)
            .args([
                "merge-base",
                "--is-ancestor",
                &before[&topic],
                &after[&topic],
            ])
            .status()
            .unwrap();
        assert!(
            !is_anc.success(),
            "topic must be rewritten, not fast-forwarded"
        );
        for (k, v) in &before {
            if k != main && *k != topic && !k.ends_with(EVOLVE_DELETED_BRANCH) {
                assert_eq!(after.get(k), Some(v), "{k} must be untouched");
            }
        }
        let objs_after = reachable_objects(&repo).unwrap();
        assert!(!objs_after.is_superset(&objs_before));
        // A second call works too.
        evolve(base.path(), "r.git").unwrap();
        assert_ne!(refs(&repo).unwrap()[main], after[main]);
    }

    #[test]
    fn head_detached_is_none_and_non_repo_fails() {
        let base = tempfile::tempdir().unwrap();
        let repo = rich_repo(base.path(), "r.git").unwrap();
        let main = refs(&repo).unwrap()["refs/heads/main"].clone();
        git(&repo, &["update-ref", "--no-deref", "HEAD", &main]).unwrap();
        assert_eq!(head(&repo).unwrap(), None);
        assert!(head(base.path()).is_err());
        let e = git(base.path(), &["rev-parse", "HEAD"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a git repository"), "{e}");
    }

    #[test]
    fn big_repo_is_fast_and_clean() {
        let base = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let repo = big_repo(base.path(), "big.git", 20_000, 300).unwrap();
        eprintln!("big_repo(20000, 300) took {:?}", t.elapsed());
        let count = git(&repo, &["rev-list", "--count", "main"]).unwrap();
        assert_eq!(count, "20000");
        let files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]).unwrap();
        assert_eq!(files.lines().count(), 300);
        assert_eq!(head(&repo).unwrap().as_deref(), Some("refs/heads/main"));
        let r = refs(&repo).unwrap();
        assert!(r.contains_key("refs/tags/v20"));
        assert!(r.contains_key("refs/heads/feature"));
        let merges = git(&repo, &["rev-list", "--merges", "--count", "main"]).unwrap();
        assert_eq!(merges, "40");
        let t = std::time::Instant::now();
        git(&repo, &["fsck", "--full", "--no-dangling", "--no-progress"]).unwrap();
        eprintln!("fsck took {:?}", t.elapsed());
    }

    #[test]
    fn big_repo_is_deterministic() {
        let base = tempfile::tempdir().unwrap();
        let a = big_repo(base.path(), "a.git", 1_100, 20).unwrap();
        let b = big_repo(base.path(), "b.git", 1_100, 20).unwrap();
        let r = refs(&a).unwrap();
        assert_eq!(refs(&b).unwrap(), r);
        assert_eq!(git(&a, &["rev-list", "--count", "main"]).unwrap(), "1100");
        assert!(r.contains_key("refs/tags/v1"));
        assert!(big_repo(base.path(), "c.git", 0, 1).is_err());
    }
}
