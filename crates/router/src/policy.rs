//! The policy: success probabilities and costs in, a model and a fallback
//! chain out.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::RouterError;

/// How to trade quality against cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Policy {
    /// A quality target τ in [0, 1] as requests and catalogs state it. Under
    /// an artifact with a target table (every one trained since the table
    /// was added) it means a mean P(success) over the traffic, within
    /// 1 − τ of always picking the likeliest model, met at least cost:
    /// [`crate::SuccessModel::resolve_policy`] turns it into
    /// [`Policy::TargetAtLambda`] before deciding (see [`crate::target`]).
    ///
    /// Decided as it stands (an artifact without a table), it is the older
    /// per-prompt floor: the cheapest model whose P(success) is at least
    /// `target` − (1 − P_best), P_best the highest P among the eligible
    /// models: its chance of failing exceeds the best model's by at most
    /// 1 − `target` (in [0, 1]). Where some model is sure to succeed this is
    /// the plain target; on a prompt no model is sure of, the tolerated
    /// shortfall stays the same distance from the best, so a prompt that
    /// nobody is likely to answer goes to a cheap model instead of the
    /// dearest one (see docs/EVALUATION.md, "The target policy"). Only
    /// models on the prompt's cost–P hull count as reaching the bar: one
    /// that a random mix of a cheaper and a dearer model beats at the same
    /// expected cost is never bought for the target (it stays a fallback).
    Target { target: f64 },
    /// The target τ met over the traffic: the willingness-to-pay rule at
    /// `lambda_per_usd`, the λ the artifact's target table gives for
    /// `target` (what a [`Policy::Target`] resolves to).
    TargetAtLambda { target: f64, lambda_per_usd: f64 },
    /// The model maximising P(success) − `lambda_per_usd` × expected cost
    /// (USD); `lambda_per_usd` >= 0 is how many successes one dollar is worth
    /// giving up, i.e. 1/λ is the most one would pay per extra success.
    WillingnessToPay { lambda_per_usd: f64 },
}

/// Per-request limits; `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Constraints {
    /// Only these models (by catalog name) may be chosen.
    pub allowed: Option<Vec<String>>,
    /// Most a call may be expected to cost, in USD.
    pub max_cost_usd: Option<f64>,
    /// Most a model's typical latency may be, in milliseconds; models with
    /// no latency in the catalog pass.
    pub max_latency_ms: Option<f64>,
    /// Tokens the model's context window must hold (prompt plus completion).
    pub min_context_tokens: Option<u64>,
}

/// One model considered for a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub model: String,
    /// P(success) in [0, 1].
    pub p_success: f64,
    /// Expected cost of one call in USD.
    pub expected_cost_usd: f64,
}

/// What the policy chose and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The chosen model (the first of `candidates`).
    pub model: String,
    pub p_success: f64,
    pub expected_cost_usd: f64,
    /// Models to try next if the chosen one fails, in order.
    pub fallbacks: Vec<String>,
    /// Every model that met the constraints, chosen model first, then the
    /// fallback order.
    pub candidates: Vec<Candidate>,
    /// Models the constraints ruled out, with why.
    pub excluded: Vec<(String, String)>,
    /// One line saying why this model was chosen.
    pub reason: String,
    pub policy: Policy,
}

/// The core choice on plain slices: index of the chosen model among those
/// with `eligible[i]`, or None if none is eligible. `p` and `cost` are
/// aligned. Allocation-free for up to [`MAX_HULL_MODELS`] models so the
/// eval harness can call it per row.
pub fn choose(p: &[f64], cost: &[f64], eligible: &[bool], policy: Policy) -> Option<usize> {
    let bar = bar(p, eligible, policy);
    let hull = HullMask::new(p, cost, eligible, policy);
    let mut best: Option<usize> = None;
    for i in (0..p.len()).filter(|&i| eligible[i]) {
        best = match best {
            None => Some(i),
            Some(b) if better(i, b, p, cost, policy, bar, &hull) => Some(i),
            keep => keep,
        };
    }
    best
}

