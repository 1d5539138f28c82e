//! What the store refuses to write: non-finite numbers (SQLite stores NaN
//! as NULL, and from then on every export fails) and oversized names.
//! The server validates requests first; this is the last line.

use crate::{LoggedCall, LoggedDecision, LoggedOutcome, StoreError};

/// Longest id, model, task or tenant name the store accepts, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

fn finite(field: &str, v: f64) -> Result<(), StoreError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} is {v}; only finite numbers are stored"
        )))
    }
}

fn name(field: &str, v: &str) -> Result<(), StoreError> {
    if v.len() <= MAX_NAME_BYTES {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} is {} bytes, over the store's maximum of {MAX_NAME_BYTES}",
            v.len()
        )))
    }
}

pub fn decision(d: &LoggedDecision) -> Result<(), StoreError> {
    name("id", &d.id)?;
    name("model", &d.model)?;
    name("task", &d.task)?;
    if let Some(t) = &d.tenant {
        name("tenant", t)?;
    }
    finite("difficulty", d.difficulty as f64)?;
    if let Some(sh) = &d.shadow {
        name("shadow.artifact", &sh.artifact)?;
        name("shadow.model", &sh.model)?;
        finite("shadow.p_success", sh.p_success)?;
        finite("shadow.expected_cost_usd", sh.expected_cost_usd)?;
    }
    if !(d.propensity > 0.0 && d.propensity <= 1.0) {
        return Err(invalid(format!(
            "propensity is {}; it must be a probability in (0, 1]",
            d.propensity
        )));
    }
    if let Some(i) = d.embedding.iter().position(|x| !x.is_finite()) {
        return Err(invalid(format!(
            "embedding[{i}] is {}; only finite numbers are stored",
            d.embedding[i]
        )));
    }
    for (k, v) in &d.task_scores {
        name("task_scores key", k)?;
        finite(&format!("task_scores[{k}]"), *v as f64)?;
    }
    for (i, c) in d.candidates.iter().enumerate() {
        name(&format!("candidates[{i}].model"), &c.model)?;
        finite(&format!("candidates[{i}].p_success"), c.p_success)?;
        finite(
            &format!("candidates[{i}].expected_cost_usd"),
            c.expected_cost_usd,
        )?;
    }
    Ok(())
}

pub fn outcome(o: &LoggedOutcome) -> Result<(), StoreError> {
    name("decision_id", &o.decision_id)?;
    name("model", &o.model)?;
    finite("score", o.score)?;
    if let Some(c) = o.cost_usd {
        finite("cost_usd", c)?;
    }
    if let Some(l) = o.latency_ms {
        finite("latency_ms", l)?;
    }
    Ok(())
}

pub fn call(c: &LoggedCall) -> Result<(), StoreError> {
    name("decision_id", &c.decision_id)?;
    name("model", &c.model)?;
    name("error_class", &c.error_class)?;
    finite("latency_ms", c.latency_ms)?;
    if let Some(t) = c.ttft_ms {
        finite("ttft_ms", t)?;
    }
    if let Some(c) = c.cost_usd {
        finite("cost_usd", c)?;
    }
    Ok(())
}

/// Deltas for the shared spend counters: finite (a NaN would poison the
/// fleet's counter) and with a tenant name within bounds.
pub fn spend_deltas(deltas: &[(crate::SpendKey, f64)]) -> Result<(), StoreError> {
    for (k, d) in deltas {
        finite("tenant spend delta", *d)?;
        name("tenant", &k.tenant)?;
    }
    Ok(())
}
