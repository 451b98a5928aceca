//! The second pass of [`super::fsck`]: every ref points at an object of the right kind, and
//! everything reachable from the refs exists, has the kind its referrer says, and parses.
//!
//! gix-fsck's `Connectivity` checks one commit's tree only, so this walks every object
//! reachable from every ref itself (commits' parents and trees, trees' entries, tags' targets)
//! with a seen-set, as `git fsck --full` does minus reflogs (a mirror keeps none). Each problem
//! is one sentence naming the object and what refers to it.

use std::{
    collections::HashSet,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use gix::{
    ObjectId,
    bstr::ByteSlice as _,
    objs::{Find as _, FindHeader as _, Kind},
    refs::Target,
};

use super::fsck::{Problems, chain};

/// How many objects the walk visits between two looks at the interrupt flag: rare enough that
/// the looking is noise next to reading the objects, often enough that an interrupt is not
/// kept waiting.
const INTERRUPT_CHECK_EVERY: u64 = 4096;

/// A ref to check and walk from.
#[derive(Clone)]
pub(super) struct Root {
    pub(super) name: String,
    pub(super) id: ObjectId,
}

/// Every ref under `refs/` resolved to the object it points at (symbolic refs followed), plus
/// `HEAD` when it resolves; dangling symbolic refs (an unborn `HEAD`) are skipped, as git does.
/// Refs that cannot be read (a garbled loose ref, a broken `packed-refs`) are problems: they
/// are part of the backup.
pub(super) fn refs_to_check(repo: &gix::Repository, problems: &mut Problems) -> Vec<Root> {
    let mut roots = Vec::new();
    let mut push = |name: String, target: Target| match target {
        Target::Object(id) => roots.push(Root { name, id }),
        Target::Symbolic(target) => {
            if let Ok(mut reference) = repo.find_reference(target.as_ref())
                && let Ok(id) = reference.peel_to_id()
            {
                roots.push(Root {
                    name,
                    id: id.detach(),
                });
            }
        }
    };
    match all_refs(repo) {
        Ok(refs) => {
            for reference in refs {
                match reference {
                    Ok((name, target)) if name.starts_with("refs/") => push(name, target),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("A ref cannot be read: {}.", chain(&e))),
                }
            }
        }
        Err(e) => problems.push(format!("The refs cannot be listed: {}.", chain(&e))),
    }
    if let Ok(head) = repo.find_reference("HEAD") {
        push("HEAD".into(), head.inner.target.clone());
    }
    roots
}

/// Every ref of `repo` with its own target, or the error reading it; the outer error when the
/// refs cannot be listed at all.
#[allow(clippy::type_complexity)] // one use; a named type would hide the two levels of failure
fn all_refs(
    repo: &gix::Repository,
) -> Result<Vec<Result<(String, Target), gix::Error>>, gix::Error> {
    let platform = repo.references()?;
    let mut refs = Vec::new();
    for reference in platform.all()? {
        refs.push(reference.map(|reference| {
            (
                reference.name().as_bstr().to_str_lossy().into_owned(),
                reference.inner.target.clone(),
            )
        }));
    }
    Ok(refs)
}

/// Who refers to an object, for the problem sentences.
#[derive(Clone)]
enum Referrer {
    Ref(String),
    Object(Kind, ObjectId),
}

impl std::fmt::Display for Referrer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Referrer::Ref(name) => write!(f, "ref {name}"),
            Referrer::Object(kind, id) => write!(f, "{kind} {id}"),
        }
    }
}

/// An object to visit: its id, the kind its referrer says it has, and the referrer.
struct Pending {
    id: ObjectId,
    expected: Option<Kind>,
    referrer: Referrer,
}

/// The walk stopped because the caller's interrupt flag was set.
pub(super) struct Interrupted;

