//! Verification of a bare mirror: object integrity, connectivity from every ref, and commit
//! counts.
//!
//! gix has no `git fsck`: `Store::verify_integrity` checks every object's hash and the packs'
//! and indexes' checksums but not reachability, and gix-fsck's `Connectivity` checks one
//! commit's tree only. So [`fsck`] runs the integrity check, then walks every
//! object reachable from every ref itself (commits' parents and trees, trees' entries, tags'
//! targets) with a seen-set, which is what `git fsck --full` does minus reflogs (a mirror keeps
//! none: `core.logAllRefUpdates=false`).
//!
//! Every function blocks; async callers run them with `spawn_blocking`.

use std::{
    collections::HashSet,
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use gix::{
    ObjectId,
    bstr::ByteSlice as _,
    objs::{Find as _, FindHeader as _, Kind},
    refs::Target,
};

use super::{error::GitError, mirror_open};

/// At most this many problems are listed in [`FsckReport::problems`]; the rest are summed up
/// in one last line. A thousand "missing blob" lines help nobody more than twenty do.
pub const MAX_PROBLEMS: usize = 20;

/// How many objects the walk visits between two looks at the interrupt flag.
const INTERRUPT_CHECK_EVERY: u64 = 4096;

/// What [`fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Objects in the object database: loose objects plus every pack index's entries (as
    /// `git count-objects -v` `count` + `in-pack`; an object in two packs counts twice).
    pub objects: u64,
    /// Distinct objects reachable from the refs and `HEAD` (as
    /// `git rev-list --objects --all | wc -l`; submodule commits are not objects of this
    /// repository and are not counted). Missing objects are not counted.
    pub reachable: u64,
    /// Refs checked: every ref under `refs/`, plus `HEAD` when it resolves to an object.
    pub refs: u64,
    /// One complete sentence per problem (corrupt pack or index, missing or unreadable object
    /// with what refers to it, ref to a missing or wrong-type object), at most
    /// [`MAX_PROBLEMS`] of them followed by a "... and N more problems." line. Empty when the
    /// repository is sound.
    pub problems: Vec<String>,
}

