//! The HTTP front end's JSON: request bodies in, decisions out. Unknown
//! fields are refused (a misspelt option must not be ignored silently).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::core::{OutcomeReport, RouteConstraints, RouteRequest, Routed};
use crate::error::ServerError;

/// Parses a JSON body; an error names the field it is about (`body` for
/// JSON that does not parse at all).
pub fn parse<T: DeserializeOwned>(bytes: &[u8], prefix: &str) -> Result<T, ServerError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // "." is the whole body; "?" marks where JSON stopped parsing.
        let field = if path == "." || path.contains('?') {
            if prefix.is_empty() {
                "body".to_string()
            } else {
                prefix.trim_end_matches('.').to_string()
            }
        } else {
            format!("{prefix}{path}")
        };
        ServerError::invalid(field, e.into_inner().to_string())
    })
}

/// Routing options: the body of `POST /v1/route`, and the `pointsman`
/// object of a chat completion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteJson {
    /// The text to route on (required by /v1/route; in a chat completion
    /// it replaces the last user message as the routing prompt).
    pub prompt: Option<String>,
    pub target: Option<f64>,
    #[serde(alias = "lambda_per_usd")]
    pub lambda: Option<f64>,
    #[serde(default)]
    pub constraints: ConstraintsJson,
    pub expected_output_tokens: Option<u32>,
    pub tenant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsJson {
    #[serde(default)]
    pub allowed_models: Vec<String>,
    pub max_cost_usd: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

impl RouteJson {
    /// The core's request, routing `prompt`.
    pub fn into_request(self, prompt: String) -> RouteRequest {
        RouteRequest {
            prompt,
            target: self.target,
            lambda_per_usd: self.lambda,
            constraints: RouteConstraints {
                allowed_models: self.constraints.allowed_models,
                max_cost_usd: self.constraints.max_cost_usd,
                max_latency_ms: self.constraints.max_latency_ms,
            },
            expected_output_tokens: self.expected_output_tokens,
            tenant: self.tenant,
        }
    }
}

/// The body of `POST /v1/feedback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackJson {
    pub decision_id: String,
    /// Default: the model that answered the gateway's call for this
    /// decision, else the decision's chosen model.
    pub model: Option<String>,
    pub score: f64,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: Option<f64>,
}

impl FeedbackJson {
    pub fn into_report(self, model: String) -> OutcomeReport {
        OutcomeReport {
            decision_id: self.decision_id,
            model,
            score: self.score,
            cost_usd: self.cost_usd,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            latency_ms: self.latency_ms,
            time_ms: 0, // stamped when stored
        }
    }
}

/// A decision as JSON (the answer of `POST /v1/route`).
pub fn routed_json(r: &Routed) -> Value {
    let d = &r.decision;
    json!({
        "decision_id": r.decision_id,
        "model": d.model,
        "fallbacks": d.fallbacks,
        "p_success": d.p_success,
        "expected_cost_usd": d.expected_cost_usd,
        "candidates": d.candidates.iter().map(|c| json!({
            "model": c.model,
            "p_success": c.p_success,
            "expected_cost_usd": c.expected_cost_usd,
        })).collect::<Vec<_>>(),
        "excluded": d.excluded.iter().map(|(m, why)| (m.clone(), Value::from(why.clone()))).collect::<serde_json::Map<_, _>>(),
        "reason": d.reason,
        "explored": r.logged.explored,
        "propensity": r.logged.propensity,
        "typical_failure": r.typical_failure,
        "target": r.target(),
        "classification": {
            "task": r.classification.task,
            "task_scores": r.classification.task_scores,
            "difficulty": r.classification.difficulty,
        },
        "versions": {
            "catalog": r.versions.catalog,
            "router_artifact": r.versions.router_artifact,
            "heads": r.versions.heads,
            "generation": r.versions.generation,
            // During a rollout: "live" or "canary" (docs/ROLLOUT.md); else null.
            "arm": r.logged.versions.get("arm"),
        },
    })
}
