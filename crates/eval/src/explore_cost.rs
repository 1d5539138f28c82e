//! What exploration costs on a data set (`pointsman eval --explore ε`): the
//! success model fitted on the training rows decides every test row under
//! the serving policy, exploration at rate ε spreads that decision over the
//! other models ([`pointsman_router::explore::distribution`]), and the
//! row's observed outcomes value both: expected cost and quality with
//! exploration minus without, per 1,000 requests.

use pointsman_router::explore;
use pointsman_router::{choose, Candidate, Decision, Policy};
use serde::Serialize;

use crate::error::EvalError;
use crate::harness::{fit_set, EvalConfig, EvalSet};

/// Exploration's expected cost on one test set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ExplorationCost {
    pub rate: f64,
    /// Test rows with an outcome for every model.
    pub rows: usize,
    /// Mean observed cost per 1,000 requests of the policy alone (USD).
    pub cost_per_1k_usd: f64,
    /// The same with exploration at `rate` (expected over the draw).
    pub cost_per_1k_explore_usd: f64,
    /// Mean observed quality of the policy alone, and with exploration.
    pub quality: f64,
    pub quality_explore: f64,
}

impl ExplorationCost {
    /// Extra spend per 1,000 requests.
    pub fn extra_per_1k_usd(&self) -> f64 {
        self.cost_per_1k_explore_usd - self.cost_per_1k_usd
    }

    /// One line for the eval table.
    pub fn line(&self, policy: Policy) -> String {
        format!(
            "exploration at rate {} under {policy:?} on {} test rows: cost per 1,000 requests {:.4} -> {:.4} USD ({:+.4} USD, {:+.1}%), mean quality {:.4} -> {:.4} ({:+.4})\n",
            self.rate,
            self.rows,
            self.cost_per_1k_usd,
            self.cost_per_1k_explore_usd,
            self.extra_per_1k_usd(),
            100.0 * self.extra_per_1k_usd() / self.cost_per_1k_usd.max(1e-12),
            self.quality,
            self.quality_explore,
            self.quality_explore - self.quality
        )
    }

    /// Sums of several folds, weighted by their rows.
    pub fn merge(parts: &[ExplorationCost]) -> Option<ExplorationCost> {
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let first = parts.first()?;
        let w = |f: fn(&ExplorationCost) -> f64| {
            parts.iter().map(|p| f(p) * p.rows as f64).sum::<f64>() / rows.max(1) as f64
        };
        Some(ExplorationCost {
            rate: first.rate,
            rows,
            cost_per_1k_usd: w(|p| p.cost_per_1k_usd),
            cost_per_1k_explore_usd: w(|p| p.cost_per_1k_explore_usd),
            quality: w(|p| p.quality),
            quality_explore: w(|p| p.quality_explore),
        })
    }
}

/// [`exploration_cost`] on each (train, test) split (a fold, or the one
/// train/test pair), merged by their rows ([`ExplorationCost::merge`]).
pub fn exploration_cost_over_splits(
    splits: &[(EvalSet, EvalSet)],
    cfg: &EvalConfig,
    policy: Policy,
    rate: f64,
) -> Result<ExplorationCost, EvalError> {
    let parts = splits
        .iter()
        .map(|(train, test)| exploration_cost(train, test, cfg, policy, rate))
        .collect::<Result<Vec<_>, _>>()?;
    ExplorationCost::merge(&parts).ok_or_else(|| EvalError::Data("no split to explore on".into()))
}