impl FsckReport {
    /// `true` when no problem was found.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the bare repository at `dir` the way `git fsck --full` would:
///
/// 1. every object in every pack and every loose object hashes to its id, and every pack and
///    index is sound (checksums, CRC32s, decodable non-blob objects); each pack is checked
///    on its own, so every bad pack is named;
/// 2. every object reachable from a ref (tags peeled, tag chains included; commits' parents and
///    trees; trees' entries) exists, has the kind its referrer says, and parses;
/// 3. `refs/heads/*`, `refs/notes/*` and `HEAD` point at commits; every ref points at an
///    existing object.
///
/// Corruption is never an error: it is listed in [`FsckReport::problems`]. An empty repository
/// (no refs) has no problems. The error cases are: `dir` cannot be opened as a bare repository,
/// its refs cannot be listed at all, or `interrupt` was set ([`GitError::Interrupted`]).
/// A panic inside gix on corrupt data is caught and reported as a problem.
pub fn fsck(dir: &Path, interrupt: &AtomicBool) -> Result<FsckReport, GitError> {
    let repo = mirror_open::open(dir, None)?;
    let what = dir.display().to_string();
    let mut problems = Problems::default();

    // (a) Integrity, pack by pack (the store's own `verify_integrity` stops at the first bad
    // pack without saying which), then the loose objects.
    let objects = verify_objects(dir, repo.object_hash(), interrupt, &mut problems)?;
    if interrupt.load(Ordering::Relaxed) {
        return Err(GitError::Interrupted { url: what });
    }

    // (b), (c) Connectivity from every ref.
    let roots = refs_to_check(&repo, &mut problems);
    let refs = roots.len() as u64;
    let walked = catch_unwind(AssertUnwindSafe(|| {
        let mut walk = Walk::new(&repo, dir, &mut problems);
        walk.run(roots, interrupt)
    }));
    let reachable = match walked {
        Ok(Ok(n)) => n,
        Ok(Err(Interrupted)) => return Err(GitError::Interrupted { url: what }),
        Err(_) => {
            problems.push(
                "The connectivity walk stopped early: gix panicked reading an object.".into(),
            );
            0
        }
    };

    Ok(FsckReport {
        objects,
        reachable,
        refs,
        problems: problems.into_list(),
    })
}

/// The number of commits reachable from `tip` (as `git rev-list --count TIP`): `tip` is a hex
/// object id or a full ref name (`refs/heads/main`, `HEAD`); an annotated tag is peeled to its
/// commit. A `tip` that names nothing, or that is not a commit after peeling, is an error;
/// so is a missing commit in its history.
pub fn count_commits(dir: &Path, tip: &str) -> Result<u64, GitError> {
    let repo = mirror_open::open(dir, None)?;
    let err = |doing: &str| {
        let context = format!("counting the commits of {tip} in {}", dir.display());
        let doing = doing.to_owned();
        move |e: gix::Error| GitError::Other {
            context: context.clone(),
            detail: format!("{doing}: {}", chain(&e)),
        }
    };
    let hex_len = repo.object_hash().len_in_hex();
    let id = if tip.len() == hex_len && tip.bytes().all(|b| b.is_ascii_hexdigit()) {
        ObjectId::from_hex(tip.as_bytes()).map_err(|e| GitError::Other {
            context: format!("counting the commits of {tip} in {}", dir.display()),
            detail: e.to_string(),
        })?
    } else {
        let mut reference = repo.find_reference(tip).map_err(err("resolving the ref"))?;
        reference
            .peel_to_id()
            .map_err(err("peeling the ref"))?
            .detach()
    };
    let commit = repo
        .find_object(id)
        .map_err(err("reading the tip"))?
        .peel_tags_to_end()
        .map_err(err("peeling the tip"))?;
    if commit.kind != Kind::Commit {
        return Err(GitError::Other {
            context: format!("counting the commits of {tip} in {}", dir.display()),
            detail: format!("{} is a {}, not a commit", commit.id, commit.kind),
        });
    }
    let mut n = 0u64;
    for info in repo
        .rev_walk([commit.id])
        .all()
        .map_err(err("walking the history"))?
    {
        info.map_err(err("walking the history"))?;
        n += 1;
    }
    Ok(n)
}

/// Problems found so far: the first [`MAX_PROBLEMS`] in full, the rest only counted (a badly
/// broken repository can have millions).
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    more: u64,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(problem);
        } else {
            self.more += 1;
        }
    }

    fn into_list(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list
                .push(format!("... and {} more problems.", self.more));
        }
        self.list
    }
}

