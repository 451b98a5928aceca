//! Which local repositories (file:// URLs and plain paths) a worker's tasks may read from and
//! push to.
//!
//! A file:// URL is read by the worker's own process: without a limit, a tenant could back up
//! any git repository on the worker's host (another tenant's mirror in the cache directory
//! included) and a restore could push into any local path. So local paths are allowed only
//! under roots the configuration names (`--allow-local-root`, `REPOVAULT_ALLOWED_LOCAL_ROOTS`;
//! none by default), and never inside the worker's own directories (cache, scratch, storage,
//! and whatever the embedding process adds, e.g. `standalone`'s data directory), even under an
//! allowed root. Paths are compared after resolving symlinks and `..`, so a link under a root
//! that points out of it is refused. Checked before any git runs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The setting named in every refusal, so the message says what to change.
pub const SETTING: &str = "--allow-local-root DIR / REPOVAULT_ALLOWED_LOCAL_ROOTS";

/// Allowed roots and always-refused directories, each resolved (symlinks and `..`) once.
#[derive(Debug, Clone, Default)]
pub struct LocalPaths {
    allowed: Arc<[PathBuf]>,
    refused: Arc<[PathBuf]>,
}

/// Why a configured root cannot be used (the worker does not start).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RootError {
    pub path: PathBuf,
    pub reason: String,
}

/// Why a task may not use a URL. Every variant is permanent: another attempt sees the same.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalPathError {
    #[error(
        "local path {path} is refused: this worker allows no local repositories (set {SETTING} to allow file:// URLs under DIR)"
    )]
    NoRoots { path: String },
    #[error("local path {path} is refused: it is not under a root this worker allows ({SETTING})")]
    OutsideRoots { path: String },
    #[error(
        "local path {path} is refused: it is inside this worker's own directories (cache, scratch, storage or data), which no task may read or write whatever {SETTING} says"
    )]
    WorkerOwn { path: String },
    #[error("local path {path} is refused: it must be absolute")]
    NotAbsolute { path: String },
    #[error("file:// URL {url} is refused: it names a host ({host}); local URLs are file:///PATH")]
    HasHost { url: String, host: String },
    #[error("local path {path} is refused: it cannot be resolved ({reason})")]
    Unresolvable { path: String, reason: String },
    #[error("URL {url} is refused: scheme {scheme} is not supported (git://, http(s)://, file://)")]
    Scheme { url: String, scheme: String },
}

impl LocalPaths {
    /// No local repositories at all: every file:// URL is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// `allowed` roots (each must exist and be a directory) and `refused` directories (need not
    /// exist yet), both resolved now (a relative one against the current directory). Blocking
    /// (file system).
    pub fn new(allowed: &[PathBuf], refused: &[PathBuf]) -> Result<Self, RootError> {
        let mut roots = Vec::with_capacity(allowed.len());
        for root in allowed {
            let err = |reason: String| RootError {
                path: root.clone(),
                reason,
            };
            let resolved = root
                .canonicalize()
                .map_err(|e| err(format!("cannot be resolved: {e}")))?;
            if !resolved.is_dir() {
                return Err(err("is not a directory".into()));
            }
            roots.push(resolved);
        }
        let mut own = Vec::with_capacity(refused.len());
        for dir in refused {
            let err = |reason: String| RootError {
                path: dir.clone(),
                reason,
            };
            let absolute = std::path::absolute(dir).map_err(|e| err(e.to_string()))?;
            own.push(resolve(&absolute).map_err(err)?);
        }
        Ok(Self {
            allowed: roots.into(),
            refused: own.into(),
        })
    }

    /// Checks a source or target URL: a remote one (git://, http(s)://) passes; a local one
    /// (file:// or a plain path, as git reads it) passes only when it resolves under an
    /// allowed root and outside the refused directories and `own` (the worker's cache, scratch
    /// and storage root, resolved here). Blocking (file system).
    pub fn check(&self, url: &str, own: &[&Path]) -> Result<(), LocalPathError> {
        let trimmed = url.trim();
        let parsed = gix::url::parse(trimmed.as_bytes()).map_err(|e| LocalPathError::Scheme {
            url: trimmed.into(),
            scheme: format!("unknown ({e})"),
        })?;
        match parsed.scheme {
            gix::url::Scheme::Http | gix::url::Scheme::Https | gix::url::Scheme::Git => {
                return Ok(());
            }
            gix::url::Scheme::File => {}
            ref other => {
                return Err(LocalPathError::Scheme {
                    url: trimmed.into(),
                    scheme: other.as_str().into(),
                });
            }
        }
        if let Some(host) = parsed.host().filter(|h| !h.is_empty()) {
            return Err(LocalPathError::HasHost {
                url: trimmed.into(),
                host: host.into(),
            });
        }
        let path = Path::new(OsStr::from_bytes(&parsed.path));
        let shown = path.display().to_string();
        if !path.is_absolute() {
            return Err(LocalPathError::NotAbsolute { path: shown });
        }
        if self.allowed.is_empty() {
            return Err(LocalPathError::NoRoots { path: shown });
        }
        let resolved = resolve(path).map_err(|reason| LocalPathError::Unresolvable {
            path: shown.clone(),
            reason,
        })?;
        let mut refused: Vec<PathBuf> = self.refused.to_vec();
        for dir in own {
            match resolve(dir) {
                Ok(d) => refused.push(d),
                Err(reason) => {
                    return Err(LocalPathError::Unresolvable {
                        path: dir.display().to_string(),
                        reason,
                    });
                }
            }
        }
        // Either way round: a path above a worker directory (a root itself, say) reaches it.
        if refused
            .iter()
            .any(|d| resolved.starts_with(d) || d.starts_with(&resolved))
        {
            return Err(LocalPathError::WorkerOwn { path: shown });
        }
        if !self.allowed.iter().any(|root| resolved.starts_with(root)) {
            return Err(LocalPathError::OutsideRoots { path: shown });
        }
        Ok(())
    }
}

