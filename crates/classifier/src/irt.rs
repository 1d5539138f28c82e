//! A one-parameter item-response (Rasch) model fitted to outcome data:
//! P(model m succeeds on prompt i) = σ(a_m − b_i), with a per-model ability
//! `a_m` and a per-prompt difficulty `b_i`.
//!
//! Fitting every outcome row of every source jointly puts prompts answered
//! by different model sets on one scale: a prompt that only weak models
//! failed is not as hard as one that strong models failed. Models shared
//! between sources, and prompts shared between sources, tie the scales
//! together.
//!
//! Scores may be fractional (soft successes, e.g. RouterDC's sampled
//! accuracies): the loss is binary cross-entropy with soft targets.

use crate::error::{ClassifierError, Result};

/// One observed outcome: `model` answered `item` with `score` in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response {
    pub item: usize,
    pub model: usize,
    pub score: f64,
}

/// Ridge priors and stopping rule of [`fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrtConfig {
    /// Ridge on each prompt's difficulty (a N(0, 1/λ) prior): a prompt seen
    /// by few models, or failed by all, stays near the middle instead of
    /// running off to ±∞.
    pub item_ridge: f64,
    /// Ridge on each model's ability; small, only there for models with few rows.
    pub ability_ridge: f64,
    /// At most this many alternating Newton sweeps.
    pub max_sweeps: usize,
    /// Stop when no parameter moved by more than this in a sweep.
    pub tolerance: f64,
}

impl Default for IrtConfig {
    fn default() -> Self {
        IrtConfig {
            item_ridge: 1.0,
            ability_ridge: 0.01,
            max_sweeps: 200,
            tolerance: 1e-6,
        }
    }
}

