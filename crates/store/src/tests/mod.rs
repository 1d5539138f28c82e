//! Test support shared by both backends' tests: row builders and the
//! fixtures that open a fresh store of each kind. The behavioural tests
//! every backend must pass are in behaviour.rs.

pub(crate) mod behaviour;
pub(crate) use behaviour::mixed_batch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{
    DecisionWithOutcomes, LoggedCall, LoggedCandidate, LoggedDecision, LoggedOutcome, OutcomeStore,
    PostgresStore, SqliteStore,
};

/// Set to a PostgreSQL server's URL (scripts/with-postgres does), turns
/// the PostgreSQL tests on; each test creates its own database there.
pub(crate) const POSTGRES_URL_ENV: &str = "POINTSMAN_TEST_POSTGRES_URL";
/// Set to 1, makes a missing POINTSMAN_TEST_POSTGRES_URL a failure.
pub(crate) const REQUIRE_POSTGRES_ENV: &str = "POINTSMAN_REQUIRE_POSTGRES";

/// A place to open stores of one backend; opening again reopens the same
/// store (what a restart sees).
pub(crate) trait Backend {
    fn open(&self) -> Box<dyn OutcomeStore>;
}

pub(crate) struct SqliteBackend {
    pub dir: tempfile::TempDir,
}

impl SqliteBackend {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("sub/store.db")
    }
}

impl Backend for SqliteBackend {
    fn open(&self) -> Box<dyn OutcomeStore> {
        Box::new(SqliteStore::open(&self.path()).unwrap())
    }
}

pub(crate) struct PostgresBackend {
    pub url: String,
}

impl Backend for PostgresBackend {
    fn open(&self) -> Box<dyn OutcomeStore> {
        Box::new(PostgresStore::open_with(&self.url, 4).unwrap())
    }
}

pub(crate) fn sqlite() -> SqliteBackend {
    SqliteBackend {
        dir: tempfile::tempdir().unwrap(),
    }
}

/// A new empty database for `test`, or None (after saying so on stderr)
/// when no server was given and none is required.
pub(crate) fn postgres(test: &str) -> Option<PostgresBackend> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let Ok(admin) = std::env::var(POSTGRES_URL_ENV) else {
        if std::env::var(REQUIRE_POSTGRES_ENV).as_deref() == Ok("1") {
            panic!("{REQUIRE_POSTGRES_ENV}=1 but {POSTGRES_URL_ENV} is not set: run under scripts/with-postgres");
        }
        eprintln!(
            "SKIPPED {test} on PostgreSQL: {POSTGRES_URL_ENV} is not set (run the tests under scripts/with-postgres)"
        );
        return None;
    };
    let mut name: String = format!(
        "t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        test
    );
    name.truncate(63);
    let url = PostgresStore::create_database(&admin, &name).unwrap();
    Some(PostgresBackend { url })
}

pub(crate) fn decision(id: &str, prompt: Option<&str>) -> LoggedDecision {
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
        propensity: 1.0,
        explored: false,
        shadow: None,
    }
}

pub(crate) fn outcome(id: &str, model: &str, score: f64) -> LoggedOutcome {
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

pub(crate) fn call(id: &str, model: &str, class: &str) -> LoggedCall {
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

pub(crate) fn all(store: &dyn OutcomeStore) -> Vec<DecisionWithOutcomes> {
    let mut v = Vec::new();
    store
        .export(&mut |d| {
            v.push(d);
            Ok(())
        })
        .unwrap();
    v
}
