//! Per-prompt expected cost: how much more or less than its average a
//! model's call on this prompt is likely to cost.
//!
//! Where cost follows answer length (AlpacaEval: cost = (prompt + answer
//! chars) / 4 × price), a prompt that asks for an essay costs every model
//! several times its mean, and the prompts cheap models fail are often the
//! ones the strong models answer at length (docs/EVALUATION.md, "Why τ
//! lost on AlpacaEval"). A policy that knows only each model's mean cost
//! pays more than it expects exactly where it sends prompts up.
//!
//! The estimate is a cost factor r(m, x) = E[cost | m, x] / c̄_m, c̄_m the
//! model's mean cost over its training outcomes:
//!
//! ```text
//! log r(m, x) = β_m + w_m · x̂      (x̂ the success model's standardised embedding)
//! ```
//!
//! fitted by ridge regression on log(cost / c̄_m), then β_m moved by the
//! log of the mean exp-residual (Duan's smearing) so that r is unbiased on
//! the cost scale, not only the log scale. Candidates, chosen by 3-fold
//! cross-validation inside the training rows on the out-of-fold squared
//! error of r (the cost scale the policies act on):
//!
//! - `averages`: r = 1 (every prompt costs its model's mean; what the
//!   policies used before, and the fallback);
//! - `shared l2=…`: one direction w shared by all models (longer answers
//!   for every model on the same prompts), a β_m per model;
//! - `per_model l2=…`: a w_m per model.
//!
//! The winner is refitted on all rows and stored in the artifact with every
//! candidate's loss. A per-prompt candidate must cut the averages' error by
//! [`MIN_GAIN`] (1%), so where cost does not vary with the prompt (or the
//! embedding does not predict it) nothing changes.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::success::SuccessModel;
use crate::train::{SplitMix, TrainingRow};

/// Factors are kept within [1 / MAX_FACTOR, MAX_FACTOR]: a prompt unlike
/// any in training must not make a model look free or ruinous.
pub const MAX_FACTOR: f64 = 20.0;

/// Least relative reduction of the averages' cross-validated error for a
/// per-prompt estimate to be used: a heavily ridged fit always comes within
/// noise of the averages (0.1420 against 0.1421 on costs unrelated to the
/// prompt, `tests/cost.rs`), and acting on noise only moves decisions.
/// AlpacaEval's estimate cuts the error by 24%.
pub const MIN_GAIN: f64 = 0.01;

/// Settings of the cost-model selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostSelection {
    /// Folds the rows with costs are split into (at least 2).
    pub folds: usize,
    /// Ridge values, per outcome, tried for each form.
    pub l2_grid: Vec<f64>,
    /// Fewest rows with costs for which a per-prompt estimate is tried.
    pub min_rows: usize,
}

impl Default for CostSelection {
    fn default() -> Self {
        CostSelection {
            folds: 3,
            l2_grid: vec![0.3, 3.0, 30.0],
            min_rows: 30,
        }
    }
}

/// A fitted cost model (the artifact's `cost` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// `averages`, `shared` or `per_model`.
    pub choice: String,
    /// Ridge of the final fit (0 for `averages`).
    pub l2: f64,
    /// Folds of the selection (0: too few rows to try).
    pub folds: usize,
    /// c̄_m: mean cost in USD per model over its training outcomes (0 for a
    /// model with none), aligned with the success model's `models`.
    pub mean_cost_usd: Vec<f64>,
    /// β_m (smearing included), aligned with `models`; empty for `averages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offset: Vec<f32>,
    /// w: one row (`shared`) or one per model (`per_model`) of `dim`
    /// weights on the standardised embedding; empty for `averages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<Vec<f32>>,
    /// Every candidate's out-of-fold mean squared error of r, in the order
    /// tried.
    pub cv_loss: Vec<CostLoss>,
}

/// One candidate's cross-validated loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLoss {
    pub candidate: String,
    /// Mean over held-out outcomes of (cost / c̄_m − r̂)².
    pub mse: f64,
}

impl std::fmt::Display for CostModel {
    /// One line, e.g. `shared (ridge 0.3) chosen by 3-fold cross-validation;
    /// squared error of the cost factor averages 0.412, shared l2=0.3 0.301`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.folds == 0 {
            return write!(f, "averages (too few rows with costs to cross-validate)");
        }
        write!(
            f,
            "{} (ridge {}) chosen by {}-fold cross-validation; squared error of the cost factor",
            self.choice, self.l2, self.folds
        )?;
        for (i, c) in self.cv_loss.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {:.4}", c.candidate, c.mse)?;
        }
        Ok(())
    }
}

