//! Fetching every ref of a remote into a mirror, pruning refs gone at the source: with gix, or
//! with the git CLI when the remote has its own CA (gix's reqwest transport cannot be told to
//! trust it).
//!
//! Both paths leave the mirror's refs equal to what the remote advertised under `refs/`,
//! except `refs/pull/*/merge`, and report that advertisement in [`Fetched::advertised`].

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{Arc, atomic::AtomicBool, atomic::Ordering},
};

use gix::{
    bstr::{BString, ByteSlice},
    protocol::handshake::Ref,
    remote::{Direction, fetch::Tags},
};

use repovault_common::redact::scrub;

use super::{
    Remote,
    counting_progress::{self as progress, Counters},
    git_error::{GitError, classify},
    mirror_inventory::{inventory, inventory_of},
    mirror_refs::{HeadTarget, prune_stale, refuse_rejected, set_head},
};

/// The refspecs of a mirror: every ref, forced, except the merge refs GitHub regenerates.
const REFSPECS: [&str; 2] = ["+refs/*:refs/*", "^refs/pull/*/merge"];

/// What one fetch did.
pub(super) struct Fetched {
    /// Bytes of pack data received (the object store's growth on the git CLI path).
    pub(super) bytes_received: u64,
    /// Refs deleted because the remote no longer has them.
    pub(super) pruned: Vec<String>,
    /// See [`super::FetchOutcome::advertised`].
    pub(super) advertised: BTreeMap<String, String>,
}

/// Whether the mirror refspecs exclude `name` (GitHub's regenerated `refs/pull/N/merge`; the
/// negative refspec `^refs/pull/*/merge` of [`REFSPECS`], where `*` matches one or more
/// path components).
fn excluded_by_refspec(name: &str) -> bool {
    name.strip_prefix("refs/pull/")
        .and_then(|rest| rest.strip_suffix("/merge"))
        .is_some_and(|middle| !middle.is_empty())
}

/// Fetches `remote` into the mirror `repo` at `dir`: with gix, or with the git CLI when the
/// remote has its own CA. Consumes `repo`: the CLI path reopens the mirror to see what the
/// child process wrote.
pub(super) fn fetch_any(
    repo: gix::Repository,
    dir: &Path,
    remote: &Remote,
    url: &str,
    counters: &Arc<Counters>,
    should_interrupt: &AtomicBool,
) -> Result<Fetched, GitError> {
    if remote.ca_cert_pem.is_none() {
        tracing::info!(via = "gix", "fetching");
        return fetch_with_gix(&repo, remote, url, counters, should_interrupt);
    }
    // reqwest under gix trusts only the platform's roots: a remote with its own CA is fetched
    // by the git CLI, which is told the CA.
    tracing::info!(via = "git CLI", "fetching (the remote has its own CA)");
    let before = inventory_of(&repo, dir)?.refs;
    drop(repo);
    fetch_with_cli(dir, remote, &before, counters)
}

/// The git CLI path of [`fetch_any`]; `before` is the mirror's refs before the fetch.
fn fetch_with_cli(
    dir: &Path,
    remote: &Remote,
    before: &BTreeMap<String, String>,
    counters: &Counters,
) -> Result<Fetched, GitError> {
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

/// Fetches every ref of `remote` into `repo` with gix, pruning refs gone at the source.
fn fetch_with_gix(
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
    let listing = Listing::of(prepare.ref_map());

    if listing.wanted.is_empty() {
        drop(prepare);
        return fetch_nothing(repo, &listing, url, counters);
    }

    let pruned = prune_stale(repo, &listing.wanted, url)?;
    let interrupted = || GitError::Interrupted {
        url: url.to_owned(),
    };
    if should_interrupt.load(Ordering::Relaxed) {
        return Err(interrupted());
    }
    let outcome = prepare
        .with_write_packed_refs_only(true)
        .with_reflog_message(gix::remote::fetch::RefLogMessage::Prefixed {
            action: "repovault mirror".into(),
        })
        .receive(counters.root(), should_interrupt)
        .map_err(|e| {
            if should_interrupt.load(Ordering::Relaxed) {
                interrupted()
            } else {
                classify(&e, url, "fetch from", secret)
            }
        })?;
    counters.set_phase(progress::PHASE_UPDATING_REFS);
    refuse_rejected(&outcome, url)?;
    set_head(repo, listing.head.as_ref(), url)?;
    Ok(Fetched {
        bytes_received: counters.bytes_received(),
        pruned,
        advertised: listing.advertised,
    })
}

/// The end of a fetch whose remote advertised no ref the mirror maps: an empty repository
/// (nothing to receive, nothing to prune, only `HEAD` to follow) or, when it advertised refs
/// none of which map, [`GitError::EmptyMapping`].
fn fetch_nothing(
    repo: &gix::Repository,
    listing: &Listing,
    url: &str,
    counters: &Counters,
) -> Result<Fetched, GitError> {
    if listing.advertised_count > 0 {
        return Err(GitError::EmptyMapping {
            url: url.to_owned(),
            advertised: listing.advertised_count,
        });
    }
    counters.set_phase(progress::PHASE_UPDATING_REFS);
    set_head(repo, listing.head.as_ref(), url)?;
    Ok(Fetched {
        bytes_received: 0,
        pruned: Vec::new(),
        advertised: BTreeMap::new(),
    })
}

/// What the remote advertised, as the fetch needs it.
struct Listing {
    /// Where the remote's `HEAD` points; `None` if it did not say.
    head: Option<HeadTarget>,
    /// Refs advertised other than `HEAD` and unborn ones, mapped or not.
    advertised_count: usize,
    /// What the mirror maps, as advertised (unpeeled: the tag object for an annotated tag).
    advertised: BTreeMap<String, String>,
    /// The local names the mappings write: every other ref under `refs/` is stale.
    wanted: BTreeSet<BString>,
}

impl Listing {
    fn of(ref_map: &gix::remote::fetch::RefMap) -> Listing {
        let head = ref_map.remote_refs.iter().find_map(|r| match r {
            Ref::Symbolic {
                full_ref_name,
                target,
                ..
            }
            | Ref::Unborn {
                full_ref_name,
                target,
            } if full_ref_name == "HEAD" => Some(HeadTarget::Symbolic(target.clone())),
            Ref::Direct {
                full_ref_name,
                object,
            } if full_ref_name == "HEAD" => Some(HeadTarget::Detached(*object)),
            _ => None,
        });
        let advertised_count = ref_map
            .remote_refs
            .iter()
            .filter(|r| !matches!(r, Ref::Unborn { .. }))
            .filter(|r| r.unpack().0 != "HEAD")
            .count();
        // `unpack().1` is the advertised id, unpeeled. The mappings already apply the negative
        // refspec.
        let advertised = ref_map
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
        let wanted = ref_map
            .mappings
            .iter()
            .filter_map(|m| m.local.clone())
            .collect();
        Listing {
            head,
            advertised_count,
            advertised,
            wanted,
        }
    }
}
