//! The outcome store: every routing decision and every outcome reported for
//! it, so logged traffic can retrain the router.
//!
//! The seam is [`OutcomeStore`] (append a decision, append an outcome,
//! export, publish a router artifact): the server holds an
//! `Arc<dyn OutcomeStore>` and knows nothing of SQL. Two backends sit
//! behind it, chosen by [`open_store`]: [`SqliteStore`] (a file, one
//! replica) and [`PostgresStore`] (a `postgres://` URL, many replicas).
//! Both share the group commit ([`commit`]) and keep their schema under
//! versioned migrations ([`migrate`]).

mod artifact;
pub mod check;
mod commit;
pub mod migrate;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use pointsman_records::{Outcome, Record};
use serde::{Deserialize, Serialize};

pub use artifact::{
    artifact_sha256, Activation, ArtifactVersion, PublishedArtifact, MAX_ARTIFACT_BYTES,
};
pub use postgres::{redact as redact_url, PostgresStore, DEFAULT_POOL_SIZE};
pub use sqlite::SqliteStore;

/// Whether `--store` names a PostgreSQL database (`postgres://` or
/// `postgresql://`) rather than a SQLite file.
pub fn is_postgres_url(url_or_path: &str) -> bool {
    url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://")
}

/// Opens the store `--store` names: a `postgres://`/`postgresql://` URL
/// opens [`PostgresStore`], anything else is a SQLite file path
/// ([`SqliteStore`], created with its folder if missing). Either way the
/// schema is migrated to this binary's version first.
pub fn open_store(url_or_path: &str) -> Result<Arc<dyn OutcomeStore>, StoreError> {
    if is_postgres_url(url_or_path) {
        Ok(Arc::new(PostgresStore::open(url_or_path)?))
    } else {
        Ok(Arc::new(SqliteStore::open(std::path::Path::new(
            url_or_path,
        ))?))
    }
}

/// The prompt field of an exported record whose prompt text was not stored
/// (the server ran without `--store-prompts`).
pub const PROMPT_NOT_STORED: &str = "[prompt not stored]";

/// One model the policy considered for a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedCandidate {
    pub model: String,
    /// P(success) in [0, 1].
    pub p_success: f64,
    /// Expected cost of one call in USD.
    pub expected_cost_usd: f64,
}

/// Everything the server knew when it decided (one row per Route call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedDecision {
    /// Unique decision id (what clients pass to ReportOutcome).
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The encoder's embedding of the prompt.
    pub embedding: Vec<f32>,
    /// Predicted task label.
    pub task: String,
    /// P(task | prompt) per label.
    pub task_scores: BTreeMap<String, f32>,
    /// Predicted difficulty in [0, 1].
    pub difficulty: f32,
    /// The chosen model.
    pub model: String,
    /// Every eligible model, chosen first.
    pub candidates: Vec<LoggedCandidate>,
    /// Versions of the data decided with (`catalog`, `router_artifact`, `heads`).
    pub versions: BTreeMap<String, String>,
    /// Opaque tenant name, if the request gave one.
    pub tenant: Option<String>,
    /// The prompt text, only when the server stores prompts.
    pub prompt: Option<String>,
    /// Probability with which `model` was chosen under this state, in
    /// (0, 1]: 1.0 when the server was not exploring (rows logged before
    /// propensities existed read as 1.0).
    #[serde(default = "certain")]
    pub propensity: f64,
    /// Whether exploration drew this decision (not the policy's choice).
    #[serde(default)]
    pub explored: bool,
    /// What a candidate router artifact loaded in shadow mode would have
    /// chosen for the same prompt (not acted on); None without a shadow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowDecision>,
}

impl LoggedDecision {
    /// Whether the decision was made without classifying its prompt (a
    /// named model's, docs/GATEWAY.md): the server logs such a row with an
    /// empty `embedding`, and training from the store skips it.
    pub fn is_unclassified(&self) -> bool {
        self.embedding.is_empty()
    }
}

fn certain() -> f64 {
    1.0
}