/// Fits on `train` and measures exploration at `rate` under `policy` on
/// `test` (rows with every model's outcome). Decisions price each model at
/// its mean training cost, as `serve` prices from the catalog.
pub fn exploration_cost(
    train: &EvalSet,
    test: &EvalSet,
    cfg: &EvalConfig,
    policy: Policy,
    rate: f64,
) -> Result<ExplorationCost, EvalError> {
    let rate = explore::check_rate(rate).map_err(|e| EvalError::Data(format!("--explore: {e}")))?;
    let model = fit_set(train, &cfg.train)?;
    let n = train.models.len();
    let (mut sum, mut count) = (vec![0f64; n], vec![0usize; n]);
    for r in &train.rows {
        for (m, o) in r.outcomes.iter().enumerate() {
            if let Some(o) = o {
                sum[m] += o.cost_usd;
                count[m] += 1;
            }
        }
    }
    let mean_cost: Vec<f64> = (0..n).map(|m| sum[m] / count[m].max(1) as f64).collect();
    let names: Vec<&str> = train.models.iter().map(String::as_str).collect();
    let all = vec![true; n];
    let policy = model.resolve_policy(policy);
    let (mut rows, mut c0, mut c1, mut q0, mut q1) = (0usize, 0f64, 0f64, 0f64, 0f64);
    for row in test.rows.iter() {
        let Some(obs): Option<Vec<_>> = row.outcomes.iter().copied().collect() else {
            continue;
        };
        let p = model.predict(&names, &row.embedding, &row.task_scores);
        let g = choose(&p, &mean_cost, &all, policy).expect("every model is eligible");
        let order: Vec<usize> = std::iter::once(g)
            .chain((0..n).filter(|&m| m != g))
            .collect();
        let decision = Decision {
            model: names[g].into(),
            p_success: p[g],
            expected_cost_usd: mean_cost[g],
            fallbacks: Vec::new(),
            candidates: order
                .iter()
                .map(|&m| Candidate {
                    model: names[m].into(),
                    p_success: p[m],
                    expected_cost_usd: mean_cost[m],
                })
                .collect(),
            excluded: Vec::new(),
            reason: String::new(),
            policy,
        };
        let pi = explore::distribution(&decision, rate, &|_| false);
        rows += 1;
        c0 += obs[g].cost_usd;
        q0 += obs[g].score;
        for (k, &m) in order.iter().enumerate() {
            c1 += pi[k] * obs[m].cost_usd;
            q1 += pi[k] * obs[m].score;
        }
    }
    if rows == 0 {
        return Err(EvalError::Data(
            "no test row has an outcome for every model".into(),
        ));
    }
    let r = rows as f64;
    Ok(ExplorationCost {
        rate,
        rows,
        cost_per_1k_usd: 1000.0 * c0 / r,
        cost_per_1k_explore_usd: 1000.0 * c1 / r,
        quality: q0 / r,
        quality_explore: q1 / r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{EvalRow, Observed};

    /// `n` rows where the cheap model succeeds on every other prompt and
    /// the dear one always.
    fn set(n: usize) -> EvalSet {
        EvalSet {
            models: vec!["cheap".into(), "dear".into()],
            tasks: vec!["any".into()],
            encoder_id: "test".into(),
            head_features: Vec::new(),
            rows: (0..n)
                .map(|i| EvalRow {
                    id: format!("r{i}"),
                    embedding: vec![(i % 2) as f32, 1.0, (i % 3) as f32, 0.5],
                    task_scores: vec![1.0],
                    outcomes: vec![
                        Some(Observed {
                            score: (i % 2) as f64,
                            cost_usd: 0.001,
                        }),
                        Some(Observed {
                            score: 1.0,
                            cost_usd: 0.01,
                        }),
                    ],
                    head_outputs: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn splits_merge_by_their_rows() {
        let cfg = EvalConfig::default();
        let policy = Policy::Target { target: 0.8 };
        let splits = [(set(40), set(10)), (set(40), set(30))];
        let parts: Vec<ExplorationCost> = splits
            .iter()
            .map(|(train, test)| exploration_cost(train, test, &cfg, policy, 0.2).unwrap())
            .collect();
        let merged = exploration_cost_over_splits(&splits, &cfg, policy, 0.2).unwrap();
        assert_eq!((parts[0].rows, parts[1].rows, merged.rows), (10, 30, 40));
        assert_eq!(merged.rate, 0.2);
        let weighted = (10.0 * parts[0].quality_explore + 30.0 * parts[1].quality_explore) / 40.0;
        assert!((merged.quality_explore - weighted).abs() < 1e-12);
        assert!(merged.cost_per_1k_explore_usd > 0.0);
        let err = exploration_cost_over_splits(&[], &cfg, policy, 0.2).unwrap_err();
        assert!(matches!(err, EvalError::Data(_)), "{err}");
    }
}
