//! Where each organisation's snapshots live, and which credential each party gets for it.
//!
//! The coordinator's configured storage is the location named [`DEFAULT_LOCATION`]. Others are
//! added with `repovault storage add` and kept in the store, their secret options sealed
//! (`location_plan.rs` splits and checks them). An organisation names its location (`org set
//! ORG --storage NAME`); the change applies to new backups, and a repository's existing
//! snapshot repository is read where its organisation's location says.
//!
//! Two credentials per location: a lease carries the writer's (`RepoAccess.storage`; workers
//! have no storage configuration of their own, so a credential reaches a worker only for the
//! task that needs it), and the coordinator's own work (catalog objects, forget, prune, purge,
//! the reconciler) uses the maintainer's. Without a maintainer credential, the writer's serves
//! both.

pub mod location_plan;
pub mod location_record;
pub mod storage_probe;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use opendal::Operator;
use parking_lot::Mutex;

use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;

use crate::clock::Clock;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::{OrgId, OrgRecord, StorageLocationRecord};
use crate::secrets::{SealContext, Secrets};
use crate::store::{Batch, Store};

pub use location_plan::{DEFAULT_LOCATION, Role};

/// The storage locations and their credentials. Owns the default location's configuration and
/// the coordinator's operators, one per location.
pub struct StorageLocations {
    default: StorageConfig,
    store: Store,
    secrets: Arc<Secrets>,
    clock: Arc<dyn Clock>,
    /// The maintainer's operator of each location by name, built on first use.
    operators: Mutex<HashMap<String, Operator>>,
}

/// A location as shown: never a secret, only which secret options each role has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationView {
    pub name: String,
    pub config: StorageConfig,
    pub writer_secrets: Vec<String>,
    pub maintainer_secrets: Vec<String>,
    /// The organisations whose new backups go there.
    pub orgs: Vec<String>,
    pub created_at_ms: Option<i64>,
}

