//! Creating or updating a bare mirror with gix, with progress.
//!
//! The steps live beside this file: opening a mirror isolated from configuration
//! (`mirror_open.rs`), the fetch itself (`mirror_fetch.rs`) with its ref edits
//! (`mirror_refs.rs`), and reading what a mirror holds (`mirror_inventory.rs`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool, mpsc},
    time::Duration,
};

use super::{
    FetchOutcome, GitProgress, Remote,
    counting_progress::{self as progress, Counters, Snapshot},
    git_error::GitError,
    mirror_fetch::{Fetched, fetch_any},
    mirror_inventory::inventory,
    mirror_open::{ensure_mirror_config, open, open_options},
};

/// How often progress is reported: four times a second is smooth enough for a progress line
/// and few enough reports not to matter next to a transfer.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Creates or updates the bare mirror at `dir` from `remote`.
///
/// If `dir` holds no repository (missing or empty directory), the mirror is built in a
/// temporary sibling directory and renamed into place on success, so a failed first clone
/// leaves nothing behind. Otherwise the repository is opened (isolated from user and system
/// configuration) and fetched into.
///
/// After a successful call the mirror's refs equal the remote's refs under `refs/` except
/// `refs/pull/*/merge`: new and force-pushed refs are written (packed), refs deleted at the
/// source are deleted here (listed in [`FetchOutcome::pruned`]) and `HEAD` follows the remote's
/// symbolic `HEAD`. Refs are never pruned when the remote advertised no refs; a remote that
/// advertises no refs at all (an empty repository) is a success with an empty inventory.
/// A remote that advertises refs none of which map is [`GitError::EmptyMapping`].
///
/// `progress` is called from the calling thread a few times per second and once at the end.
/// Setting `should_interrupt` aborts the transfer with [`GitError::Interrupted`].
pub fn mirror(
    dir: &Path,
    remote: &Remote,
    progress: &dyn Fn(GitProgress),
    should_interrupt: &AtomicBool,
) -> Result<FetchOutcome, GitError> {
    let url = remote.checked_url()?;
    let counters = Arc::new(Counters::default());
    let outcome = with_progress(&counters, progress, &url, || {
        mirror_blocking(dir, remote, &url, &counters, should_interrupt)
    })?;
    counters.set_phase(progress::PHASE_DONE);
    report(counters.snapshot(), progress);
    Ok(outcome)
}

fn report(s: Snapshot, progress: &dyn Fn(GitProgress)) {
    progress(GitProgress {
        phase: s.phase,
        objects: s.objects,
        total_objects: s.total_objects,
        bytes: s.bytes,
    });
}

/// Runs `work` on a thread of its own and, on this one, reports `counters` through `progress`
/// every [`PROGRESS_INTERVAL`] in which they changed, until `work` ends. `progress` stays on
/// the calling thread because it need not be `Send`.
fn with_progress<T: Send>(
    counters: &Counters,
    progress: &dyn Fn(GitProgress),
    url: &str,
    work: impl FnOnce() -> Result<T, GitError> + Send,
) -> Result<T, GitError> {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let result = work();
            drop(done_tx);
            result
        });
        let mut last = None;
        while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(PROGRESS_INTERVAL) {
            let now = counters.snapshot();
            if last != Some(now) {
                report(now, progress);
                last = Some(now);
            }
        }
        match worker.join() {
            Ok(result) => result,
            Err(_) => Err(GitError::Other {
                context: format!("mirror {url}"),
                detail: "the fetch thread panicked".into(),
            }),
        }
    })
}

fn mirror_blocking(
    dir: &Path,
    remote: &Remote,
    url: &str,
    counters: &Arc<Counters>,
    should_interrupt: &AtomicBool,
) -> Result<FetchOutcome, GitError> {
    let fresh = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
        Err(err) => return Err(GitError::io(format!("reading {}", dir.display()), err)),
    };
    if fresh {
        clone_into_place(dir, remote, url, counters, should_interrupt)
    } else {
        let repo = open(dir, remote.secret())?;
        ensure_mirror_config(&repo, dir)?;
        let fetched = fetch_any(repo, dir, remote, url, counters, should_interrupt)?;
        outcome(dir, fetched, false)
    }
}

/// Builds a new mirror in a staging directory beside `dir` and renames it to `dir` once the
/// fetch succeeded; on failure the staging directory is removed and `dir` left as it was.
fn clone_into_place(
    dir: &Path,
    remote: &Remote,
    url: &str,
    counters: &Arc<Counters>,
    should_interrupt: &AtomicBool,
) -> Result<FetchOutcome, GitError> {
    let parent = parent_of(dir)?;
    std::fs::create_dir_all(&parent)
        .map_err(|e| GitError::io(format!("creating {}", parent.display()), e))?;
    let staging = tempfile::Builder::new()
        .prefix(".repovault-clone-")
        .tempdir_in(&parent)
        .map_err(|e| {
            GitError::io(
                format!("creating a staging directory in {}", parent.display()),
                e,
            )
        })?;
    let repo_dir = staging.path().join("mirror.git");
    let repo = init_mirror(&repo_dir, remote)?;
    let fetched = fetch_any(repo, &repo_dir, remote, url, counters, should_interrupt)?;

    if dir.exists() {
        // An empty directory: rename(2) cannot replace it on every platform.
        std::fs::remove_dir(dir)
            .map_err(|e| GitError::io(format!("replacing {}", dir.display()), e))?;
    }
    std::fs::rename(&repo_dir, dir)
        .map_err(|e| GitError::io(format!("moving the new mirror to {}", dir.display()), e))?;
    drop(staging);
    outcome(dir, fetched, true)
}

/// The directory `dir` is in (the current one for a bare name).
fn parent_of(dir: &Path) -> Result<PathBuf, GitError> {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_owned()),
        _ => std::env::current_dir().map_err(|e| GitError::io("current directory", e)),
    }
}

/// Initialises an empty bare mirror at `repo_dir`, configured as [`open`] would open it.
fn init_mirror(repo_dir: &Path, remote: &Remote) -> Result<gix::Repository, GitError> {
    let init_opts = gix::create::Options {
        destination_must_be_empty: Some(true),
        ..Default::default()
    };
    let repo = gix::ThreadSafeRepository::init_opts(
        repo_dir,
        gix::create::Kind::Bare,
        init_opts,
        open_options(remote.secret()),
    )
    .map_err(|e| GitError::Other {
        context: format!("initialising a mirror in {}", repo_dir.display()),
        detail: e.to_string(),
    })?
    .to_thread_local();
    ensure_mirror_config(&repo, repo_dir)?;
    Ok(repo)
}

/// The outcome of a fetch into the mirror at `dir`, with its inventory read from the mirror
/// opened again: an object store sizes itself by the packs present at open, and the fetch has
/// just written one.
fn outcome(dir: &Path, fetched: Fetched, cloned: bool) -> Result<FetchOutcome, GitError> {
    let Fetched {
        bytes_received,
        pruned,
        advertised,
    } = fetched;
    Ok(FetchOutcome {
        inventory: inventory(dir)?,
        bytes_received,
        pruned,
        cloned,
        advertised,
    })
}
