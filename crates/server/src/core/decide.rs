//! Decide, then log: the one pipeline every front end runs (gRPC Route and
//! RouteBatch, HTTP /v1/route and /v1/chat/completions, `pointsman route`).
//!
//! ```text
//! check_route ─► classify (batcher, or the caller's classifier) ─► decide ─► log (store) ─► Routed
//! ```

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pointsman_classifier::Embedded;
use pointsman_router::catalog::estimate_tokens;
use pointsman_router::{policy, RouterError};
use pointsman_store::{LoggedCandidate, LoggedDecision};

use super::request::{RouteRequest, Routed};
use super::validate::{check_route, Plan};
use super::{Core, Limits};
use crate::error::ServerError;
use crate::state::RoutingState;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Refuses work whose deadline has passed.
pub fn check_deadline(deadline: Option<Instant>) -> Result<(), ServerError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(ServerError::DeadlineExceeded),
        _ => Ok(()),
    }
}

/// Decides for one classified prompt (no I/O): the answer and the row to
/// log. `prefix` is prepended to field names in errors.
pub fn decide(
    limits: &Limits,
    encoder_id: &str,
    state: &RoutingState,
    prefix: &str,
    r: &RouteRequest,
    embedded: Embedded,
    plan: Plan,
) -> Result<Routed, ServerError> {
    let Plan {
        policy,
        mut constraints,
    } = plan;
    let success = state
        .success
        .as_ref()
        .ok_or_else(|| ServerError::NotReady("no router artifact is loaded".into()))?;
    let catalog = &state.catalog;
    let names = catalog.names();
    let tasks = success.task_vector(
        embedded
            .prediction
            .task_scores
            .iter()
            .map(|(k, v)| (k.as_str(), *v)),
    );
    let p = success.predict(&names, &embedded.embedding, &tasks);
    // Artifacts are checked at load, but a decision on a NaN would pick
    // the first model and poison the store: never emit one.
    pointsman_router::validate::check_probabilities(&names, &p)
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let input_tokens = estimate_tokens(&r.prompt);
    let output_tokens = r
        .expected_output_tokens
        .unwrap_or(limits.default_output_tokens) as u64;
    let cost: Vec<f64> = catalog
        .models
        .iter()
        .map(|m| m.cost_usd(input_tokens, output_tokens))
        .collect();
    constraints.min_context_tokens = Some(input_tokens + output_tokens);
    let decision =
        policy::decide(catalog, &p, &cost, policy, &constraints).map_err(|e| match e {
            RouterError::NoEligibleModel(why) => ServerError::invalid(
                format!("{prefix}constraints"),
                format!("no model satisfies them ({why})"),
            ),
            other => ServerError::Internal(other.to_string()),
        })?;
    let id = uuid::Uuid::new_v4().to_string();
    let versions = state.versions.clone();
    let logged = LoggedDecision {
        id: id.clone(),
        time_ms: now_ms(),
        embedding: embedded.embedding,
        task: embedded.prediction.task.clone(),
        task_scores: embedded.prediction.task_scores.clone(),
        difficulty: embedded.prediction.difficulty,
        model: decision.model.clone(),
        candidates: decision
            .candidates
            .iter()
            .map(|c| LoggedCandidate {
                model: c.model.clone(),
                p_success: c.p_success,
                expected_cost_usd: c.expected_cost_usd,
            })
            .collect(),
        versions: BTreeMap::from([
            ("catalog".to_string(), versions.catalog.clone()),
            (
                "router_artifact".to_string(),
                versions.router_artifact.clone(),
            ),
            ("heads".to_string(), versions.heads.clone()),
            ("encoder".to_string(), encoder_id.to_string()),
        ]),
        tenant: r.tenant.clone(),
        prompt: limits.store_prompts.then(|| r.prompt.clone()),
        shadow: None,
    };
    let saved_usd = decision
        .candidates
        .iter()
        .max_by(|a, b| a.p_success.total_cmp(&b.p_success))
        .map_or(0.0, |best| {
            (best.expected_cost_usd - decision.expected_cost_usd).max(0.0)
        });
    Ok(Routed {
        decision_id: id,
        decision,
        classification: embedded.prediction,
        versions,
        input_tokens,
        saved_usd,
        tenant: r.tenant.clone(),
        logged,
    })
}

