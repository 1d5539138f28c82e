//! [`OutcomeStore`] on an embedded SQLite database (WAL, synchronous=FULL).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::artifact::{Activation, ArtifactVersion, PublishedArtifact};
use crate::commit::{BatchWriter, GroupCommit};
use crate::migrate::{self, Migration};
use crate::{
    DecisionMeta, DecisionWithOutcomes, LoggedCall, LoggedDecision, LoggedOutcome, OutcomeStore,
    RolloutEvent, SpendKey, StoreError,
};

/// The schema, one step per version (`PRAGMA user_version` records the
/// last applied). Version 1 is the schema stores had before versioning
/// (user_version 0): its `IF NOT EXISTS` statements leave such a store's
/// tables as they are and add what it lacks (a store from before the
/// gateway gets `calls`).
pub(crate) const MIGRATIONS: &[Migration<SqliteStep>] = &[
    Migration {
        what: "decisions, outcomes and gateway calls",
        step: |c| c.execute_batch(BASELINE),
    },
    Migration {
        what: "published router artifacts",
        step: |c| c.execute_batch(ARTIFACTS),
    },
    // Rollout (shadow, rollout_events) and exploration (propensity,
    // explored) were added on their branches as idempotent checks of
    // `pragma table_info`, run on every open; as one versioned step they
    // still run as such checks, so a store already carrying the columns
    // (written by those branches' binaries, at version 0) keeps them.
    Migration {
        what: "rollout shadow decisions and events, exploration propensities",
        step: |c| {
            migrate_add_rollout(c)?;
            migrate_add_propensity(c)
        },
    },
    Migration {
        what: "shared per-tenant spend counters",
        step: |c| c.execute_batch(spend::TENANT_SPEND),
    },
];

/// One SQLite schema step, run inside the migration's transaction.
pub(crate) type SqliteStep = fn(&Connection) -> rusqlite::Result<()>;

const ARTIFACTS: &str = "
CREATE TABLE artifacts (
    version  INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms  INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    router   BLOB NOT NULL,
    catalog  BLOB,
    note     TEXT
);
-- The active version is the last row; every publish and rollback adds one.
CREATE TABLE artifact_activations (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    version  INTEGER NOT NULL REFERENCES artifacts(version),
    time_ms  INTEGER NOT NULL
);
";

