//! Outcomes: quality scores reported by clients (gRPC ReportOutcome, HTTP
//! /v1/feedback).

use super::decide::now_ms;
use super::request::OutcomeReport;
use super::tenants::SpendCounter;
use super::validate::check_outcome;
use super::Core;
use crate::error::ServerError;
use crate::fields::{check_len, quote, MAX_DECISION_ID_BYTES};

impl Core {
    /// Stores one outcome; returns how many models the decision now has
    /// outcomes for. The model must be in the current catalog or among the
    /// decision's own candidates (a reload may have dropped it since). The
    /// same model reported again replaces its earlier outcome (last wins).
    pub async fn report_outcome(&self, r: OutcomeReport) -> Result<u32, ServerError> {
        check_outcome(&r)?;
        let state = self.state.snapshot();
        if state.catalog.get(&r.model).is_none() {
            let id = r.decision_id.clone();
            let considered = self.store_work(move |s| s.decision_models(&id)).await??;
            match considered {
                None => {
                    return Err(pointsman_store::StoreError::UnknownDecision(r.decision_id).into())
                }
                Some(models) if models.contains(&r.model) => {}
                Some(models) => {
                    return Err(ServerError::not_found(
                        "model",
                        format!(
                            "{} is neither in the catalog (models: {}) nor among the decision's candidates ({})",
                            quote(&r.model),
                            state.catalog.names().join(", "),
                            models.join(", ")
                        ),
                    ))
                }
            }
        }
        let id = r.decision_id.clone();
        let outcome = OutcomeReport {
            time_ms: now_ms(),
            ..r.clone()
        };
        let (n, meta) = self
            .store_work(move |s| {
                // Read before the append: the cost the decision's outcome
                // reported until now. For the metrics by artifact and the
                // tenant's spend; a failed read loses only those.
                let meta = s.decision_meta(&id).ok().flatten();
                let n = s.append_outcome(&outcome)?;
                Ok::<_, pointsman_store::StoreError>((n, meta))
            })
            .await??;
        if let Some(meta) = &meta {
            self.count_reported_cost(meta, &r);
        }
        self.metrics.outcomes.with_label_values(&[&r.model]).inc();
        self.limits.explore.reported.add(&r.model);
        // The reported success rate and cost of each artifact: outcomes
        // of the model it chose, by the arm logged with the decision.
        if let Some(meta) = meta.filter(|m| m.model == r.model) {
            let artifact = match meta.versions.get("arm").map(String::as_str) {
                Some("canary") => super::rollout::Arm::Canary,
                _ => super::rollout::Arm::Live,
            }
            .artifact_label();
            let m = &self.metrics;
            m.artifact_outcomes.with_label_values(&[artifact]).inc();
            m.artifact_outcome_score
                .with_label_values(&[artifact])
                .inc_by(r.score);
            if let Some(c) = r.cost_usd {
                m.artifact_reported_cost_usd
                    .with_label_values(&[artifact])
                    .inc_by(c);
            }
        }
        Ok(n)
    }

    /// A reported cost replaces the expected one in the tenant's spend:
    /// an outcome for the decision's chosen model moves the count by its
    /// `cost_usd` minus what was counted for the decision so far (the
    /// previous outcome's reported cost, else the expected cost; an
    /// outcome without a cost after one with a cost moves it back, as the
    /// last report wins). Only within the period the decision was made
    /// in: a period that has ended has no budget left to check. Not for a
    /// named model's decision, whose row has no expected cost to replace.
    fn count_reported_cost(&self, meta: &pointsman_store::DecisionMeta, r: &OutcomeReport) {
        if meta.model != r.model {
            return;
        }
        let Some(tenant) = meta.tenant.as_deref() else {
            return;
        };
        let tenants = self.tenants.snapshot();
        let Some(budget) = tenants.get(Some(tenant)).and_then(|p| p.budget()) else {
            return;
        };
        let start = budget.period.start(meta.time_ms);
        if start != budget.period.start(now_ms()) {
            return;
        }
        // A named model's decision logs no expected cost (named.rs): its
        // count stays the expected cost it was charged.
        let Some(expected) = meta.expected_cost_usd else {
            return;
        };
        let counted = meta.reported_cost_usd.unwrap_or(expected);
        let now_counted = r.cost_usd.unwrap_or(expected);
        let delta = now_counted - counted;
        if delta != 0.0 {
            self.spend.add(tenant, start, delta);
            tracing::debug!(tenant, decision_id = %r.decision_id, delta_usd = delta, "reported cost replaces the expected one in the tenant's spend");
        }
    }

    /// The model a report without one is about: the one whose gateway
    /// call answered the decision, else the decision's chosen model.
    pub async fn answering_model(&self, decision_id: &str) -> Result<String, ServerError> {
        if decision_id.trim().is_empty() {
            return Err(ServerError::invalid("decision_id", "is empty"));
        }
        check_len("decision_id", decision_id, MAX_DECISION_ID_BYTES)?;
        let id = decision_id.to_string();
        let (answered, considered) = self
            .store_work(move |s| {
                Ok::<_, pointsman_store::StoreError>((
                    s.answered_model(&id)?,
                    s.decision_models(&id)?,
                ))
            })
            .await??;
        match (answered, considered) {
            (Some(m), _) => Ok(m),
            (None, Some(models)) if !models.is_empty() => Ok(models[0].clone()),
            _ => Err(pointsman_store::StoreError::UnknownDecision(decision_id.to_string()).into()),
        }
    }
}