impl Core {
    /// Counts and logs one decision the store has acknowledged.
    fn routed(&self, r: &Routed) {
        let m = &self.metrics;
        m.routes.with_label_values(&[&r.decision.model]).inc();
        m.expected_cost_usd
            .inc_by(r.decision.expected_cost_usd.max(0.0));
        m.cost_saved_usd.inc_by(r.saved_usd);
        tracing::info!(decision_id = %r.decision_id, model = %r.decision.model, p = r.decision.p_success, tenant = ?r.tenant, "routed");
    }

    /// Validates, classifies, decides and logs one request; returns once
    /// the store has the decision.
    pub async fn route(
        &self,
        r: &RouteRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed, ServerError> {
        let state = self.state.snapshot();
        let plan = check_route(&self.limits, "", r, &state)?;
        check_deadline(deadline)?;
        let embedded = self.batcher.classify(r.prompt.clone(), deadline).await?;
        let routed = decide(
            &self.limits,
            &self.encoder_id,
            &state,
            "",
            r,
            embedded,
            plan,
        )?;
        let logged = routed.logged.clone();
        self.store_work(move |s| s.append_decision(&logged))
            .await??;
        self.routed(&routed);
        Ok(routed)
    }

    /// Routes many requests: one result per request in order (a bad item
    /// fails alone, its errors prefixed `requests[i].`); classified in
    /// shared encoder passes and logged in one transaction.
    pub async fn route_batch(
        &self,
        requests: &[RouteRequest],
        deadline: Option<Instant>,
    ) -> Result<Vec<Result<Routed, ServerError>>, ServerError> {
        if requests.len() > self.limits.max_batch_request {
            return Err(ServerError::invalid(
                "requests",
                format!(
                    "{} items, over the maximum of {} (--max-batch-request)",
                    requests.len(),
                    self.limits.max_batch_request
                ),
            ));
        }
        check_deadline(deadline)?;
        let state = self.state.snapshot();
        let prefix = |i: usize| format!("requests[{i}].");
        let checked: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| check_route(&self.limits, &prefix(i), r, &state))
            .collect();
        let good: Vec<usize> = (0..requests.len())
            .filter(|&i| checked[i].is_ok())
            .collect();
        let embedded = self
            .batcher
            .classify_many(
                good.iter().map(|&i| requests[i].prompt.clone()).collect(),
                deadline,
            )
            .await;
        let mut embedded: BTreeMap<usize, Result<Embedded, ServerError>> =
            good.into_iter().zip(embedded).collect();
        // Decide every item, then log every decision in one transaction.
        let mut results: Vec<Result<Routed, ServerError>> = requests
            .iter()
            .zip(checked)
            .enumerate()
            .map(|(i, (r, plan))| {
                let plan = plan?;
                let e = embedded.remove(&i).expect("every good item was queued")?;
                decide(
                    &self.limits,
                    &self.encoder_id,
                    &state,
                    &prefix(i),
                    r,
                    e,
                    plan,
                )
            })
            .collect();
        let rows: Vec<LoggedDecision> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.logged.clone()))
            .collect();
        if !rows.is_empty() {
            let mut stored = self
                .store_work(move |s| s.append_decisions(&rows))
                .await?
                .into_iter();
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                if let Err(e) = stored.next().expect("one result per row") {
                    *r = Err(e.into());
                }
            }
        }
        for r in results.iter().flatten() {
            self.routed(r);
        }
        Ok(results)
    }

    /// Classifies one prompt (no decision, nothing logged).
    pub async fn classify(
        &self,
        prompt: String,
        deadline: Option<Instant>,
    ) -> Result<pointsman_classifier::Prediction, ServerError> {
        super::validate::check_prompt(&self.limits, "prompt", &prompt)?;
        check_deadline(deadline)?;
        Ok(self.batcher.classify(prompt, deadline).await?.prediction)
    }
}