const BASELINE: &str = "
CREATE TABLE IF NOT EXISTS decisions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    time_ms     INTEGER NOT NULL,
    tenant      TEXT,
    prompt      TEXT,
    model       TEXT NOT NULL,
    task        TEXT NOT NULL,
    difficulty  REAL NOT NULL,
    task_scores TEXT NOT NULL,   -- JSON object label -> P
    candidates  TEXT NOT NULL,   -- JSON array of {model, p_success, expected_cost_usd}
    versions    TEXT NOT NULL,   -- JSON object
    embedding   BLOB NOT NULL    -- little-endian f32s
);
CREATE TABLE IF NOT EXISTS outcomes (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id   TEXT NOT NULL REFERENCES decisions(id),
    model         TEXT NOT NULL,
    score         REAL NOT NULL,
    cost_usd      REAL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    latency_ms    REAL,
    time_ms       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_by_decision ON outcomes(decision_id);
-- Added with the HTTP gateway; a store from before it gets the table on
-- its first open (CREATE IF NOT EXISTS), its other tables untouched.
CREATE TABLE IF NOT EXISTS calls (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id   TEXT NOT NULL REFERENCES decisions(id),
    model         TEXT NOT NULL,
    error_class   TEXT NOT NULL,
    status        INTEGER,
    latency_ms    REAL NOT NULL,
    ttft_ms       REAL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      REAL,
    time_ms       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_decision ON calls(decision_id);
";

/// The SQLite outcome store. One connection behind a mutex: writes are
/// serialised, and each commit is fsynced (synchronous=FULL) before the
/// call returns. Decisions are group-committed ([`GroupCommit`]): calls
/// that arrive while a commit is being fsynced are written together by
/// the next one.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    commits: GroupCommit,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` in WAL mode with
    /// synchronous=FULL and foreign keys on, after `PRAGMA quick_check`:
    /// a corrupt page anywhere in the file fails the open, naming it,
    /// rather than the first query that touches it (quick_check reads
    /// every page once: about a second per GB).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = backend(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        }
        // SQLite says only "unable to open" or "readonly database"; open
        // the file ourselves first so the error carries the OS reason.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| err(format!("cannot open for writing: {e}")))?;
        let conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err(e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| err(e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(err(format!(
                "could not switch to WAL journal mode (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(|e| err(e.to_string()))?;
        let check: Vec<String> = conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| err(format!("integrity check failed: {e}")))?;
        if check != ["ok"] {
            return Err(err(format!(
                "the database is corrupt (PRAGMA quick_check: {}); restore it from a backup, or move it aside to start a new store",
                check.join("; ")
            )));
        }
        let mut conn = conn;
        migrate_sqlite(&mut conn, path)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            commits: GroupCommit::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (each
        // statement is its own transaction), so a poisoned lock is taken anyway.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: impl ToString) -> StoreError {
        backend(&self.path)(e.to_string())
    }
}

/// Brings the schema to this binary's version (see [`MIGRATIONS`]) in one
/// immediate transaction, so two processes opening one new file do not
/// both migrate it.
fn migrate_sqlite(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = backend(path);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| err(e.to_string()))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| err(e.to_string()))?;
    let shown = path.display().to_string();
    let pending = migrate::pending(&shown, MIGRATIONS, found)?;
    if pending.is_empty() {
        return Ok(());
    }
    for (i, m) in pending.iter().enumerate() {
        let version = found as usize + i + 1;
        (m.step)(&tx).map_err(|e| {
            err(format!(
                "schema migration to version {version} ({}): {e}",
                m.what
            ))
        })?;
    }
    // PRAGMA takes no parameters; the number is ours.
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))
        .map_err(|e| err(e.to_string()))?;
    tx.commit().map_err(|e| err(e.to_string()))
}

impl BatchWriter for SqliteStore {
    /// Inserts `batch` in one transaction (one fsync); one result per row.
    /// A duplicate id fails its own row only; a failed commit fails all.
    fn write_decisions(&self, batch: &[LoggedDecision]) -> Vec<Result<(), StoreError>> {
        let mut conn = self.lock();
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return batch.iter().map(|_| Err(self.err(&e))).collect(),
        };
        let mut results: Vec<Result<(), StoreError>> = batch
            .iter()
            .map(|d| match insert_decision(&tx, d) {
                Ok(()) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::DuplicateDecision(d.id.clone()))
                }
                Err(e) => Err(self.err(e)),
            })
            .collect();
        // With synchronous=FULL the commit returns after the WAL is fsynced.
        if let Err(e) = tx.commit() {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(self.err(&e));
            }
        }
        results
    }
}

/// The shadow/canary rollout's schema change, idempotent: a nullable
/// `shadow` column on `decisions` (JSON [`crate::ShadowDecision`]; added
/// only when `pragma table_info` lacks it, so a store from before keeps
/// its rows, read back with no shadow) and the `rollout_events` table.
/// One function so the versioned migrations can take it over whole.
fn migrate_add_rollout(conn: &Connection) -> rusqlite::Result<()> {
    let has_shadow = conn
        .prepare("SELECT 1 FROM pragma_table_info('decisions') WHERE name = 'shadow'")?
        .exists([])?;
    if !has_shadow {
        conn.execute_batch("ALTER TABLE decisions ADD COLUMN shadow TEXT")?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS rollout_events (
            seq          INTEGER PRIMARY KEY AUTOINCREMENT,
            time_ms      INTEGER NOT NULL,
            action       TEXT NOT NULL,   -- load | promote | abort | mode
            from_version TEXT NOT NULL,
            to_version   TEXT NOT NULL,
            mode         TEXT NOT NULL,
            who          TEXT NOT NULL,
            why          TEXT NOT NULL
        );
        -- Seeds the per-tenant budget counters at start-up.
        CREATE INDEX IF NOT EXISTS decisions_by_tenant_time ON decisions(tenant, time_ms);",
    )
}

fn backend(path: &Path) -> impl Fn(String) -> StoreError + '_ {
    move |message| StoreError::Backend {
        path: path.display().to_string(),
        message,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store types always serialise")
}

