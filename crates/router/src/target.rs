//! What a quality target τ means: a mean P(success) over the traffic, met
//! at least cost.
//!
//! τ is stated against the best the catalog can reach, on the scale users
//! know (τ = 1 asks for the best model's quality): the router aims for
//!
//! ```text
//! mean over prompts of P(chosen model)  >=  Q_best − (1 − τ)
//! Q_best = mean over prompts of max_m P(m, x)   (always the likeliest model)
//! ```
//!
//! i.e. 1 − τ is the success probability, averaged over the traffic, that
//! one accepts giving up against picking the likeliest model every time.
//! It is met by the λ rule (the model maximising P − λ · cost on each
//! prompt, which for a given mean P is the cheapest mix), at λ(τ): the
//! largest λ whose choices on the artifact's own training rows reach the
//! target. The rows' P are out of fold (each row predicted by a fit that
//! did not see it, calibrated as the artifact is), so the mapping is not
//! the optimistic one an in-sample fit gives; their costs are each model's
//! mean training cost times the artifact's per-prompt cost factor.
//!
//! The table holds the target each λ of a log grid reaches (80 steps a
//! decade, 10^±3 around 1 / mean cost), one entry per distinct target,
//! i.e. per run of grid λ that make the same choices on every training
//! prompt. λ(τ) is the λ of the last entry whose target is ≥ τ: the run
//! that reaches τ at least cost. Within a run the training choices, and so
//! their cost, are the same; the entry's λ is the run's geometric middle
//! (its lowest positive grid λ when the run starts at 0), the λ farthest
//! from both steps. New prompts differ from the training ones, and the
//! run's upper end is where its last prompt was about to step down: with
//! two models on alike prompts one step takes every prompt to the cheap
//! model, and a λ at that edge sent half of them there. Not interpolated
//! between entries, for the same reason. Monotone: a higher τ never gets a
//! larger λ. τ = 1 gives the run that picks the likeliest model on every
//! training prompt; τ below the last entry's target the last run (the
//! cheapest model on almost every prompt).
//!
//! The per-prompt floor the target meant before (the cheapest model on the
//! prompt's cost–P hull with P ≥ τ − (1 − P_best)) never weighed what a
//! step up costs, and lost to the zero router on AlpacaEval
//! (docs/EVALUATION.md, "Why the target policy still loses on AlpacaEval").
//! Artifacts without a table (trained before) keep that rule.

use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// λ values per decade of the grid the table is built on.
const STEPS_PER_DECADE: usize = 80;
/// Decades below and above 1 / (mean cost) the grid spans.
const DECADES: i32 = 3;

/// The artifact's τ → λ map (the `target_table` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetTable {
    /// Q_best: mean over the training prompts of the highest P any model
    /// has on the prompt.
    pub best_mean_p: f64,
    /// Training prompts the table was measured on.
    pub rows: usize,
    /// Whether their P were out of fold (false: in-sample, as when the
    /// selection is off or too few rows were given to cross-validate).
    pub out_of_fold: bool,
    /// λ ascending, `target` strictly descending.
    pub points: Vec<TargetPoint>,
    /// The models the table was built over (`train router
    /// --route-models`); empty: every model of the artifact (all tables
    /// before the flag). A catalog that routes among other models gets a
    /// τ → λ map measured on a different choice set: `serve` warns at load
    /// ([`crate::SuccessModel::target_table_mismatch`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// One entry: every λ of the grid in [`lambda_low`, `lambda_high`] makes
/// the same choices on the training rows, which reach `target` (mean P =
/// `mean_p`) at `mean_cost_usd` per prompt; `lambda_per_usd`, the λ used
/// for it, is the run's geometric middle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetPoint {
    pub target: f64,
    pub lambda_per_usd: f64,
    pub lambda_low: f64,
    pub lambda_high: f64,
    pub mean_p: f64,
    pub mean_cost_usd: f64,
}

