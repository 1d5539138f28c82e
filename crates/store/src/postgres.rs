//! [`OutcomeStore`] on PostgreSQL, for many replicas sharing one store.
//!
//! The synchronous `postgres` client in an r2d2 pool: the server already
//! calls the store off its async runtime (blocking pool, batcher thread),
//! so a blocking client costs no runtime thread. Every write is a
//! transaction that has committed (`synchronous_commit` as the server is
//! configured; on by default) before the call returns. Decisions go
//! through the shared group commit ([`GroupCommit`]).

mod artifacts;
mod export;
mod schema;
mod spend;

use std::time::Duration;

use r2d2_postgres::postgres::{self, NoTls};
use r2d2_postgres::{r2d2, PostgresConnectionManager};

use crate::commit::{BatchWriter, GroupCommit};
use crate::{
    DecisionWithOutcomes, LoggedCall, LoggedDecision, LoggedOutcome, OutcomeStore, StoreError,
};

/// Connections the pool opens at most (`PostgresStore::open`). The
/// server runs at most 64 store calls at once (`STORE_SLOTS`) and decisions
/// share one connection per group commit, so 16 is rarely all busy.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// How long a call waits for a free pooled connection (or a new one to
/// connect) before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// The PostgreSQL outcome store: a pool of connections to one database.
pub struct PostgresStore {
    /// The URL without its password, for errors and logs.
    shown: String,
    pool: Pool,
    commits: GroupCommit,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or
    /// `postgresql://...?host=/run/postgresql` for a unix socket) with a
    /// pool of [`DEFAULT_POOL_SIZE`] connections, and migrates the schema.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_with(url, DEFAULT_POOL_SIZE)
    }

    /// [`PostgresStore::open`] with a pool of `pool_size` connections.
    pub fn open_with(url: &str, pool_size: u32) -> Result<PostgresStore, StoreError> {
        let shown = redact(url);
        let err = |m: String| StoreError::Backend {
            path: shown.clone(),
            message: m,
        };
        let config: postgres::Config = url
            .parse()
            .map_err(|e| err(format!("not a PostgreSQL URL: {e}")))?;
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            // Connections are opened as needed, not all at start.
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // A round trip per checkout would cost as much as the insert;
            // a connection found closed is dropped on return instead.
            .test_on_check_out(false)
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        let store = PostgresStore {
            shown,
            pool,
            commits: GroupCommit::default(),
        };
        let mut conn = store.conn()?;
        schema::migrate(&mut conn, &store.shown)?;
        Ok(store)
    }

    /// Creates an empty database `name` on the server `admin_url` points
    /// at (the tests and the bench use one per run) and returns its URL
    /// (`admin_url` with the database name replaced). `name` must be a
    /// plain identifier (ASCII letters, digits, `_`).
    pub fn create_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
        let shown = redact(admin_url);
        let err = |m: String| StoreError::Backend {
            path: shown.clone(),
            message: m,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Invalid(format!(
                "database name `{name}`: only ASCII letters, digits and _"
            )));
        }
        let config: postgres::Config = admin_url
            .parse()
            .map_err(|e| err(format!("not a PostgreSQL URL: {e}")))?;
        let mut client = config
            .connect(NoTls)
            .map_err(|e| err(format!("cannot connect: {}", message(&e))))?;
        // An identifier cannot be a parameter; `name` is checked above.
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| err(format!("CREATE DATABASE {name}: {}", message(&e))))?;
        Ok(with_dbname(admin_url, name))
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool
            .get()
            .map_err(|e| self.err(format!("no database connection: {e}")))
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            path: self.shown.clone(),
            message: e.to_string(),
        }
    }

    /// A PostgreSQL error with the server's message and detail.
    fn pg(&self, e: postgres::Error) -> StoreError {
        self.err(message(&e))
    }

    /// Locks the decision row against other outcome and call writers (so
    /// "last report wins" and "a failure never replaces feedback" hold
    /// across replicas) and tells whether it exists.
    fn lock_decision(
        &self,
        tx: &mut postgres::Transaction<'_>,
        id: &str,
    ) -> Result<bool, StoreError> {
        tx.query_opt(
            "SELECT 1 FROM decisions WHERE id = $1 FOR NO KEY UPDATE",
            &[&id],
        )
        .map(|r| r.is_some())
        .map_err(|e| self.pg(e))
    }
}

