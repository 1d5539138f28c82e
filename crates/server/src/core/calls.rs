//! Automatic outcome logging for the gateway: every upstream call of a
//! forwarded request becomes a `calls` row (error class, status, latency,
//! time to first token, tokens, cost from the catalog prices), and a call
//! that failed on the model's side also becomes a failure outcome (score
//! 0), in one store transaction. The quality of an answer is unknown here;
//! clients report it later (feedback), and a later report replaces an
//! automatic failure outcome (docs/GATEWAY.md, "Outcomes").

use std::time::Duration;

use pointsman_store::{LoggedCall, LoggedOutcome};
use pointsman_upstream::{ErrorClass, Usage};

use super::decide::now_ms;
use super::Core;
use crate::error::ServerError;

/// One upstream call as the gateway saw it.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    /// The catalog model called.
    pub model: String,
    pub class: ErrorClass,
    pub status: Option<u16>,
    pub latency: Duration,
    /// Time to the first byte of a streamed answer.
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
}

impl UpstreamCall {
    /// Whether a request actually went out (a model without an upstream,
    /// or one skipped because the deadline had passed, was not called).
    fn was_made(&self) -> bool {
        match self.class {
            ErrorClass::NotConfigured => false,
            ErrorClass::Deadline => !self.latency.is_zero(),
            _ => true,
        }
    }

    /// Whether the call failed on the model's side: stored as a failure
    /// outcome (score 0). Not: a wrong request (4xx, the client's fault) or
    /// a client that went away.
    fn failed(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Connect
                | ErrorClass::Timeout
                | ErrorClass::RateLimited
                | ErrorClass::Server
                | ErrorClass::MidStream
                | ErrorClass::BadResponse
                | ErrorClass::Deadline
        )
    }
}

impl Core {
    /// Counts the calls in the metrics (a call followed by another is a
    /// fallback) and logs them, with failure outcomes, for `decision_id`.
    pub async fn log_calls(
        &self,
        decision_id: String,
        calls: Vec<UpstreamCall>,
    ) -> Result<(), ServerError> {
        let state = self.state.snapshot();
        let time_ms = now_ms();
        let m = &self.metrics;
        let made: Vec<&UpstreamCall> = calls.iter().filter(|c| c.was_made()).collect();
        let mut rows = Vec::with_capacity(made.len());
        let mut failures = Vec::new();
        for (i, c) in made.iter().enumerate() {
            let cost = match (&c.usage, state.catalog.get(&c.model)) {
                (Some(u), Some(spec)) => Some(spec.cost_usd(u.prompt_tokens, u.completion_tokens)),
                _ => None,
            };
            m.upstream_requests
                .with_label_values(&[&c.model, c.class.as_str()])
                .inc();
            m.upstream_latency
                .with_label_values(&[&c.model])
                .observe(c.latency.as_secs_f64());
            if let Some(t) = c.ttft {
                m.upstream_ttft
                    .with_label_values(&[&c.model])
                    .observe(t.as_secs_f64());
            }
            if let Some(u) = &c.usage {
                m.upstream_tokens
                    .with_label_values(&[&c.model, "prompt"])
                    .inc_by(u.prompt_tokens);
                m.upstream_tokens
                    .with_label_values(&[&c.model, "completion"])
                    .inc_by(u.completion_tokens);
            }
            if let Some(cost) = cost {
                m.upstream_cost_usd
                    .with_label_values(&[&c.model])
                    .inc_by(cost.max(0.0));
            }
            if i + 1 < made.len() {
                m.upstream_fallbacks.with_label_values(&[&c.model]).inc();
            }
            let latency_ms = c.latency.as_secs_f64() * 1e3;
            rows.push(LoggedCall {
                decision_id: decision_id.clone(),
                model: c.model.clone(),
                error_class: c.class.as_str().to_string(),
                status: c.status,
                latency_ms,
                ttft_ms: c.ttft.map(|t| t.as_secs_f64() * 1e3),
                input_tokens: c.usage.as_ref().map(|u| u.prompt_tokens),
                output_tokens: c.usage.as_ref().map(|u| u.completion_tokens),
                cost_usd: cost,
                time_ms,
            });
            if c.failed() {
                failures.push(LoggedOutcome {
                    decision_id: decision_id.clone(),
                    model: c.model.clone(),
                    score: 0.0,
                    cost_usd: cost,
                    input_tokens: c.usage.as_ref().map(|u| u.prompt_tokens),
                    output_tokens: c.usage.as_ref().map(|u| u.completion_tokens),
                    latency_ms: Some(latency_ms),
                    time_ms,
                });
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let n_failures = failures.len();
        // Logged after the client has its answer: wait for a store slot
        // rather than lose the row.
        self.store_work_waiting(move |s| s.append_calls(&rows, &failures))
            .await??;
        if n_failures > 0 {
            tracing::info!(%decision_id, failures = n_failures, "upstream failures logged as outcomes");
        }
        Ok(())
    }
}
