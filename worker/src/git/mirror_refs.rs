//! The ref edits a fetch makes to a mirror beyond writing what it received: pruning refs gone
//! at the source, refusing a fetch whose ref updates gix rejected, and pointing `HEAD` where
//! the remote's does.

use std::collections::BTreeSet;

use gix::{
    bstr::{BString, ByteSlice},
    refs::{
        Target,
        transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog},
    },
};

use super::{git_error::GitError, mirror_inventory::local_refs};

/// Where the remote's `HEAD` points, as it advertised it.
pub(super) enum HeadTarget {
    Symbolic(BString),
    Detached(gix::ObjectId),
}

/// Deletes every ref under `refs/` of `repo` that is not in `wanted` (the refs the remote
/// advertised, mapped), and returns their names, sorted.
///
/// Runs before the pack is received: after it, a ref `df` replaced at the source by `df/child`
/// would leave both.
pub(super) fn prune_stale(
    repo: &gix::Repository,
    wanted: &BTreeSet<BString>,
    url: &str,
) -> Result<Vec<String>, GitError> {
    let stale = local_refs(repo, url)?
        .into_keys()
        .filter(|name| !wanted.contains(name.as_bytes().as_bstr()))
        .collect::<Vec<_>>();
    if stale.is_empty() {
        return Ok(stale);
    }
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
    Ok(stale)
}

/// Fails with [`GitError::RefsRejected`] naming every ref whose update gix refused: a mirror
/// that silently kept an old value would not equal its source.
pub(super) fn refuse_rejected(
    outcome: &gix::remote::fetch::Outcome,
    url: &str,
) -> Result<(), GitError> {
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
    if rejected.is_empty() {
        return Ok(());
    }
    Err(GitError::RefsRejected {
        url: url.to_owned(),
        refs: rejected.join(", "),
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

/// Points `HEAD` where the remote's `HEAD` points, if it says.
pub(super) fn set_head(
    repo: &gix::Repository,
    head: Option<&HeadTarget>,
    url: &str,
) -> Result<(), GitError> {
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