/// The connectivity walk over one repository.
pub(super) struct Walk<'a> {
    repo: &'a gix::Repository,
    problems: &'a mut Problems,
    /// Commits whose parents a shallow clone does not have (from `shallow`; none in a mirror).
    shallow: HashSet<ObjectId>,
    seen: gix::hashtable::HashSet<ObjectId>,
    stack: Vec<Pending>,
    reachable: u64,
    /// Of the reachable objects (not known), the commits.
    pub(super) commits: u64,
    /// Objects an earlier check found reachable (with everything they reach): the walk stops
    /// at them.
    known: Option<&'a gix::hashtable::HashSet<ObjectId>>,
    /// The known objects the walk met.
    pub(super) met: gix::hashtable::HashSet<ObjectId>,
    /// The objects found reachable and not known, in the order found.
    pub(super) found: Vec<ObjectId>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(
        repo: &'a gix::Repository,
        dir: &Path,
        problems: &'a mut Problems,
    ) -> Walk<'a> {
        let shallow = std::fs::read_to_string(dir.join("shallow"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| ObjectId::from_hex(l.trim().as_bytes()).ok())
            .collect();
        Walk {
            repo,
            problems,
            shallow,
            seen: Default::default(),
            stack: Vec::new(),
            reachable: 0,
            commits: 0,
            known: None,
            met: Default::default(),
            found: Vec::new(),
        }
    }

    /// A walk that stops at `known` objects (reachable at an earlier check, so everything
    /// they reach was found then): it finds and counts only what is new.
    pub(super) fn stopping_at(mut self, known: &'a gix::hashtable::HashSet<ObjectId>) -> Self {
        self.known = Some(known);
        self
    }

    /// Checks every root, then walks everything reachable; returns the reachable count.
    pub(super) fn run(
        &mut self,
        roots: Vec<Root>,
        interrupt: &AtomicBool,
    ) -> Result<u64, Interrupted> {
        for root in roots {
            self.check_root(root);
        }
        let mut buf = Vec::new();
        let mut visited = 0u64;
        while let Some(pending) = self.stack.pop() {
            if !self.seen.insert(pending.id) {
                continue;
            }
            if self.known.is_some_and(|k| k.contains(&pending.id)) {
                self.met.insert(pending.id);
                continue;
            }
            visited += 1;
            if visited.is_multiple_of(INTERRUPT_CHECK_EVERY) && interrupt.load(Ordering::Relaxed) {
                return Err(Interrupted);
            }
            self.visit(pending, &mut buf);
        }
        Ok(self.reachable)
    }

    /// Checks the ref's own target and queues it for the walk. Checked here, so a ref to a
    /// missing or wrong-type object gets a sentence naming the ref even if the object was
    /// already seen from elsewhere.
    fn check_root(&mut self, root: Root) {
        let must_be_commit = root.name == "HEAD"
            || root.name.starts_with("refs/heads/")
            || root.name.starts_with("refs/notes/");
        match self.repo.objects.try_header(&root.id) {
            Ok(Some(header)) => {
                if must_be_commit && header.kind != Kind::Commit {
                    self.problems.push(format!(
                        "The ref {} points to {}, a {}, not a commit.",
                        root.name, root.id, header.kind
                    ));
                }
            }
            Ok(None) => {
                self.problems.push(format!(
                    "The ref {} points to the missing object {}.",
                    root.name, root.id
                ));
                // Already reported; do not report it again as a missing object.
                self.seen.insert(root.id);
                return;
            }
            Err(e) => {
                self.problems.push(format!(
                    "The ref {} points to the object {}, which cannot be read: {}.",
                    root.name,
                    root.id,
                    chain(&e)
                ));
                self.seen.insert(root.id);
                return;
            }
        }
        self.stack.push(Pending {
            id: root.id,
            expected: None,
            referrer: Referrer::Ref(root.name),
        });
    }

    fn visit(&mut self, pending: Pending, buf: &mut Vec<u8>) {
        let Pending {
            id,
            expected,
            referrer,
        } = pending;
        let what = expected.map_or_else(|| "object".to_owned(), |k| k.to_string());
        // Blobs have nothing to walk: their kind is enough (their hash was checked by the
        // integrity pass), and decompressing every blob would double the cost.
        if expected == Some(Kind::Blob) {
            return self.visit_blob(id, &what, &referrer);
        }
        let data = match self.repo.objects.try_find(&id, buf) {
            Ok(Some(data)) => data,
            Ok(None) => return self.missing(&what, id, &referrer),
            Err(e) => return self.unreadable(&what, id, &referrer, &e),
        };
        self.reachable += 1;
        self.found.push(id);
        let kind = data.kind;
        if let Some(expected) = expected
            && expected != kind
        {
            self.problems.push(format!(
                "The object {id} is a {kind}, but {referrer} refers to it as a {expected}."
            ));
        }
        match kind {
            Kind::Commit => {
                self.commits += 1;
                self.visit_commit(id, data.data)
            }
            Kind::Tree => self.visit_tree(id, data.data),
            Kind::Tag => self.visit_tag(id, data.data),
            Kind::Blob => {}
        }
    }

    fn visit_blob(&mut self, id: ObjectId, what: &str, referrer: &Referrer) {
        match self.repo.objects.try_header(&id) {
            Ok(Some(header)) => {
                self.reachable += 1;
                self.found.push(id);
                if header.kind != Kind::Blob {
                    self.problems.push(format!(
                        "The object {id} is a {}, but {referrer} refers to it as a blob.",
                        header.kind
                    ));
                }
            }
            Ok(None) => self.missing(what, id, referrer),
            Err(e) => self.unreadable(what, id, referrer, &e),
        }
    }

    /// Queues the commit's tree and, unless the repository is shallow there, its parents.
    fn visit_commit(&mut self, id: ObjectId, data: &[u8]) {
        let me = Referrer::Object(Kind::Commit, id);
        match gix::objs::CommitRef::from_bytes(data, self.repo.object_hash()) {
            Ok(commit) => {
                self.stack.push(Pending {
                    id: commit.tree(),
                    expected: Some(Kind::Tree),
                    referrer: me.clone(),
                });
                if !self.shallow.contains(&id) {
                    for parent in commit.parents() {
                        self.stack.push(Pending {
                            id: parent,
                            expected: Some(Kind::Commit),
                            referrer: me.clone(),
                        });
                    }
                }
            }
            Err(e) => self.unparsable(Kind::Commit, id, &e.to_string()),
        }
    }

    /// Queues the tree's entries not seen yet; gitlinks (submodules) name a commit of another
    /// repository and are skipped.
    fn visit_tree(&mut self, id: ObjectId, data: &[u8]) {
        let mut children = Vec::new();
        for entry in gix::objs::TreeRefIter::from_bytes(data, self.repo.object_hash()) {
            match entry {
                Ok(entry) => {
                    if entry.mode.is_commit() {
                        continue;
                    }
                    let expected = if entry.mode.is_tree() {
                        Kind::Tree
                    } else {
                        Kind::Blob
                    };
                    children.push((entry.oid.to_owned(), expected));
                }
                Err(e) => {
                    self.unparsable(Kind::Tree, id, &e.to_string());
                    break;
                }
            }
        }
        let me = Referrer::Object(Kind::Tree, id);
        for (child, expected) in children {
            if !self.seen.contains(&child) {
                self.stack.push(Pending {
                    id: child,
                    expected: Some(expected),
                    referrer: me.clone(),
                });
            }
        }
    }

    /// Queues the tag's target with the kind the tag says it has.
    fn visit_tag(&mut self, id: ObjectId, data: &[u8]) {
        match gix::objs::TagRef::from_bytes(data, self.repo.object_hash()) {
            // Parsing validated the target's hex.
            Ok(tag) => self.stack.push(Pending {
                id: tag.target(),
                expected: Some(tag.target_kind),
                referrer: Referrer::Object(Kind::Tag, id),
            }),
            Err(e) => self.unparsable(Kind::Tag, id, &e.to_string()),
        }
    }

    fn missing(&mut self, what: &str, id: ObjectId, referrer: &Referrer) {
        self.problems.push(format!(
            "The {what} {id} is missing (referenced by {referrer})."
        ));
    }

    fn unreadable(&mut self, what: &str, id: ObjectId, referrer: &Referrer, err: &gix::Error) {
        self.problems.push(format!(
            "The {what} {id} (referenced by {referrer}) cannot be read: {}.",
            chain(err)
        ));
    }

    fn unparsable(&mut self, kind: Kind, id: ObjectId, detail: &str) {
        self.problems
            .push(format!("The {kind} {id} cannot be parsed: {detail}."));
    }
}
