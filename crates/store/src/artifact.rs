//! Published router artifacts: versions of the router (and optionally the
//! catalog) kept in the store, so every replica on one store serves the
//! same one (`pointsman store publish`; replicas poll the active version).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::StoreError;

/// Largest router artifact or catalog one version may hold, in bytes (the
/// shipped router artifact is about 1.3 MB).
pub const MAX_ARTIFACT_BYTES: usize = 64 << 20;

/// One published version, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactVersion {
    /// 1, 2, 3 ... in publish order.
    pub version: i64,
    /// [`artifact_sha256`] of the bytes.
    pub sha256: String,
    /// When it was published, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Whether a catalog was published with the router artifact.
    pub has_catalog: bool,
    /// Free text given at publish (who, why).
    pub note: Option<String>,
    /// Whether it is the version replicas should serve now.
    pub active: bool,
}

/// One published version with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedArtifact {
    pub info: ArtifactVersion,
    /// The router artifact (JSON written by `pointsman train router`).
    pub router: Vec<u8>,
    /// The catalog (TOML), if one was published with it; otherwise the
    /// replica keeps the catalog it was started with.
    pub catalog: Option<Vec<u8>>,
}

/// Which version is active. `seq` grows with every publish and every
/// activation, so a replica sees a rollback to a version it once served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    pub seq: i64,
    pub version: i64,
}

/// The content hash of a published version: SHA-256 over the router
/// bytes, then (when there is a catalog) a 0 byte and the catalog bytes.
pub fn artifact_sha256(router: &[u8], catalog: Option<&[u8]>) -> String {
    let mut h = Sha256::new();
    h.update(router);
    if let Some(c) = catalog {
        h.update([0u8]);
        h.update(c);
    }
    format!("{:x}", h.finalize())
}

/// What a store refuses to publish: empty or oversized bytes.
pub(crate) fn check(router: &[u8], catalog: Option<&[u8]>) -> Result<(), StoreError> {
    for (what, bytes) in [("router artifact", Some(router)), ("catalog", catalog)] {
        let Some(b) = bytes else { continue };
        if b.is_empty() {
            return Err(StoreError::Invalid(format!("the {what} is empty")));
        }
        if b.len() > MAX_ARTIFACT_BYTES {
            return Err(StoreError::Invalid(format!(
                "the {what} is {} bytes, over the store's maximum of {MAX_ARTIFACT_BYTES}",
                b.len()
            )));
        }
    }
    Ok(())
}

/// The error for activating a version that was never published.
pub(crate) fn unknown_version(version: i64) -> StoreError {
    StoreError::Invalid(format!("no published artifact version {version}"))
}