/// Catalogs up to this size take the allocation-free path of [`HullMask`].
pub const MAX_HULL_MODELS: usize = 64;

/// Which eligible models lie on the prompt's cost–P hull (the target
/// policy only; every model passes under willingness to pay, whose
/// maximum always lies on it).
///
/// A model is on the hull when no random mix of a cheaper and a dearer
/// model reaches at least its P at no more expected cost: the vertices of
/// the non-decreasing concave hull of the eligible (cost, P) points. The
/// target policy picks the cheapest hull vertex that reaches the bar. A
/// model below the hull is one whose price buys less P per dollar than
/// the models around it (on AlpacaEval, claude-2 at ten times
/// claude-instant's cost for a hair more P): the plain "cheapest model
/// with P >= bar" bought it whenever its P edged past the bar, and its
/// sweep fell below the zero router (docs/EVALUATION.md, "Why τ lost to
/// the zero router").
struct HullMask {
    small: [bool; MAX_HULL_MODELS],
    large: Vec<bool>,
}

impl HullMask {
    fn new(p: &[f64], cost: &[f64], eligible: &[bool], policy: Policy) -> HullMask {
        let n = p.len();
        let mut mask = HullMask {
            small: [false; MAX_HULL_MODELS],
            large: if n > MAX_HULL_MODELS {
                vec![false; n]
            } else {
                Vec::new()
            },
        };
        if !matches!(policy, Policy::Target { .. }) {
            (0..n).for_each(|i| mask.set(i, eligible[i]));
            return mask;
        }
        let mut idx = [0usize; MAX_HULL_MODELS];
        let mut big: Vec<usize> = if n > MAX_HULL_MODELS {
            (0..n).collect()
        } else {
            Vec::new()
        };
        let order: &mut [usize] = if n > MAX_HULL_MODELS {
            &mut big
        } else {
            for (i, x) in idx.iter_mut().enumerate().take(n) {
                *x = i;
            }
            &mut idx[..n]
        };
        // Cheapest first; at equal cost the likelier first (it alone can
        // be a vertex), then the lower index.
        order.sort_unstable_by(|&a, &b| {
            cost[a]
                .total_cmp(&cost[b])
                .then(p[b].total_cmp(&p[a]))
                .then(a.cmp(&b))
        });
        // Monotone chain over the eligible points, kept in place: `len`
        // leading entries of `order` are the hull so far.
        let mut len = 0usize;
        for pos in 0..n {
            let i = order[pos];
            if !eligible[i] || (len > 0 && cost[order[len - 1]] == cost[i]) {
                continue;
            }
            while len >= 2 {
                let (a, b) = (order[len - 2], order[len - 1]);
                // Drop b if it lies on or below the segment a–i.
                if (cost[b] - cost[a]) * (p[i] - p[a]) - (p[b] - p[a]) * (cost[i] - cost[a]) >= 0.0
                {
                    len -= 1;
                } else {
                    break;
                }
            }
            order[len] = i;
            len += 1;
        }
        // Non-decreasing: the hull ends at its most likely vertex.
        let top = (0..len)
            .max_by(|&x, &y| p[order[x]].total_cmp(&p[order[y]]).then(y.cmp(&x)))
            .map_or(0, |t| t + 1);
        for &i in &order[..top] {
            mask.set(i, true);
        }
        mask
    }

    fn set(&mut self, i: usize, v: bool) {
        if self.large.is_empty() {
            self.small[i] = v;
        } else {
            self.large[i] = v;
        }
    }

    fn on(&self, i: usize) -> bool {
        if self.large.is_empty() {
            self.small[i]
        } else {
            self.large[i]
        }
    }
}

/// The P a model must reach under the target policy on this prompt:
/// `target` − (1 − P_best) over the eligible models (unused by the
/// willingness-to-pay policy).
fn bar(p: &[f64], eligible: &[bool], policy: Policy) -> f64 {
    match policy {
        Policy::Target { target } => {
            let best = (0..p.len())
                .filter(|&i| eligible[i])
                .map(|i| p[i])
                .fold(f64::NEG_INFINITY, f64::max);
            target - (1.0 - best)
        }
        Policy::WillingnessToPay { .. } | Policy::TargetAtLambda { .. } => 0.0,
    }
}