/// Fitted abilities (one per model) and difficulties (one per item).
#[derive(Debug, Clone, PartialEq)]
pub struct IrtFit {
    pub abilities: Vec<f64>,
    pub difficulties: Vec<f64>,
    /// Sweeps run before the tolerance was met (or `max_sweeps`).
    pub sweeps: usize,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl IrtFit {
    /// The probability that a model drawn uniformly from the fitted ones
    /// fails a prompt of difficulty `b`: mean over m of 1 − σ(a_m − b).
    /// In (0, 1) and increasing in `b`.
    pub fn failure_probability(&self, b: f64) -> f64 {
        if self.abilities.is_empty() {
            return sigmoid(b);
        }
        self.abilities
            .iter()
            .map(|&a| 1.0 - sigmoid(a - b))
            .sum::<f64>()
            / self.abilities.len() as f64
    }
}

/// Fits abilities and difficulties by alternating one-dimensional Newton
/// steps on the penalised log-likelihood (each step is exact for its
/// parameter given the others, so the loss never rises; no learning rate).
/// Items or models with no responses keep 0.
pub fn fit(responses: &[Response], items: usize, models: usize, cfg: &IrtConfig) -> Result<IrtFit> {
    if let Some(r) = responses
        .iter()
        .find(|r| r.item >= items || r.model >= models || !(0.0..=1.0).contains(&r.score))
    {
        return Err(ClassifierError::InvalidInput(format!(
            "IRT response {r:?} is out of range ({items} items, {models} models, score in [0, 1])"
        )));
    }
    if cfg.item_ridge <= 0.0 || cfg.ability_ridge < 0.0 {
        return Err(ClassifierError::InvalidInput(
            "IRT item ridge must be > 0 and ability ridge >= 0".into(),
        ));
    }
    // Responses grouped by item and by model, as indices into `responses`.
    let group = |n: usize, key: fn(&Response) -> usize| {
        let mut g: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, r) in responses.iter().enumerate() {
            g[key(r)].push(i as u32);
        }
        g
    };
    let by_item = group(items, |r| r.item);
    let by_model = group(models, |r| r.model);
    let mut a = vec![0.0f64; models];
    let mut b = vec![0.0f64; items];
    let mut sweeps = 0;
    while sweeps < cfg.max_sweeps {
        sweeps += 1;
        let mut moved = 0.0f64;
        // Items: ∂/∂b of the negative log-likelihood is Σ (y − p), curvature Σ p(1 − p).
        for (i, rows) in by_item.iter().enumerate() {
            let (mut grad, mut hess) = (cfg.item_ridge * b[i], cfg.item_ridge);
            for &k in rows {
                let r = &responses[k as usize];
                let p = sigmoid(a[r.model] - b[i]);
                grad += r.score - p;
                hess += p * (1.0 - p);
            }
            let step = grad / hess;
            b[i] -= step;
            moved = moved.max(step.abs());
        }
        for (m, rows) in by_model.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let (mut grad, mut hess) = (cfg.ability_ridge * a[m], cfg.ability_ridge);
            for &k in rows {
                let r = &responses[k as usize];
                let p = sigmoid(a[m] - b[r.item]);
                grad += p - r.score;
                hess += p * (1.0 - p);
            }
            let step = grad / hess.max(1e-12);
            a[m] -= step;
            moved = moved.max(step.abs());
        }
        if moved < cfg.tolerance {
            break;
        }
    }
    Ok(IrtFit {
        abilities: a,
        difficulties: b,
        sweeps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (rank, &i) in idx.iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    }

    fn spearman(x: &[f64], y: &[f64]) -> f64 {
        let (rx, ry) = (ranks(x), ranks(y));
        let n = x.len() as f64;
        let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
        let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
        let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
        let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    }

    /// Two "sources" with disjoint model sets of different strength, tied
    /// only by 40 prompts both answered: the joint fit must order all
    /// prompts by their true difficulty, across sources too, which raw
    /// failure rates cannot (the weak source's prompts look harder).
    #[test]
    fn recovers_known_difficulties_across_sources_with_different_models() {
        let mut rng = StdRng::seed_from_u64(7);
        let items = 600;
        let truth: Vec<f64> = (0..items).map(|_| rng.random_range(-2.5..2.5)).collect();
        // Models 0..6 strong (source A), 6..12 weak (source B).
        let ability: Vec<f64> = (0..12)
            .map(|m| {
                if m < 6 {
                    1.5 + 0.3 * m as f64
                } else {
                    -1.5 + 0.3 * (m - 6) as f64
                }
            })
            .collect();
        let mut responses = Vec::new();
        let mut raw_fail = vec![(0.0, 0.0); items];
        for (i, &b) in truth.iter().enumerate() {
            // Items 0..300 in source A, 300..600 in B, 280..320 in both.
            let models: Vec<usize> = match i {
                0..280 => (0..6).collect(),
                280..320 => (0..12).collect(),
                _ => (6..12).collect(),
            };
            for m in models {
                let y = f64::from(rng.random::<f64>() < sigmoid(ability[m] - b));
                responses.push(Response {
                    item: i,
                    model: m,
                    score: y,
                });
                raw_fail[i].0 += 1.0 - y;
                raw_fail[i].1 += 1.0;
            }
        }
        let fit = fit(&responses, items, 12, &IrtConfig::default()).unwrap();
        assert!(fit.sweeps < 200, "did not converge");
        let rho = spearman(&fit.difficulties, &truth);
        let raw: Vec<f64> = raw_fail.iter().map(|(f, n)| f / n).collect();
        let rho_raw = spearman(&raw, &truth);
        eprintln!("joint IRT {rho:.3}, raw failure rate {rho_raw:.3}");
        // 6 binary answers per prompt bound what any estimate can recover;
        // the Bayes limit here is about 0.85.
        assert!(rho > 0.75, "joint IRT Spearman {rho:.3}");
        assert!(
            rho > rho_raw + 0.05,
            "IRT {rho:.3} vs raw failure rate {rho_raw:.3}"
        );
        // Abilities come out in the right order, strong above weak.
        assert!(spearman(&fit.abilities, &ability) > 0.9);
        // Failure probability is monotone in difficulty and inside (0, 1).
        let (lo, hi) = (fit.failure_probability(-3.0), fit.failure_probability(3.0));
        assert!(0.0 < lo && lo < hi && hi < 1.0);
    }

    #[test]
    fn out_of_range_responses_are_refused() {
        let r = |item, model, score| Response { item, model, score };
        let cfg = IrtConfig::default();
        assert!(fit(&[r(2, 0, 1.0)], 2, 1, &cfg).is_err());
        assert!(fit(&[r(0, 1, 1.0)], 2, 1, &cfg).is_err());
        assert!(fit(&[r(0, 0, 1.5)], 2, 1, &cfg).is_err());
        assert!(fit(&[r(0, 0, f64::NAN)], 2, 1, &cfg).is_err());
        let ok = fit(&[r(0, 0, 1.0), r(1, 0, 0.0)], 3, 1, &cfg).unwrap();
        assert!(ok.difficulties[1] > ok.difficulties[0]);
        assert_eq!(
            ok.difficulties[2], 0.0,
            "an item nobody answered stays at the prior"
        );
    }
}