impl TargetTable {
    /// The table for rows of P (`p[i][m]`) and expected costs
    /// (`cost[i][m]`, USD), one entry per distinct target reached on the λ
    /// grid. None without rows or models.
    pub fn build(p: &[Vec<f64>], cost: &[Vec<f64>], out_of_fold: bool) -> Option<TargetTable> {
        assert_eq!(p.len(), cost.len(), "one cost row per P row");
        let n = p.first().map_or(0, Vec::len);
        if p.is_empty() || n == 0 {
            return None;
        }
        let rows = p.len() as f64;
        let best_mean_p = p
            .iter()
            .map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .sum::<f64>()
            / rows;
        let mean_cost = cost.iter().flatten().sum::<f64>() / (rows * n as f64);
        let scale = 1.0 / mean_cost.max(1e-12);
        let grid = std::iter::once(0.0).chain(
            (0..=2 * DECADES as usize * STEPS_PER_DECADE)
                .map(|j| scale * 10f64.powf(-DECADES as f64 + j as f64 / STEPS_PER_DECADE as f64)),
        );
        let all = vec![true; n];
        let mut points: Vec<TargetPoint> = Vec::new();
        for lambda in grid {
            let policy = Policy::WillingnessToPay {
                lambda_per_usd: lambda,
            };
            let (mut sum_p, mut sum_c) = (0.0, 0.0);
            for (pr, cr) in p.iter().zip(cost) {
                let c = crate::policy::choose(pr, cr, &all, policy).expect("all eligible");
                sum_p += pr[c];
                sum_c += cr[c];
            }
            let mean_p = sum_p / rows;
            // The λ rule's mean P never rises with λ; the min guards ties.
            let target = (1.0 - (best_mean_p - mean_p))
                .min(points.last().map_or(f64::INFINITY, |q| q.target));
            match points.last_mut() {
                Some(last) if last.target == target => last.lambda_high = lambda,
                _ => points.push(TargetPoint {
                    target,
                    lambda_per_usd: lambda,
                    lambda_low: lambda,
                    lambda_high: lambda,
                    mean_p,
                    mean_cost_usd: sum_c / rows,
                }),
            }
        }
        let first_positive = scale * 10f64.powi(-DECADES);
        for q in &mut points {
            q.lambda_per_usd = (q.lambda_low.max(first_positive) * q.lambda_high).sqrt();
        }
        Some(TargetTable {
            best_mean_p,
            rows: p.len(),
            out_of_fold,
            points,
            models: Vec::new(),
        })
    }

    /// λ (per USD) for target `target`: see the module docs.
    pub fn lambda(&self, target: f64) -> f64 {
        // The entries reaching the target lead; the last of them reaches it
        // at least cost.
        let j = self.points.partition_point(|q| q.target >= target);
        self.points[j.saturating_sub(1)].lambda_per_usd
    }