/// A candidate artifact's decision, computed beside the live one and
/// logged, not acted on (docs/ROLLOUT.md, "Shadow").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDecision {
    /// The candidate artifact's version (`file@sha256 prefix`).
    pub artifact: String,
    /// The model the candidate would have chosen.
    pub model: String,
    /// The candidate's P(success) for that model.
    pub p_success: f64,
    /// Expected cost of that model's call in USD.
    pub expected_cost_usd: f64,
}

/// One rollout action (load a candidate, promote, abort, change mode),
/// kept in the store's `rollout_events` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutEvent {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// `load`, `promote`, `abort` or `mode`.
    pub action: String,
    /// The live artifact's version before the action.
    pub from_version: String,
    /// The candidate's version (for `promote`: the new live version).
    pub to_version: String,
    /// The rollout mode after the action (`off`, `shadow`, `canary:0.1`).
    pub mode: String,
    /// Who asked (an Admin call's `who`, or `signal:SIGUSR1`).
    pub who: String,
    /// Why, as given.
    pub why: String,
}

/// What [`OutcomeStore::decision_meta`] returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecisionMeta {
    /// The chosen model.
    pub model: String,
    pub tenant: Option<String>,
    pub versions: BTreeMap<String, String>,
    /// When the decision was logged (ms since the epoch): the budget
    /// period a cost reported for it belongs to.
    pub time_ms: i64,
    /// The chosen model's expected cost as logged (the first candidate's);
    /// None for a named model's decision, which has no candidates.
    pub expected_cost_usd: Option<f64>,
    /// `cost_usd` of the outcome currently stored for the chosen model,
    /// if it has one that reports a cost.
    pub reported_cost_usd: Option<f64>,
}

/// One shared spend counter: a tenant's spend in one budget period
/// (`period` names its kind, `hour`, `day` or `month`, so a tenant whose
/// period changes does not share a count with the old one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpendKey {
    pub tenant: String,
    pub period: String,
    /// The period's start, ms since the epoch (UTC).
    pub period_start_ms: i64,
}

/// One reported outcome of one model on a decision's prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedOutcome {
    pub decision_id: String,
    pub model: String,
    /// Quality in [0, 1].
    pub score: f64,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: Option<f64>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
}

/// One upstream call the HTTP gateway made for a decision (one row per
/// attempt of the fallback chain). What the gateway measured, not a
/// quality score: the quality comes from feedback (an outcome).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedCall {
    pub decision_id: String,
    /// The catalog model called.
    pub model: String,
    /// How the attempt ended (`ok`, `rate_limited`, `timeout`, `mid_stream`
    /// ...; the upstream layer's `ErrorClass` names).
    pub error_class: String,
    /// The upstream's HTTP status, if it answered.
    pub status: Option<u16>,
    /// From sending the request to the end of the answer (or the failure).
    pub latency_ms: f64,
    /// Time to the first byte of the answer body (streaming calls).
    pub ttft_ms: Option<f64>,
    /// From the answer's `usage`.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Catalog prices x the `usage` tokens.
    pub cost_usd: Option<f64>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
}

/// A decision with the outcomes reported for it, in report order, and the
/// gateway's upstream calls for it, in call order.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionWithOutcomes {
    pub decision: LoggedDecision,
    pub outcomes: Vec<LoggedOutcome>,
    pub calls: Vec<LoggedCall>,
}

