//! Bare mirrors with gix: clone, fetch with pruning, inventory.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{Arc, atomic::AtomicBool, atomic::Ordering, mpsc},
    time::Duration,
};

use gix::{
    bstr::{BString, ByteSlice},
    refs::{
        Target,
        transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog},
    },
    remote::{Direction, fetch::Tags},
};

use repovault_common::redact::scrub;

use super::{
    FetchOutcome, GitProgress, Inventory, Remote,
    error::{GitError, classify},
    progress::{self, Counters},
};

/// The refspecs of a mirror: every ref, forced, except the merge refs GitHub regenerates.
const REFSPECS: [&str; 2] = ["+refs/*:refs/*", "^refs/pull/*/merge"];

/// How often progress is reported.
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
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let result = std::thread::scope(|scope| {
        let worker = scope.spawn({
            let counters = counters.clone();
            let url = url.as_str();
            move || {
                let result = mirror_blocking(dir, remote, url, &counters, should_interrupt);
                drop(done_tx);
                result
            }
        });
        let report = |counters: &Counters| {
            let s = counters.snapshot();
            progress(GitProgress {
                phase: s.phase,
                objects: s.objects,
                bytes: s.bytes,
            });
        };
        let mut last = None;
        while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(PROGRESS_INTERVAL) {
            let now = counters.snapshot();
            if last != Some(now) {
                report(&counters);
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
    })?;
    counters.set_phase(progress::PHASE_DONE);
    let s = counters.snapshot();
    progress(GitProgress {
        phase: s.phase,
        objects: s.objects,
        bytes: s.bytes,
    });
    Ok(result)
}

/// Lists the refs of the repository at `dir`, its `HEAD` and its commit count.
pub fn inventory(dir: &Path) -> Result<Inventory, GitError> {
    let repo = open(dir, None)?;
    inventory_of(&repo, dir)
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
    if !fresh {
        let repo = open(dir, remote.secret())?;
        ensure_mirror_config(&repo, dir)?;
        let Fetched {
            bytes_received,
            pruned,
            advertised,
        } = fetch_any(repo, dir, remote, url, counters, should_interrupt)?;
        // Reopen: the object store sizes itself by the packs present at open.
        let inventory = inventory(dir)?;
        return Ok(FetchOutcome {
            inventory,
            bytes_received,
            pruned,
            cloned: false,
            advertised,
        });
    }

    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::env::current_dir().map_err(|e| GitError::io("current directory", e))?,
    };
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
    let init_opts = gix::create::Options {
        destination_must_be_empty: Some(true),
        ..Default::default()
    };
    let repo = gix::ThreadSafeRepository::init_opts(
        &repo_dir,
        gix::create::Kind::Bare,
        init_opts,
        open_options(remote.secret()),
    )
    .map_err(|e| GitError::Other {
        context: format!("initialising a mirror in {}", repo_dir.display()),
        detail: e.to_string(),
    })?
    .to_thread_local();
    ensure_mirror_config(&repo, &repo_dir)?;
    let Fetched {
        bytes_received,
        pruned,
        advertised,
    } = fetch_any(repo, &repo_dir, remote, url, counters, should_interrupt)?;

    if dir.exists() {
        // An empty directory: rename(2) cannot replace it on every platform.
        std::fs::remove_dir(dir)
            .map_err(|e| GitError::io(format!("replacing {}", dir.display()), e))?;
    }
    std::fs::rename(&repo_dir, dir)
        .map_err(|e| GitError::io(format!("moving the new mirror to {}", dir.display()), e))?;
    drop(staging);
    let inventory = inventory(dir)?;
    Ok(FetchOutcome {
        inventory,
        bytes_received,
        pruned,
        cloned: true,
        advertised,
    })
}

/// Options to open a mirror: no user, system or environment configuration; the auth header and
/// a committer identity only in memory.
fn open_options(auth_header: Option<&str>) -> gix::open::Options {
    let mut overrides: Vec<BString> = vec![
        "user.name=repovault".into(),
        "user.email=repovault@localhost".into(),
        "core.logAllRefUpdates=false".into(),
    ];
    if let Some(header) = auth_header {
        overrides.push(format!("http.extraHeader={header}").into());
    }
    gix::open::Options::isolated()
        .config_overrides(overrides)
        .strict_config(true)
}

