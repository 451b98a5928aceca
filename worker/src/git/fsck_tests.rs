//! Tests of [`super::fsck`], [`super::count_commits`] and [`FetchOutcome::advertised`] against
//! the git CLI: sound and damaged mirrors, tag chains, and a ~5k-commit repository timed
//! against `git fsck --full`.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::AtomicBool,
    time::Instant,
};

use super::*;

use super::tests::{commit_file, git, git_cmd, noise};

/// A source with branches, a merge, a big blob, a lightweight tag, an annotated tag chain
/// (a tag of a tag), a tag of a blob, a note and pull refs.
fn build_source(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    commit_file(dir, "a.txt", b"a\n", "a");
    commit_file(dir, "dir/x.txt", b"x version 1\n", "x v1");
    commit_file(dir, "dir/x.txt", b"x version 2\n", "x v2");
    git(dir, &["checkout", "-q", "-b", "feature", "HEAD~1"]);
    commit_file(dir, "c.txt", b"c\n", "c");
    git(dir, &["checkout", "-q", "main"]);
    git(
        dir,
        &["merge", "-q", "--no-ff", "feature", "-m", "merge feature"],
    );
    commit_file(dir, "blob.bin", &noise(512 * 1024, 7), "a binary");
    git(dir, &["tag", "-a", "inner", "-m", "inner tag", "HEAD~1"]);
    git(
        dir,
        &["tag", "-a", "outer", "-m", "a tag of a tag", "inner"],
    );
    git(dir, &["tag", "light", "HEAD~2"]);
    git(dir, &["tag", "a-blob", "HEAD:a.txt"]);
    git(dir, &["notes", "add", "-m", "a note", "HEAD"]);
    git(dir, &["update-ref", "refs/pull/1/head", "feature"]);
    git(dir, &["update-ref", "refs/pull/1/merge", "main"]);
}

pub(super) fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

pub(super) fn run_mirror(dir: &Path, remote: &Remote) -> FetchOutcome {
    mirror(dir, remote, &|_| {}, &AtomicBool::new(false)).unwrap()
}

pub(super) fn run_fsck(dir: &Path) -> FsckReport {
    fsck(dir, &AtomicBool::new(false)).unwrap()
}

/// A source and its gix mirror in a temporary directory.
pub(super) struct Fixture {
    pub(super) tmp: tempfile::TempDir,
    pub(super) src: PathBuf,
    pub(super) mirror: PathBuf,
}

pub(super) fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_source(&src);
    let mirror = tmp.path().join("mirror.git");
    run_mirror(&mirror, &Remote::anonymous(file_url(&src)));
    Fixture { tmp, src, mirror }
}

