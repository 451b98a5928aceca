//! The export and restore stores' file-system work, run on tokio's blocking pool: no `std::fs`
//! call of this forge runs on an async runtime thread. Callers group related work (a batch of
//! documents, a directory copied whole) into one closure rather than one hand-off per call.

use std::path::Path;

use crate::forge::ForgeError;

/// Runs `f` on the blocking pool. A panic in `f` becomes an error naming `what` (the file or
/// directory worked on), as the worker's own `blocking` makes it a retryable failure.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &Path,
    f: impl FnOnce() -> Result<T, ForgeError> + Send + 'static,
) -> Result<T, ForgeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ForgeError::io(
            what,
            std::io::Error::other(format!("internal error (panic) in a blocking step: {e}")),
        )
    })?
}
