//! A request that names its catalog model: the client chose, so nothing is
//! classified or predicted. The decision row is logged at once without an
//! encoder pass (so the upstream calls and feedback have a decision to
//! belong to), and the request is forwarded without waiting for the
//! encoder queue (docs/GATEWAY.md, "A named model").
//!
//! The row is marked unclassified by an empty `embedding`; `task` is "",
//! `task_scores` empty, `difficulty` 0, `candidates` empty (nothing was
//! predicted), `versions` the catalog's only. Training from the store
//! skips such rows (it needs an embedding).

use std::collections::BTreeMap;
use std::time::Instant;

use pointsman_router::catalog::estimate_tokens;
use pointsman_store::LoggedDecision;

use super::decide::{check_deadline, now_ms};
use super::request::RouteRequest;
use super::validate::check_route;
use super::Core;
use crate::error::ServerError;

/// Whether a logged decision was made without classifying its prompt (a
/// named model's).
pub fn is_unclassified(d: &LoggedDecision) -> bool {
    d.embedding.is_empty()
}

impl Core {
    /// Validates `r` as a route request would be (every field, with the same
    /// errors), then logs a decision for `model` without classifying the
    /// prompt; returns its id once the store has it. `model` must be in the
    /// catalog. Needs no router artifact: nothing is predicted.
    pub async fn log_named(
        &self,
        r: &RouteRequest,
        model: &str,
        deadline: Option<Instant>,
    ) -> Result<String, ServerError> {
        let state = self.state.snapshot();
        match check_route(&self.limits, "", r, &state) {
            // The artifact is checked last, after every field: a named
            // model does not need one.
            Ok(_) | Err(ServerError::NotReady(_)) => {}
            Err(e) => return Err(e),
        }
        let spec = state.catalog.get(model).ok_or_else(|| {
            ServerError::invalid("model", format!("`{model}` is not in the catalog"))
        })?;
        check_deadline(deadline)?;
        let output_tokens = r
            .expected_output_tokens
            .unwrap_or(self.limits.default_output_tokens) as u64;
        let expected_cost = spec.cost_usd(estimate_tokens(&r.prompt), output_tokens);
        let id = uuid::Uuid::new_v4().to_string();
        let logged = LoggedDecision {
            id: id.clone(),
            time_ms: now_ms(),
            embedding: Vec::new(),
            task: String::new(),
            task_scores: BTreeMap::new(),
            difficulty: 0.0,
            model: model.to_string(),
            candidates: Vec::new(),
            versions: BTreeMap::from([("catalog".to_string(), state.versions.catalog.clone())]),
            tenant: r.tenant.clone(),
            prompt: self.limits.store_prompts.then(|| r.prompt.clone()),
            // The client chose the model: chosen with certainty, never explored.
            propensity: 1.0,
            explored: false,
            shadow: None,
        };
        self.store_work(move |s| s.append_decision(&logged))
            .await??;
        let m = &self.metrics;
        m.routes.with_label_values(&[model]).inc();
        m.expected_cost_usd.inc_by(expected_cost.max(0.0));
        tracing::info!(decision_id = %id, model, tenant = ?r.tenant, "named model, logged unclassified");
        Ok(id)
    }
}