impl DecisionWithOutcomes {
    /// The decision as a record in the DESIGN.md format: `id` is the
    /// decision id, `prompt` the stored text or [`PROMPT_NOT_STORED`],
    /// `outcomes` keyed by model (a later report for the same model replaces
    /// an earlier one). An outcome that lacks cost, tokens or latency takes
    /// them from the same model's last successful gateway call (feedback
    /// gives the quality, the gateway what it measured). Extra fields:
    /// `embedding`, `task_scores`, `predicted_task`,
    /// `predicted_difficulty`, `chosen_model`, `candidates`, `versions`,
    /// `time_ms`, `tenant`, `prompt_stored`, `propensity`, `explored`,
    /// `calls` (the gateway's upstream calls, when there were any) and
    /// `shadow` (a shadow candidate's decision, when one was loaded).
    pub fn to_record(&self) -> Record {
        let d = &self.decision;
        let mut r = Record::new(
            d.id.clone(),
            d.prompt
                .clone()
                .unwrap_or_else(|| PROMPT_NOT_STORED.to_string()),
        );
        r.source = Some("pointsman-store".into());
        for o in &self.outcomes {
            let call = self
                .calls
                .iter()
                .rev()
                .find(|c| c.model == o.model && c.error_class == "ok");
            r.outcomes.insert(
                o.model.clone(),
                Outcome {
                    score: o.score,
                    cost_usd: o.cost_usd.or(call.and_then(|c| c.cost_usd)),
                    input_tokens: o.input_tokens.or(call.and_then(|c| c.input_tokens)),
                    output_tokens: o.output_tokens.or(call.and_then(|c| c.output_tokens)),
                    latency_ms: o.latency_ms.or(call.map(|c| c.latency_ms)),
                },
            );
        }
        let extra = &mut r.extra;
        extra.insert("prompt_stored".into(), d.prompt.is_some().into());
        extra.insert("chosen_model".into(), d.model.clone().into());
        extra.insert("predicted_task".into(), d.task.clone().into());
        extra.insert("predicted_difficulty".into(), json(&d.difficulty));
        extra.insert("task_scores".into(), json(&d.task_scores));
        extra.insert("candidates".into(), json(&d.candidates));
        extra.insert("versions".into(), json(&d.versions));
        extra.insert("time_ms".into(), d.time_ms.into());
        extra.insert("propensity".into(), json(&d.propensity));
        extra.insert("explored".into(), d.explored.into());
        if let Some(t) = &d.tenant {
            extra.insert("tenant".into(), t.clone().into());
        }
        if !self.calls.is_empty() {
            extra.insert("calls".into(), json(&self.calls));
        }
        if let Some(shadow) = &d.shadow {
            extra.insert("shadow".into(), json(shadow));
        }
        extra.insert("embedding".into(), json(&d.embedding));
        r
    }
}

/// A store type as a JSON value (they always serialise).
fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("store types always serialise")
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An outcome for a decision id the store has never seen.
    #[error("decision_id: no decision `{0}` in the store")]
    UnknownDecision(String),
    /// A decision id logged twice.
    #[error("decision_id: `{0}` is already in the store")]
    DuplicateDecision(String),
    /// A row the store will not write (a non-finite number, an oversized
    /// name); nothing was written.
    #[error("refused: {0}")]
    Invalid(String),
    /// The database failed (I/O, corruption, locked).
    #[error("store {path}: {message}")]
    Backend { path: String, message: String },
}

/// Where decisions and outcomes are kept. Implementations are shared across
/// threads; every method may block on I/O (call it off the async runtime).
pub trait OutcomeStore: Send + Sync {
    /// Logs one decision (a batch of one, so it shares the group commit).
    /// Fails with [`StoreError::DuplicateDecision`] if the id is already
    /// there.
    fn append_decision(&self, decision: &LoggedDecision) -> Result<(), StoreError> {
        self.append_decisions(std::slice::from_ref(decision))
            .pop()
            .expect("one result per decision")
    }

    /// Logs many decisions in one transaction (one fsync), one result per
    /// decision in order; a refused row fails alone.
    fn append_decisions(&self, decisions: &[LoggedDecision]) -> Vec<Result<(), StoreError>>;

    /// Logs one outcome and returns how many models the decision now has
    /// outcomes for. The same model reported again replaces the earlier
    /// outcome (last wins; export shows one outcome per model). Returns
    /// only after the write is durable (it survives the process being
    /// killed). Fails with [`StoreError::UnknownDecision`] for an unknown
    /// id.
    fn append_outcome(&self, outcome: &LoggedOutcome) -> Result<u32, StoreError>;

    /// Logs the gateway's upstream calls for one request and, in the same
    /// transaction (one fsync), `failures`: automatic outcomes (score 0)
    /// for failed calls. A failure outcome is stored only if its model has
    /// no outcome on the decision yet: a client's feedback is never
    /// replaced by an automatic outcome (feedback that comes later
    /// replaces it, last wins as usual). Fails with
    /// [`StoreError::UnknownDecision`] for an unknown id; nothing is
    /// written then.
    fn append_calls(
        &self,
        calls: &[LoggedCall],
        failures: &[LoggedOutcome],
    ) -> Result<(), StoreError>;

