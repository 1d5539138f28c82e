//! [`OutcomeStore`] on an embedded SQLite database (WAL, synchronous=FULL).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    DecisionWithOutcomes, LoggedCall, LoggedDecision, LoggedOutcome, OutcomeStore, StoreError,
};

const SCHEMA: &str = "
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
/// call returns. Decisions are group-committed: calls that arrive while a
/// commit is being fsynced are written together by the next one, so
/// concurrent `Route` calls share an fsync instead of queueing for one each.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Decisions waiting for the next group commit, each with the slot its
    /// caller reads the result from.
    waiting: Mutex<Vec<(LoggedDecision, Slot)>>,
}

/// Where a group commit leaves one caller's result.
type Slot = Arc<Mutex<Option<Result<(), StoreError>>>>;

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
        conn.execute_batch(SCHEMA).map_err(|e| err(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            waiting: Mutex::new(Vec::new()),
        })
    }

    /// Inserts `batch` in one transaction (one fsync); one result per row.
    /// A duplicate id fails its own row only; a failed commit fails all.
    fn insert_decisions(
        &self,
        conn: &mut Connection,
        batch: &[(LoggedDecision, Slot)],
    ) -> Vec<Result<(), StoreError>> {
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => return batch.iter().map(|_| Err(self.err(&e))).collect(),
        };
        let mut results: Vec<Result<(), StoreError>> = batch
            .iter()
            .map(|(d, _)| match insert_decision(&tx, d) {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (each
        // statement is its own transaction), so a poisoned lock is taken anyway.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: impl ToString) -> StoreError {
        backend(&self.path)(e.to_string())
    }
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

/// A mutex whose holder panicked is still usable here (every write is its
/// own transaction or a plain Vec push), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn insert_decision(conn: &Connection, d: &LoggedDecision) -> rusqlite::Result<()> {
    let blob: Vec<u8> = d.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
    conn.execute(
        "INSERT INTO decisions (id, time_ms, tenant, prompt, model, task, difficulty, task_scores, candidates, versions, embedding)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            blob
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
    fn append_decision(&self, d: &LoggedDecision) -> Result<(), StoreError> {
        self.append_decisions(std::slice::from_ref(d))
            .pop()
            .expect("one result per decision")
    }

    fn append_decisions(&self, ds: &[LoggedDecision]) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(ds.len());
        let mut slots = Vec::new();
        {
            let mut waiting = lock(&self.waiting);
            for d in ds {
                match crate::check::decision(d) {
                    Err(e) => results.push(Some(Err(e))),
                    Ok(()) => {
                        let slot: Slot = Arc::new(Mutex::new(None));
                        waiting.push((d.clone(), slot.clone()));
                        slots.push((results.len(), slot));
                        results.push(None);
                    }
                }
            }
        }
        if !slots.is_empty() {
            let mut conn = self.lock();
            // Whoever held the connection before us may have committed our
            // rows with its own batch (it fills every slot before letting
            // go). Otherwise we lead: everything waiting (ours included)
            // goes in one transaction.
            if lock(&slots[0].1).is_none() {
                let batch = std::mem::take(&mut *lock(&self.waiting));
                let done = self.insert_decisions(&mut conn, &batch);
                for ((_, s), r) in batch.iter().zip(done) {
                    *lock(s) = Some(r);
                }
            }
        }
        for (i, slot) in slots {
            results[i] = lock(&slot).take();
        }
        results
            .into_iter()
            .map(|r| r.expect("our rows went in together, in one batch"))
            .collect()
    }

    fn append_outcome(&self, o: &LoggedOutcome) -> Result<u32, StoreError> {
        crate::check::outcome(o)?;
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
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
        let tx = conn.transaction().map_err(|e| self.err(e))?;
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
                "SELECT id, time_ms, tenant, prompt, model, task, difficulty, task_scores, candidates, versions, embedding
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
            };
            let outs = outcomes
                .query_map([&id], |r| {
                    Ok(LoggedOutcome {
                        decision_id: r.get(0)?,
                        model: r.get(1)?,
                        score: r.get(2)?,
                        cost_usd: r.get(3)?,
                        input_tokens: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
                        output_tokens: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        latency_ms: r.get(6)?,
                        time_ms: r.get(7)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            let calls = calls
                .query_map([&id], |r| {
                    Ok(LoggedCall {
                        decision_id: r.get(0)?,
                        model: r.get(1)?,
                        error_class: r.get(2)?,
                        status: r.get(3)?,
                        latency_ms: r.get(4)?,
                        ttft_ms: r.get(5)?,
                        input_tokens: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
                        output_tokens: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                        cost_usd: r.get(8)?,
                        time_ms: r.get(9)?,
                    })
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            each(DecisionWithOutcomes {
                decision,
                outcomes: outs,
                calls,
            })?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::LoggedCandidate;

    fn decision(id: &str, prompt: Option<&str>) -> LoggedDecision {
        LoggedDecision {
            id: id.into(),
            time_ms: 1_700_000_000_000,
            embedding: vec![0.5, -1.25, 3.0],
            task: "code".into(),
            task_scores: BTreeMap::from([("code".into(), 0.9), ("math".into(), 0.1)]),
            difficulty: 0.25,
            model: "small".into(),
            candidates: vec![LoggedCandidate {
                model: "small".into(),
                p_success: 0.8,
                expected_cost_usd: 0.001,
            }],
            versions: BTreeMap::from([("catalog".into(), "abc".into())]),
            tenant: Some("team-a".into()),
            prompt: prompt.map(str::to_string),
        }
    }

    fn outcome(id: &str, model: &str, score: f64) -> LoggedOutcome {
        LoggedOutcome {
            decision_id: id.into(),
            model: model.into(),
            score,
            cost_usd: Some(0.002),
            input_tokens: Some(10),
            output_tokens: None,
            latency_ms: Some(120.0),
            time_ms: 1_700_000_000_500,
        }
    }

    fn all(store: &SqliteStore) -> Vec<DecisionWithOutcomes> {
        let mut v = Vec::new();
        store
            .export(&mut |d| {
                v.push(d);
                Ok(())
            })
            .unwrap();
        v
    }

    #[test]
    fn concurrent_decisions_are_group_committed_and_each_caller_gets_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        // 8 threads × 40 decisions; every thread also re-logs one id that
        // thread 0 logs, so some batches mix new rows and duplicates.
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut dup_errors = 0;
                    for i in 0..40 {
                        let id = if t > 0 && i == 20 {
                            "t0-d5".to_string()
                        } else {
                            format!("t{t}-d{i}")
                        };
                        match store.append_decision(&decision(&id, None)) {
                            Ok(()) => {}
                            Err(StoreError::DuplicateDecision(d)) => {
                                assert_eq!(d, "t0-d5");
                                dup_errors += 1;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    dup_errors
                })
            })
            .collect();
        let dups: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // Thread 0 may log t0-d5 before or after some of the others try it:
        // exactly one of the 8 attempts wins.
        assert_eq!(dups, 7);
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let ids: std::collections::BTreeSet<String> =
            all(&reopened).into_iter().map(|d| d.decision.id).collect();
        assert_eq!(ids.len(), 8 * 40 - 7, "every distinct id is durable, once");
        assert!(ids.contains("t7-d39") && ids.contains("t0-d5"));
    }

    #[test]
    fn round_trips_decisions_and_outcomes_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.append_decision(&decision("d1", None)).unwrap();
            s.append_decision(&decision("d2", Some("hello"))).unwrap();
            assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
            assert_eq!(s.append_outcome(&outcome("d1", "big", 0.0)).unwrap(), 2);
        }
        let s = SqliteStore::open(&path).unwrap();
        let got = all(&s);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].decision, decision("d1", None));
        assert_eq!(
            got[0].outcomes,
            vec![outcome("d1", "small", 1.0), outcome("d1", "big", 0.0)]
        );
        assert!(got[1].outcomes.is_empty());
        assert!(s.has_decision("d2").unwrap());
        assert!(!s.has_decision("nope").unwrap());
    }

    #[test]
    fn unknown_and_duplicate_ids_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        s.append_decision(&decision("d1", None)).unwrap();
        assert!(matches!(
            s.append_decision(&decision("d1", None)),
            Err(StoreError::DuplicateDecision(_))
        ));
        assert!(matches!(
            s.append_outcome(&outcome("zz", "small", 1.0)),
            Err(StoreError::UnknownDecision(_))
        ));
        assert!(all(&s)[0].outcomes.is_empty());
    }

    #[test]
    fn uses_wal_and_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let c = s.lock();
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2));
    }

    #[test]
    fn exports_records_in_the_design_format() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        s.append_decision(&decision("d1", None)).unwrap();
        s.append_decision(&decision("d2", Some("Write a haiku")))
            .unwrap();
        assert_eq!(s.append_outcome(&outcome("d1", "small", 0.5)).unwrap(), 1);
        assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
        let got = all(&s);
        assert_eq!(
            got[0].outcomes,
            vec![outcome("d1", "small", 1.0)],
            "the store keeps the last report only"
        );
        let r = got[0].to_record();
        assert_eq!(r.prompt, crate::PROMPT_NOT_STORED);
        assert_eq!(r.outcomes.len(), 1);
        assert_eq!(
            r.outcomes["small"].score, 1.0,
            "a later report replaces an earlier one"
        );
        assert_eq!(r.extra["prompt_stored"], false);
        assert_eq!(r.extra["embedding"].as_array().unwrap().len(), 3);
        // The line parses back as a valid record.
        let back = pointsman_records::Record::parse_line(&r.to_line(), 1).unwrap();
        assert_eq!(back.id, "d1");
        assert_eq!(got[1].to_record().prompt, "Write a haiku");
    }

    // Issue 13, defect 3: NaN used to be stored as NULL, after which every
    // export failed ("invalid type: null, expected f64").
    #[test]
    fn non_finite_numbers_are_refused_and_export_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let mut d = decision("nan", None);
        d.candidates[0].p_success = f64::NAN;
        let e = store.append_decision(&d).unwrap_err();
        assert!(
            e.to_string().contains("candidates[0].p_success is NaN"),
            "{e}"
        );
        let mut d = decision("inf", None);
        d.embedding[1] = f32::INFINITY;
        assert!(matches!(
            store.append_decision(&d),
            Err(StoreError::Invalid(_))
        ));
        store.append_decision(&decision("ok", None)).unwrap();
        let mut o = outcome("ok", "small", 0.5);
        o.latency_ms = Some(f64::NAN);
        assert!(matches!(
            store.append_outcome(&o),
            Err(StoreError::Invalid(_))
        ));
        let mut o = outcome("ok", "small", f64::NAN);
        o.latency_ms = None;
        assert!(matches!(
            store.append_outcome(&o),
            Err(StoreError::Invalid(_))
        ));
        let mut d = decision("big", None);
        d.tenant = Some("t".repeat(crate::check::MAX_NAME_BYTES + 1));
        assert!(matches!(
            store.append_decision(&d),
            Err(StoreError::Invalid(_))
        ));
        let got = all(&store);
        assert_eq!(got.len(), 1);
        assert!(got[0].outcomes.is_empty());
    }

    // Issue 13, defect 8: RouteBatch wrote each row in its own transaction.
    // A batch of decisions now goes in one; the WAL grows by one commit.
    #[test]
    fn a_batch_of_decisions_is_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let mut batch: Vec<LoggedDecision> =
            (0..20).map(|i| decision(&format!("b{i}"), None)).collect();
        batch[7].difficulty = f32::NAN;
        batch[9].id = "b3".into();
        let frames_before = wal_frames(&dir.path().join("s.db-wal"));
        let results = s.append_decisions(&batch);
        let frames_after = wal_frames(&dir.path().join("s.db-wal"));
        assert_eq!(results.len(), 20);
        assert!(matches!(results[7], Err(StoreError::Invalid(_))));
        assert!(matches!(results[9], Err(StoreError::DuplicateDecision(_))));
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 18);
        assert_eq!(all(&s).len(), 18);
        // 18 small rows fit in a few pages: one transaction writes each page
        // once; a transaction per row would write >= 18 frames.
        let written = frames_after - frames_before;
        assert!(written < 10, "{written} WAL frames for one batch");
    }

    fn wal_frames(path: &Path) -> u64 {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(32);
        // 32-byte WAL header, then frames of 24 + page size (4096) bytes.
        len.saturating_sub(32) / (24 + 4096)
    }

    // Issue 13, defect 10: the same outcome twice was stored twice.
    #[test]
    fn a_repeated_outcome_replaces_the_earlier_one_and_candidates_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        s.append_decision(&decision("d1", None)).unwrap();
        assert_eq!(s.append_outcome(&outcome("d1", "small", 0.0)).unwrap(), 1);
        assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
        assert_eq!(s.append_outcome(&outcome("d1", "big", 0.5)).unwrap(), 2);
        let got = all(&s);
        assert_eq!(
            got[0].outcomes,
            vec![outcome("d1", "small", 1.0), outcome("d1", "big", 0.5)]
        );
        assert_eq!(
            s.decision_models("d1").unwrap(),
            Some(vec!["small".to_string()])
        );
        assert_eq!(s.decision_models("nope").unwrap(), None);
    }

    // Issue 13, defect 11: corruption in the middle of the file was found
    // only by the query that read it, and a read-only path said nothing of
    // why.
    #[test]
    fn corruption_inside_the_file_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            for i in 0..400 {
                let mut d = decision(&format!("d{i}"), None);
                d.embedding = vec![0.25; 384];
                s.append_decision(&d).unwrap();
            }
            let c = s.lock();
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 40 * 4096, "{} bytes", bytes.len());
        // Scribble over a page in the middle (not the header page).
        let mid = (bytes.len() / 4096 / 2) * 4096;
        bytes[mid..mid + 4096].fill(0x5A);
        std::fs::write(&path, &bytes).unwrap();
        let e = SqliteStore::open(&path)
            .err()
            .expect("a corrupt store is refused")
            .to_string();
        assert!(e.contains("corrupt") || e.contains("malformed"), "{e}");
    }

    #[test]
    fn a_read_only_store_says_why() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        SqliteStore::open(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let e = if std::fs::OpenOptions::new().write(true).open(&path).is_err() {
            SqliteStore::open(&path).err().expect("refused").to_string()
        } else {
            // Root (or CAP_DAC_OVERRIDE) ignores the mode bits, so opening
            // here would test nothing: open as `nobody` in a child process,
            // as a service account without write access would. The
            // directory must let nobody reach the file, so that the error
            // is about the file's mode.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            match open_as_nobody(&path) {
                Ok(e) => e,
                Err(why) => {
                    eprintln!("SKIPPED a_read_only_store_says_why: running as root and {why}");
                    return;
                }
            }
        };
        eprintln!("read-only store: {e}");
        assert!(e.contains("cannot open for writing"), "{e}");
        assert!(e.contains("Permission denied (os error 13)"), "{e}");
    }

    /// Set to a store path, turns `read_only_open_child` on.
    const READ_ONLY_CHILD_ENV: &str = "POINTSMAN_READ_ONLY_STORE";

    /// Runs `read_only_open_child` in this test binary as uid/gid 65534
    /// (`setpriv`) and returns the error it printed. `Err` says why that
    /// could not be done (no setpriv, or not allowed to change user).
    fn open_as_nobody(path: &Path) -> Result<String, String> {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "sqlite::tests::read_only_open_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(READ_ONLY_CHILD_ENV, path)
            .output()
            .map_err(|e| format!("setpriv cannot run ({e})"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.starts_with("setpriv:") {
            return Err(format!("setpriv cannot drop to nobody: {}", stderr.trim()));
        }
        let printed = stdout
            .lines()
            .find_map(|l| l.split_once("open as nobody: "));
        match printed {
            Some((_, "ok")) => panic!("nobody opened a 0444 root-owned store for writing"),
            Some((_, e)) => Ok(e.to_string()),
            None => panic!("the child printed no result:\n{stdout}\n{stderr}"),
        }
    }

    // Not a test of its own: `a_read_only_store_says_why` runs it as
    // nobody, with READ_ONLY_CHILD_ENV set to the store to open.
    #[test]
    #[ignore = "run as nobody by a_read_only_store_says_why"]
    fn read_only_open_child() {
        let Ok(path) = std::env::var(READ_ONLY_CHILD_ENV) else {
            eprintln!("{READ_ONLY_CHILD_ENV} is not set (a_read_only_store_says_why runs this)");
            return;
        };
        // A line of its own: libtest may have started one.
        match SqliteStore::open(Path::new(&path)) {
            Ok(_) => println!("\nopen as nobody: ok"),
            Err(e) => println!("\nopen as nobody: {e}"),
        }
    }

    fn call(id: &str, model: &str, class: &str) -> LoggedCall {
        LoggedCall {
            decision_id: id.into(),
            model: model.into(),
            error_class: class.into(),
            status: Some(if class == "ok" { 200 } else { 500 }),
            latency_ms: 42.0,
            ttft_ms: Some(7.5),
            input_tokens: Some(11),
            output_tokens: Some(5),
            cost_usd: Some(0.0003),
            time_ms: 1_700_000_000_600,
        }
    }

    #[test]
    fn gateway_calls_log_failures_and_feedback_completes_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        s.append_decision(&decision("d1", None)).unwrap();
        // "big" failed (automatic score-0 outcome), "small" answered.
        let mut failed = outcome("d1", "big", 0.0);
        failed.cost_usd = None;
        s.append_calls(
            &[call("d1", "big", "server"), call("d1", "small", "ok")],
            &[failed.clone()],
        )
        .unwrap();
        let got = all(&s);
        assert_eq!(got[0].calls.len(), 2);
        assert_eq!(got[0].calls[1], call("d1", "small", "ok"));
        assert_eq!(got[0].outcomes, vec![failed.clone()]);
        assert_eq!(s.answered_model("d1").unwrap().as_deref(), Some("small"));
        assert_eq!(s.answered_model("zz").unwrap(), None);
        // Feedback for the model that answered: its outcome takes the
        // call's tokens and cost, which the feedback did not give.
        let mut fb = outcome("d1", "small", 0.75);
        fb.cost_usd = None;
        fb.latency_ms = None;
        assert_eq!(s.append_outcome(&fb).unwrap(), 2);
        let r = all(&s)[0].to_record();
        let small = &r.outcomes["small"];
        assert_eq!(small.score, 0.75);
        assert_eq!(small.cost_usd, Some(0.0003));
        assert_eq!(small.output_tokens, Some(5));
        assert_eq!(small.latency_ms, Some(42.0));
        assert_eq!(r.outcomes["big"].score, 0.0);
        assert_eq!(r.extra["calls"].as_array().unwrap().len(), 2);
        assert_eq!(r.extra["calls"][0]["error_class"], "server");
        // An automatic failure never replaces feedback already there.
        s.append_calls(
            &[call("d1", "small", "mid_stream")],
            &[outcome("d1", "small", 0.0)],
        )
        .unwrap();
        assert_eq!(all(&s)[0].to_record().outcomes["small"].score, 0.75);
        // Unknown decision: refused, nothing written.
        assert!(matches!(
            s.append_calls(&[call("zz", "small", "ok")], &[]),
            Err(StoreError::UnknownDecision(_))
        ));
        assert_eq!(all(&s)[0].calls.len(), 3);
        // Non-finite numbers are refused like everywhere else.
        let mut bad = call("d1", "small", "ok");
        bad.latency_ms = f64::NAN;
        assert!(matches!(
            s.append_calls(&[bad], &[]),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn a_store_from_before_the_gateway_opens_and_exports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The schema as it was before the `calls` table.
            let c = Connection::open(&path).unwrap();
            let old = SCHEMA
                .split("-- Added with the HTTP gateway")
                .next()
                .unwrap();
            c.execute_batch(old).unwrap();
            c.execute(
                "INSERT INTO decisions (id, time_ms, model, task, difficulty, task_scores, candidates, versions, embedding)
                 VALUES ('old', 1, 'small', 'code', 0.5, '{}', '[]', '{}', x'0000803f')",
                [],
            )
            .unwrap();
            let has_calls: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'calls'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(has_calls, 0);
        }
        let s = SqliteStore::open(&path).unwrap();
        s.append_outcome(&outcome("old", "small", 1.0)).unwrap();
        let got = all(&s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].decision.embedding, vec![1.0]);
        assert!(got[0].calls.is_empty());
        s.append_calls(&[call("old", "small", "ok")], &[]).unwrap();
        assert_eq!(all(&s)[0].calls.len(), 1);
    }
}