impl StorageLocations {
    pub fn new(
        default: StorageConfig,
        store: Store,
        secrets: Arc<Secrets>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            default,
            store,
            secrets,
            clock,
            operators: Mutex::default(),
        }
    }

    /// The default location's configuration (the coordinator's configured storage).
    pub fn default_location(&self) -> &StorageConfig {
        &self.default
    }

    /// Adds a location after proving it works: `public` holds the options that are not secret,
    /// `writer` and `maintainer` the secret options of each role. Every role's credential is
    /// probed ([`storage_probe::probe`]) and the location is stored only when each can write,
    /// read, list and (the maintainer) delete. Idempotent it is not: a taken name is refused.
    pub async fn add(
        &self,
        name: &str,
        public: StorageConfig,
        writer: BTreeMap<String, Secret>,
        maintainer: Option<BTreeMap<String, Secret>>,
    ) -> CoreResult<(LocationView, Vec<storage_probe::ProbeReport>)> {
        location_plan::check_new_name(name)?;
        if self.store.storage_location(name).await?.is_some() {
            return Err(CoreError::AlreadyExists(format!(
                "storage location {name:?} already exists"
            )));
        }
        let writer_config = location_plan::with_secrets(&public, &writer)?;
        let maintainer_config = match &maintainer {
            Some(m) => Some(location_plan::with_secrets(&public, m)?),
            None => None,
        };
        let mut reports = vec![storage_probe::probe(&writer_config, Role::Writer).await];
        if let Some(m) = &maintainer_config {
            reports.push(storage_probe::probe(m, Role::Maintainer).await);
        }
        if let Some(bad) = reports.iter().find(|r| !r.usable()) {
            return Err(CoreError::FailedPrecondition(format!(
                "storage location {name:?} is not usable: {}",
                bad.summary()
            )));
        }
        let record = StorageLocationRecord {
            name: name.to_string(),
            kind: public.kind,
            options: public.options.clone(),
            sealed_writer: self.seal(name, Role::Writer, &writer)?,
            sealed_maintainer: match &maintainer {
                Some(m) => Some(self.seal(name, Role::Maintainer, m)?),
                None => None,
            },
            created_at_ms: self.clock.now_ms(),
        };
        self.store.create_storage_location(&record).await?;
        tracing::info!(location = name, kind = %public.kind, maintainer = maintainer.is_some(), "storage location added");
        Ok((self.view(&record, Vec::new()), reports))
    }

    /// Every location, the default first, each with the organisations that use it.
    pub async fn list(&self) -> CoreResult<Vec<LocationView>> {
        let orgs = self.store.orgs().await?;
        let users = |name: &str| -> Vec<String> {
            orgs.iter()
                .filter(|o| o.storage.as_deref().unwrap_or(DEFAULT_LOCATION) == name)
                .map(|o| o.name.clone())
                .collect()
        };
        let mut out = vec![self.default_view(users(DEFAULT_LOCATION))];
        for r in self.store.storage_locations().await? {
            let used_by = users(&r.name);
            out.push(self.view(&r, used_by));
        }
        Ok(out)
    }

    /// One location by name.
    pub async fn show(&self, name: &str) -> CoreResult<LocationView> {
        self.list()
            .await?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| not_found("storage location", name))
    }

    /// Probes a location with each of its credentials (`storage check NAME`).
    pub async fn check(&self, name: &str) -> CoreResult<Vec<storage_probe::ProbeReport>> {
        let writer = self.config(Some(name), Role::Writer).await?;
        let mut reports = vec![storage_probe::probe(&writer, Role::Writer).await];
        if name != DEFAULT_LOCATION && self.record(name).await?.sealed_maintainer.is_some() {
            let maintainer = self.config(Some(name), Role::Maintainer).await?;
            reports.push(storage_probe::probe(&maintainer, Role::Maintainer).await);
        }
        Ok(reports)
    }

    /// Points `org_name`'s backups at location `name` (`default` for the configured storage).
    /// Refused once any of its repositories has a snapshot repository: its snapshots would stay
    /// where they are while new ones went elsewhere, and a repository keeps one snapshot
    /// repository (moving existing backups is `storage move`, `storage_move/`). Returns the
    /// organisation as stored.
    pub async fn set_org_location(&self, org_name: &str, name: &str) -> CoreResult<OrgRecord> {
        if name != DEFAULT_LOCATION {
            self.record(name).await?;
        }
        let mut org = self.org_named(org_name).await?;
        if org.storage.as_deref().unwrap_or(DEFAULT_LOCATION) == name {
            return Ok(org);
        }
        let repos = self.store.org_repos(&org.id).await?;
        if let Some(r) = repos.iter().find(|r| r.sealed_master_key.is_some()) {
            return Err(CoreError::FailedPrecondition(format!(
                "organisation {org_name} already has backups in storage location {:?} (repository {} and maybe others); move them with `repovault storage move {org_name} --to {name}`",
                org.storage.as_deref().unwrap_or(DEFAULT_LOCATION),
                r.full_name()
            )));
        }
        org.storage = (name != DEFAULT_LOCATION).then(|| name.to_string());
        let mut batch = Batch::default();
        batch.org(&org);
        self.store.apply(batch).await?;
        tracing::info!(org = %org.name, location = name, "organisation storage location set");
        Ok(org)
    }

    /// Copies every completed backup of `org_name` to location `copy_to` from now on (`None`:
    /// stops copying; copies made stay). The copy must be another location than the primary.
    pub async fn set_org_copy(
        &self,
        org_name: &str,
        copy_to: Option<&str>,
    ) -> CoreResult<OrgRecord> {
        let mut org = self.org_named(org_name).await?;
        if let Some(name) = copy_to {
            if name != DEFAULT_LOCATION {
                self.record(name).await?;
            }
            if org.storage.as_deref().unwrap_or(DEFAULT_LOCATION) == name {
                return Err(CoreError::InvalidArgument(format!(
                    "organisation {org_name} keeps its backups in {name} already: a second copy goes to another location"
                )));
            }
        }
        org.copy_to = copy_to.map(str::to_string);
        let mut batch = Batch::default();
        batch.org(&org);
        self.store.apply(batch).await?;
        tracing::info!(org = %org.name, copy_to = copy_to.unwrap_or("none"), "organisation second copy set");
        Ok(org)
    }

    /// The writer's configuration of `org`'s second copy (a restore `--from-copy`).
    pub async fn copy_lease_storage(&self, org: &OrgRecord) -> CoreResult<StorageConfig> {
        let name = org.copy_to.as_deref().ok_or_else(|| {
            CoreError::FailedPrecondition(format!("organisation {} has no second copy", org.name))
        })?;
        self.config(Some(name), Role::Writer).await
    }

    /// The storage a worker's task on `org`'s repositories uses: the writer's credential.
    pub async fn lease_storage(&self, org: &OrgRecord) -> CoreResult<StorageConfig> {
        self.config(org.storage.as_deref(), Role::Writer).await
    }

    /// The writer's configuration of the location of organisation `org_id` (what download
    /// links are signed with: a link grants one read, whoever signs it).
    pub async fn writer_config_for(&self, org_id: &OrgId) -> CoreResult<StorageConfig> {
        let org = self
            .store
            .org(org_id)
            .await?
            .ok_or_else(|| not_found("organisation", org_id.as_str()))?;
        self.lease_storage(&org).await
    }

    /// The maintainer's configuration of `org`'s location (the coordinator's own calls that
    /// opendal has no operation for: S3 Object Lock).
    pub async fn maintainer_config(&self, org: &OrgRecord) -> CoreResult<StorageConfig> {
        self.config(org.storage.as_deref(), Role::Maintainer).await
    }

    /// The coordinator's operator (the maintainer's credential) for `org`'s location.
    pub async fn operator(&self, org: &OrgRecord) -> CoreResult<Operator> {
        self.location_operator(org.storage.as_deref()).await
    }

    /// As [`Self::operator`], by organisation id.
    pub async fn operator_for(&self, org_id: &OrgId) -> CoreResult<Operator> {
        let org = self
            .store
            .org(org_id)
            .await?
            .ok_or_else(|| not_found("organisation", org_id.as_str()))?;
        self.operator(&org).await
    }

    /// The coordinator's operator of every location, the default first (sweeps that cover all
    /// storage).
    pub async fn all_operators(&self) -> CoreResult<Vec<(String, Operator)>> {
        let mut out = vec![(
            DEFAULT_LOCATION.to_string(),
            self.location_operator(None).await?,
        )];
        for r in self.store.storage_locations().await? {
            let op = self.location_operator(Some(&r.name)).await?;
            out.push((r.name, op));
        }
        Ok(out)
    }

    /// The coordinator's operator of location `name` (`default` included); not found when no
    /// such location exists.
    pub async fn named_operator(&self, name: &str) -> CoreResult<Operator> {
        if name != DEFAULT_LOCATION {
            self.record(name).await?;
        }
        self.location_operator(Some(name)).await
    }

    async fn location_operator(&self, name: Option<&str>) -> CoreResult<Operator> {
        let key = name.unwrap_or(DEFAULT_LOCATION).to_string();
        if let Some(op) = self.operators.lock().get(&key) {
            return Ok(op.clone());
        }
        let config = self.config(name, Role::Maintainer).await?;
        let op = config
            .operator()
            .map_err(|e| CoreError::Storage(format!("location {key:?}: {e}")))?;
        self.operators.lock().insert(key, op.clone());
        Ok(op)
    }

    /// The full configuration of location `name` (`None`: the default) for `role`.
    async fn config(&self, name: Option<&str>, role: Role) -> CoreResult<StorageConfig> {
        let name = match name {
            None | Some(DEFAULT_LOCATION) => return Ok(self.default.clone()),
            Some(n) => n,
        };
        let r = self.record(name).await?;
        let sealed = match role {
            Role::Maintainer => r.sealed_maintainer.as_ref().unwrap_or(&r.sealed_writer),
            Role::Writer => &r.sealed_writer,
        };
        let sealed_role = if role == Role::Maintainer && r.sealed_maintainer.is_some() {
            Role::Maintainer
        } else {
            Role::Writer
        };
        let json = self.secrets.open(
            SealContext::StorageCredential(&r.name, sealed_role.as_str()),
            sealed,
        )?;
        let secret_options = location_plan::secret_options_from_json(json.expose())?;
        let public = StorageConfig {
            kind: r.kind,
            options: r.options.clone(),
        };
        location_plan::with_secrets(&public, &secret_options)
    }

    async fn org_named(&self, name: &str) -> CoreResult<OrgRecord> {
        self.store
            .org_by_name(name)
            .await?
            .ok_or_else(|| not_found("organisation", name))
    }

    async fn record(&self, name: &str) -> CoreResult<StorageLocationRecord> {
        self.store
            .storage_location(name)
            .await?
            .ok_or_else(|| not_found("storage location", name))
    }

    fn seal(
        &self,
        name: &str,
        role: Role,
        secrets: &BTreeMap<String, Secret>,
    ) -> CoreResult<String> {
        let json = location_plan::secret_options_to_json(secrets)?;
        Ok(self
            .secrets
            .seal(SealContext::StorageCredential(name, role.as_str()), &json))
    }

    fn default_view(&self, orgs: Vec<String>) -> LocationView {
        let secret_names = self
            .default
            .options
            .keys()
            .filter(|k| repovault_common::storage::is_secret_option(k))
            .cloned()
            .collect::<Vec<_>>();
        LocationView {
            name: DEFAULT_LOCATION.to_string(),
            config: self.default.public_part(),
            writer_secrets: secret_names,
            maintainer_secrets: Vec::new(),
            orgs,
            created_at_ms: None,
        }
    }

    fn view(&self, r: &StorageLocationRecord, orgs: Vec<String>) -> LocationView {
        let names = |role: Role, sealed: &str| -> Vec<String> {
            self.secrets
                .open(
                    SealContext::StorageCredential(&r.name, role.as_str()),
                    sealed,
                )
                .ok()
                .and_then(|j| location_plan::secret_options_from_json(j.expose()).ok())
                .map(|m| m.into_keys().collect())
                .unwrap_or_default()
        };
        LocationView {
            name: r.name.clone(),
            config: StorageConfig {
                kind: r.kind,
                options: r.options.clone(),
            },
            writer_secrets: names(Role::Writer, &r.sealed_writer),
            maintainer_secrets: r
                .sealed_maintainer
                .as_deref()
                .map(|s| names(Role::Maintainer, s))
                .unwrap_or_default(),
            orgs,
            created_at_ms: Some(r.created_at_ms),
        }
    }
}
