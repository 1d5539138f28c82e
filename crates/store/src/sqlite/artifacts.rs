//! Published router artifacts in SQLite (see artifact.rs).

use rusqlite::{params, OptionalExtension};

use super::{now_ms, SqliteStore};
use crate::artifact::{self, Activation, ArtifactVersion, PublishedArtifact};
use crate::{OutcomeStore, StoreError};

pub(super) fn publish_artifact(
    s: &SqliteStore,
    router: &[u8],
    catalog: Option<&[u8]>,
    note: Option<&str>,
) -> Result<ArtifactVersion, StoreError> {
    artifact::check(router, catalog)?;
    let sha = artifact::artifact_sha256(router, catalog);
    let now = now_ms();
    let mut conn = s.lock();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| s.err(e))?;
    tx.execute(
        "INSERT INTO artifacts (time_ms, sha256, router, catalog, note) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, sha, router, catalog, note],
    )
    .map_err(|e| s.err(e))?;
    let version = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO artifact_activations (version, time_ms) VALUES (?1, ?2)",
        params![version, now],
    )
    .map_err(|e| s.err(e))?;
    tx.commit().map_err(|e| s.err(e))?;
    Ok(ArtifactVersion {
        version,
        sha256: sha,
        time_ms: now,
        has_catalog: catalog.is_some(),
        note: note.map(str::to_string),
        active: true,
    })
}

pub(super) fn activate_artifact(
    s: &SqliteStore,
    version: i64,
) -> Result<ArtifactVersion, StoreError> {
    {
        let mut conn = s.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| s.err(e))?;
        let known = tx
            .query_row(
                "SELECT 1 FROM artifacts WHERE version = ?1",
                [version],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| s.err(e))?;
        if known.is_none() {
            return Err(artifact::unknown_version(version));
        }
        tx.execute(
            "INSERT INTO artifact_activations (version, time_ms) VALUES (?1, ?2)",
            params![version, now_ms()],
        )
        .map_err(|e| s.err(e))?;
        tx.commit().map_err(|e| s.err(e))?;
    }
    s.artifact_versions()?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| artifact::unknown_version(version))
}

pub(super) fn active_artifact(s: &SqliteStore) -> Result<Option<Activation>, StoreError> {
    s.lock()
        .query_row(
            "SELECT seq, version FROM artifact_activations ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(Activation {
                    seq: r.get(0)?,
                    version: r.get(1)?,
                })
            },
        )
        .optional()
        .map_err(|e| s.err(e))
}

pub(super) fn load_artifact(
    s: &SqliteStore,
    version: i64,
) -> Result<Option<PublishedArtifact>, StoreError> {
    let active = s.active_artifact()?.map(|a| a.version);
    s.lock()
        .query_row(
            "SELECT version, sha256, time_ms, note, router, catalog FROM artifacts WHERE version = ?1",
            [version],
            |r| {
                let catalog: Option<Vec<u8>> = r.get(5)?;
                Ok(PublishedArtifact {
                    info: ArtifactVersion {
                        version: r.get(0)?,
                        sha256: r.get(1)?,
                        time_ms: r.get(2)?,
                        has_catalog: catalog.is_some(),
                        note: r.get(3)?,
                        active: active == Some(version),
                    },
                    router: r.get(4)?,
                    catalog,
                })
            },
        )
        .optional()
        .map_err(|e| s.err(e))
}

pub(super) fn artifact_versions(s: &SqliteStore) -> Result<Vec<ArtifactVersion>, StoreError> {
    let active = s.active_artifact()?.map(|a| a.version);
    let conn = s.lock();
    let mut q = conn
        .prepare(
            "SELECT version, sha256, time_ms, note, catalog IS NOT NULL FROM artifacts ORDER BY version",
        )
        .map_err(|e| s.err(e))?;
    let rows = q
        .query_map([], |r| {
            let version: i64 = r.get(0)?;
            Ok(ArtifactVersion {
                version,
                sha256: r.get(1)?,
                time_ms: r.get(2)?,
                note: r.get(3)?,
                has_catalog: r.get(4)?,
                active: active == Some(version),
            })
        })
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| s.err(e));
    rows
}