/// A copy of `dir` at `to` (`cp -a`).
fn copy_dir(dir: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

pub(super) fn commits_by_git(dir: &Path) -> u64 {
    git(dir, &["rev-list", "--all", "--count"])
        .trim()
        .parse()
        .unwrap()
}

pub(super) fn reachable_by_git(dir: &Path) -> u64 {
    git(dir, &["rev-list", "--objects", "--all"])
        .lines()
        .count() as u64
}

fn objects_by_git(dir: &Path) -> u64 {
    let out = git(dir, &["count-objects", "-v"]);
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    field("count:") + field("in-pack:")
}

pub(super) fn packs(dir: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = std::fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    packs.sort();
    packs
}

fn without_pull_merge(refs: BTreeMap<String, String>) -> BTreeMap<String, String> {
    refs.into_iter()
        .filter(|(name, _)| !(name.starts_with("refs/pull/") && name.ends_with("/merge")))
        .collect()
}

/// `git ls-remote` of `dir`: refs under `refs/`, unpeeled, minus pull merge refs.
fn ls_remote_by_git(dir: &Path) -> BTreeMap<String, String> {
    without_pull_merge(
        git(dir, &["ls-remote", "."])
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(_, name)| name.starts_with("refs/") && !name.ends_with("^{}"))
            .map(|(id, name)| (name.to_owned(), id.to_owned()))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------

#[test]
fn fsck_of_a_sound_mirror_matches_git() {
    let f = fixture();
    let report = run_fsck(&f.mirror);
    assert!(report.is_sound(), "{:#?}", report.problems);
    assert_eq!(report.reachable, reachable_by_git(&f.mirror));
    assert_eq!(report.objects, objects_by_git(&f.mirror));
    assert_eq!(report.commits, commits_by_git(&f.mirror));
    let refs = git(&f.mirror, &["for-each-ref"]).lines().count() as u64;
    assert_eq!(report.refs, refs + 1, "every ref plus HEAD");
    // git agrees that it is sound.
    git(&f.mirror, &["fsck", "--full", "--strict"]);
}

#[test]
fn annotated_tag_chain_is_walked() {
    let f = fixture();
    // Only the tag chain keeps a commit, a tree and a blob alive: move main off them.
    let dir = f.tmp.path().join("chain.git");
    copy_dir(&f.mirror, &dir);
    let outer = git(&dir, &["rev-parse", "refs/tags/outer"]);
    let inner = git(&dir, &["rev-parse", "refs/tags/inner"]);
    assert_ne!(outer, inner);
    assert_eq!(git(&dir, &["cat-file", "-t", outer.trim()]).trim(), "tag");
    // A commit only the chain reaches.
    let tree = git(&dir, &["rev-parse", "main^{tree}"]);
    let lonely = git_cmd(&dir)
        .args(["commit-tree", tree.trim(), "-m", "only tagged"])
        .output()
        .unwrap();
    let lonely = String::from_utf8(lonely.stdout).unwrap();
    let lonely = lonely.trim();
    let mut tag_input = format!(
        "object {lonely}\ntype commit\ntag only-inner\ntagger T <t@example.com> 0 +0000\n\ninner\n"
    );
    let inner2 = mktag(&dir, &tag_input);
    tag_input = format!(
        "object {inner2}\ntype tag\ntag only-outer\ntagger T <t@example.com> 0 +0000\n\nouter\n"
    );
    let outer2 = mktag(&dir, &tag_input);
    git(&dir, &["update-ref", "refs/tags/only-outer", &outer2]);
    let report = run_fsck(&dir);
    assert!(report.is_sound(), "{:#?}", report.problems);
    assert_eq!(report.reachable, reachable_by_git(&dir));
    // Both tags and the commit are counted: three more than before.
    assert_eq!(report.reachable, run_fsck(&f.mirror).reachable + 3);
}

fn mktag(dir: &Path, input: &str) -> String {
    let mut child = git_cmd(dir)
        .args(["mktag"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn flipped_byte_in_a_pack_is_a_problem_naming_the_pack() {
    let f = fixture();
    let dir = f.tmp.path().join("flipped.git");
    copy_dir(&f.mirror, &dir);
    let pack = packs(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&pack, &bytes).unwrap();
    let report = run_fsck(&dir);
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        report.problems.iter().any(|p| p.contains(&name)),
        "no problem names {name}: {:#?}",
        report.problems
    );
    println!("{:#?}", report.problems);
    // git agrees.
    assert!(
        !git_cmd(&dir)
            .args(["fsck", "--full"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn flipped_byte_in_a_pack_index_is_a_problem_naming_it() {
    let f = fixture();
    let dir = f.tmp.path().join("flipped-idx.git");
    copy_dir(&f.mirror, &dir);
    let idx = packs(&dir).pop().unwrap().with_extension("idx");
    let mut bytes = std::fs::read(&idx).unwrap();
    // Inside the object ids' table, after the 8-byte header and the 1 KiB fan-out.
    bytes[8 + 1024 + 5] ^= 0x01;
    std::fs::write(&idx, &bytes).unwrap();
    let report = run_fsck(&dir);
    let name = idx.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        report.problems.iter().any(|p| p.contains(&name)),
        "no problem names {name}: {:#?}",
        report.problems
    );
    println!("{:#?}", report.problems);
}

#[test]
fn missing_blob_is_a_problem_naming_it_and_its_tree() {
    let f = fixture();
    let dir = f.tmp.path().join("missing.git");
    copy_dir(&f.mirror, &dir);
    // x.txt version 1 is in one tree only: the `dir` tree of commit "x v1".
    let blob = git(&f.src, &["rev-parse", "main~3:dir/x.txt"])
        .trim()
        .to_owned();
    let tree = git(&f.src, &["rev-parse", "main~3:dir"]).trim().to_owned();
    assert_eq!(
        git(&f.src, &["show", "-s", "--format=%s", "main~3"]).trim(),
        "x v1"
    );
    // Explode the pack into loose objects, then delete the blob.
    let moved = f.tmp.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    for pack in packs(&dir) {
        let idx = pack.with_extension("idx");
        let pack_to = moved.join(pack.file_name().unwrap());
        std::fs::rename(&pack, &pack_to).unwrap();
        std::fs::remove_file(idx).unwrap();
        let out = git_cmd(&dir)
            .args(["unpack-objects", "-q"])
            .stdin(std::fs::File::open(&pack_to).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let loose = dir.join("objects").join(&blob[..2]).join(&blob[2..]);
    std::fs::remove_file(&loose).unwrap();

    let report = run_fsck(&dir);
    assert_eq!(report.objects, objects_by_git(&dir));
    let problem = report
        .problems
        .iter()
        .find(|p| p.contains(&blob))
        .unwrap_or_else(|| panic!("no problem names {blob}: {:#?}", report.problems));
    assert!(problem.contains("missing"), "{problem}");
    assert!(problem.contains(&format!("tree {tree}")), "{problem}");
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[test]
fn ref_to_a_missing_commit_is_a_problem() {
    let f = fixture();
    let dir = f.tmp.path().join("ghost.git");
    copy_dir(&f.mirror, &dir);
    let ghost = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(dir.join("refs/heads")).unwrap();
    std::fs::write(dir.join("refs/heads/ghost"), format!("{ghost}\n")).unwrap();
    // And a branch pointing at a blob: the wrong type.
    let blob = git(&dir, &["rev-parse", "main:a.txt"]).trim().to_owned();
    std::fs::write(dir.join("refs/heads/blobby"), format!("{blob}\n")).unwrap();
    let report = run_fsck(&dir);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("refs/heads/ghost") && p.contains(ghost) && p.contains("missing")),
        "{:#?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("refs/heads/blobby")
                && p.contains(&blob)
                && p.contains("not a commit")),
        "{:#?}",
        report.problems
    );
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
}

#[test]
fn garbled_ref_is_a_problem_not_an_error() {
    let f = fixture();
    let dir = f.tmp.path().join("garbled.git");
    copy_dir(&f.mirror, &dir);
    std::fs::create_dir_all(dir.join("refs/heads")).unwrap();
    std::fs::write(dir.join("refs/heads/garbled"), "not an object id\n").unwrap();
    let report = run_fsck(&dir);
    assert!(
        report.problems.iter().any(|p| p.contains("garbled")),
        "{:#?}",
        report.problems
    );
    // The other refs were still walked.
    assert_eq!(report.reachable, run_fsck(&f.mirror).reachable);
}

#[test]
fn empty_repository_is_sound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty.git");
    git(tmp.path(), &["init", "-q", "--bare", dir.to_str().unwrap()]);
    let report = run_fsck(&dir);
    assert_eq!(
        report,
        FsckReport {
            objects: 0,
            reachable: 0,
            refs: 0,
            commits: 0,
            problems: Vec::new(),
            coverage: Coverage::Everything,
        }
    );
}

#[test]
fn not_a_repository_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(fsck(tmp.path(), &AtomicBool::new(false)).is_err());
    assert!(count_commits(tmp.path(), "HEAD").is_err());
}

#[test]
fn count_commits_matches_rev_list() {
    let f = fixture();
    let rev_list = |tip: &str| -> u64 {
        git(&f.mirror, &["rev-list", "--count", tip])
            .trim()
            .parse()
            .unwrap()
    };
    let older = git(&f.mirror, &["rev-parse", "main~2"]).trim().to_owned();
    for tip in [
        "refs/heads/main",
        "refs/heads/feature",
        "HEAD",
        "refs/tags/outer",
        "refs/tags/light",
        older.as_str(),
    ] {
        assert_eq!(
            count_commits(&f.mirror, tip).unwrap(),
            rev_list(tip),
            "{tip}"
        );
    }
    assert!(count_commits(&f.mirror, "refs/heads/nope").is_err());
    assert!(count_commits(&f.mirror, "refs/tags/a-blob").is_err());
}

#[test]
fn advertised_refs_match_ls_remote_after_clone_and_fetch() {
    for cli in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        build_source(&src);
        let mut remote = Remote::anonymous(file_url(&src));
        if cli {
            // Any CA sends the fetch through the git CLI (unused by a file:// remote).
            remote = remote.with_ca("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
        }
        let dir = tmp.path().join("mirror.git");
        let first = run_mirror(&dir, &remote);
        assert!(first.cloned);
        let expected = ls_remote_by_git(&src);
        assert!(expected.contains_key("refs/tags/outer"));
        assert!(expected.contains_key("refs/pull/1/head"));
        assert!(!expected.contains_key("refs/pull/1/merge"));
        assert_eq!(first.advertised, expected, "clone, cli: {cli}");
        assert_eq!(first.advertised, first.inventory.refs, "cli: {cli}");
        // Annotated tags map to the tag object.
        assert_eq!(
            git(
                &src,
                &["cat-file", "-t", &first.advertised["refs/tags/outer"]]
            )
            .trim(),
            "tag"
        );

        git(&src, &["branch", "added", "main~1"]);
        git(&src, &["tag", "-a", "v2", "-m", "version 2"]);
        git(&src, &["update-ref", "refs/pull/2/merge", "main"]);
        let second = run_mirror(&dir, &remote);
        assert!(!second.cloned);
        let expected = ls_remote_by_git(&src);
        assert!(expected.contains_key("refs/heads/added"));
        assert!(expected.contains_key("refs/tags/v2"));
        assert_eq!(second.advertised, expected, "fetch, cli: {cli}");
        assert_eq!(second.advertised, second.inventory.refs, "cli: {cli}");
        assert!(run_fsck(&dir).is_sound());
    }
}

#[test]
fn problems_are_capped() {
    let f = fixture();
    let dir = f.tmp.path().join("many.git");
    copy_dir(&f.mirror, &dir);
    std::fs::create_dir_all(dir.join("refs/heads")).unwrap();
    for i in 0..(MAX_PROBLEMS + 5) {
        std::fs::write(
            dir.join(format!("refs/heads/ghost{i}")),
            format!("{:040x}\n", i + 1),
        )
        .unwrap();
    }
    let report = run_fsck(&dir);
    assert_eq!(
        report.problems.len(),
        MAX_PROBLEMS + 1,
        "{:#?}",
        report.problems
    );
    assert_eq!(
        report.problems.last().map(String::as_str),
        Some("... and 5 more problems.")
    );
}

/// Times [`fsck`] against `git fsck --full` on a generated ~5k-commit repository; prints both.
#[test]
fn fsck_timing_against_git_fsck_on_5k_commits() {
    const COMMITS: usize = 5000;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big.git");
    git(tmp.path(), &["init", "-q", "--bare", src.to_str().unwrap()]);
    // fast-import: each commit rewrites one of 200 files in 20 directories.
    let mut stream = String::new();
    for i in 0..COMMITS {
        let content = format!("file content {i}\n{}\n", "x".repeat(i % 97));
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{}\ncommitter C <c@example.com> {} +0000\ndata {}\ncommit {i}\n",
            i + 1,
            1_700_000_000 + i,
            format!("commit {i}").len() + 1,
        ));
        if i > 0 {
            stream.push_str(&format!("from :{i}\n"));
        }
        stream.push_str(&format!(
            "M 100644 inline d{}/f{}.txt\ndata {}\n{content}\n",
            i % 20,
            i % 200,
            content.len()
        ));
    }
    let mut child = git_cmd(&src)
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
    git(&src, &["repack", "-adq"]);

    let dir = tmp.path().join("mirror.git");
    run_mirror(&dir, &Remote::anonymous(file_url(&src)));
    assert_eq!(
        count_commits(&dir, "refs/heads/main").unwrap(),
        COMMITS as u64
    );

    let started = Instant::now();
    let report = run_fsck(&dir);
    let ours = started.elapsed();
    assert!(report.is_sound(), "{:#?}", report.problems);
    assert_eq!(report.reachable, reachable_by_git(&dir));

    let started = Instant::now();
    git(&dir, &["fsck", "--full", "--no-dangling"]);
    let theirs = started.elapsed();
    println!(
        "fsck of {COMMITS} commits, {} objects: repovault {:.3} s, git fsck --full {:.3} s",
        report.objects,
        ours.as_secs_f64(),
        theirs.as_secs_f64()
    );
}