/// The whole chain of a gix error on one line.
fn chain(err: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in err.iter_errors() {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// Verifies every pack against its index (object hashes, CRC32s, checksums, decodable
/// non-blob objects) and every loose object (its hash), and counts the objects as
/// `git count-objects -v` does (`count` + `in-pack`). Corruption goes to `problems`; only an
/// unlistable object directory is an error. gix panicking on corrupt data is a problem too.
fn verify_objects(
    dir: &Path,
    hash: gix::hash::Kind,
    interrupt: &AtomicBool,
    problems: &mut Problems,
) -> Result<u64, GitError> {
    let objects_dir = dir.join("objects");
    let list = |path: &Path| -> Result<Vec<std::fs::DirEntry>, GitError> {
        let context = || format!("listing {}", path.display());
        std::fs::read_dir(path)
            .map_err(|e| GitError::io(context(), e))?
            .map(|entry| entry.map_err(|e| GitError::io(context(), e)))
            .collect()
    };
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut n = 0u64;

    let pack_dir = objects_dir.join("pack");
    let mut indexes: Vec<_> = if pack_dir.is_dir() {
        list(&pack_dir)?
            .into_iter()
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("idx"))
            .collect()
    } else {
        Vec::new()
    };
    indexes.sort();
    for idx in indexes {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(n);
        }
        let pack = idx.with_extension("pack");
        let index = match gix::odb::pack::index::File::at(&idx, hash) {
            Ok(index) => index,
            Err(e) => {
                problems.push(format!(
                    "The pack index {} cannot be read: {}.",
                    idx.display(),
                    chain(&e)
                ));
                continue;
            }
        };
        n += u64::from(index.num_objects());
        let data = match gix::odb::pack::data::File::at(&pack, hash) {
            Ok(data) => data,
            Err(e) => {
                problems.push(format!(
                    "The pack {} cannot be read: {}.",
                    pack.display(),
                    chain(&e)
                ));
                continue;
            }
        };
        let verified = with_own_flag(interrupt, |flag| {
            index.verify_integrity(
                Some(gix::odb::pack::index::verify::PackContext {
                    data: &data,
                    options: gix::odb::pack::index::verify::integrity::Options {
                        // Decoding every non-blob object proves it parses; re-encoding it too
                        // (gix's default) would also flag objects git itself accepts (odd
                        // headers in old commits), which is no corruption of the backup.
                        verify_mode: gix::odb::pack::index::verify::Mode::HashCrc32Decode,
                        traversal: Default::default(),
                        thread_limit: None,
                        make_pack_lookup_cache: || gix::odb::pack::cache::Never,
                    },
                }),
                &mut gix::progress::Discard,
                flag,
            )
        });
        match verified {
            Ok(Ok(_)) => {}
            Ok(Err(_)) if interrupt.load(Ordering::Relaxed) => return Ok(n),
            // gix does not always say which of the two files is bad (an index's own checksum
            // is reported as the "pack file checksum"): name both.
            Ok(Err(e)) => problems.push(format!(
                "The pack {} or its index {} is corrupt: {}.",
                pack.display(),
                idx.display(),
                chain(&e)
            )),
            Err(_) => problems.push(format!(
                "The pack {} or its index {} is corrupt: gix panicked verifying them.",
                pack.display(),
                idx.display()
            )),
        }
    }

    let loose_name_len = hash.len_in_hex() - 2;
    for entry in list(&objects_dir)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !is_hex(&name) {
            continue;
        }
        for object in list(&entry.path())? {
            let file = object.file_name();
            let file = file.to_string_lossy();
            if file.len() == loose_name_len && is_hex(&file) {
                n += 1;
            }
        }
    }
    let loose = with_own_flag(interrupt, |flag| {
        gix::odb::loose::Store::at(&objects_dir, hash)
            .verify_integrity(&mut gix::progress::Discard, flag)
    });
    match loose {
        Ok(Ok(_)) => {}
        Ok(Err(_)) if interrupt.load(Ordering::Relaxed) => {}
        Ok(Err(e)) => problems.push(format!(
            "The loose objects in {} are corrupt: {}.",
            objects_dir.display(),
            chain(&e)
        )),
        Err(_) => problems.push(format!(
            "The loose objects in {} are corrupt: gix panicked verifying them.",
            objects_dir.display()
        )),
    }
    Ok(n)
}

