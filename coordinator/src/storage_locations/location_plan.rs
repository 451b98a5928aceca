//! The pure rules of storage locations: names, roles, and how a location's options split into
//! the public part (kept as is) and each role's secret part (sealed).

use std::collections::BTreeMap;

use repovault_common::secret::Secret;
use repovault_common::storage::{StorageConfig, is_secret_option};

use crate::error::{CoreError, CoreResult};

/// The coordinator's configured storage, always present, never stored.
pub const DEFAULT_LOCATION: &str = "default";

/// Who uses a credential: workers in their leases, or the coordinator's own maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Backups, verification, restores, drills: create, read and list; deleting is not needed.
    Writer,
    /// Forget, prune, purge and catalog objects: everything, delete included.
    Maintainer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Maintainer => "maintainer",
        }
    }
}

/// A new location's name: a valid name that is not the default's.
pub fn check_new_name(name: &str) -> CoreResult<()> {
    repovault_common::names::validate_name("storage location", name)
        .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
    if name == DEFAULT_LOCATION {
        return Err(CoreError::InvalidArgument(format!(
            "storage location {DEFAULT_LOCATION:?} is the coordinator's configured storage; choose another name"
        )));
    }
    Ok(())
}

/// `public` with `secrets` added, validated as a whole. A secret option among the public ones,
/// or a public one among the secrets, is refused: a key must never be stored unsealed.
pub fn with_secrets(
    public: &StorageConfig,
    secrets: &BTreeMap<String, Secret>,
) -> CoreResult<StorageConfig> {
    if let Some(k) = public.options.keys().find(|k| is_secret_option(k)) {
        return Err(CoreError::InvalidArgument(format!(
            "storage option {k:?} is a secret: give it from a variable or a file, not as a plain option"
        )));
    }
    if let Some(k) = secrets.keys().find(|k| !is_secret_option(k)) {
        return Err(CoreError::InvalidArgument(format!(
            "storage option {k:?} is not a secret: give it as a plain option"
        )));
    }
    let mut config = public.clone();
    for (k, v) in secrets {
        config.options.insert(k.clone(), v.expose().to_string());
    }
    config
        .validate()
        .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
    Ok(config)
}

/// The secret options as the JSON that is sealed.
pub fn secret_options_to_json(secrets: &BTreeMap<String, Secret>) -> CoreResult<Secret> {
    let plain: BTreeMap<&str, &str> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    serde_json::to_string(&plain)
        .map(Secret::new)
        .map_err(|e| CoreError::Internal(format!("encoding storage secrets: {e}")))
}

/// The secret options from their opened JSON.
pub fn secret_options_from_json(json: &str) -> CoreResult<BTreeMap<String, Secret>> {
    let plain: BTreeMap<String, String> = serde_json::from_str(json)
        .map_err(|e| CoreError::Internal(format!("decoding storage secrets: {e}")))?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use repovault_common::storage::StorageKind;

    fn s3_public() -> StorageConfig {
        StorageConfig {
            kind: StorageKind::S3,
            options: [("bucket", "b"), ("region", "eu-west-1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        }
    }

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn secrets_join_the_public_options_and_never_the_other_way() {
        let s = keys(&[("access_key_id", "AKIA"), ("secret_access_key", "s3cr3t")]);
        let full = with_secrets(&s3_public(), &s).expect("valid");
        assert_eq!(full.options.len(), 4);
        assert_eq!(full.public_part(), s3_public());

        let mut leaked = s3_public();
        leaked
            .options
            .insert("secret_access_key".into(), "x".into());
        let e = with_secrets(&leaked, &s).expect_err("a secret among the plain options");
        assert!(e.to_string().contains("is a secret"), "{e}");
        let e = with_secrets(&s3_public(), &keys(&[("bucket", "x")])).expect_err("not secret");
        assert!(e.to_string().contains("not a secret"), "{e}");
        let e = with_secrets(&s3_public(), &keys(&[("access_key_id", "AKIA")]))
            .expect_err("half a pair");
        assert!(e.to_string().contains("go together"), "{e}");
    }

    #[test]
    fn secret_json_round_trips_and_names_are_checked() {
        let s = keys(&[("account_key", "k==")]);
        let json = secret_options_to_json(&s).expect("json");
        let back = secret_options_from_json(json.expose()).expect("back");
        assert_eq!(back.get("account_key").map(Secret::expose), Some("k=="));
        assert!(check_new_name("client-a").is_ok());
        assert!(check_new_name("default").is_err());
        assert!(check_new_name("a/b").is_err());
    }
}
