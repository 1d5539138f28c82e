//! Outcomes: quality scores reported by clients (gRPC ReportOutcome, HTTP
//! /v1/feedback).

use pointsman_store::LoggedOutcome;

use super::decide::now_ms;
use super::request::OutcomeReport;
use super::validate::check_outcome;
use super::Core;
use crate::error::ServerError;
use crate::fields::quote;

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
        let outcome = LoggedOutcome {
            decision_id: r.decision_id,
            model: r.model.clone(),
            score: r.score,
            cost_usd: r.cost_usd,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            latency_ms: r.latency_ms,
            time_ms: now_ms(),
        };
        let n = self
            .store_work(move |s| s.append_outcome(&outcome))
            .await??;
        self.metrics.outcomes.with_label_values(&[&r.model]).inc();
        Ok(n)
    }
}
