//! Exploration with logged propensities: after the policy has decided, a
//! share ε of decisions goes to another *eligible* model, drawn in
//! proportion to P(success), and every decision records the probability
//! with which its model was chosen (its propensity) so that off-policy
//! evaluation can reweight the logs (crates/eval/src/ope.rs).
//!
//! The distribution over the decision's candidates (all already filtered by
//! the request's constraints, so exploration can never break one) is
//!
//! ```text
//! π(m) = (1 − ε) · [m = greedy] + ε · w(m)
//! w(m) = P_m / Σ P                                  (no cold model among the candidates)
//! w(m) = ½ · P_m / Σ P + ½ · [m cold] / #cold       (some candidate is cold)
//! ```
//!
//! A model is *cold* when it has fewer than the configured number of
//! outcomes: half of the exploring mass is shared evenly among the cold
//! candidates, so each cold eligible model gets at least ε / (2 · #cold) of
//! the traffic that can reach it until it has earned its outcomes. With
//! ε = 0 nothing changes and the propensity is 1.
//!
//! One uniform draw picks the model by inverse CDF over a layout whose
//! first segment `[0, 1 − ε)` is the greedy mass, so "explored" (the draw
//! fell in the exploring mass) is well defined even when exploration lands
//! on the greedy model. Pure: the caller passes the random number in.

use crate::policy::Decision;

/// What exploration did to one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Explored {
    /// Index of the model used among `decision.candidates` (before
    /// [`apply`] reorders them; after it, the chosen model is first).
    pub index: usize,
    /// Probability with which this model was chosen under this state, in
    /// (0, 1]; 1.0 when the rate is 0.
    pub propensity: f64,
    /// Whether the draw fell in the exploring mass (ε), not the greedy one.
    pub explored: bool,
}

/// A uniform number in [0, 1) from 64 random bits (the top 53).
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The exploring weights w(m) over `decision.candidates` (they sum to 1):
/// proportional to P(success) (every model gets a small floor so a P of 0
/// still leaves it reachable), with half the mass shared among cold
/// candidates when there are any (see the module docs).
pub fn exploring_weights(decision: &Decision, cold: &dyn Fn(&str) -> bool) -> Vec<f64> {
    let n = decision.candidates.len();
    // A floor keeps every eligible model's propensity above zero, so the
    // logs support any candidate policy (IPS needs π(m) > 0 wherever a
    // candidate may choose m).
    const FLOOR: f64 = 1e-3;
    let p: Vec<f64> = decision
        .candidates
        .iter()
        .map(|c| {
            if c.p_success.is_finite() {
                c.p_success.clamp(0.0, 1.0).max(FLOOR)
            } else {
                FLOOR
            }
        })
        .collect();
    let total: f64 = p.iter().sum();
    let is_cold: Vec<bool> = decision.candidates.iter().map(|c| cold(&c.model)).collect();
    let n_cold = is_cold.iter().filter(|&&c| c).count();
    (0..n)
        .map(|i| {
            let by_p = p[i] / total;
            if n_cold == 0 {
                by_p
            } else {
                0.5 * by_p + if is_cold[i] { 0.5 / n_cold as f64 } else { 0.0 }
            }
        })
        .collect()
}

/// The whole distribution π(m) over `decision.candidates` (aligned with
/// them; sums to 1) at exploration rate `rate` in [0, 1). The greedy model
/// is `decision.candidates[0]`.
pub fn distribution(decision: &Decision, rate: f64, cold: &dyn Fn(&str) -> bool) -> Vec<f64> {
    let rate = clamp_rate(rate);
    let n = decision.candidates.len();
    if rate == 0.0 || n <= 1 {
        return (0..n).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    }
    let w = exploring_weights(decision, cold);
    (0..n)
        .map(|i| rate * w[i] + if i == 0 { 1.0 - rate } else { 0.0 })
        .collect()
}

/// Draws the model for `decision` at rate `rate` from one uniform `u` in
/// [0, 1) (see [`unit`]): which candidate, its propensity, and whether the
/// draw explored. Does not change the decision (see [`apply`]).
pub fn draw(decision: &Decision, rate: f64, cold: &dyn Fn(&str) -> bool, u: f64) -> Explored {
    let rate = clamp_rate(rate);
    let greedy = Explored {
        index: 0,
        propensity: 1.0,
        explored: false,
    };
    let n = decision.candidates.len();
    if rate == 0.0 || n <= 1 {
        return greedy;
    }
    let pi = distribution(decision, rate, cold);
    if u < 1.0 - rate {
        return Explored {
            propensity: pi[0],
            ..greedy
        };
    }
    // The exploring mass, laid out after the greedy segment.
    let w = exploring_weights(decision, cold);
    let mut edge = 1.0 - rate;
    let mut index = n - 1;
    for (i, wi) in w.iter().enumerate() {
        edge += rate * wi;
        if u < edge {
            index = i;
            break;
        }
    }
    Explored {
        index,
        propensity: pi[index],
        explored: true,
    }
}

/// The hook the server calls after the policy: draws with [`draw`] and,
/// when another model was drawn, makes it the decision's model (first
/// candidate, the others keeping their order as fallbacks) and says so in
/// the reason. `bits` is 64 random bits (the caller's RNG).
pub fn apply(
    decision: &mut Decision,
    rate: f64,
    cold: &dyn Fn(&str) -> bool,
    bits: u64,
) -> Explored {
    let e = draw(decision, rate, cold, unit(bits));
    if e.explored {
        let picked = decision.candidates.remove(e.index);
        decision.candidates.insert(0, picked);
        let first = &decision.candidates[0];
        decision.model = first.model.clone();
        decision.p_success = first.p_success;
        decision.expected_cost_usd = first.expected_cost_usd;
        decision.fallbacks = decision.candidates[1..]
            .iter()
            .map(|c| c.model.clone())
            .collect();
        decision.reason = format!(
            "explored (rate {rate}, propensity {:.4}): {} instead of the policy's choice; {}",
            e.propensity, decision.model, decision.reason
        );
    }
    e
}

/// The expected cost and P(success) of one decision under exploration at
/// `rate` minus those of the policy's own choice (the cost of exploring,
/// per decision): `(Δ cost USD, Δ P)`.
pub fn expected_change(decision: &Decision, rate: f64, cold: &dyn Fn(&str) -> bool) -> (f64, f64) {
    let pi = distribution(decision, rate, cold);
    let c = &decision.candidates;
    if c.is_empty() {
        return (0.0, 0.0);
    }
    let cost: f64 = pi.iter().zip(c).map(|(p, m)| p * m.expected_cost_usd).sum();
    let quality: f64 = pi.iter().zip(c).map(|(p, m)| p * m.p_success).sum();
    (cost - c[0].expected_cost_usd, quality - c[0].p_success)
}

/// Checks an exploration rate: finite and in [0, 1).
pub fn check_rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && (0.0..1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not an exploration rate in [0, 1)"))
    }
}

/// Out-of-range rates from a caller that skipped [`check_rate`] behave as
/// the nearest valid one (never a probability outside [0, 1]).
fn clamp_rate(rate: f64) -> f64 {
    if rate.is_finite() {
        rate.clamp(0.0, 1.0 - 1e-9)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests;