/// Opens the bare repository at `dir` isolated from user and system configuration.
pub(super) fn open(dir: &Path, auth_header: Option<&str>) -> Result<gix::Repository, GitError> {
    let repo =
        gix::open_opts(dir, open_options(auth_header)).map_err(|e| GitError::NotARepository {
            path: dir.to_owned(),
            reason: format!("cannot open as a git repository: {e}"),
        })?;
    if !repo.is_bare() {
        return Err(GitError::NotARepository {
            path: dir.to_owned(),
            reason: "not a bare repository".into(),
        });
    }
    Ok(repo)
}

/// Writes `gc.auto=0` to the mirror's own config file if it is not set yet: the mirror's packs
/// must stay byte-identical between fetches; repacking is scheduled by us.
fn ensure_mirror_config(repo: &gix::Repository, dir: &Path) -> Result<(), GitError> {
    if repo.config_snapshot().integer("gc.auto") == Some(0) {
        return Ok(());
    }
    let path = repo.path().join("config");
    let mut file =
        gix::config::File::from_path_no_includes(path.clone(), gix::config::Source::Local)
            .map_err(|e| GitError::Other {
                context: format!("reading {}", path.display()),
                detail: e.to_string(),
            })?;
    file.set_raw_value("gc.auto", "0")
        .map_err(|e| GitError::Other {
            context: format!("setting gc.auto in {}", dir.display()),
            detail: e.to_string(),
        })?;
    let mut bytes = Vec::new();
    file.write_to(&mut bytes)
        .map_err(|e| GitError::io(format!("serialising {}", path.display()), e))?;
    write_atomically(&path, &bytes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GitError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| GitError::io(format!("writing {}", path.display()), e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| GitError::io(format!("writing {}", path.display()), e))?;
    tmp.persist(path)
        .map_err(|e| GitError::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

/// Refuses every credential request so gix never prompts; our only credential is the header.
fn refuse_credentials(
    action: gix::credentials::helper::Action,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    match action {
        gix::credentials::helper::Action::Get(_) => Err(gix::error::unauthenticated(
            "the remote asked for credentials and none are configured (or the token was refused)",
        )
        .unauthenticated_error()),
        _ => Ok(None),
    }
}

/// What one fetch did.
struct Fetched {
    /// Bytes of pack data received (the object store's growth on the git CLI path).
    bytes_received: u64,
    /// Refs deleted because the remote no longer has them.
    pruned: Vec<String>,
    /// See [`FetchOutcome::advertised`].
    advertised: BTreeMap<String, String>,
}

/// Whether the mirror refspecs exclude `name` (GitHub's regenerated `refs/pull/N/merge`; the
/// negative refspec `^refs/pull/*/merge` of [`REFSPECS`], where `*` matches one or more
/// path components).
fn excluded_by_refspec(name: &str) -> bool {
    name.strip_prefix("refs/pull/")
        .and_then(|rest| rest.strip_suffix("/merge"))
        .is_some_and(|middle| !middle.is_empty())
}

/// [`fetch`] with gix, or with the git CLI when the remote has its own CA (gix's reqwest
/// transport cannot be told to trust it). Consumes `repo`: the CLI path reopens the mirror to
/// see what the child process wrote.
fn fetch_any(
    repo: gix::Repository,
    dir: &Path,
    remote: &Remote,
    url: &str,
    counters: &Arc<Counters>,
    should_interrupt: &AtomicBool,
) -> Result<Fetched, GitError> {
    if remote.ca_cert_pem.is_none() {
        return fetch(&repo, remote, url, counters, should_interrupt);
    }
    let before = inventory_of(&repo, dir)?.refs;
    drop(repo);
    // The git CLI reports no byte count we can read: what the object store grew by is close.
    let objects = dir.join("objects");
    let size_before = crate::cache::dir_size(&objects);
    // The git CLI reports no ref listing of its own: list the remote first, with the same
    // isolated child and credentials in the environment. Race: a push between this listing and
    // the fetch makes the mirror hold newer refs than `advertised` says; a verification then
    // reports a mismatch that the next backup clears (the gix path has no such window: its
    // listing is the fetch's own).
    counters.set_phase(progress::PHASE_LISTING);
    let advertised = super::cli::ls_remote(remote)?
        .into_iter()
        .filter(|(name, _)| !excluded_by_refspec(name))
        .collect();
    counters.set_phase(progress::PHASE_RECEIVING);
    super::cli::fetch_mirror(dir, remote)?;
    let after = inventory(dir)?.refs;
    let pruned = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .cloned()
        .collect();
    let received = crate::cache::dir_size(&objects).saturating_sub(size_before);
    Ok(Fetched {
        bytes_received: received,
        pruned,
        advertised,
    })
}

/// Fetches every ref of `remote` into `repo`, pruning refs gone at the source.
fn fetch(
    repo: &gix::Repository,
    remote: &Remote,
    url: &str,
    counters: &Arc<Counters>,
    should_interrupt: &AtomicBool,
) -> Result<Fetched, GitError> {
    let secret = remote.auth_header.as_ref();
    let gix_err = |doing: &'static str| move |e: gix::Error| classify(&e, url, doing, secret);

    counters.set_phase(progress::PHASE_CONNECTING);
    let gix_remote = repo
        .remote_at(url)
        .map_err(|e| GitError::InvalidUrl {
            url: url.to_owned(),
            reason: scrub(&e.to_string(), secret),
        })?
        .with_refspecs(REFSPECS, Direction::Fetch)
        .map_err(gix_err("configure refspecs for"))?
        .with_fetch_tags(Tags::None);
    let connection = gix_remote
        .connect(Direction::Fetch)
        .map_err(gix_err("connect"))?
        .with_credentials(refuse_credentials);

    counters.set_phase(progress::PHASE_LISTING);
    let options = gix::remote::ref_map::Options {
        // With `true`, gix sends `ref-prefix refs/*`, which matches nothing on the server.
        prefix_from_spec_as_filter_on_remote: false,
        ..Default::default()
    };
    let prepare = connection
        .prepare_fetch(counters.root(), options)
        .map_err(gix_err("list refs of"))?;

    let ref_map = prepare.ref_map();
    let remote_head = ref_map.remote_refs.iter().find_map(|r| match r {
        gix::protocol::handshake::Ref::Symbolic {
            full_ref_name,
            target,
            ..
        }
        | gix::protocol::handshake::Ref::Unborn {
            full_ref_name,
            target,
        } if full_ref_name == "HEAD" => Some(HeadTarget::Symbolic(target.clone())),
        gix::protocol::handshake::Ref::Direct {
            full_ref_name,
            object,
        } if full_ref_name == "HEAD" => Some(HeadTarget::Detached(*object)),
        _ => None,
    });
    let advertised = ref_map
        .remote_refs
        .iter()
        .filter(|r| !matches!(r, gix::protocol::handshake::Ref::Unborn { .. }))
        .filter(|r| r.unpack().0 != "HEAD")
        .count();
    // What the mirror maps, as advertised (unpeeled: `unpack().1` is the tag object for an
    // annotated tag). The mappings already apply the negative refspec.
    let advertised_refs: BTreeMap<String, String> = ref_map
        .mappings
        .iter()
        .filter(|m| m.local.is_some())
        .filter_map(|m| match &m.remote {
            gix::remote::fetch::refmap::Source::Ref(r) => {
                let (name, id, _) = r.unpack();
                Some((name.to_str_lossy().into_owned(), id?.to_hex().to_string()))
            }
            gix::remote::fetch::refmap::Source::ObjectId(_) => None,
        })
        .collect();
    let wanted: BTreeSet<BString> = ref_map
        .mappings
        .iter()
        .filter_map(|m| m.local.clone())
        .collect();

    if wanted.is_empty() {
        if advertised > 0 {
            return Err(GitError::EmptyMapping {
                url: url.to_owned(),
                advertised,
            });
        }
        // An empty repository: nothing to receive and nothing to prune.
        drop(prepare);
        counters.set_phase(progress::PHASE_UPDATING_REFS);
        set_head(repo, remote_head.as_ref(), url)?;
        return Ok(Fetched {
            bytes_received: 0,
            pruned: Vec::new(),
            advertised: BTreeMap::new(),
        });
    }

    // Prune before receiving: after it, `df` -> `df/child` would leave both.
    let stale = local_refs(repo, url)?
        .into_keys()
        .filter(|name| !wanted.contains(name.as_bytes().as_bstr()))
        .collect::<Vec<_>>();
    if !stale.is_empty() {
        let edits = stale
            .iter()
            .map(|name| -> Result<RefEdit, GitError> {
                Ok(RefEdit {
                    change: Change::Delete {
                        expected: PreviousValue::Any,
                        log: RefLog::AndReference,
                    },
                    name: name.as_str().try_into().map_err(
                        |e: gix::validate::reference::name::Error| GitError::Other {
                            context: format!("pruning {name} from the mirror of {url}"),
                            detail: e.to_string(),
                        },
                    )?,
                    deref: false,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        repo.edit_references(edits).map_err(|e| GitError::Other {
            context: format!("pruning refs deleted at {url}"),
            detail: e.to_string(),
        })?;
        tracing::info!(
            url,
            pruned = stale.len(),
            "pruned refs deleted at the source"
        );
    }
    if should_interrupt.load(Ordering::Relaxed) {
        return Err(GitError::Interrupted {
            url: url.to_owned(),
        });
    }

    let outcome = prepare
        .with_write_packed_refs_only(true)
        .with_reflog_message(gix::remote::fetch::RefLogMessage::Prefixed {
            action: "repovault mirror".into(),
        })
        .receive(counters.root(), should_interrupt)
        .map_err(|e| {
            if should_interrupt.load(Ordering::Relaxed) {
                GitError::Interrupted {
                    url: url.to_owned(),
                }
            } else {
                classify(&e, url, "fetch from", secret)
            }
        })?;
    counters.set_phase(progress::PHASE_UPDATING_REFS);

    let update_refs = match &outcome.status {
        gix::remote::fetch::Status::NoPackReceived { update_refs, .. }
        | gix::remote::fetch::Status::Change { update_refs, .. } => update_refs,
    };
    let rejected: Vec<String> = update_refs
        .iter_mapping_updates(
            &outcome.ref_map.mappings,
            &outcome.ref_map.refspecs,
            &outcome.ref_map.extra_refspecs,
        )
        .filter(|(update, ..)| is_rejected(&update.mode))
        .map(|(update, mapping, ..)| {
            let name = mapping.local.as_ref().map_or_else(
                || {
                    mapping
                        .remote
                        .as_name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                },
                |l| l.to_string(),
            );
            format!("{name} ({})", update.mode)
        })
        .collect();
    if !rejected.is_empty() {
        return Err(GitError::RefsRejected {
            url: url.to_owned(),
            refs: rejected.join(", "),
        });
    }
    set_head(repo, remote_head.as_ref(), url)?;
    Ok(Fetched {
        bytes_received: counters.bytes_received(),
        pruned: stale,
        advertised: advertised_refs,
    })
}

fn is_rejected(mode: &gix::remote::fetch::refs::update::Mode) -> bool {
    use gix::remote::fetch::refs::update::Mode;
    matches!(
        mode,
        Mode::RejectedSourceObjectNotFound { .. }
            | Mode::RejectedTagUpdate
            | Mode::RejectedNonFastForward
            | Mode::RejectedToReplaceWithUnborn
            | Mode::RejectedCurrentlyCheckedOut { .. }
    )
}

enum HeadTarget {
    Symbolic(BString),
    Detached(gix::ObjectId),
}

/// Points `HEAD` where the remote's `HEAD` points, if it says.
fn set_head(repo: &gix::Repository, head: Option<&HeadTarget>, url: &str) -> Result<(), GitError> {
    let Some(head) = head else { return Ok(()) };
    let new = match head {
        HeadTarget::Symbolic(target) => Target::Symbolic(target.as_bstr().try_into().map_err(
            |e: gix::validate::reference::name::Error| GitError::Other {
                context: format!("{url} HEAD points to an invalid ref name {target}"),
                detail: e.to_string(),
            },
        )?),
        HeadTarget::Detached(id) => Target::Object(*id),
    };
    let current = repo.find_reference("HEAD").ok().map(|r| r.inner.target);
    if current.as_ref() == Some(&new) {
        return Ok(());
    }
    let edit = RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "repovault mirror: HEAD follows the remote".into(),
            },
            expected: PreviousValue::Any,
            new,
        },
        name: "HEAD"
            .try_into()
            .map_err(|e: gix::validate::reference::name::Error| GitError::Other {
                context: "HEAD".into(),
                detail: e.to_string(),
            })?,
        deref: false,
    };
    repo.edit_reference(edit).map_err(|e| GitError::Other {
        context: format!("setting HEAD of the mirror of {url}"),
        detail: e.to_string(),
    })?;
    Ok(())
}

/// Every ref under `refs/` with its own target.
fn local_refs(repo: &gix::Repository, what: &str) -> Result<BTreeMap<String, Target>, GitError> {
    let err = |e: gix::Error| GitError::Other {
        context: format!("listing refs of {what}"),
        detail: e.to_string(),
    };
    let platform = repo.references().map_err(err)?;
    let mut refs = BTreeMap::new();
    for reference in platform.all().map_err(err)? {
        let reference = reference.map_err(err)?;
        let name = reference.name().as_bstr().to_str_lossy().into_owned();
        if name.starts_with("refs/") {
            refs.insert(name, reference.inner.target.clone());
        }
    }
    Ok(refs)
}

fn inventory_of(repo: &gix::Repository, dir: &Path) -> Result<Inventory, GitError> {
    let what = dir.display().to_string();
    let err = |e: gix::Error| GitError::Other {
        context: format!("reading {what}"),
        detail: e.to_string(),
    };
    let local = local_refs(repo, &what)?;
    let mut refs = BTreeMap::new();
    let mut tips = BTreeSet::new();
    for (name, target) in &local {
        let value = match target {
            Target::Object(id) => {
                // Peel tags to find commits; refs to trees or blobs have no commits.
                let peeled = repo
                    .find_object(*id)
                    .map_err(err)?
                    .peel_tags_to_end()
                    .map_err(err)?;
                if peeled.kind == gix::object::Kind::Commit {
                    tips.insert(peeled.id);
                }
                id.to_hex().to_string()
            }
            Target::Symbolic(target) => format!("ref: {}", target.as_bstr()),
        };
        refs.insert(name.clone(), value);
    }
    let head = match repo.find_reference("HEAD") {
        Ok(r) => match r.inner.target {
            Target::Symbolic(target) => Some(target.as_bstr().to_str_lossy().into_owned()),
            Target::Object(_) => None,
        },
        Err(_) => None,
    };
    let commits = if tips.is_empty() {
        0
    } else {
        let mut n = 0u64;
        for info in repo.rev_walk(tips).all().map_err(err)? {
            info.map_err(err)?;
            n += 1;
        }
        n
    };
    let count = |prefix: &str| refs.keys().filter(|k| k.starts_with(prefix)).count() as u64;
    Ok(Inventory {
        branches: count("refs/heads/"),
        tags: count("refs/tags/"),
        refs,
        head,
        commits,
    })
}

/// Number of files (blobs, links) in the tree `HEAD` points to: a wiki's page count (GitHub
/// wikis are one file per page, sidebars and footers included). 0 for an empty repository.
pub fn files_at_head(dir: &Path) -> Result<u64, GitError> {
    let repo = open(dir, None)?;
    let what = dir.display().to_string();
    let err = |e: gix::Error| GitError::Other {
        context: format!("reading the tree of HEAD in {what}"),
        detail: e.to_string(),
    };
    let Ok(commit) = repo.head_commit() else {
        return Ok(0);
    };
    let tree = commit.tree().map_err(&err)?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).map_err(&err)?;
    Ok(recorder
        .records
        .iter()
        .filter(|e| !e.mode.is_tree() && !e.mode.is_commit())
        .count() as u64)
}
