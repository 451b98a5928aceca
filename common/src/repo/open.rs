//! Opening and creating a repository: where it lives ([`RepoSpec`]), how it is unlocked
//! ([`RepoKey`]), [`SnapshotRepo::open`] (which creates it when asked), and adding a key.

use parking_lot::Mutex;
use rustic_core::repofile::MasterKey;
use std::sync::Arc;

use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, NoProgressBars, ProgressBars, Repository,
    RepositoryBackends, RepositoryOptions, RusticResult,
};

use super::backend::OpendalBackend;
use super::{RepoError, SnapshotRepo, describe, map_err};
use crate::secret::Secret;

/// Where a repository lives.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// Operator rooted at the storage root (layers such as retry or concurrency limits are ours).
    pub operator: opendal::Operator,
    /// Repository prefix inside the operator, e.g. `"<org-id>/<repo-id>"`; `""` is the root itself.
    pub path: String,
}

/// How to unlock a repository.
#[derive(Clone, Copy, Debug)]
pub enum RepoKey<'a> {
    /// The repository password (scrypt: about 0.3 s per open).
    Password(&'a Secret),
    /// The decrypted master key as JSON, as returned by [`SnapshotRepo::open`] (about 2 ms, no
    /// scrypt). If it is malformed or does not decrypt this repository, `open` falls back to the
    /// password.
    MasterKey {
        json: &'a Secret,
        password: &'a Secret,
    },
}

impl<'a> RepoKey<'a> {
    /// The fast key when one is known, else the password.
    pub fn new(password: &'a Secret, master_key: Option<&'a Secret>) -> Self {
        match master_key {
            Some(json) => Self::MasterKey { json, password },
            None => Self::Password(password),
        }
    }

    fn password(&self) -> &Secret {
        match self {
            Self::Password(p) | Self::MasterKey { password: p, .. } => p,
        }
    }
}

/// The body of [`SnapshotRepo::open`] (the contract is documented there).
pub(super) fn open(
    spec: &RepoSpec,
    key: RepoKey<'_>,
    init_if_missing: bool,
) -> Result<(SnapshotRepo, Secret), RepoError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RepoError::NoRuntime);
    }
    let backend =
        OpendalBackend::new(spec.operator.clone(), &spec.path).map_err(|e| RepoError::Storage {
            location: spec.path.clone(),
            message: e.to_string(),
        })?;
    let location = backend.location_str().to_string();
    let err = |doing| {
        let location = location.clone();
        move |e| map_err(e, &location, doing)
    };
    let repo = handle(&backend, NoProgressBars).map_err(err("creating the repository handle"))?;

    let base = repo.clone();
    let exists = repo
        .config_id()
        .map_err(err("looking for the config file"))?
        .is_some();
    let repo = if !exists {
        if !init_if_missing {
            return Err(RepoError::NotFound {
                location: location.clone(),
            });
        }
        repo.init(
            &password_credentials(key.password()),
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )
        .map_err(err("initialising the repository"))?
    } else {
        match key {
            RepoKey::Password(password) => repo
                .open(&password_credentials(password))
                .map_err(err("opening the repository"))?,
            RepoKey::MasterKey { json, password } => {
                let by_key = match parse_master_key(json) {
                    Some(mk) => repo
                        .clone()
                        .open(&Credentials::Masterkey(mk))
                        .map_err(|e| describe(&e)),
                    None => Err("malformed master key JSON".to_string()),
                };
                match by_key {
                    Ok(open) => open,
                    Err(why) => {
                        tracing::warn!(%location, %why, "master key did not open the repository, using the password");
                        repo.open(&password_credentials(password))
                            .map_err(err("opening the repository"))?
                    }
                }
            }
        }
    };
    let key = repo.key();
    let master_key = serde_json::to_string(&key).map_err(|e| RepoError::Repository {
        doing: "serialising the master key",
        message: e.to_string(),
    })?;
    Ok((
        SnapshotRepo {
            repo,
            base,
            key,
            backend,
            backup_lock: Mutex::new(()),
        },
        Secret::new(master_key),
    ))
}

/// An unopened handle on `backend` whose rustic_core progress goes to `bars`.
pub(super) fn handle<P: ProgressBars>(
    backend: &Arc<OpendalBackend>,
    bars: P,
) -> RusticResult<Repository<()>> {
    let backends = RepositoryBackends::new(backend.clone(), None);
    // No cache: the default is ~/.cache/rustic, shared and unbounded; workers are stateless.
    let opts = RepositoryOptions::default().no_cache(true);
    Repository::new_with_progress(&opts, &backends, bars)
}

/// The body of [`SnapshotRepo::add_key`].
pub(super) fn add_key(store: &SnapshotRepo, password: &Secret) -> Result<String, RepoError> {
    let opts = KeyOptions::default()
        .hostname(Some("repovault".to_string()))
        .username(Some("escrow".to_string()))
        .with_created(true);
    let id = store
        .repo
        .add_key(password.expose(), &opts)
        .map_err(|e| map_err(e, store.location(), "adding a key"))?;
    Ok(id.to_hex().to_string())
}

/// Parses and validates a master key; `None` if malformed. Checks the key lengths because
/// rustic copies them into fixed arrays and would panic on other lengths.
fn parse_master_key(json: &Secret) -> Option<MasterKey> {
    let key: MasterKey = serde_json::from_str(json.expose()).ok()?;
    (key.encrypt.len() == 32 && key.mac.k.len() == 16 && key.mac.r.len() == 16).then_some(key)
}

fn password_credentials(password: &Secret) -> Credentials {
    Credentials::password(password.expose())
}
