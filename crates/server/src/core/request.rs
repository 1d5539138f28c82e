//! The core's domain types: what a front end asks for and what it gets.
//! No wire format here; each front end converts its own (protobuf, JSON).

use pointsman_classifier::Prediction;
use pointsman_store::LoggedDecision;

/// One routing request, as every front end hands it to the core.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteRequest {
    /// The text the encoder reads.
    pub prompt: String,
    /// Quality target in [0, 1]; None = the catalog's default.
    pub target: Option<f64>,
    /// Willingness to pay instead (successes per USD, >= 0); wins over `target`.
    pub lambda_per_usd: Option<f64>,
    pub constraints: RouteConstraints,
    /// Completion tokens expected, for pricing (> 0); None = the server default.
    pub expected_output_tokens: Option<u32>,
    /// Opaque tenant name, stored with the decision.
    pub tenant: Option<String>,
}

/// Limits on which model may be chosen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteConstraints {
    /// Only these catalog models; empty = every model.
    pub allowed_models: Vec<String>,
    pub max_cost_usd: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

/// Which data a decision was made with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// sha256 prefix of the catalog file.
    pub catalog: String,
    /// `file@sha256 prefix` of the router artifact ("" = none loaded).
    pub router_artifact: String,
    /// The heads' version.
    pub heads: String,
    /// Successful loads and reloads since start (1 = first load).
    pub generation: u64,
}

/// One decision, made and (for the server) logged.
#[derive(Debug, Clone)]
pub struct Routed {
    pub decision_id: String,
    /// The policy's choice: model, fallbacks, candidates, excluded, reason.
    pub decision: pointsman_router::Decision,
    /// What the classifier read in the prompt.
    pub classification: Prediction,
    pub versions: Versions,
    /// Prompt tokens as estimated for pricing.
    pub input_tokens: u64,
    /// Expected cost of the highest-P eligible model minus the chosen one's.
    pub saved_usd: f64,
    /// 1 − the mean P(success) of every catalog model under the deciding
    /// artifact: the probability that a typical catalog model fails.
    pub typical_failure: f64,
    pub tenant: Option<String>,
    /// Which artifact decided: the live one, or the candidate under canary
    /// (`versions.router_artifact` names its version).
    pub arm: super::rollout::Arm,
    /// The row the store gets.
    pub logged: LoggedDecision,
}

impl Routed {
    /// The target the decision was made with (None for willingness to pay).
    pub fn target(&self) -> Option<f64> {
        match self.decision.policy {
            pointsman_router::Policy::Target { target }
            | pointsman_router::Policy::TargetAtLambda { target, .. } => Some(target),
            pointsman_router::Policy::WillingnessToPay { .. } => None,
        }
    }
}

/// A quality score for one model's answer to a decision's prompt
/// (gRPC ReportOutcome, HTTP /v1/feedback): the same data as the store's
/// outcome row, so the same type. Its `time_ms` is stamped by the core
/// when it stores the report (front ends leave it 0).
pub type OutcomeReport = pointsman_store::LoggedOutcome;
