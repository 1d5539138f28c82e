//! The PostgreSQL schema, one step per version; `schema_version` holds the
//! last applied. The same tables as SQLite's (sqlite.rs), in PostgreSQL's
//! types; JSON columns stay text so both backends export the same bytes.

use r2d2_postgres::postgres::Client;

use crate::migrate::{self, Migration};
use crate::StoreError;

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "decisions, outcomes and gateway calls",
        step: BASELINE,
    },
    Migration {
        what: "published router artifacts",
        step: ARTIFACTS,
    },
    Migration {
        what: "rollout shadow decisions and events, exploration propensities",
        step: ROLLOUT_AND_EXPLORATION,
    },
    Migration {
        what: "shared per-tenant spend counters",
        step: TENANT_SPEND,
    },
];

/// SQLite's version 4 (sqlite/spend.rs) in PostgreSQL's types.
const TENANT_SPEND: &str = "
CREATE TABLE tenant_spend (
    tenant          TEXT NOT NULL,
    period          TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    usd             DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, period, period_start_ms)
);
";

/// SQLite's version 3 (sqlite.rs: migrate_add_rollout and
/// migrate_add_propensity) in PostgreSQL's types.
const ROLLOUT_AND_EXPLORATION: &str = "
ALTER TABLE decisions
    ADD COLUMN propensity DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    ADD COLUMN explored   BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN shadow     TEXT;
CREATE TABLE rollout_events (
    seq          BIGSERIAL PRIMARY KEY,
    time_ms      BIGINT NOT NULL,
    action       TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version   TEXT NOT NULL,
    mode         TEXT NOT NULL,
    who          TEXT NOT NULL,
    why          TEXT NOT NULL
);
-- Seeds the per-tenant budget counters at start-up.
CREATE INDEX decisions_by_tenant_time ON decisions(tenant, time_ms);
";

const BASELINE: &str = "
CREATE TABLE decisions (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    time_ms     BIGINT NOT NULL,
    tenant      TEXT,
    prompt      TEXT,
    model       TEXT NOT NULL,
    task        TEXT NOT NULL,
    difficulty  DOUBLE PRECISION NOT NULL,
    task_scores TEXT NOT NULL,
    candidates  TEXT NOT NULL,
    versions    TEXT NOT NULL,
    embedding   BYTEA NOT NULL
);
CREATE TABLE outcomes (
    seq           BIGSERIAL PRIMARY KEY,
    decision_id   TEXT NOT NULL REFERENCES decisions(id),
    model         TEXT NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    cost_usd      DOUBLE PRECISION,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    latency_ms    DOUBLE PRECISION,
    time_ms       BIGINT NOT NULL
);
CREATE INDEX outcomes_by_decision ON outcomes(decision_id);
CREATE TABLE calls (
    seq           BIGSERIAL PRIMARY KEY,
    decision_id   TEXT NOT NULL REFERENCES decisions(id),
    model         TEXT NOT NULL,
    error_class   TEXT NOT NULL,
    status        INTEGER,
    latency_ms    DOUBLE PRECISION NOT NULL,
    ttft_ms       DOUBLE PRECISION,
    input_tokens  BIGINT,
    output_tokens BIGINT,
    cost_usd      DOUBLE PRECISION,
    time_ms       BIGINT NOT NULL
);
CREATE INDEX calls_by_decision ON calls(decision_id);
";

const ARTIFACTS: &str = "
CREATE TABLE artifacts (
    version  BIGSERIAL PRIMARY KEY,
    time_ms  BIGINT NOT NULL,
    sha256   TEXT NOT NULL,
    router   BYTEA NOT NULL,
    catalog  BYTEA,
    note     TEXT
);
-- The active version is the last row; every publish and rollback adds one.
CREATE TABLE artifact_activations (
    seq      BIGSERIAL PRIMARY KEY,
    version  BIGINT NOT NULL REFERENCES artifacts(version),
    time_ms  BIGINT NOT NULL
);
";

/// Any constant: the advisory lock that serialises replicas migrating one
/// database at the same start-up.
const MIGRATION_LOCK: i64 = 0x706f_696e_7473;

/// Brings the schema to this binary's version in one transaction (DDL is
/// transactional in PostgreSQL: a failed step leaves the old schema).
pub(crate) fn migrate(client: &mut Client, shown: &str) -> Result<(), StoreError> {
    let err = |e: r2d2_postgres::postgres::Error| StoreError::Backend {
        path: shown.to_string(),
        message: format!("schema migration: {}", super::message(&e)),
    };
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(err)?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM schema_version", &[])
        .map_err(err)?
        .and_then(|r| r.get(0));
    let found = i64::from(found.unwrap_or(0));
    let pending = migrate::pending(shown, MIGRATIONS, found)?;
    if pending.is_empty() {
        return Ok(());
    }
    for (i, m) in pending.iter().enumerate() {
        let version = found as usize + i + 1;
        tx.batch_execute(m.step).map_err(|e| StoreError::Backend {
            path: shown.to_string(),
            message: format!(
                "schema migration to version {version} ({}): {}",
                m.what,
                super::message(&e)
            ),
        })?;
    }
    tx.execute("DELETE FROM schema_version", &[]).map_err(err)?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&(MIGRATIONS.len() as i32)],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}