/// Whether candidate `i` ranks before `j` under `policy` (the fallback
/// order); `bar` is [`bar`]'s value for the prompt, `hull` the models on
/// the prompt's cost–P hull (only those can reach the target).
fn better(
    i: usize,
    j: usize,
    p: &[f64],
    cost: &[f64],
    policy: Policy,
    bar: f64,
    hull: &HullMask,
) -> bool {
    match policy {
        Policy::Target { .. } => {
            let (ri, rj) = (p[i] >= bar && hull.on(i), p[j] >= bar && hull.on(j));
            match (ri, rj) {
                (true, false) => true,
                (false, true) => false,
                // Both reach the target: cheaper first, then likelier.
                (true, true) => cost[i] < cost[j] || (cost[i] == cost[j] && p[i] > p[j]),
                // Neither: likelier first, then cheaper.
                (false, false) => p[i] > p[j] || (p[i] == p[j] && cost[i] < cost[j]),
            }
        }
        Policy::WillingnessToPay { lambda_per_usd }
        | Policy::TargetAtLambda { lambda_per_usd, .. } => {
            let (ui, uj) = (
                p[i] - lambda_per_usd * cost[i],
                p[j] - lambda_per_usd * cost[j],
            );
            ui > uj || (ui == uj && cost[i] < cost[j])
        }
    }
}