/// The text of a PostgreSQL error: the server's message (and detail) when
/// the server answered, else the client's.
pub(crate) fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// `url` naming database `name` instead of its own.
pub(crate) fn with_dbname(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    format!("{scheme}://{authority}/{name}{query}")
}

/// `url` with any password replaced by `***` (errors and logs show it).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.find("password=") {
        Some(i) => {
            let end = tail[i..].find('&').map_or(tail.len(), |j| i + j);
            format!("{}password=***{}", &tail[..i], &tail[end..])
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store types always serialise")
}

/// A whole batch in one statement (so one transaction, autocommitted, and
/// one round trip once prepared): the rows as parallel arrays, unnested in
/// order. A duplicate id is skipped (`ON CONFLICT DO NOTHING`) and missing
/// from RETURNING.
const INSERT_DECISIONS: &str = "INSERT INTO decisions (id, time_ms, tenant, prompt, model, task, difficulty, task_scores, candidates, versions, embedding, propensity, explored, shadow)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::float8[], $13::bool[], $14::text[])
     ON CONFLICT (id) DO NOTHING RETURNING id";

impl PostgresStore {
    /// The whole batch in one statement; `Err` if the server refused it
    /// (then nothing was written). Of rows sharing an id, the first wins.
    fn write_batch(
        &self,
        conn: &mut Conn,
        batch: &[LoggedDecision],
    ) -> Result<Vec<Result<(), StoreError>>, postgres::Error> {
        let ids: Vec<&str> = batch.iter().map(|d| d.id.as_str()).collect();
        let times: Vec<i64> = batch.iter().map(|d| d.time_ms).collect();
        let tenants: Vec<Option<&str>> = batch.iter().map(|d| d.tenant.as_deref()).collect();
        let prompts: Vec<Option<&str>> = batch.iter().map(|d| d.prompt.as_deref()).collect();
        let models: Vec<&str> = batch.iter().map(|d| d.model.as_str()).collect();
        let tasks: Vec<&str> = batch.iter().map(|d| d.task.as_str()).collect();
        let difficulties: Vec<f64> = batch.iter().map(|d| d.difficulty as f64).collect();
        let scores: Vec<String> = batch.iter().map(|d| to_json(&d.task_scores)).collect();
        let candidates: Vec<String> = batch.iter().map(|d| to_json(&d.candidates)).collect();
        let versions: Vec<String> = batch.iter().map(|d| to_json(&d.versions)).collect();
        let embeddings: Vec<Vec<u8>> = batch
            .iter()
            .map(|d| d.embedding.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let propensities: Vec<f64> = batch.iter().map(|d| d.propensity).collect();
        let explored: Vec<bool> = batch.iter().map(|d| d.explored).collect();
        let shadows: Vec<Option<String>> = batch
            .iter()
            .map(|d| d.shadow.as_ref().map(to_json))
            .collect();
        let inserted = conn.query(
            INSERT_DECISIONS,
            &[
                &ids,
                &times,
                &tenants,
                &prompts,
                &models,
                &tasks,
                &difficulties,
                &scores,
                &candidates,
                &versions,
                &embeddings,
                &propensities,
                &explored,
                &shadows,
            ],
        )?;
        let mut inserted: std::collections::HashSet<String> =
            inserted.iter().map(|r| r.get(0)).collect();
        Ok(batch
            .iter()
            .map(|d| {
                if inserted.remove(&d.id) {
                    Ok(())
                } else {
                    Err(StoreError::DuplicateDecision(d.id.clone()))
                }
            })
            .collect())
    }
}

impl BatchWriter for PostgresStore {
    /// One statement, so one transaction, for the batch (a duplicate id is
    /// `ON CONFLICT DO NOTHING`, its row's error). Any other failed row
    /// fails the statement, so then each row is retried in its own and
    /// fails alone.
    fn write_decisions(&self, batch: &[LoggedDecision]) -> Vec<Result<(), StoreError>> {
        let mut conn = match self.conn() {
            Ok(c) => c,
            Err(e) => return batch.iter().map(|_| Err(self.err(&e))).collect(),
        };
        match self.write_batch(&mut conn, batch) {
            Ok(results) => results,
            Err(e) if batch.len() == 1 => vec![Err(self.pg(e))],
            Err(_) => batch
                .iter()
                .map(
                    |d| match self.write_batch(&mut conn, std::slice::from_ref(d)) {
                        Ok(mut r) => r.pop().expect("one row"),
                        Err(e) => Err(self.pg(e)),
                    },
                )
                .collect(),
        }
    }
}

fn insert_outcome_sql(unless_present: bool) -> String {
    let guard = if unless_present {
        " WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE decision_id = $1 AND model = $2)"
    } else {
        ""
    };
    format!(
        "INSERT INTO outcomes (decision_id, model, score, cost_usd, input_tokens, output_tokens, latency_ms, time_ms)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8{guard}"
    )
}

fn insert_outcome(
    tx: &mut postgres::Transaction<'_>,
    o: &LoggedOutcome,
    unless_present: bool,
) -> Result<u64, postgres::Error> {
    tx.execute(
        &insert_outcome_sql(unless_present),
        &[
            &o.decision_id,
            &o.model,
            &o.score,
            &o.cost_usd,
            &o.input_tokens.map(|t| t as i64),
            &o.output_tokens.map(|t| t as i64),
            &o.latency_ms,
            &o.time_ms,
        ],
    )
}

impl OutcomeStore for PostgresStore {
    fn append_decisions(&self, ds: &[LoggedDecision]) -> Vec<Result<(), StoreError>> {
        self.commits.append(ds, self)
    }