    /// The model whose gateway call answered this decision (the last call
    /// of class `ok`), if any.
    fn answered_model(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Whether a decision with this id is logged.
    fn has_decision(&self, id: &str) -> Result<bool, StoreError>;

    /// The models a decision considered (the chosen one first, then its
    /// other candidates); None for an unknown id. Outcomes for these stay
    /// reportable after a catalog reload drops the model.
    fn decision_models(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// Records one rollout action (durable before it returns).
    fn append_rollout_event(&self, event: &RolloutEvent) -> Result<(), StoreError>;

    /// Every rollout action, oldest first.
    fn rollout_events(&self) -> Result<Vec<RolloutEvent>, StoreError>;

    /// The chosen model, tenant, `versions`, time, expected cost and the
    /// cost its stored outcome reports, of a decision; None for an unknown
    /// id (outcome metrics split by the artifact that decided; a reported
    /// cost moves the tenant's spend from the expected one).
    fn decision_meta(&self, id: &str) -> Result<Option<DecisionMeta>, StoreError>;

    /// Σ expected cost of the chosen models of `tenant`'s decisions logged
    /// at or after `since_ms`. (The server seeds its spend counters with
    /// [`OutcomeStore::reconcile_tenant_spend`], which also counts
    /// reported costs; this stays for tools that want the expected spend
    /// alone.)
    fn tenant_expected_spend(&self, tenant: &str, since_ms: i64) -> Result<f64, StoreError>;

    /// Adds each delta (USD, may be negative) to its shared spend counter
    /// (`tenant_spend`; a missing counter starts at 0) and returns every
    /// counter's total after, in order, all in one transaction. A delta of
    /// 0 only reads (nothing is written). Replicas call this every sync
    /// interval with what they counted since the last one, so the totals
    /// are the fleet's. Refuses a non-finite delta ([`StoreError::Invalid`],
    /// nothing written).
    fn add_tenant_spend(&self, deltas: &[(SpendKey, f64)]) -> Result<Vec<f64>, StoreError>;

    /// Raises each counter to at least what the decisions table says the
    /// tenant spent since the period's start (Σ over its decisions of the
    /// chosen model's reported cost where its outcome reports one, else
    /// its expected cost) and returns the totals after, in order. Run at
    /// start-up and after a reload: a counter that a crashed replica did
    /// not sync, or a store from before the counters, is caught up.
    fn reconcile_tenant_spend(&self, keys: &[SpendKey]) -> Result<Vec<f64>, StoreError>;

    /// Calls `each` for every logged decision with its outcomes, oldest
    /// first; stops at the first error `each` returns. Returns the count.
    fn export(
        &self,
        each: &mut dyn FnMut(DecisionWithOutcomes) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError>;

    /// Stores a router artifact (and optionally the catalog it goes with)
    /// as a new version and makes it the active one, in one transaction.
    /// Replicas polling [`OutcomeStore::active_artifact`] pick it up. The
    /// bytes are stored as given: validating them is the server's job
    /// (and `store publish` checks them before calling this).
    fn publish_artifact(
        &self,
        router: &[u8],
        catalog: Option<&[u8]>,
        note: Option<&str>,
    ) -> Result<ArtifactVersion, StoreError>;

    /// Makes an earlier published version the active one again (a
    /// fleet-wide rollback). Fails with [`StoreError::Invalid`] for a
    /// version that was never published.
    fn activate_artifact(&self, version: i64) -> Result<ArtifactVersion, StoreError>;

    /// The active version, if anything was ever published: one small row,
    /// cheap enough to poll every few seconds.
    fn active_artifact(&self) -> Result<Option<Activation>, StoreError>;

    /// One published version with its bytes; None if there is no such
    /// version.
    fn load_artifact(&self, version: i64) -> Result<Option<PublishedArtifact>, StoreError>;

    /// Every published version, oldest first (without the bytes).
    fn artifact_versions(&self) -> Result<Vec<ArtifactVersion>, StoreError>;
}
