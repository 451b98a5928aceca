//! The read-back's backend: pack reads answered with the bytes already in memory.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::backend::OpendalBackend;

thread_local! {
    /// The encrypted blob the current thread's `cat_blob` call must be answered with.
    static SERVING: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Read-only backend for the read-back: everything is read from storage through `inner`,
/// except pack reads, which are answered with the blob bytes the calling thread set with
/// [`ServeOverlay::serving`] (the copy just read, in the pack being verified).
///
/// Why answer regardless of the pack and offset requested: rustic_core's `cat_blob` reads the
/// copy *its* index prefers, which for a duplicate blob can be another pack; the caller has
/// checked that both copies decompress the same way, so decrypting our bytes is right. A pack
/// read with nothing served is refused: it would verify bytes other than those read back.
pub(super) struct ServeOverlay {
    pub(super) inner: Arc<OpendalBackend>,
}

impl ServeOverlay {
    /// Runs `f` with `blob` served to this thread's pack reads.
    pub(super) fn serving<T>(blob: Bytes, f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                SERVING.with(|s| s.borrow_mut().take());
            }
        }
        SERVING.with(|s| *s.borrow_mut() = Some(blob));
        let _reset = Reset;
        f()
    }

    fn read_only() -> Box<RusticError> {
        RusticError::new(
            ErrorKind::Internal,
            "the read-back backend is read-only (a write was attempted)",
        )
    }
}

impl ReadBackend for ServeOverlay {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        if tpe == FileType::Pack {
            return Err(RusticError::new(
                ErrorKind::Internal,
                "the read-back backend does not read whole packs",
            ));
        }
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        if tpe != FileType::Pack {
            return self.inner.read_partial(tpe, id, cacheable, offset, length);
        }
        SERVING.with(|s| s.borrow().clone()).ok_or_else(|| {
            RusticError::new(
                ErrorKind::Internal,
                "the read-back backend got a pack read with no blob served",
            )
        })
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for ServeOverlay {
    fn create(&self) -> RusticResult<()> {
        Err(Self::read_only())
    }

    fn write_bytes(
        &self,
        _tpe: FileType,
        _id: &Id,
        _cacheable: bool,
        _content: BytesList,
    ) -> RusticResult<()> {
        Err(Self::read_only())
    }

    fn remove(&self, _tpe: FileType, _id: &Id, _cacheable: bool) -> RusticResult<()> {
        Err(Self::read_only())
    }
}