impl CostModel {
    /// The per-model averages (r = 1 everywhere), with no selection.
    pub fn averages(mean_cost_usd: Vec<f64>) -> CostModel {
        CostModel {
            choice: "averages".into(),
            l2: 0.0,
            folds: 0,
            mean_cost_usd,
            offset: Vec::new(),
            weights: Vec::new(),
            cv_loss: Vec::new(),
        }
    }

    /// r(m, x) for fitted model `m` from the standardised embedding `x`.
    pub fn factor(&self, m: usize, x: &[f32]) -> f64 {
        let w = match self.weights.len() {
            0 => return 1.0,
            1 => &self.weights[0],
            _ => &self.weights[m],
        };
        let y = self.offset[m] + dot_f32(w, x);
        (y as f64).exp().clamp(1.0 / MAX_FACTOR, MAX_FACTOR)
    }

    /// Shapes consistent with `n_models` and `dim`, every number finite.
    pub(crate) fn check(&self, n_models: usize, dim: usize) -> Result<(), String> {
        let rows_ok = match (self.choice.as_str(), self.weights.len()) {
            ("averages", 0) => self.offset.is_empty(),
            ("shared", 1) | ("per_model", _) => {
                self.offset.len() == n_models
                    && (self.choice == "shared" || self.weights.len() == n_models)
                    && self.weights.iter().all(|w| w.len() == dim)
            }
            _ => false,
        };
        if !rows_ok || self.mean_cost_usd.len() != n_models {
            return Err(format!(
                "cost: choice `{}` with {} weight rows, {} offsets and {} mean costs does not match {n_models} models of dimension {dim}",
                self.choice,
                self.weights.len(),
                self.offset.len(),
                self.mean_cost_usd.len()
            ));
        }
        let finite = self.offset.iter().chain(self.weights.iter().flatten());
        if finite.clone().any(|v| !v.is_finite() || v.abs() > 1e6)
            || self
                .mean_cost_usd
                .iter()
                .any(|c| !c.is_finite() || *c < 0.0)
        {
            return Err("cost: offsets and weights must be finite, mean costs >= 0".into());
        }
        Ok(())
    }
}

/// Expected cost in USD of one call to each catalog model on one prompt, as
/// `serve` prices a decision: the catalog's input price for `input_tokens`
/// (known from the prompt) plus its output price for `output_tokens` times
/// the artifact's cost factor r(m, x) when `per_prompt` (callers pass false
/// when the request states its own expected output tokens: the caller
/// knows better than the estimate). The factor was learned on whole-call
/// costs, in which the completion is the part `serve` cannot know; where
/// recorded costs follow prompt length instead (RouterBench), this
/// over-prices long prompts' completions (docs/EVALUATION.md, "Per-prompt
/// cost").
pub fn expected_costs(
    catalog: &Catalog,
    success: &SuccessModel,
    embedding: &[f32],
    input_tokens: u64,
    output_tokens: u64,
    per_prompt: bool,
) -> Vec<f64> {
    let names = catalog.names();
    let factors = if per_prompt {
        success.cost_factors(&names, embedding)
    } else {
        vec![1.0; names.len()]
    };
    catalog
        .models
        .iter()
        .zip(factors)
        .map(|(m, f)| {
            (m.input_usd_per_mtok * input_tokens as f64
                + m.output_usd_per_mtok * output_tokens as f64 * f)
                / 1e6
        })
        .collect()
}

/// The outcomes' costs of one training row: (model index, USD), aligned
/// with the rows passed to [`fit_cost_model`]. Non-positive or non-finite
/// costs are ignored (no log).
pub type RowCosts = Vec<(usize, f64)>;

