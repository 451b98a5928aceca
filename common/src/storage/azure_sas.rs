//! Azure shared access signatures, signed here with the account key.
//!
//! opendal's Azure presign always lasts one hour; repovault signs its own so a download link
//! lasts what was asked for, and so a location's `writer` credential can be a SAS with exactly
//! the permissions a backup needs. Both kinds follow the service version
//! [`SAS_VERSION`]'s string-to-sign (Azure's "Create a service SAS" and "Create an account SAS"):
//! the fields below, newline-separated, HMAC-SHA256 with the base64-decoded account key.
//! A SAS is a secret: it is returned as a query string and never logged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The storage service version the signatures are made for: the oldest whose string-to-sign
/// includes the encryption scope field, accepted by Azure and by Azurite 3.35.
pub const SAS_VERSION: &str = "2021-08-06";

#[derive(Debug, thiserror::Error)]
pub enum SasError {
    #[error("the Azure account key is not base64")]
    KeyNotBase64,
    #[error("SAS permissions {0:?}: only the letters racwdl, in that order, are allowed")]
    Permissions(String),
}

/// What a service SAS grants access to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SasScope<'a> {
    /// Every blob of a container (`sr=c`): a location's credential.
    Container,
    /// One blob (`sr=b`): a download link.
    Blob(&'a str),
}

/// A service SAS for `container` (or one blob in it) with `permissions` (a subset of `racwdl`)
/// valid from `start` until `expiry` (both unix seconds), as a query string without `?`.
pub fn service_sas(
    account: &str,
    key_b64: &str,
    container: &str,
    scope: SasScope<'_>,
    permissions: &str,
    start: i64,
    expiry: i64,
) -> Result<String, SasError> {
    check_permissions(permissions)?;
    let (resource, canonical) = match scope {
        SasScope::Container => ("c", format!("/blob/{account}/{container}")),
        SasScope::Blob(blob) => (
            "b",
            format!(
                "/blob/{account}/{container}/{}",
                blob.trim_start_matches('/')
            ),
        ),
    };
    let (st, se) = (iso(start), iso(expiry));
    // permissions, start, expiry, resource, identifier, IP, protocol, version, resource type,
    // snapshot time, encryption scope, and five response-header overrides (all empty).
    let to_sign = [
        permissions,
        &st,
        &se,
        &canonical,
        "",
        "",
        "",
        SAS_VERSION,
        resource,
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = sign(key_b64, &to_sign)?;
    Ok(format!(
        "sv={SAS_VERSION}&st={}&se={}&sr={resource}&sp={permissions}&sig={}",
        encode(&st),
        encode(&se),
        encode(&sig)
    ))
}

/// An account SAS over the blob service for every resource type (`srt=sco`): what an operator
/// (or a test) uses to create containers.
pub fn account_sas(
    account: &str,
    key_b64: &str,
    permissions: &str,
    start: i64,
    expiry: i64,
) -> Result<String, SasError> {
    let (st, se) = (iso(start), iso(expiry));
    // account, permissions, services, resource types, start, expiry, IP, protocol, version,
    // encryption scope, and a final empty line.
    let to_sign = [
        account,
        permissions,
        "b",
        "sco",
        &st,
        &se,
        "",
        "",
        SAS_VERSION,
        "",
        "",
    ]
    .join("\n");
    let sig = sign(key_b64, &to_sign)?;
    Ok(format!(
        "sv={SAS_VERSION}&ss=b&srt=sco&st={}&se={}&sp={permissions}&sig={}",
        encode(&st),
        encode(&se),
        encode(&sig)
    ))
}

fn check_permissions(p: &str) -> Result<(), SasError> {
    let order = "racwdl";
    let mut last = None;
    for c in p.chars() {
        let Some(i) = order.find(c) else {
            return Err(SasError::Permissions(p.to_string()));
        };
        if last.is_some_and(|l| i <= l) {
            return Err(SasError::Permissions(p.to_string()));
        }
        last = Some(i);
    }
    if p.is_empty() {
        return Err(SasError::Permissions(p.to_string()));
    }
    Ok(())
}

fn sign(key_b64: &str, to_sign: &str) -> Result<String, SasError> {
    let key = STANDARD
        .decode(key_b64)
        .map_err(|_| SasError::KeyNotBase64)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::KeyNotBase64)?;
    mac.update(to_sign.as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Unix seconds as the ISO 8601 UTC form SAS fields use (`2026-12-05T10:00:00Z`).
fn iso(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn permissions_are_checked() {
        assert!(check_permissions("rcl").is_ok());
        assert!(check_permissions("racwdl").is_ok());
        assert!(check_permissions("lr").is_err(), "out of order");
        assert!(check_permissions("rx").is_err());
        assert!(check_permissions("").is_err());
    }

    #[test]
    fn a_sas_names_its_fields_and_changes_with_each() {
        let a = service_sas("acct", KEY, "c", SasScope::Container, "rcl", 0, 3600).expect("sas");
        assert!(
            a.starts_with("sv=2021-08-06&st=1970-01-01T00%3A00%3A00Z&se=1970-01-01T01%3A00%3A00Z&sr=c&sp=rcl&sig="),
            "{a}"
        );
        let b = service_sas("acct", KEY, "c", SasScope::Blob("x"), "r", 0, 3600).expect("sas");
        assert!(b.contains("&sr=b&sp=r&"), "{b}");
        let later =
            service_sas("acct", KEY, "c", SasScope::Container, "rcl", 0, 3601).expect("sas");
        assert_ne!(a, later, "the expiry is signed");
        assert!(matches!(
            service_sas("acct", "not base64!", "c", SasScope::Container, "r", 0, 1),
            Err(SasError::KeyNotBase64)
        ));
        let acct = account_sas("acct", KEY, "racwdl", 0, 60).expect("sas");
        assert!(acct.contains("&ss=b&srt=sco&"), "{acct}");
    }
}
