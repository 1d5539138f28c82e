//! Published router artifacts in PostgreSQL (see artifact.rs).

use super::PostgresStore;
use crate::artifact::{self, Activation, ArtifactVersion, PublishedArtifact};
use crate::sqlite::now_ms;
use crate::StoreError;

pub(super) fn publish(
    s: &PostgresStore,
    router: &[u8],
    catalog: Option<&[u8]>,
    note: Option<&str>,
) -> Result<ArtifactVersion, StoreError> {
    artifact::check(router, catalog)?;
    let sha = artifact::artifact_sha256(router, catalog);
    let now = now_ms();
    let mut conn = s.conn()?;
    let mut tx = conn.transaction().map_err(|e| s.pg(e))?;
    let version: i64 = tx
        .query_one(
            "INSERT INTO artifacts (time_ms, sha256, router, catalog, note) VALUES ($1, $2, $3, $4, $5) RETURNING version",
            &[&now, &sha, &router, &catalog, &note],
        )
        .map_err(|e| s.pg(e))?
        .get(0);
    tx.execute(
        "INSERT INTO artifact_activations (version, time_ms) VALUES ($1, $2)",
        &[&version, &now],
    )
    .map_err(|e| s.pg(e))?;
    tx.commit().map_err(|e| s.pg(e))?;
    Ok(ArtifactVersion {
        version,
        sha256: sha,
        time_ms: now,
        has_catalog: catalog.is_some(),
        note: note.map(str::to_string),
        active: true,
    })
}

pub(super) fn activate(s: &PostgresStore, version: i64) -> Result<ArtifactVersion, StoreError> {
    {
        let mut conn = s.conn()?;
        let mut tx = conn.transaction().map_err(|e| s.pg(e))?;
        let known = tx
            .query_opt("SELECT 1 FROM artifacts WHERE version = $1", &[&version])
            .map_err(|e| s.pg(e))?;
        if known.is_none() {
            return Err(artifact::unknown_version(version));
        }
        tx.execute(
            "INSERT INTO artifact_activations (version, time_ms) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .map_err(|e| s.pg(e))?;
        tx.commit().map_err(|e| s.pg(e))?;
    }
    versions(s)?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| artifact::unknown_version(version))
}

pub(super) fn active(s: &PostgresStore) -> Result<Option<Activation>, StoreError> {
    s.conn()?
        .query_opt(
            "SELECT seq, version FROM artifact_activations ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .map(|r| {
            r.map(|r| Activation {
                seq: r.get(0),
                version: r.get(1),
            })
        })
        .map_err(|e| s.pg(e))
}

pub(super) fn load(
    s: &PostgresStore,
    version: i64,
) -> Result<Option<PublishedArtifact>, StoreError> {
    let active = active(s)?.map(|a| a.version);
    let row = s
        .conn()?
        .query_opt(
            "SELECT version, sha256, time_ms, note, router, catalog FROM artifacts WHERE version = $1",
            &[&version],
        )
        .map_err(|e| s.pg(e))?;
    Ok(row.map(|r| {
        let catalog: Option<Vec<u8>> = r.get(5);
        PublishedArtifact {
            info: ArtifactVersion {
                version: r.get(0),
                sha256: r.get(1),
                time_ms: r.get(2),
                has_catalog: catalog.is_some(),
                note: r.get(3),
                active: active == Some(version),
            },
            router: r.get(4),
            catalog,
        }
    }))
}

pub(super) fn versions(s: &PostgresStore) -> Result<Vec<ArtifactVersion>, StoreError> {
    let active = active(s)?.map(|a| a.version);
    let rows = s
        .conn()?
        .query(
            "SELECT version, sha256, time_ms, note, catalog IS NOT NULL FROM artifacts ORDER BY version",
            &[],
        )
        .map_err(|e| s.pg(e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let version: i64 = r.get(0);
            ArtifactVersion {
                version,
                sha256: r.get(1),
                time_ms: r.get(2),
                note: r.get(3),
                has_catalog: r.get(4),
                active: active == Some(version),
            }
        })
        .collect())
}
