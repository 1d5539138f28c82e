//! Request validation: every field checked before any work is done, every
//! error naming its field (with the front end's prefix, e.g. `requests[3].`).

use pointsman_router::{Constraints, Policy};

use super::request::{OutcomeReport, RouteRequest};
use super::Limits;
use crate::error::ServerError;
use crate::fields::{
    check_len, is_invisible, quote, MAX_ALLOWED_MODELS, MAX_DECISION_ID_BYTES, MAX_NAME_BYTES,
};
use crate::state::RoutingState;

/// What a valid request decides with.
#[derive(Debug, Clone)]
pub struct Plan {
    pub policy: Policy,
    pub constraints: Constraints,
    /// The rollout in progress (shadow or canary candidate), if any.
    pub rollout: Option<std::sync::Arc<super::rollout::Active>>,
    /// The tenant is over its budget with `on_budget = "downgrade"`: the
    /// cheapest eligible model is chosen.
    pub downgrade: bool,
    /// The tenant's exploration rate, instead of the server's `--explore`.
    pub explore_rate: Option<f64>,
}

/// A prompt the encoder can read: not blank, not only invisible
/// characters, at most `--max-prompt-bytes`.
pub fn check_prompt(limits: &Limits, field: &str, prompt: &str) -> Result<(), ServerError> {
    if prompt.trim().is_empty() {
        return Err(ServerError::invalid(field, "is empty"));
    }
    if prompt.chars().all(is_invisible) {
        return Err(ServerError::invalid(
            field,
            "has no visible characters (only white space, zero-width or other format characters)",
        ));
    }
    if prompt.len() > limits.max_prompt_bytes {
        return Err(ServerError::PromptTooLarge {
            field: field.to_string(),
            bytes: prompt.len(),
            max: limits.max_prompt_bytes,
        });
    }
    Ok(())
}

/// Validates a route request against the state; `prefix` is prepended to
/// field names ("" or "requests[3].").
pub fn check_route(
    limits: &Limits,
    prefix: &str,
    r: &RouteRequest,
    state: &RoutingState,
) -> Result<Plan, ServerError> {
    let f = |name: &str| format!("{prefix}{name}");
    check_prompt(limits, &f("prompt"), &r.prompt)?;
    let policy = match (r.lambda_per_usd, r.target) {
        (Some(l), _) if !(l >= 0.0 && l.is_finite()) => {
            return Err(ServerError::invalid(
                f("lambda_per_usd"),
                format!("{l} must be a finite number >= 0"),
            ))
        }
        (Some(l), _) => Policy::WillingnessToPay { lambda_per_usd: l },
        (None, Some(t)) if !(0.0..=1.0).contains(&t) => {
            return Err(ServerError::invalid(
                f("target"),
                format!("{t} is outside [0, 1]"),
            ))
        }
        (None, Some(t)) => Policy::Target { target: t },
        (None, None) => Policy::Target {
            target: state.catalog.default_target,
        },
    };
    if r.expected_output_tokens == Some(0) {
        return Err(ServerError::invalid(
            f("expected_output_tokens"),
            "must be > 0",
        ));
    }
    if let Some(t) = &r.tenant {
        check_len(&f("tenant"), t, MAX_NAME_BYTES)?;
    }
    let mut constraints = Constraints::default();
    let c = &r.constraints;
    if c.allowed_models.len() > MAX_ALLOWED_MODELS {
        return Err(ServerError::invalid(
            f("constraints.allowed_models"),
            format!(
                "{} entries, over the maximum of {MAX_ALLOWED_MODELS}",
                c.allowed_models.len()
            ),
        ));
    }
    if !c.allowed_models.is_empty() {
        for (i, m) in c.allowed_models.iter().enumerate() {
            let field = f(&format!("constraints.allowed_models[{i}]"));
            check_len(&field, m, MAX_NAME_BYTES)?;
            if state.catalog.get(m).is_none() {
                return Err(ServerError::invalid(
                    field,
                    format!(
                        "{} is not in the catalog (models: {})",
                        quote(m),
                        state.catalog.names().join(", ")
                    ),
                ));
            }
        }
        constraints.allowed = Some(c.allowed_models.clone());
    }
    if let Some(x) = c.max_cost_usd {
        if !(x > 0.0 && x.is_finite()) {
            return Err(ServerError::invalid(
                f("constraints.max_cost_usd"),
                format!("{x} must be > 0"),
            ));
        }
        constraints.max_cost_usd = Some(x);
    }
    if let Some(x) = c.max_latency_ms {
        if !(x > 0.0 && x.is_finite()) {
            return Err(ServerError::invalid(
                f("constraints.max_latency_ms"),
                format!("{x} must be > 0"),
            ));
        }
        constraints.max_latency_ms = Some(x);
    }
    if state.success.is_none() {
        return Err(ServerError::NotReady(
            "no router artifact is loaded: start the server with --router FILE (from `pointsman train router`), then reload".into(),
        ));
    }
    Ok(Plan {
        policy,
        constraints,
        rollout: None,
        downgrade: false,
        explore_rate: None,
    })
}

/// The fields of an outcome report on their own (whether the decision and
/// model exist is the store's and the catalog's to say).
pub fn check_outcome(r: &OutcomeReport) -> Result<(), ServerError> {
    if r.decision_id.trim().is_empty() {
        return Err(ServerError::invalid("decision_id", "is empty"));
    }
    check_len("decision_id", &r.decision_id, MAX_DECISION_ID_BYTES)?;
    if r.model.trim().is_empty() {
        return Err(ServerError::invalid("model", "is empty"));
    }
    check_len("model", &r.model, MAX_NAME_BYTES)?;
    if !(0.0..=1.0).contains(&r.score) || !r.score.is_finite() {
        return Err(ServerError::invalid(
            "score",
            format!("{} is outside [0, 1]", r.score),
        ));
    }
    if let Some(c) = r.cost_usd.filter(|c| !(*c >= 0.0 && c.is_finite())) {
        return Err(ServerError::invalid(
            "cost_usd",
            format!("{c} must be a finite number >= 0"),
        ));
    }
    if let Some(l) = r.latency_ms.filter(|l| !(*l >= 0.0 && l.is_finite())) {
        return Err(ServerError::invalid(
            "latency_ms",
            format!("{l} must be a finite number >= 0"),
        ));
    }
    Ok(())
}