    fn append_outcome(&self, o: &LoggedOutcome) -> Result<u32, StoreError> {
        crate::check::outcome(o)?;
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(|e| self.pg(e))?;
        if !self.lock_decision(&mut tx, &o.decision_id)? {
            return Err(StoreError::UnknownDecision(o.decision_id.clone()));
        }
        // Last wins: a model reported again replaces its earlier outcome.
        tx.execute(
            "DELETE FROM outcomes WHERE decision_id = $1 AND model = $2",
            &[&o.decision_id, &o.model],
        )
        .map_err(|e| self.pg(e))?;
        insert_outcome(&mut tx, o, false).map_err(|e| self.pg(e))?;
        let n: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM outcomes WHERE decision_id = $1",
                &[&o.decision_id],
            )
            .map_err(|e| self.pg(e))?
            .get(0);
        tx.commit().map_err(|e| self.pg(e))?;
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
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(|e| self.pg(e))?;
        let ids: std::collections::BTreeSet<&str> = calls
            .iter()
            .map(|c| c.decision_id.as_str())
            .chain(failures.iter().map(|o| o.decision_id.as_str()))
            .collect();
        for id in ids {
            if !self.lock_decision(&mut tx, id)? {
                return Err(StoreError::UnknownDecision(id.to_string()));
            }
        }
        for c in calls {
            tx.execute(
                "INSERT INTO calls (decision_id, model, error_class, status, latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, time_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &c.decision_id,
                    &c.model,
                    &c.error_class,
                    &c.status.map(i32::from),
                    &c.latency_ms,
                    &c.ttft_ms,
                    &c.input_tokens.map(|t| t as i64),
                    &c.output_tokens.map(|t| t as i64),
                    &c.cost_usd,
                    &c.time_ms,
                ],
            )
            .map_err(|e| self.pg(e))?;
        }
        // An automatic failure never replaces an outcome already there.
        for o in failures {
            insert_outcome(&mut tx, o, true).map_err(|e| self.pg(e))?;
        }
        tx.commit().map_err(|e| self.pg(e))
    }

    fn answered_model(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.conn()?
            .query_opt(
                "SELECT model FROM calls WHERE decision_id = $1 AND error_class = 'ok' ORDER BY seq DESC LIMIT 1",
                &[&id],
            )
            .map(|r| r.map(|r| r.get(0)))
            .map_err(|e| self.pg(e))
    }

    fn has_decision(&self, id: &str) -> Result<bool, StoreError> {
        self.conn()?
            .query_opt("SELECT 1 FROM decisions WHERE id = $1", &[&id])
            .map(|r| r.is_some())
            .map_err(|e| self.pg(e))
    }

    fn decision_models(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT model, candidates FROM decisions WHERE id = $1",
                &[&id],
            )
            .map_err(|e| self.pg(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let chosen: String = row.get(0);
        let candidates: String = row.get(1);
        let candidates: Vec<crate::LoggedCandidate> =
            serde_json::from_str(&candidates).map_err(|e| self.err(format!("candidates: {e}")))?;
        let mut models = vec![chosen];
        models.extend(candidates.into_iter().map(|c| c.model));
        models.dedup();
        Ok(Some(models))
    }

    fn export(
        &self,
        each: &mut dyn FnMut(DecisionWithOutcomes) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        export::export(self, each)
    }

    fn append_rollout_event(&self, e: &crate::RolloutEvent) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO rollout_events (time_ms, action, from_version, to_version, mode, who, why)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&e.time_ms, &e.action, &e.from_version, &e.to_version, &e.mode, &e.who, &e.why],
            )
            .map(|_| ())
            .map_err(|e| self.pg(e))
    }

    fn rollout_events(&self) -> Result<Vec<crate::RolloutEvent>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT time_ms, action, from_version, to_version, mode, who, why
                 FROM rollout_events ORDER BY seq",
                &[],
            )
            .map_err(|e| self.pg(e))?;
        Ok(rows
            .iter()
            .map(|r| crate::RolloutEvent {
                time_ms: r.get(0),
                action: r.get(1),
                from_version: r.get(2),
                to_version: r.get(3),
                mode: r.get(4),
                who: r.get(5),
                why: r.get(6),
            })
            .collect())
    }

    fn decision_meta(&self, id: &str) -> Result<Option<crate::DecisionMeta>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT model, tenant, versions, time_ms,
                        (candidates::jsonb -> 0 ->> 'expected_cost_usd')::float8,
                        (SELECT o.cost_usd FROM outcomes o
                         WHERE o.decision_id = d.id AND o.model = d.model
                         ORDER BY o.seq DESC LIMIT 1)
                 FROM decisions d WHERE id = $1",
                &[&id],
            )
            .map_err(|e| self.pg(e))?;
        row.map(|r| {
            let versions: String = r.get(2);
            Ok(crate::DecisionMeta {
                model: r.get(0),
                tenant: r.get(1),
                versions: serde_json::from_str(&versions)
                    .map_err(|e| self.err(format!("versions: {e}")))?,
                time_ms: r.get(3),
                expected_cost_usd: r.get(4),
                reported_cost_usd: r.get(5),
            })
        })
        .transpose()
    }

    fn add_tenant_spend(&self, deltas: &[(crate::SpendKey, f64)]) -> Result<Vec<f64>, StoreError> {
        spend::add(self, deltas)
    }

    fn reconcile_tenant_spend(&self, keys: &[crate::SpendKey]) -> Result<Vec<f64>, StoreError> {
        spend::reconcile(self, keys)
    }

    fn tenant_expected_spend(&self, tenant: &str, since_ms: i64) -> Result<f64, StoreError> {
        // The chosen model is the first candidate (LoggedDecision.candidates).
        self.conn()?
            .query_one(
                "SELECT COALESCE(SUM((candidates::jsonb -> 0 ->> 'expected_cost_usd')::float8), 0.0)
                 FROM decisions WHERE tenant = $1 AND time_ms >= $2",
                &[&tenant, &since_ms],
            )
            .map(|r| r.get(0))
            .map_err(|e| self.pg(e))
    }

    fn publish_artifact(
        &self,
        router: &[u8],
        catalog: Option<&[u8]>,
        note: Option<&str>,
    ) -> Result<crate::ArtifactVersion, StoreError> {
        artifacts::publish(self, router, catalog, note)
    }

    fn activate_artifact(&self, version: i64) -> Result<crate::ArtifactVersion, StoreError> {
        artifacts::activate(self, version)
    }

    fn active_artifact(&self) -> Result<Option<crate::Activation>, StoreError> {
        artifacts::active(self)
    }

    fn load_artifact(&self, version: i64) -> Result<Option<crate::PublishedArtifact>, StoreError> {
        artifacts::load(self, version)
    }

    fn artifact_versions(&self) -> Result<Vec<crate::ArtifactVersion>, StoreError> {
        artifacts::versions(self)
    }
}

#[cfg(test)]
mod tests;