/// Decides for one request. `p` and `cost` are aligned with
/// `catalog.models` (P in [0, 1], expected cost in USD). Fails only when
/// the constraints rule out every model.
pub fn decide(
    catalog: &Catalog,
    p: &[f64],
    cost: &[f64],
    policy: Policy,
    constraints: &Constraints,
) -> Result<Decision, RouterError> {
    assert_eq!(p.len(), catalog.models.len(), "one P per catalog model");
    assert_eq!(
        cost.len(),
        catalog.models.len(),
        "one cost per catalog model"
    );
    let mut excluded = Vec::new();
    let mut eligible = Vec::with_capacity(p.len());
    for (i, m) in catalog.models.iter().enumerate() {
        let why = if constraints
            .allowed
            .as_ref()
            .is_some_and(|a| !a.iter().any(|n| n == &m.name))
        {
            Some("not in the allowed models".to_string())
        } else if constraints.max_cost_usd.is_some_and(|c| cost[i] > c) {
            Some(format!(
                "expected cost {:.6} USD is above max_cost_usd",
                cost[i]
            ))
        } else if let (Some(max), Some(l)) = (constraints.max_latency_ms, m.latency_ms) {
            (l > max).then(|| format!("latency {l} ms is above max_latency_ms {max}"))
        } else {
            None
        };
        let why = why.or_else(|| {
            constraints
                .min_context_tokens
                .filter(|&n| m.context_window < n)
                .map(|n| format!("context window {} < {n} tokens needed", m.context_window))
        });
        eligible.push(why.is_none());
        if let Some(w) = why {
            excluded.push((m.name.clone(), w));
        }
    }
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| eligible[i]).collect();
    if order.is_empty() {
        return Err(RouterError::NoEligibleModel(
            excluded
                .iter()
                .map(|(m, w)| format!("{m}: {w}"))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let bar = bar(p, &eligible, policy);
    let hull = HullMask::new(p, cost, &eligible, policy);
    order.sort_by(|&a, &b| {
        if better(a, b, p, cost, policy, bar, &hull) {
            std::cmp::Ordering::Less
        } else if better(b, a, p, cost, policy, bar, &hull) {
            std::cmp::Ordering::Greater
        } else {
            a.cmp(&b)
        }
    });
    let first = order[0];
    let name = |i: usize| catalog.models[i].name.clone();
    let reason = match policy {
        Policy::Target { target } => format!(
            "cheapest of {} eligible model(s) on the cost-P hull with P(success) >= {bar:.3} \
             (target {target} less the best model's shortfall from 1): P = {:.3}, {:.6} USD",
            order.len(),
            p[first],
            cost[first]
        ),
        Policy::WillingnessToPay { lambda_per_usd } => format!(
            "maximises P - {lambda_per_usd} x cost over {} eligible model(s): {:.3} - {lambda_per_usd} x {:.6}",
            order.len(),
            p[first],
            cost[first]
        ),
        Policy::TargetAtLambda {
            target,
            lambda_per_usd,
        } => format!(
            "maximises P - {lambda_per_usd:.4} x cost over {} eligible model(s), the price of \
             target {target} (mean P over the traffic within {:.3} of the best model's): {:.3} - {lambda_per_usd:.4} x {:.6}",
            order.len(),
            1.0 - target,
            p[first],
            cost[first]
        ),
    };
    Ok(Decision {
        model: name(first),
        p_success: p[first],
        expected_cost_usd: cost[first],
        fallbacks: order[1..].iter().map(|&i| name(i)).collect(),
        candidates: order
            .iter()
            .map(|&i| Candidate {
                model: name(i),
                p_success: p[i],
                expected_cost_usd: cost[i],
            })
            .collect(),
        excluded,
        reason,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_toml_str(
            r#"
[[models]]
name = "cheap"
input_usd_per_mtok = 0.1
output_usd_per_mtok = 0.1
context_window = 4096
latency_ms = 300
[[models]]
name = "mid"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = 16000
latency_ms = 800
[[models]]
name = "big"
input_usd_per_mtok = 10.0
output_usd_per_mtok = 30.0
context_window = 128000
latency_ms = 3000
"#,
        )
        .unwrap()
    }

    const P: [f64; 3] = [0.5, 0.85, 0.95];
    const COST: [f64; 3] = [0.0001, 0.001, 0.01];

    #[test]
    fn target_picks_the_cheapest_that_reaches_it() {
        let d = decide(
            &catalog(),
            &P,
            &COST,
            Policy::Target { target: 0.8 },
            &Constraints::default(),
        )
        .unwrap();
        assert_eq!(d.model, "mid");
        // Reaching models by cost, then the rest by P.
        assert_eq!(d.fallbacks, ["big", "cheap"]);
        assert_eq!(d.candidates.len(), 3);
        assert!(d.reason.contains("cheapest"), "{}", d.reason);
        let d = decide(
            &catalog(),
            &P,
            &COST,
            Policy::Target { target: 0.4 },
            &Constraints::default(),
        )
        .unwrap();
        assert_eq!(d.model, "cheap");
    }

    #[test]
    fn target_is_measured_from_the_best_models_shortfall() {
        // P_best 0.95: the bar for 0.99 is 0.94, which only "big" reaches.
        let d = decide(
            &catalog(),
            &P,
            &COST,
            Policy::Target { target: 0.99 },
            &Constraints::default(),
        )
        .unwrap();
        assert_eq!(d.model, "big");
        assert_eq!(d.fallbacks, ["mid", "cheap"]);
        assert!(d.reason.contains(">= 0.940"), "{}", d.reason);
        // A prompt no model is likely to answer: the old rule (highest P)
        // paid for "big" to gain 0.05; now the bar is 0.8 - 0.9 = -0.1.
        let hopeless = [0.05, 0.08, 0.10];
        let pick =
            |t: f64| choose(&hopeless, &COST, &[true; 3], Policy::Target { target: t }).unwrap();
        assert_eq!(pick(0.8), 0);
        // Only a target within 0.02 of certainty buys the extra 0.02 or 0.05.
        assert_eq!(pick(0.975), 1);
        assert_eq!(pick(1.0), 2);
        // A model certain to succeed: the plain target.
        let sure = [0.7, 0.9, 1.0];
        let pick = |t: f64| choose(&sure, &COST, &[true; 3], Policy::Target { target: t }).unwrap();
        assert_eq!((pick(0.6), pick(0.85), pick(0.95)), (0, 1, 2));
    }

    #[test]
    fn target_skips_models_below_the_prompts_cost_p_hull() {
        // "mid" costs ten times "cheap" for 0.02 more P; "big" adds 0.4 at
        // ten times again. On the segment cheap-big at mid's cost P is
        // 0.54, above mid's 0.52: mid is below the hull.
        let p = [0.50, 0.52, 0.90];
        let cost = [0.001, 0.01, 0.1];
        let pick = |t: f64| choose(&p, &cost, &[true; 3], Policy::Target { target: t }).unwrap();
        // Bar 0.51: the plain rule bought "mid"; the hull rule goes to "big".
        assert_eq!(pick(0.61), 2);
        assert_eq!(pick(0.60), 0);
        // Excluding "big" puts "mid" back on the (two-point) hull.
        let c = choose(
            &p,
            &cost,
            &[true, true, false],
            Policy::Target { target: 0.99 },
        );
        assert_eq!(c, Some(1));
        // It stays in the fallback order, after the hull models.
        let d = decide(
            &catalog(),
            &p,
            &cost,
            Policy::Target { target: 0.61 },
            &Constraints::default(),
        )
        .unwrap();
        assert_eq!(
            (d.model.as_str(), d.fallbacks.clone()),
            ("big", vec!["mid".to_string(), "cheap".to_string()])
        );
        // Willingness to pay never buys it either: its maximum always lies
        // on the hull.
        let wtp = |l: f64| {
            choose(
                &p,
                &cost,
                &[true; 3],
                Policy::WillingnessToPay { lambda_per_usd: l },
            )
            .unwrap()
        };
        assert!((0..80).all(|e| wtp(10f64.powf(e as f64 / 10.0 - 2.0)) != 1));
    }

    #[test]
    fn constraints_exclude_models() {
        let c = Constraints {
            max_latency_ms: Some(1000.0),
            ..Default::default()
        };
        let d = decide(&catalog(), &P, &COST, Policy::Target { target: 0.9 }, &c).unwrap();
        assert_eq!(d.model, "mid");
        assert_eq!(d.excluded.len(), 1);
        assert_eq!(d.excluded[0].0, "big");
        let c = Constraints {
            min_context_tokens: Some(10_000),
            max_cost_usd: Some(0.005),
            ..Default::default()
        };
        let d = decide(&catalog(), &P, &COST, Policy::Target { target: 0.9 }, &c).unwrap();
        assert_eq!((d.model.as_str(), d.candidates.len()), ("mid", 1));
        let c = Constraints {
            allowed: Some(vec!["cheap".into()]),
            ..Default::default()
        };
        let d = decide(&catalog(), &P, &COST, Policy::Target { target: 0.9 }, &c).unwrap();
        assert_eq!(d.model, "cheap");
        let c = Constraints {
            allowed: Some(vec![]),
            ..Default::default()
        };
        assert!(matches!(
            decide(&catalog(), &P, &COST, Policy::Target { target: 0.9 }, &c),
            Err(RouterError::NoEligibleModel(_))
        ));
    }

    #[test]
    fn willingness_to_pay_trades_p_for_cost() {
        // lambda 0: pure quality.
        let wtp = |l| {
            decide(
                &catalog(),
                &P,
                &COST,
                Policy::WillingnessToPay { lambda_per_usd: l },
                &Constraints::default(),
            )
            .unwrap()
            .model
        };
        assert_eq!(wtp(0.0), "big");
        // lambda 20/USD: utilities 0.498, 0.83, 0.75.
        assert_eq!(wtp(20.0), "mid");
        // lambda 1000/USD: 0.4, -0.15, -9.05.
        assert_eq!(wtp(1000.0), "cheap");
    }

    #[test]
    fn choose_agrees_with_decide() {
        for t in [0.0, 0.3, 0.6, 0.9, 1.0] {
            let i = choose(&P, &COST, &[true; 3], Policy::Target { target: t }).unwrap();
            let d = decide(
                &catalog(),
                &P,
                &COST,
                Policy::Target { target: t },
                &Constraints::default(),
            )
            .unwrap();
            assert_eq!(catalog().models[i].name, d.model);
        }
        assert_eq!(
            choose(&P, &COST, &[false; 3], Policy::Target { target: 0.5 }),
            None
        );
    }
}
