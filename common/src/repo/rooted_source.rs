//! The backup source: a local directory whose *contents* become the snapshot's root tree.
//!
//! rustic's `LocalSource` yields absolute paths (`/src/dir/code.git/HEAD`); the archiver would
//! place them at that path in the tree (or under `as_path`). We re-root every entry at `/` and drop
//! the source directory's own entry, so `restic restore ID --target T` gives `T/code.git/...`.
//!
//! rustic's archiver logs and *skips* entries it cannot read (walk errors, open errors, read
//! errors) and still writes the snapshot. A backup with silently missing files is worse than a
//! failed one, so every such error is recorded here; the backup refuses to commit the snapshot
//! when any was recorded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustic_core::{LocalSource, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult};

/// Errors met while reading the source, as messages (paths, no contents).
pub(crate) type SourceErrors = Arc<Mutex<Vec<String>>>;

type InnerOpen = <LocalSource as ReadSource>::Open;

pub(crate) struct RootedSource {
    inner: LocalSource,
    root: PathBuf,
    errors: SourceErrors,
    /// Paths relative to `root` that are left out.
    exclude: Arc<Vec<PathBuf>>,
}

impl RootedSource {
    /// `root` must be the absolute path `inner` walks.
    pub(crate) fn new(inner: LocalSource, root: PathBuf, errors: SourceErrors) -> Self {
        Self {
            inner,
            root,
            errors,
            exclude: Arc::new(Vec::new()),
        }
    }

    /// Leaves out these paths, relative to the root (files: a directory's contents would
    /// still be walked).
    pub(crate) fn excluding(mut self, paths: Vec<PathBuf>) -> Self {
        self.exclude = Arc::new(paths);
        self
    }
}

impl ReadSource for RootedSource {
    type Open = TrackedOpen;
    type Iter = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<TrackedOpen>>> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        let root = self.root.clone();
        let errors = self.errors.clone();
        let exclude = self.exclude.clone();
        Box::new(self.inner.entries().filter_map(move |item| {
            let entry = match item {
                Ok(entry) => entry,
                Err(err) => {
                    errors
                        .lock()
                        .push(format!("walking the source: {}", super::describe(&err)));
                    return None;
                }
            };
            // The root directory itself has no node in a restic tree: its contents are the tree.
            if entry.path == root {
                return None;
            }
            let Ok(rel) = entry.path.strip_prefix(&root) else {
                errors.lock().push(format!(
                    "entry {} outside the source directory",
                    entry.path.display()
                ));
                return None;
            };
            if exclude.iter().any(|x| x == rel) {
                return None;
            }
            let path = Path::new("/").join(rel);
            let open = entry.open.map(|inner| TrackedOpen {
                inner,
                path: path.clone(),
                errors: errors.clone(),
            });
            Some(Ok(ReadSourceEntry {
                path,
                node: entry.node,
                open,
            }))
        }))
    }
}

/// Opens a source file, recording a failure to open or read it.
pub(crate) struct TrackedOpen {
    inner: InnerOpen,
    path: PathBuf,
    errors: SourceErrors,
}

impl ReadSourceOpen for TrackedOpen {
    type Reader = TrackedReader<<InnerOpen as ReadSourceOpen>::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(reader) => Ok(TrackedReader {
                inner: reader,
                path: self.path,
                errors: self.errors,
            }),
            Err(err) => {
                self.errors.lock().push(format!(
                    "opening {}: {}",
                    self.path.display(),
                    super::describe(&err)
                ));
                Err(err)
            }
        }
    }
}

pub(crate) struct TrackedReader<R> {
    inner: R,
    path: PathBuf,
    errors: SourceErrors,
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|err| {
            if err.kind() != std::io::ErrorKind::Interrupted {
                self.errors
                    .lock()
                    .push(format!("reading {}: {err}", self.path.display()));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }

    /// Root can read a mode-000 file, so the end-to-end test may skip; this covers the recording.
    #[test]
    fn read_errors_are_recorded() {
        let errors = SourceErrors::default();
        let mut r = TrackedReader {
            inner: Failing,
            path: PathBuf::from("/code.git/HEAD"),
            errors: errors.clone(),
        };
        assert!(r.read(&mut [0; 8]).is_err());
        let recorded = errors.lock().clone();
        assert_eq!(
            recorded,
            vec!["reading /code.git/HEAD: disk on fire".to_string()]
        );
    }
}