/// Fits and selects the cost model (see the module docs). `mean` and
/// `scale` standardise the embeddings (the success model's own, so both
/// read the same x̂).
pub fn fit_cost_model(
    rows: &[TrainingRow],
    costs: &[RowCosts],
    n_models: usize,
    mean: &[f32],
    scale: &[f32],
    sel: &CostSelection,
    seed: u64,
) -> CostModel {
    assert_eq!(rows.len(), costs.len(), "one cost list per row");
    let x: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            r.embedding
                .iter()
                .zip(mean.iter().zip(scale))
                .map(|(e, (m, s))| ((e - m) / s) as f64)
                .collect()
        })
        .collect();
    let mut sum = vec![(0f64, 0usize); n_models];
    for (m, c) in costs
        .iter()
        .flatten()
        .filter(|(m, c)| *m < n_models && ok(*c))
    {
        sum[*m].0 += c;
        sum[*m].1 += 1;
    }
    let mean_cost: Vec<f64> = sum
        .iter()
        .map(|&(s, c)| if c > 0 { s / c as f64 } else { 0.0 })
        .collect();
    // (row, model, log r, r) for every usable cost.
    let obs: Vec<Obs> = costs
        .iter()
        .enumerate()
        .flat_map(|(i, cs)| cs.iter().map(move |&(m, c)| (i, m, c)))
        .filter(|&(_, m, c)| m < n_models && ok(c) && mean_cost[m] > 0.0)
        .map(|(i, m, c)| {
            let r = c / mean_cost[m];
            Obs {
                row: i,
                model: m,
                y: r.ln(),
                r,
            }
        })
        .collect();
    let with_costs: Vec<usize> = {
        let mut v: Vec<usize> = obs.iter().map(|o| o.row).collect();
        v.dedup();
        v
    };
    if sel.folds < 2 || with_costs.len() < sel.min_rows.max(2 * sel.folds) || x.is_empty() {
        return CostModel::averages(mean_cost);
    }
    let mut order = with_costs.clone();
    let mut rng = SplitMix(seed ^ 0xC057_F01D);
    for i in (1..order.len()).rev() {
        let j = ((rng.next_f32() as f64 * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    let mut fold_of = vec![usize::MAX; rows.len()];
    for (pos, &r) in order.iter().enumerate() {
        fold_of[r] = pos % sel.folds;
    }

    let mut candidates: Vec<(Form, f64)> = vec![(Form::Averages, 0.0)];
    for &l2 in &sel.l2_grid {
        candidates.push((Form::Shared, l2));
        candidates.push((Form::PerModel, l2));
    }
    let mut sq = vec![0f64; candidates.len()];
    for f in 0..sel.folds {
        let train: Vec<&Obs> = obs.iter().filter(|o| fold_of[o.row] != f).collect();
        let test: Vec<&Obs> = obs.iter().filter(|o| fold_of[o.row] == f).collect();
        let stats = Stats::new(&train, &x, n_models);
        for (ci, &(form, l2)) in candidates.iter().enumerate() {
            let fit = stats.solve(form, l2, &train, &x);
            sq[ci] += test
                .iter()
                .map(|o| (o.r - fit.factor(o.model, &x[o.row])).powi(2))
                .sum::<f64>();
        }
    }
    let count = obs.len().max(1) as f64;
    let cv_loss: Vec<CostLoss> = candidates
        .iter()
        .zip(&sq)
        .map(|(&(form, l2), s)| CostLoss {
            candidate: form.name(l2),
            mse: s / count,
        })
        .collect();
    // The lowest error, if it beats the averages (index 0) by MIN_GAIN.
    let best = (1..candidates.len()).fold(0, |b, i| if sq[i] < sq[b] { i } else { b });
    let best = if sq[best] < (1.0 - MIN_GAIN) * sq[0] {
        best
    } else {
        0
    };
    let (form, l2) = candidates[best];
    if matches!(form, Form::Averages) {
        // r = 1: no offsets or weights (what `check` and older builds
        // expect of `averages`; a fitted offset here made the artifact
        // fail at load).
        return CostModel {
            folds: sel.folds,
            cv_loss,
            ..CostModel::averages(mean_cost)
        };
    }
    let all: Vec<&Obs> = obs.iter().collect();
    let fit = Stats::new(&all, &x, n_models).solve(form, l2, &all, &x);
    CostModel {
        choice: form.choice().into(),
        l2,
        folds: sel.folds,
        mean_cost_usd: mean_cost,
        offset: fit.offset.iter().map(|&v| v as f32).collect(),
        weights: fit
            .weights
            .iter()
            .map(|w| w.iter().map(|&v| v as f32).collect())
            .collect(),
        cv_loss,
    }
}

/// f32 dot product in eight running sums: a plain `sum` is one serial
/// chain of adds (the compiler may not reorder float additions), which
/// the vector units cannot overlap.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: `dot_f32_avx2` only requires AVX2, which the CPU was
        // just detected to support; it is otherwise safe code.
        return unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32_portable(a, b)
}

/// [`dot_f32_portable`] compiled for AVX2: the eight sums in one register,
/// the same operations in the same order (no fused multiply-add), so the
/// same result as the portable build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_portable(a, b)
}