    /// Non-empty, finite, λ >= 0 ascending and targets strictly descending
    /// (what [`TargetTable::lambda`] relies on); the reason otherwise.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.points.is_empty() {
            return Err("target_table: no points".into());
        }
        if !self.best_mean_p.is_finite() {
            return Err(format!("target_table: best_mean_p is {}", self.best_mean_p));
        }
        for (i, q) in self.points.iter().enumerate() {
            let finite = [
                q.target,
                q.lambda_per_usd,
                q.lambda_low,
                q.lambda_high,
                q.mean_p,
                q.mean_cost_usd,
            ]
            .iter()
            .all(|v| v.is_finite());
            if !finite || q.lambda_per_usd < 0.0 {
                return Err(format!(
                    "target_table: points[{i}] must be finite with lambda_per_usd >= 0"
                ));
            }
            if i > 0 {
                let prev = self.points[i - 1];
                if q.lambda_low <= prev.lambda_high
                    || q.lambda_per_usd <= prev.lambda_per_usd
                    || q.target >= prev.target
                {
                    return Err(format!(
                        "target_table: points[{i}] breaks the order (lambda_per_usd ascending, target descending)"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for TargetTable {
    /// One line, e.g. `target table on 580 training prompts (out of fold):
    /// best mean P 0.4998; λ per USD at τ 1 4.71, 0.95 16.8, 0.9 19.5, 0.8 25.8`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target table on {} training prompts ({}): best mean P {:.4}; λ per USD at τ",
            self.rows,
            if self.out_of_fold {
                "out of fold"
            } else {
                "in-sample"
            },
            self.best_mean_p
        )?;
        for (i, tau) in [1.0, 0.95, 0.9, 0.8].into_iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{tau} {:.4}", self.lambda(tau))?;
        }
        Ok(())
    }
}

/// The policy to decide with: a [`Policy::Target`] becomes
/// [`Policy::TargetAtLambda`] at the table's λ for it; every other policy,
/// and every policy under an artifact without a table, is unchanged.
pub fn resolve(table: Option<&TargetTable>, policy: Policy) -> Policy {
    match (table, policy) {
        (Some(t), Policy::Target { target }) => Policy::TargetAtLambda {
            target,
            lambda_per_usd: t.lambda(target),
        },
        (_, other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three models: cheap (P 0.4), mid (0.7), big (0.8, or 0.9 on odd rows).
    fn table() -> TargetTable {
        let p: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![0.4, 0.7, if i % 2 == 1 { 0.9 } else { 0.8 }])
            .collect();
        let cost = vec![vec![0.001, 0.01, 0.1]; 10];
        TargetTable::build(&p, &cost, true).unwrap()
    }

    #[test]
    fn the_table_is_monotone_and_spans_best_to_cheapest() {
        let t = table();
        t.check().unwrap();
        assert!((t.best_mean_p - 0.85).abs() < 1e-12);
        let (first, last) = (t.points[0], t.points[t.points.len() - 1]);
        assert!(first.target == 1.0 && first.lambda_per_usd > 0.0);
        assert!((first.mean_p - 0.85).abs() < 1e-12);
        // The cheapest model everywhere: 0.45 below the best.
        assert!((last.target - 0.55).abs() < 1e-12, "{last:?}");
        // Steps: big on odd rows only (gain 0.2 for 0.09), then mid
        // everywhere, then cheap: four distinct targets.
        let targets: Vec<f64> = t
            .points
            .iter()
            .map(|q| (q.target * 1e6).round() / 1e6)
            .collect();
        assert_eq!(targets, [1.0, 0.95, 0.85, 0.55], "{:?}", t.points);
    }

    #[test]
    fn lambda_reaches_the_target_at_least_cost() {
        let t = table();
        // τ 1: the middle of the λ that keep the best model on every row
        // (big's 0.1 above mid for 0.09 more on even rows: up to 1.11).
        let l1 = t.lambda(1.0);
        let first = t.points[0];
        assert!(first.lambda_low == 0.0 && first.lambda_high < 0.1 / 0.09);
        assert!(l1 > 0.0 && l1 < first.lambda_high, "{l1}");
        // τ on an entry or between two: the entry's λ (the cheaper side
        // would not reach it).
        assert_eq!(t.lambda(0.95), t.points[1].lambda_per_usd);
        assert_eq!(t.lambda(0.9), t.points[1].lambda_per_usd);
        assert_eq!(t.lambda(0.85), t.points[2].lambda_per_usd);
        assert_eq!(t.lambda(0.6), t.points[2].lambda_per_usd);
        assert!(t.lambda(0.55) > t.lambda(0.6));
        // Monotone, and below the cheapest's target the largest λ.
        let ls: Vec<f64> = (0..=100).map(|i| t.lambda(i as f64 / 100.0)).collect();
        assert!(ls.windows(2).all(|w| w[0] >= w[1]), "{ls:?}");
        assert_eq!(t.lambda(0.2), t.points[t.points.len() - 1].lambda_per_usd);
        // The λ rule at λ(τ) meets τ on these rows.
        for tau in [1.0, 0.97, 0.95, 0.9, 0.85, 0.6] {
            let l = t.lambda(tau);
            let choose = |p: &[f64]| {
                crate::policy::choose(
                    p,
                    &[0.001, 0.01, 0.1],
                    &[true; 3],
                    Policy::WillingnessToPay { lambda_per_usd: l },
                )
                .unwrap()
            };
            let mean: f64 = (0..10)
                .map(|i| {
                    let p = [0.4, 0.7, if i % 2 == 1 { 0.9 } else { 0.8 }];
                    p[choose(&p)]
                })
                .sum::<f64>()
                / 10.0;
            assert!(mean >= 0.85 - (1.0 - tau) - 1e-9, "τ {tau}: mean P {mean}");
        }
    }

    #[test]
    fn resolve_leaves_other_policies_and_tableless_artifacts_alone() {
        let t = table();
        let wtp = Policy::WillingnessToPay {
            lambda_per_usd: 3.0,
        };
        assert_eq!(resolve(Some(&t), wtp), wtp);
        let target = Policy::Target { target: 0.9 };
        assert_eq!(resolve(None, target), target);
        assert_eq!(
            resolve(Some(&t), target),
            Policy::TargetAtLambda {
                target: 0.9,
                lambda_per_usd: t.lambda(0.9)
            }
        );
    }

    #[test]
    fn check_refuses_a_broken_table() {
        let mut t = table();
        t.points.swap(1, 2);
        assert!(t.check().unwrap_err().contains("order"));
        let mut t = table();
        t.points[0].lambda_per_usd = f64::NAN;
        assert!(t.check().is_err());
        let mut t = table();
        t.points.clear();
        assert!(t.check().is_err());
    }
}
