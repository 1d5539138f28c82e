//! A request that names its catalog model: the client chose, so nothing is
//! classified or predicted. The decision row is logged at once without an
//! encoder pass (so the upstream calls and feedback have a decision to
//! belong to), and the request is forwarded without waiting for the
//! encoder queue (docs/GATEWAY.md, "A named model").
//!
//! The row is marked unclassified by an empty `embedding`; `task` is "",
//! `task_scores` empty, `difficulty` 0, `candidates` empty (nothing was
//! predicted), `versions` the catalog's only. Training from the store
//! skips such rows (it needs an embedding;
//! `LoggedDecision::is_unclassified`).
//!
//! The tenant's policy still applies (docs/ROLLOUT.md, "Tenants"): a model
//! outside its allowed models is refused, and over budget the request is
//! refused (RESOURCE_EXHAUSTED / HTTP 429) whatever the tenant's action; its
//! expected cost counts against the budget.

use std::collections::BTreeMap;
use std::time::Instant;

use pointsman_router::catalog::estimate_tokens;
use pointsman_store::LoggedDecision;

use super::decide::{check_deadline, now_ms};
use super::request::RouteRequest;
use super::validate::check_route;
use super::Core;
use crate::error::ServerError;

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
        // The tenant's policy binds a named model too: its allowed models
        // and its budget. Over budget, a named model is refused whatever
        // the tenant's action: `downgrade` means Pointsman picks a cheaper
        // model, and a client that names one asked for that one only.
        let r = &self.tenants.snapshot().apply("", r)?;
        let allowed = &r.constraints.allowed_models;
        if !allowed.is_empty() && !allowed.iter().any(|m| m == model) {
            return Err(ServerError::invalid(
                "model",
                format!(
                    "`{model}` is not among the allowed models ({}){}",
                    allowed.join(", "),
                    match &r.tenant {
                        Some(t) => format!(" for tenant `{t}`"),
                        None => String::new(),
                    }
                ),
            ));
        }
        if let Some((_, e)) = self.budget_breach(r) {
            self.count_breach("reject");
            return Err(e);
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
        let time_ms = now_ms();
        let logged = LoggedDecision {
            id: id.clone(),
            time_ms,
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
        self.add_spend(r.tenant.as_deref(), time_ms, expected_cost);
        tracing::info!(decision_id = %id, model, tenant = ?r.tenant, "named model, logged unclassified");
        Ok(id)
    }
}