#[inline(always)]
fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn ok(c: f64) -> bool {
    c.is_finite() && c > 0.0
}

/// One usable cost: row, model, log r, r.
struct Obs {
    row: usize,
    model: usize,
    y: f64,
    r: f64,
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Averages,
    Shared,
    PerModel,
}

impl Form {
    fn choice(self) -> &'static str {
        match self {
            Form::Averages => "averages",
            Form::Shared => "shared",
            Form::PerModel => "per_model",
        }
    }

    fn name(self, l2: f64) -> String {
        match self {
            Form::Averages => "averages".into(),
            other => format!("{} l2={l2}", other.choice()),
        }
    }
}

/// A fit in f64: offsets per model and zero, one or `n` weight rows.
struct Fit {
    offset: Vec<f64>,
    weights: Vec<Vec<f64>>,
}

impl Fit {
    fn factor(&self, m: usize, x: &[f64]) -> f64 {
        let y = match self.weights.len() {
            0 => self.offset[m],
            1 => self.offset[m] + dot(&self.weights[0], x),
            _ => self.offset[m] + dot(&self.weights[m], x),
        };
        y.exp().clamp(1.0 / MAX_FACTOR, MAX_FACTOR)
    }
}

/// Per-model sufficient statistics of the ridge: count, mean x, mean y,
/// centred Gram matrix and centred x·y.
struct Stats {
    d: usize,
    count: Vec<f64>,
    x_mean: Vec<Vec<f64>>,
    y_mean: Vec<f64>,
    gram: Vec<Vec<f64>>,
    xy: Vec<Vec<f64>>,
}

impl Stats {
    fn new(obs: &[&Obs], x: &[Vec<f64>], n: usize) -> Stats {
        let d = x[0].len();
        let mut count = vec![0f64; n];
        let mut x_mean = vec![vec![0f64; d]; n];
        let mut y_mean = vec![0f64; n];
        for o in obs {
            count[o.model] += 1.0;
            y_mean[o.model] += o.y;
            axpy(1.0, &x[o.row], &mut x_mean[o.model]);
        }
        for m in 0..n {
            if count[m] > 0.0 {
                y_mean[m] /= count[m];
                x_mean[m].iter_mut().for_each(|v| *v /= count[m]);
            }
        }
        // Rows shared by several models (the usual case: every model on
        // every prompt) would repeat the d² outer product per model; the
        // Gram of model m is accumulated over its rows once each.
        let mut gram = vec![vec![0f64; d * d]; n];
        let mut xy = vec![vec![0f64; d]; n];
        let mut c = vec![0f64; d];
        for o in obs {
            let m = o.model;
            for j in 0..d {
                c[j] = x[o.row][j] - x_mean[m][j];
            }
            axpy(o.y - y_mean[m], &c, &mut xy[m]);
            let g = &mut gram[m];
            for j in 0..d {
                let cj = c[j];
                if cj != 0.0 {
                    axpy(cj, &c[j..], &mut g[j * d + j..(j + 1) * d]);
                }
            }
        }
        Stats {
            d,
            count,
            x_mean,
            y_mean,
            gram,
            xy,
        }
    }

    /// The ridge fit of one form, with smearing from `obs` (the fit's own
    /// rows).
    fn solve(&self, form: Form, l2: f64, obs: &[&Obs], x: &[Vec<f64>]) -> Fit {
        let n = self.count.len();
        let d = self.d;
        let weights: Vec<Vec<f64>> = match form {
            Form::Averages => Vec::new(),
            Form::Shared => {
                let mut g = vec![0f64; d * d];
                let mut b = vec![0f64; d];
                for m in 0..n {
                    axpy(1.0, &self.gram[m], &mut g);
                    axpy(1.0, &self.xy[m], &mut b);
                }
                let total: f64 = self.count.iter().sum();
                vec![ridge(g, b, l2 * total, d)]
            }
            Form::PerModel => (0..n)
                .map(|m| {
                    if self.count[m] < 2.0 {
                        vec![0f64; d]
                    } else {
                        ridge(
                            self.gram[m].clone(),
                            self.xy[m].clone(),
                            l2 * self.count[m],
                            d,
                        )
                    }
                })
                .collect(),
        };
        let w_of = |m: usize| match weights.len() {
            0 => None,
            1 => Some(&weights[0]),
            _ => Some(&weights[m]),
        };
        let mut offset: Vec<f64> = (0..n)
            .map(|m| self.y_mean[m] - w_of(m).map_or(0.0, |w| dot(w, &self.x_mean[m])))
            .collect();
        // Smearing: E[r] = exp(ŷ) · mean exp(residual) per model.
        let mut smear = vec![(0f64, 0f64); n];
        for o in obs {
            let yhat = offset[o.model] + w_of(o.model).map_or(0.0, |w| dot(w, &x[o.row]));
            smear[o.model].0 += (o.y - yhat).exp();
            smear[o.model].1 += 1.0;
        }
        for m in 0..n {
            if smear[m].1 > 0.0 {
                offset[m] += (smear[m].0 / smear[m].1).ln();
            }
        }
        Fit { offset, weights }
    }
}