/// `path` with every symlink and `..` resolved: its longest existing ancestor canonicalised,
/// the rest appended (a path that does not exist yet resolves as it will be created, and saying
/// "does not exist" before the root check would tell a tenant which paths exist).
fn resolve(path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("not an absolute path".into());
    }
    let mut existing = path.to_path_buf();
    let mut rest: Vec<PathBuf> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut base) => {
                for part in rest.iter().rev() {
                    base.push(part);
                }
                return Ok(base);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(PathBuf::from) else {
                    return Err(e.to_string());
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(e.to_string());
                }
            }
            // A path ending in `..` has no file name: below a missing directory the OS
            // cannot resolve it either.
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dirs {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        cache: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().canonicalize().expect("canonical");
        let root = base.join("root");
        let outside = base.join("outside");
        let cache = root.join("cache");
        for d in [
            &root,
            &outside,
            &cache,
            &root.join("a.git"),
            &outside.join("b.git"),
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Dirs {
            _tmp: tmp,
            root,
            outside,
            cache,
        }
    }

    fn file_url(p: &Path) -> String {
        format!("file://{}", p.display())
    }

    #[test]
    fn remote_urls_pass_and_local_ones_need_a_root() {
        let d = dirs();
        let none = LocalPaths::none();
        for url in [
            "https://host/a.git",
            "http://host/a",
            "git://127.0.0.1:9418/a.git",
        ] {
            assert_eq!(none.check(url, &[]), Ok(()), "{url}");
        }
        let url = file_url(&d.root.join("a.git"));
        let e = none.check(&url, &[]).expect_err("no roots");
        assert!(matches!(e, LocalPathError::NoRoots { .. }), "{e}");
        assert!(e.to_string().contains("--allow-local-root"), "{e}");
        assert!(
            e.to_string()
                .contains(&d.root.join("a.git").display().to_string()),
            "{e}"
        );
        let plain = d.root.join("a.git").display().to_string();
        assert!(matches!(
            none.check(&plain, &[]),
            Err(LocalPathError::NoRoots { .. })
        ));
    }

    #[test]
    fn only_paths_under_an_allowed_root_pass_after_resolving_links_and_dots() {
        let d = dirs();
        let p = LocalPaths::new(std::slice::from_ref(&d.root), &[]).expect("policy");
        assert_eq!(p.check(&file_url(&d.root.join("a.git")), &[]), Ok(()));
        // Not existing yet (a restore target made later) still resolves, under the root.
        assert_eq!(p.check(&file_url(&d.root.join("new/x.git")), &[]), Ok(()));
        assert_eq!(
            p.check(&d.root.join("a.git").display().to_string(), &[]),
            Ok(())
        );
        let e = p
            .check(&file_url(&d.outside.join("b.git")), &[])
            .expect_err("outside");
        assert!(matches!(e, LocalPathError::OutsideRoots { .. }), "{e}");
        assert!(
            e.to_string().contains("REPOVAULT_ALLOWED_LOCAL_ROOTS"),
            "{e}"
        );
        // `..` out of the root.
        let dotted = format!("{}/../outside/b.git", d.root.display());
        assert!(matches!(
            p.check(&dotted, &[]),
            Err(LocalPathError::OutsideRoots { .. })
        ));
        // A symlink under the root pointing out of it.
        let link = d.root.join("link.git");
        std::os::unix::fs::symlink(d.outside.join("b.git"), &link).expect("symlink");
        assert!(matches!(
            p.check(&file_url(&link), &[]),
            Err(LocalPathError::OutsideRoots { .. })
        ));
        // Relative paths and hosts are refused.
        assert!(matches!(
            p.check("a.git", &[]),
            Err(LocalPathError::NotAbsolute { .. })
        ));
        assert!(p.check("ssh://host/x.git", &[]).is_err());
    }

    #[test]
    fn the_worker_s_own_directories_are_refused_even_under_a_root() {
        let d = dirs();
        let p =
            LocalPaths::new(std::slice::from_ref(&d.root), &[d.root.join("data")]).expect("policy");
        let mirror = d.cache.join("r1/code.git");
        std::fs::create_dir_all(&mirror).expect("mkdir");
        let e = p.check(&file_url(&mirror), &[&d.cache]).expect_err("cache");
        assert!(matches!(e, LocalPathError::WorkerOwn { .. }), "{e}");
        // The root itself contains the cache: refused too.
        assert!(matches!(
            p.check(&file_url(&d.root), &[&d.cache]),
            Err(LocalPathError::WorkerOwn { .. })
        ));
        // Configured refusals apply whether or not they exist yet.
        assert!(matches!(
            p.check(&file_url(&d.root.join("data/state")), &[]),
            Err(LocalPathError::WorkerOwn { .. })
        ));
        // A link to the cache from under the root.
        let link = d.root.join("sneaky.git");
        std::os::unix::fs::symlink(&mirror, &link).expect("symlink");
        assert!(matches!(
            p.check(&file_url(&link), &[&d.cache]),
            Err(LocalPathError::WorkerOwn { .. })
        ));
    }

    #[test]
    fn a_root_must_exist_and_be_a_directory() {
        let d = dirs();
        assert!(LocalPaths::new(&[d.root.join("missing")], &[]).is_err());
        let file = d.root.join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(LocalPaths::new(&[file], &[]).is_err());
    }
}
