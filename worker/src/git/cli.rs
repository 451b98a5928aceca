//! `ls-remote`, pushes (gix has no push) and fetches from remotes with their own CA (gix's
//! reqwest transport ignores `http.sslCAInfo`) with the git CLI.
//!
//! The child never reads user or system configuration (`GIT_CONFIG_NOSYSTEM`,
//! `GIT_CONFIG_GLOBAL=/dev/null`, a throw-away `HOME`), never prompts (`GIT_TERMINAL_PROMPT=0`),
//! and receives the auth header only through `GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`; a CA
//! certificate is written into the throw-away `HOME` and named by `http.sslCAInfo` there too.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Output, Stdio},
};

use repovault_common::redact::scrub;

use super::{Remote, git_error::GitError};

/// The result of [`push_mirror`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Number of refs created or updated on the target.
    pub refs_pushed: u64,
}

/// Lists the refs of `remote` under `refs/` (not `HEAD`, not peeled `^{}` entries), by full name,
/// to hex ids.
pub fn ls_remote(remote: &Remote) -> Result<BTreeMap<String, String>, GitError> {
    let url = remote.checked_url()?;
    let home =
        tempfile::tempdir().map_err(|e| GitError::io("creating a temporary HOME for git", e))?;
    let output = run(
        git(remote, home.path(), None)?.args(["ls-remote", "--", &url]),
        remote,
        &url,
        "ls-remote",
    )?;
    if !output.status.success() {
        return Err(classify_stderr(&output, &url, "list refs of", remote));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut refs = BTreeMap::new();
    for line in stdout.lines() {
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        if name.starts_with("refs/") && !name.ends_with("^{}") {
            refs.insert(name.to_owned(), id.to_owned());
        }
    }
    Ok(refs)
}

/// Pushes every ref of the bare repository at `bare_dir` to `remote`, which must have no refs.
///
/// The target is listed first; if it has any ref the push is refused with
/// [`GitError::TargetNotEmpty`] (a restore must never mix histories). Then `refs/*:refs/*` is
/// pushed without force, so the target ends with exactly the repository's refs; refs the target
/// rejects (e.g. hidden refs such as GitHub's `refs/pull/*`) are reported in
/// [`GitError::RefsRejected`] while the others stay pushed.
pub fn push_mirror(bare_dir: &Path, remote: &Remote) -> Result<PushOutcome, GitError> {
    let url = remote.checked_url()?;
    let existing = ls_remote(remote)?;
    if !existing.is_empty() {
        return Err(GitError::TargetNotEmpty {
            url,
            refs: existing.len(),
        });
    }
    push_refs(bare_dir, remote, &["refs/*:refs/*"])
}

/// Pushes `refspecs` (never forced) of the bare repository at `bare_dir` to `remote`, whatever
/// the remote holds: a ref already at the same id is "up to date" (not counted), one the
/// remote refuses (it moved elsewhere, a hidden namespace) is reported in
/// [`GitError::RefsRejected`] while the others stay pushed. Returns the refs created or updated.
pub fn push_refs(
    bare_dir: &Path,
    remote: &Remote,
    refspecs: &[&str],
) -> Result<PushOutcome, GitError> {
    let url = remote.checked_url()?;
    if !bare_dir.is_dir() {
        return Err(GitError::NotARepository {
            path: bare_dir.to_owned(),
            reason: "no such directory".into(),
        });
    }
    let home =
        tempfile::tempdir().map_err(|e| GitError::io("creating a temporary HOME for git", e))?;
    let output = run(
        git(remote, home.path(), Some(bare_dir))?
            .args(["push", "--porcelain", "--no-verify", "--", &url])
            .args(refspecs),
        remote,
        &url,
        "push",
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut pushed = 0u64;
    let mut rejected = Vec::new();
    for line in stdout.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(flag), Some(refs)) = (fields.next(), fields.next()) else {
            continue;
        };
        let summary = fields.next().unwrap_or("");
        match flag {
            "*" | " " | "+" => pushed += 1,
            "!" => rejected.push(format!(
                "{} ({summary})",
                refs.rsplit(':').next().unwrap_or(refs)
            )),
            _ => {}
        }
    }
    if !rejected.is_empty() {
        return Err(GitError::RefsRejected {
            url,
            refs: rejected.join(", "),
        });
    }
    if !output.status.success() {
        return Err(classify_stderr(&output, &url, "push to", remote));
    }
    Ok(PushOutcome {
        refs_pushed: pushed,
    })
}