/// Solves (G + λ I) w = b for the upper-triangle-filled symmetric G by
/// Cholesky (G is positive semi-definite and λ > 0, so this never fails;
/// a zero vector if it does, i.e. the averages).
#[allow(clippy::needless_range_loop)] // matrix indices read clearer
fn ridge(mut g: Vec<f64>, b: Vec<f64>, lambda: f64, d: usize) -> Vec<f64> {
    for i in 0..d {
        for j in 0..i {
            g[i * d + j] = g[j * d + i];
        }
        g[i * d + i] += lambda.max(1e-9);
    }
    // In-place Cholesky: lower triangle L with G = L Lᵀ.
    for j in 0..d {
        let mut s = g[j * d + j];
        for k in 0..j {
            s -= g[j * d + k] * g[j * d + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return vec![0f64; d];
        }
        let l = s.sqrt();
        g[j * d + j] = l;
        for i in j + 1..d {
            let mut s = g[i * d + j];
            for k in 0..j {
                s -= g[i * d + k] * g[j * d + k];
            }
            g[i * d + j] = s / l;
        }
    }
    let mut z = b;
    for i in 0..d {
        for k in 0..i {
            z[i] -= g[i * d + k] * z[k];
        }
        z[i] /= g[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            z[i] -= g[k * d + i] * z[k];
        }
        z[i] /= g[i * d + i];
    }
    z
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_scales_only_the_completion_and_only_without_a_stated_length() {
        let catalog = Catalog::from_toml_str(
            "[[models]]\nname = \"a\"\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 10.0\ncontext_window = 1000\n\
             [[models]]\nname = \"b\"\ninput_usd_per_mtok = 2.0\noutput_usd_per_mtok = 20.0\ncontext_window = 1000\n",
        )
        .unwrap();
        let rows: Vec<TrainingRow> = (0..3)
            .map(|i| TrainingRow {
                embedding: vec![i as f32, 1.0],
                task_scores: vec![1.0],
                outcomes: vec![(0, 1.0)],
                head_outputs: Vec::new(),
            })
            .collect();
        let mut model = crate::fit_fixed(
            vec!["a".into()],
            vec!["any".into()],
            &rows,
            &crate::TrainConfig {
                epochs: 1,
                selection: None,
                ..Default::default()
            },
            "",
        )
        .unwrap();
        // log r = ln 3 for model "a" whatever the prompt ("b" is unknown to
        // the artifact: factor 1).
        model.cost = Some(CostModel {
            choice: "shared".into(),
            l2: 1.0,
            folds: 3,
            mean_cost_usd: vec![1e-3],
            offset: vec![3f32.ln()],
            weights: vec![vec![0.0, 0.0]],
            cv_loss: Vec::new(),
        });
        let e = [0.5, 1.0];
        let c = expected_costs(&catalog, &model, &e, 100, 200, true);
        assert!(
            (c[0] - (100.0 + 10.0 * 200.0 * 3.0) / 1e6).abs() < 1e-9,
            "{c:?}"
        );
        assert!((c[1] - (200.0 + 20.0 * 200.0) / 1e6).abs() < 1e-12, "{c:?}");
        let c = expected_costs(&catalog, &model, &e, 100, 200, false);
        assert!((c[0] - catalog.models[0].cost_usd(100, 200)).abs() < 1e-12);
        // Factors stay within [1/20, 20].
        model.cost.as_mut().unwrap().offset = vec![10.0];
        assert_eq!(model.cost_factors(&["a"], &e), [MAX_FACTOR]);
    }
}