/// Adds `propensity` (REAL, default 1.0) and `explored` (INTEGER 0/1,
/// default 0) to a `decisions` table from before exploration existed, so
/// old stores keep opening and their rows read as non-exploring decisions
/// chosen with certainty. Idempotent: a column already there is left
/// alone (checked with `pragma table_info`).
fn migrate_add_propensity(conn: &Connection) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('decisions')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let has = |c: &str| columns.iter().any(|n| n == c);
    if !has("propensity") {
        conn.execute_batch(
            "ALTER TABLE decisions ADD COLUMN propensity REAL NOT NULL DEFAULT 1.0",
        )?;
    }
    if !has("explored") {
        conn.execute_batch("ALTER TABLE decisions ADD COLUMN explored INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

fn insert_decision(conn: &Connection, d: &LoggedDecision) -> rusqlite::Result<()> {
    let blob: Vec<u8> = d.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
    conn.execute(
        "INSERT INTO decisions (id, time_ms, tenant, prompt, model, task, difficulty, task_scores, candidates, versions, embedding, propensity, explored, shadow)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            d.id,
            d.time_ms,
            d.tenant,
            d.prompt,
            d.model,
            d.task,
            d.difficulty as f64,
            to_json(&d.task_scores),
            to_json(&d.candidates),
            to_json(&d.versions),
            blob,
            d.propensity,
            d.explored,
            d.shadow.as_ref().map(to_json),
        ],
    )?;
    Ok(())
}

/// Inserts one outcome row; with `unless_present`, only if the decision
/// has no outcome for that model yet.
fn insert_outcome(
    conn: &Connection,
    o: &LoggedOutcome,
    unless_present: bool,
) -> rusqlite::Result<usize> {
    let guard = if unless_present {
        " WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE decision_id = ?1 AND model = ?2)"
    } else {
        ""
    };
    conn.execute(
        &format!(
            "INSERT INTO outcomes (decision_id, model, score, cost_usd, input_tokens, output_tokens, latency_ms, time_ms)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8{guard}"
        ),
        params![
            o.decision_id,
            o.model,
            o.score,
            o.cost_usd,
            o.input_tokens.map(|t| t as i64),
            o.output_tokens.map(|t| t as i64),
            o.latency_ms,
            o.time_ms
        ],
    )
}

impl OutcomeStore for SqliteStore {
    fn append_decisions(&self, ds: &[LoggedDecision]) -> Vec<Result<(), StoreError>> {
        self.commits.append(ds, self)
    }

    fn append_outcome(&self, o: &LoggedOutcome) -> Result<u32, StoreError> {
        crate::check::outcome(o)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let known = tx
            .query_row(
                "SELECT 1 FROM decisions WHERE id = ?1",
                [&o.decision_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if known.is_none() {
            return Err(StoreError::UnknownDecision(o.decision_id.clone()));
        }
        // Last wins: a model reported again replaces its earlier outcome.
        tx.execute(
            "DELETE FROM outcomes WHERE decision_id = ?1 AND model = ?2",
            [&o.decision_id, &o.model],
        )
        .map_err(|e| self.err(e))?;
        insert_outcome(&tx, o, false).map_err(|e| self.err(e))?;
        let n: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM outcomes WHERE decision_id = ?1",
                [&o.decision_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        // With synchronous=FULL the commit returns after the WAL is fsynced.
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n as u32)
    }

    fn append_calls(
        &self,
        calls: &[LoggedCall],
        failures: &[LoggedOutcome],
    ) -> Result<(), StoreError> {
        for c in calls {
            crate::check::call(c)?;
        }
        for o in failures {
            crate::check::outcome(o)?;
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let ids: std::collections::BTreeSet<&str> = calls
            .iter()
            .map(|c| c.decision_id.as_str())
            .chain(failures.iter().map(|o| o.decision_id.as_str()))
            .collect();
        for id in ids {
            let known = tx
                .query_row("SELECT 1 FROM decisions WHERE id = ?1", [id], |_| Ok(()))
                .optional()
                .map_err(|e| self.err(e))?;
            if known.is_none() {
                return Err(StoreError::UnknownDecision(id.to_string()));
            }
        }
        for c in calls {
            tx.execute(
                "INSERT INTO calls (decision_id, model, error_class, status, latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, time_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    c.decision_id,
                    c.model,
                    c.error_class,
                    c.status,
                    c.latency_ms,
                    c.ttft_ms,
                    c.input_tokens.map(|t| t as i64),
                    c.output_tokens.map(|t| t as i64),
                    c.cost_usd,
                    c.time_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        // An automatic failure never replaces an outcome already there.
        for o in failures {
            insert_outcome(&tx, o, true).map_err(|e| self.err(e))?;
        }
        // With synchronous=FULL the commit returns after the WAL is fsynced.
        tx.commit().map_err(|e| self.err(e))
    }

    fn answered_model(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row(
                "SELECT model FROM calls WHERE decision_id = ?1 AND error_class = 'ok' ORDER BY seq DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn decision_models(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let row: Option<(String, String)> = self
            .lock()
            .query_row(
                "SELECT model, candidates FROM decisions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((chosen, candidates)) = row else {
            return Ok(None);
        };
        let candidates: Vec<crate::LoggedCandidate> =
            serde_json::from_str(&candidates).map_err(|e| self.err(format!("candidates: {e}")))?;
        let mut models = vec![chosen];
        models.extend(candidates.into_iter().map(|c| c.model));
        models.dedup();
        Ok(Some(models))
    }

    fn has_decision(&self, id: &str) -> Result<bool, StoreError> {
        self.lock()
            .query_row("SELECT 1 FROM decisions WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    fn append_rollout_event(&self, e: &RolloutEvent) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO rollout_events (time_ms, action, from_version, to_version, mode, who, why)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![e.time_ms, e.action, e.from_version, e.to_version, e.mode, e.who, e.why],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn rollout_events(&self) -> Result<Vec<RolloutEvent>, StoreError> {
        let conn = self.lock();
        let mut q = conn
            .prepare(
                "SELECT time_ms, action, from_version, to_version, mode, who, why
                 FROM rollout_events ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        q.query_map([], |r| {
            Ok(RolloutEvent {
                time_ms: r.get(0)?,
                action: r.get(1)?,
                from_version: r.get(2)?,
                to_version: r.get(3)?,
                mode: r.get(4)?,
                who: r.get(5)?,
                why: r.get(6)?,
            })
        })
        .and_then(|it| it.collect())
        .map_err(|e| self.err(e))
    }

    fn decision_meta(&self, id: &str) -> Result<Option<DecisionMeta>, StoreError> {
        type Row = (
            String,
            Option<String>,
            String,
            i64,
            Option<f64>,
            Option<f64>,
        );
        let row: Option<Row> = self
            .lock()
            .query_row(
                "SELECT model, tenant, versions, time_ms,
                        json_extract(candidates, '$[0].expected_cost_usd'),
                        (SELECT o.cost_usd FROM outcomes o
                         WHERE o.decision_id = d.id AND o.model = d.model
                         ORDER BY o.seq DESC LIMIT 1)
                 FROM decisions d WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(model, tenant, versions, time_ms, expected, reported)| {
            Ok(DecisionMeta {
                model,
                tenant,
                versions: serde_json::from_str(&versions)
                    .map_err(|e| self.err(format!("versions: {e}")))?,
                time_ms,
                expected_cost_usd: expected,
                reported_cost_usd: reported,
            })
        })
        .transpose()
    }

    fn add_tenant_spend(&self, deltas: &[(SpendKey, f64)]) -> Result<Vec<f64>, StoreError> {
        spend::add(self, deltas)
    }

    fn reconcile_tenant_spend(&self, keys: &[SpendKey]) -> Result<Vec<f64>, StoreError> {
        spend::reconcile(self, keys)
    }

    fn tenant_expected_spend(&self, tenant: &str, since_ms: i64) -> Result<f64, StoreError> {
        // The chosen model is the first candidate (LoggedDecision.candidates).
        self.lock()
            .query_row(
                "SELECT COALESCE(SUM(json_extract(candidates, '$[0].expected_cost_usd')), 0.0)
                 FROM decisions WHERE tenant = ?1 AND time_ms >= ?2",
                params![tenant, since_ms],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn export(
        &self,
        each: &mut dyn FnMut(DecisionWithOutcomes) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let conn = self.lock();
        let mut outcomes = conn
            .prepare(
                "SELECT decision_id, model, score, cost_usd, input_tokens, output_tokens, latency_ms, time_ms
                 FROM outcomes WHERE decision_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let mut calls = conn
            .prepare(
                "SELECT decision_id, model, error_class, status, latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, time_ms
                 FROM calls WHERE decision_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let mut decisions = conn
            .prepare(
                "SELECT id, time_ms, tenant, prompt, model, task, difficulty, task_scores, candidates, versions, embedding, propensity, explored, shadow
                 FROM decisions ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = decisions.query([]).map_err(|e| self.err(e))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let parse = |i: usize| -> Result<serde_json::Value, StoreError> {
                let text: String = row.get(i).map_err(|e| self.err(e))?;
                serde_json::from_str(&text).map_err(|e| self.err(format!("column {i}: {e}")))
            };
            let blob: Vec<u8> = row.get(10).map_err(|e| self.err(e))?;
            let id: String = row.get(0).map_err(|e| self.err(e))?;
            let decision = LoggedDecision {
                id: id.clone(),
                time_ms: row.get(1).map_err(|e| self.err(e))?,
                tenant: row.get(2).map_err(|e| self.err(e))?,
                prompt: row.get(3).map_err(|e| self.err(e))?,
                model: row.get(4).map_err(|e| self.err(e))?,
                task: row.get(5).map_err(|e| self.err(e))?,
                difficulty: row.get::<_, f64>(6).map_err(|e| self.err(e))? as f32,
                task_scores: serde_json::from_value(parse(7)?).map_err(|e| self.err(e))?,
                candidates: serde_json::from_value(parse(8)?).map_err(|e| self.err(e))?,
                versions: serde_json::from_value(parse(9)?).map_err(|e| self.err(e))?,
                embedding: blob
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                propensity: row.get(11).map_err(|e| self.err(e))?,
                explored: row.get(12).map_err(|e| self.err(e))?,
                shadow: match row.get::<_, Option<String>>(13).map_err(|e| self.err(e))? {
                    None => None,
                    Some(text) => Some(
                        serde_json::from_str(&text)
                            .map_err(|e| self.err(format!("column shadow: {e}")))?,
                    ),
                },
            };
            let outs = self.rows_for(&mut outcomes, &id, outcome_row)?;
            let calls = self.rows_for(&mut calls, &id, call_row)?;
            each(DecisionWithOutcomes {
                decision,
                outcomes: outs,
                calls,
            })?;
            count += 1;
        }
        Ok(count)
    }

    fn publish_artifact(
        &self,
        router: &[u8],
        catalog: Option<&[u8]>,
        note: Option<&str>,
    ) -> Result<ArtifactVersion, StoreError> {
        artifacts::publish_artifact(self, router, catalog, note)
    }

    fn activate_artifact(&self, version: i64) -> Result<ArtifactVersion, StoreError> {
        artifacts::activate_artifact(self, version)
    }

    fn active_artifact(&self) -> Result<Option<Activation>, StoreError> {
        artifacts::active_artifact(self)
    }

    fn load_artifact(&self, version: i64) -> Result<Option<PublishedArtifact>, StoreError> {
        artifacts::load_artifact(self, version)
    }

    fn artifact_versions(&self) -> Result<Vec<ArtifactVersion>, StoreError> {
        artifacts::artifact_versions(self)
    }
}

impl SqliteStore {
    /// Every row `stmt` (one `?1` parameter) returns for a decision id,
    /// each read by `read`.
    fn rows_for<T>(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        id: &str,
        read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        stmt.query_map([id], read)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

/// A token count column (SQLite integers are signed).
fn tokens(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|t| t as u64))
}

/// An `outcomes` row, columns in export's SELECT order.
fn outcome_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoggedOutcome> {
    Ok(LoggedOutcome {
        decision_id: r.get(0)?,
        model: r.get(1)?,
        score: r.get(2)?,
        cost_usd: r.get(3)?,
        input_tokens: tokens(r, 4)?,
        output_tokens: tokens(r, 5)?,
        latency_ms: r.get(6)?,
        time_ms: r.get(7)?,
    })
}

/// A `calls` row, columns in export's SELECT order.
fn call_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoggedCall> {
    Ok(LoggedCall {
        decision_id: r.get(0)?,
        model: r.get(1)?,
        error_class: r.get(2)?,
        status: r.get(3)?,
        latency_ms: r.get(4)?,
        ttft_ms: r.get(5)?,
        input_tokens: tokens(r, 6)?,
        output_tokens: tokens(r, 7)?,
        cost_usd: r.get(8)?,
        time_ms: r.get(9)?,
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod artifacts;
#[cfg(test)]
mod rollout_tests;
mod spend;
#[cfg(test)]
mod tests;