/// Runs `verify` (catching a panic) with an interrupt flag of its own that follows
/// `interrupt`: gix's pack verification sets the flag it is given when it finds corruption (to
/// stop its other threads), which must not look like the caller's interrupt or leak into the
/// next pack's check.
fn with_own_flag<T>(
    interrupt: &AtomicBool,
    verify: impl FnOnce(&AtomicBool) -> T,
) -> std::thread::Result<T> {
    let own = AtomicBool::new(interrupt.load(Ordering::Relaxed));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if interrupt.load(Ordering::Relaxed) {
                    own.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let result = catch_unwind(AssertUnwindSafe(|| verify(&own)));
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// A ref to check and walk from.
struct Root {
    name: String,
    id: ObjectId,
}

/// Every ref under `refs/` resolved to the object it points at (symbolic refs followed), plus
/// `HEAD` when it resolves; dangling symbolic refs (an unborn `HEAD`) are skipped, as git does.
/// Refs that cannot be read (a garbled loose ref, a broken `packed-refs`) are problems: they
/// are part of the backup.
fn refs_to_check(repo: &gix::Repository, problems: &mut Problems) -> Vec<Root> {
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
    let all = repo.references().and_then(|platform| {
        let mut refs = Vec::new();
        for reference in platform.all()? {
            match reference {
                Ok(reference) => refs.push(Ok((
                    reference.name().as_bstr().to_str_lossy().into_owned(),
                    reference.inner.target.clone(),
                ))),
                Err(e) => refs.push(Err(e)),
            }
        }
        Ok(refs)
    });
    match all {
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

struct Interrupted;

/// The connectivity walk over one repository.
struct Walk<'a> {
    repo: &'a gix::Repository,
    problems: &'a mut Problems,
    /// Commits whose parents a shallow clone does not have (from `shallow`; none in a mirror).
    shallow: HashSet<ObjectId>,
    seen: gix::hashtable::HashSet<ObjectId>,
    stack: Vec<Pending>,
    reachable: u64,
}

impl<'a> Walk<'a> {
    fn new(repo: &'a gix::Repository, dir: &Path, problems: &'a mut Problems) -> Walk<'a> {
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
        }
    }

    /// Checks every root, then walks everything reachable; returns the reachable count.
    fn run(&mut self, roots: Vec<Root>, interrupt: &AtomicBool) -> Result<u64, Interrupted> {
        for root in roots {
            // The ref's own target is checked here, so a ref to a missing or wrong-type object
            // gets a sentence naming the ref even if the object was already seen from
            // elsewhere.
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
                    continue;
                }
                Err(e) => {
                    self.problems.push(format!(
                        "The ref {} points to the object {}, which cannot be read: {}.",
                        root.name,
                        root.id,
                        chain(&e)
                    ));
                    self.seen.insert(root.id);
                    continue;
                }
            }
            self.stack.push(Pending {
                id: root.id,
                expected: None,
                referrer: Referrer::Ref(root.name),
            });
        }

        let mut buf = Vec::new();
        let mut visited = 0u64;
        while let Some(pending) = self.stack.pop() {
            if !self.seen.insert(pending.id) {
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
            match self.repo.objects.try_header(&id) {
                Ok(Some(header)) => {
                    self.reachable += 1;
                    if header.kind != Kind::Blob {
                        self.problems.push(format!(
                            "The object {id} is a {}, but {referrer} refers to it as a blob.",
                            header.kind
                        ));
                    }
                }
                Ok(None) => self.missing(&what, id, &referrer),
                Err(e) => self.unreadable(&what, id, &referrer, &e),
            }
            return;
        }
        let data = match self.repo.objects.try_find(&id, buf) {
            Ok(Some(data)) => data,
            Ok(None) => return self.missing(&what, id, &referrer),
            Err(e) => return self.unreadable(&what, id, &referrer, &e),
        };
        self.reachable += 1;
        let kind = data.kind;
        if let Some(expected) = expected
            && expected != kind
        {
            self.problems.push(format!(
                "The object {id} is a {kind}, but {referrer} refers to it as a {expected}."
            ));
        }
        let hash = self.repo.object_hash();
        let me = Referrer::Object(kind, id);
        match kind {
            Kind::Commit => match gix::objs::CommitRef::from_bytes(data.data, hash) {
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
                Err(e) => self.unparsable(kind, id, &e.to_string()),
            },
            Kind::Tree => {
                let mut children = Vec::new();
                for entry in gix::objs::TreeRefIter::from_bytes(data.data, hash) {
                    match entry {
                        Ok(entry) => {
                            // A gitlink (submodule) names a commit of another repository.
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
                            self.unparsable(kind, id, &e.to_string());
                            break;
                        }
                    }
                }
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
            Kind::Tag => match gix::objs::TagRef::from_bytes(data.data, hash) {
                // Parsing validated the target's hex.
                Ok(tag) => self.stack.push(Pending {
                    id: tag.target(),
                    expected: Some(tag.target_kind),
                    referrer: me,
                }),
                Err(e) => self.unparsable(kind, id, &e.to_string()),
            },
            Kind::Blob => {}
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