/// Creates an empty bare repository at `dir` (a scratch restore target).
pub fn init_bare(dir: &Path) -> Result<(), GitError> {
    let home =
        tempfile::tempdir().map_err(|e| GitError::io("creating a temporary HOME for git", e))?;
    let output = git(&Remote::anonymous(""), home.path(), None)?
        .args(["init", "--bare", "--quiet"])
        .arg(dir)
        .output()
        .map_err(|e| GitError::io("running git init", e))?;
    if !output.status.success() {
        return Err(GitError::Other {
            context: format!("git init --bare {}", dir.display()),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Rewrites the bare repository at `dir` as one pack of what its refs reach and deletes every
/// unreachable object (`git repack -a -d`, then `git prune --expire=now`). Only for a mirror no
/// other process writes to (the worker holds its cache entry).
pub fn compact(dir: &Path) -> Result<(), GitError> {
    let home =
        tempfile::tempdir().map_err(|e| GitError::io("creating a temporary HOME for git", e))?;
    let local = Remote::anonymous(format!("file://{}", dir.display()));
    for args in [
        &["repack", "-a", "-d", "-q"][..],
        &["prune", "--expire=now"][..],
    ] {
        let output = git(&local, home.path(), Some(dir))?
            .args(args)
            .output()
            .map_err(|e| GitError::io(format!("running git {}", args[0]), e))?;
        if !output.status.success() {
            return Err(GitError::Other {
                context: format!("git {} in {}", args[0], dir.display()),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

/// A `git` command isolated from the environment's git configuration, with the auth header in
/// the environment only.
fn git(remote: &Remote, home: &Path, git_dir: Option<&Path>) -> Result<Command, GitError> {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    let mut config: Vec<(&str, String)> = Vec::new();
    if let Some(header) = remote.secret() {
        config.push(("http.extraHeader", header.to_string()));
    }
    if let Some(pem) = &remote.ca_cert_pem {
        let path = home.join("ca.pem");
        std::fs::write(&path, pem)
            .map_err(|e| GitError::io(format!("writing {}", path.display()), e))?;
        config.push(("http.sslCAInfo", path.to_string_lossy().into_owned()));
    }
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.into_iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    if let Some(dir) = git_dir {
        cmd.env("GIT_DIR", dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// `HEAD`'s symbolic target at `remote` (`refs/heads/main`), `None` when it has none (an empty
/// repository may still name one; a detached `HEAD` does not).
pub fn ls_remote_head(remote: &Remote) -> Result<Option<String>, GitError> {
    let url = remote.checked_url()?;
    let home =
        tempfile::tempdir().map_err(|e| GitError::io("creating a temporary HOME for git", e))?;
    let output = run(
        git(remote, home.path(), None)?.args(["ls-remote", "--symref", "--", &url, "HEAD"]),
        remote,
        &url,
        "ls-remote",
    )?;
    if !output.status.success() {
        return Err(classify_stderr(&output, &url, "list refs of", remote));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().find_map(|line| {
        let rest = line.strip_prefix("ref: ")?;
        let (target, name) = rest.split_once('\t')?;
        (name == "HEAD").then(|| target.to_string())
    }))
}

/// Fetches every ref of `remote` under `refs/` except `refs/pull/*/merge` into the bare
/// repository at `dir` (which must exist), pruning refs gone at the source, and points `HEAD`
/// where the remote's points. The git CLI counterpart of the gix fetch, for remotes with their
/// own CA. An empty remote is a success that changes nothing.
pub fn fetch_mirror(dir: &Path, remote: &Remote) -> Result<(), GitError> {
    let url = remote.checked_url()?;
    let home =
        tempfile::tempdir().map_err(|e| GitError::io("creating a temporary HOME for git", e))?;
    let output = run(
        git(remote, home.path(), Some(dir))?.args([
            // Keep what arrives as a pack, as gix does: a fetch adds one pack and leaves the
            // others byte-identical (git would explode small fetches into loose objects).
            "-c",
            "fetch.unpackLimit=1",
            "fetch",
            "--prune",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            "--",
            &url,
            "+refs/*:refs/*",
            "^refs/pull/*/merge",
        ]),
        remote,
        &url,
        "fetch",
    )?;
    if !output.status.success() {
        return Err(classify_stderr(&output, &url, "fetch from", remote));
    }
    if let Some(target) = ls_remote_head(remote)? {
        let output = run(
            git(remote, home.path(), Some(dir))?.args(["symbolic-ref", "HEAD", &target]),
            remote,
            &url,
            "symbolic-ref",
        )?;
        if !output.status.success() {
            return Err(classify_stderr(
                &output,
                &url,
                "set HEAD of the mirror of",
                remote,
            ));
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, remote: &Remote, url: &str, what: &str) -> Result<Output, GitError> {
    cmd.output().map_err(|e| {
        GitError::io(
            scrub(
                &format!("running git {what} for {url}"),
                remote.auth_header.as_ref(),
            ),
            e,
        )
    })
}

/// Maps a failed git command to a [`GitError`] by its stderr, scrubbed of the header.
fn classify_stderr(output: &Output, url: &str, doing: &str, remote: &Remote) -> GitError {
    let stderr = scrub(
        String::from_utf8_lossy(&output.stderr).trim(),
        remote.auth_header.as_ref(),
    );
    let lower = stderr.to_lowercase();
    let url = url.to_owned();
    let detail = if stderr.is_empty() {
        format!("git exited with {}", output.status)
    } else {
        stderr
    };
    if lower.contains("repository not found")
        || lower.contains("not exported")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("returned error: 404")
        || lower.contains("not found")
    {
        GitError::RepositoryNotFound { url, detail }
    } else if lower.contains("returned error: 451") {
        GitError::Unavailable { url, detail }
    } else if lower.contains("authentication failed")
        || lower.contains("returned error: 401")
        || lower.contains("returned error: 403")
        || lower.contains("could not read username")
        || lower.contains("permission denied")
    {
        GitError::AuthenticationFailed { url, detail }
    } else if lower.contains("connection refused")
        || lower.contains("could not resolve host")
        || lower.contains("unable to connect")
        || lower.contains("timed out")
        || lower.contains("failed to connect")
    {
        GitError::Unreachable { url, detail }
    } else {
        GitError::Other {
            context: format!("git {doing} {url}"),
            detail,
        }
    }
}
