//! Fitting the success model from partial outcomes.
//!
//! Only observed (prompt, model) pairs enter the loss, so logs that hold a
//! few models per prompt are fine. The loss is the summed cross-entropy of
//! P against the score (scores in [0, 1] act as soft labels) plus Gaussian
//! priors: abilities shrink toward the mean ability of all models on that
//! task, discriminations toward 1, loadings and prompt weights toward 0.
//! Because the data term is a sum, a model with 10 outcomes stays close to
//! the prior and one with thousands follows its data. Full-batch Adam,
//! deterministic for a given seed.

use crate::cost::{fit_cost_model, CostSelection, RowCosts};
use crate::error::RouterError;
use crate::head_features::{HeadFeatures, PromptInput};
use crate::select::{fit_selected_with_predictions, RowPredictions, Selection};
use crate::success::{sigmoid, SuccessModel, ARTIFACT_VERSION};
use crate::target::TargetTable;

/// One prompt with its features and the outcomes observed on it.
#[derive(Debug, Clone)]
pub struct TrainingRow {
    /// The prompt's embedding (`dim` values).
    pub embedding: Vec<f32>,
    /// P(task | prompt) in the trainer's `tasks` order.
    pub task_scores: Vec<f32>,
    /// (model index, score in [0, 1]) for each model observed on the prompt.
    pub outcomes: Vec<(usize, f32)>,
    /// The classifier heads' outputs named by [`TrainConfig::head_features`]
    /// (empty when none are given: the default).
    pub head_outputs: Vec<f32>,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainConfig {
    /// Number of prompt traits k (0 = plain IRT with one difficulty).
    pub rank: usize,
    pub epochs: usize,
    /// Adam step size.
    pub learning_rate: f32,
    /// Ridge on the prompt weights (difficulty and traits), per training row.
    pub l2_prompt: f32,
    /// Prior precision of abilities around the across-model mean (logit units^-2).
    pub ability_prior: f32,
    /// Shrinkage by outcome count: a model with n < `prior_outcomes`
    /// outcomes gets `ability_prior` × `prior_outcomes` / n (so ten
    /// outcomes cannot lift a new model far above the others); from
    /// `prior_outcomes` on, `ability_prior` itself. 0: off.
    pub prior_outcomes: f32,
    /// Seed for the trait initialisation (and the selection's folds).
    pub seed: u64,
    /// How much per-prompt signal to use, chosen by cross-validation inside
    /// the training rows (see [`crate::select`]). None: one plain fit with
    /// `l2_prompt`, P used as fitted.
    pub selection: Option<Selection>,
    /// How the per-prompt cost model is chosen by cross-validation (see
    /// [`crate::cost`]) when [`fit_with_costs`] is given costs. None: no
    /// cost model (every prompt costs its model's mean).
    pub cost: Option<CostSelection>,
    /// Names of the values in each row's `head_outputs`
    /// ([`crate::head_features`]: `task:<label>`, `difficulty`); empty:
    /// the rows carry none.
    pub head_features: Vec<String>,
    /// What the prompt term reads in a fit without selection (the
    /// selection tries [`Selection::inputs`] instead).
    pub prompt_input: PromptInput,
    /// The models a policy will choose among (`eval --route-models`, a
    /// catalog that lists fewer models than the outcomes): the target
    /// table is built over them alone, and the selection compares its
    /// candidates on their outcomes alone. The other models' outcomes
    /// still fit the shared prompt term (difficulty and traits). Empty:
    /// every model.
    pub routed_models: Vec<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            rank: 8,
            epochs: 300,
            learning_rate: 0.03,
            l2_prompt: 1.0,
            ability_prior: 1.0,
            prior_outcomes: 200.0,
            seed: 17,
            selection: Some(Selection::default()),
            cost: Some(CostSelection::default()),
            head_features: Vec::new(),
            prompt_input: PromptInput::Embedding,
            routed_models: Vec::new(),
        }
    }
}

/// Offsets of each parameter block in the flat vector.
struct Layout {
    /// Width of the prompt term's input (the embedding's dimension unless
    /// it reads head features).
    d: usize,
    k: usize,
    n: usize,
    t: usize,
}

impl Layout {
    fn w(&self) -> usize {
        1
    }
    fn u(&self) -> usize {
        1 + self.d
    }
    fn theta(&self) -> usize {
        self.u() + self.k * self.d
    }
    fn loga(&self) -> usize {
        self.theta() + self.n * self.t
    }
    fn v(&self) -> usize {
        self.loga() + self.n
    }
    fn len(&self) -> usize {
        self.v() + self.n * self.k
    }
}

/// Fits a success model for `models` and `tasks` on `rows`: the entry point
/// every trainer calls (`train router`, `--from-store`, each eval fold).
/// With `cfg.selection` (the default) the amount of per-prompt signal and
/// the calibration are chosen by cross-validation inside `rows` and
/// recorded in the artifact; without it, one [`fit_fixed`].
pub fn fit(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    cfg: &TrainConfig,
    encoder_id: &str,
) -> Result<SuccessModel, RouterError> {
    fit_with_predictions(models, tasks, rows, None, cfg, encoder_id).map(|(m, _)| m)
}

/// [`fit`], with P on the training rows for the target table: out of fold
/// under a selection, in-sample otherwise.
fn fit_with_predictions(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    costs: Option<&[RowCosts]>,
    cfg: &TrainConfig,
    encoder_id: &str,
) -> Result<(SuccessModel, RowPredictions), RouterError> {
    match &cfg.selection {
        Some(sel) => {
            fit_selected_with_predictions(models, tasks, rows, costs, cfg, sel, encoder_id)
        }
        None => {
            let model = fit_fixed(models, tasks, rows, cfg, encoder_id)?;
            let predictions = RowPredictions::in_sample(&model, rows);
            Ok((model, predictions))
        }
    }
}

/// [`fit`], then (with `cfg.cost`) the per-prompt cost model on the
/// outcomes' costs, `costs[i]` those of `rows[i]`, and the target table
/// (what a quality target costs, [`crate::target`]) on the fit's
/// out-of-fold P and those costs: what `train router` and every `eval`
/// fold call when the records carry costs.
pub fn fit_with_costs(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    costs: &[RowCosts],
    cfg: &TrainConfig,
    encoder_id: &str,
) -> Result<SuccessModel, RouterError> {
    if costs.len() != rows.len() {
        return Err(RouterError::Training(format!(
            "{} cost lists for {} rows",
            costs.len(),
            rows.len()
        )));
    }
    let n = models.len();
    let (mut model, predictions) =
        fit_with_predictions(models, tasks, rows, Some(costs), cfg, encoder_id)?;
    if let Some(sel) = &cfg.cost {
        model.cost = Some(fit_cost_model(
            rows,
            costs,
            n,
            &model.feature_mean,
            &model.feature_scale,
            sel,
            cfg.seed,
        ));
    }
    model.target_table = target_table(&model, rows, costs, &predictions, &cfg.routed_models)?;
    Ok(model)
}

/// Indices into `models` of the `routed` names ([`TrainConfig::routed_models`]),
/// in their order; every model when `routed` is empty. A name with no
/// outcomes (not in `models`) is an error naming it.
pub fn routed_indices(models: &[String], routed: &[String]) -> Result<Vec<usize>, RouterError> {
    if routed.is_empty() {
        return Ok((0..models.len()).collect());
    }
    routed
        .iter()
        .map(|name| {
            models.iter().position(|m| m == name).ok_or_else(|| {
                RouterError::Training(format!("routed model `{name}` has no outcomes"))
            })
        })
        .collect()
}

/// The target table on `predictions`' rows, each model priced at its mean
/// cost over the outcomes in `costs` (the cost model's c̄_m when it has
/// one) times the model's per-prompt cost factor. None when no outcome
/// has a cost. Built over the `routed` models only (all when empty): the
/// table answers what a target costs among the models a policy picks from.
fn target_table(
    model: &SuccessModel,
    rows: &[TrainingRow],
    costs: &[RowCosts],
    predictions: &RowPredictions,
    routed: &[String],
) -> Result<Option<TargetTable>, RouterError> {
    let n = model.models.len();
    let keep = routed_indices(&model.models, routed)?;
    let mean = match &model.cost {
        Some(c) => c.mean_cost_usd.clone(),
        None => {
            let mut sum = vec![(0.0, 0usize); n];
            for &(m, c) in costs.iter().flatten() {
                if m < n && c.is_finite() {
                    sum[m].0 += c;
                    sum[m].1 += 1;
                }
            }
            sum.iter()
                .map(|&(s, k)| if k > 0 { s / k as f64 } else { 0.0 })
                .collect()
        }
    };
    if keep.iter().all(|&m| mean[m] <= 0.0) {
        return Ok(None);
    }
    let names: Vec<&str> = model.models.iter().map(String::as_str).collect();
    let cost: Vec<Vec<f64>> = predictions
        .rows
        .iter()
        .map(|&i| {
            let factors = model.cost_factors(&names, &rows[i].embedding);
            keep.iter().map(|&m| factors[m] * mean[m]).collect()
        })
        .collect();
    let p: Vec<Vec<f64>> = predictions
        .p
        .iter()
        .map(|row| keep.iter().map(|&m| row[m]).collect())
        .collect();
    Ok(
        TargetTable::build(&p, &cost, predictions.out_of_fold).map(|t| TargetTable {
            models: routed.to_vec(),
            ..t
        }),
    )
}

/// One fit with `cfg.l2_prompt`, P used as fitted (no selection, no
/// calibration). `encoder_id` is recorded in the artifact. Fails on no
/// rows, no outcomes, mismatched dimensions or an out-of-range model index
/// or score.
pub fn fit_fixed(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    cfg: &TrainConfig,
    encoder_id: &str,
) -> Result<SuccessModel, RouterError> {
    let bad = |m: String| Err(RouterError::Training(m));
    if rows.is_empty() || models.is_empty() || tasks.is_empty() {
        return bad("need at least one row, one model and one task".into());
    }
    let d = rows[0].embedding.len();
    let lay = Layout {
        d,
        k: cfg.rank,
        n: models.len(),
        t: tasks.len(),
    };
    let mut counts = vec![0usize; lay.n];
    let mut score_sum = vec![0f64; lay.n];
    for (i, r) in rows.iter().enumerate() {
        if r.embedding.len() != d || r.task_scores.len() != lay.t {
            return bad(format!(
                "row {i}: embedding or task_scores has the wrong length"
            ));
        }
        for &(m, y) in &r.outcomes {
            if m >= lay.n || !(0.0..=1.0).contains(&y) {
                return bad(format!(
                    "row {i}: model index {m} or score {y} out of range"
                ));
            }
            counts[m] += 1;
            score_sum[m] += y as f64;
        }
    }
    let pairs: usize = counts.iter().sum();
    if pairs == 0 {
        return bad("no outcomes".into());
    }

    // Standardise the embedding so one learning rate suits every weight.
    let mut mean = vec![0f32; d];
    let mut scale = vec![0f32; d];
    for r in rows {
        mean.iter_mut()
            .zip(&r.embedding)
            .for_each(|(m, e)| *m += e / rows.len() as f32);
    }
    for r in rows {
        scale
            .iter_mut()
            .zip(r.embedding.iter().zip(&mean))
            .for_each(|(s, (e, m))| *s += (e - m).powi(2) / rows.len() as f32);
    }
    scale.iter_mut().for_each(|s| *s = s.sqrt().max(1e-6));
    let standardised = |r: &TrainingRow| -> Vec<f32> {
        r.embedding
            .iter()
            .zip(mean.iter().zip(&scale))
            .map(|(e, (m, s))| (e - m) / s)
            .collect()
    };
    // The prompt term's input: the embedding, or with (or instead of) it
    // the heads' outputs (crate::head_features).
    let head = match cfg.prompt_input {
        PromptInput::Embedding => None,
        input => {
            let outputs: Vec<&[f32]> = rows.iter().map(|r| r.head_outputs.as_slice()).collect();
            Some(HeadFeatures::fit(
                &cfg.head_features,
                &outputs,
                input == PromptInput::EmbeddingAndHeads,
                d,
            )?)
        }
    };
    let x: Vec<f32> = match &head {
        None => rows.iter().flat_map(standardised).collect(),
        Some(h) => rows
            .iter()
            .flat_map(|r| h.input(standardised(r), &r.head_outputs))
            .collect(),
    };
    let lay = Layout {
        d: head.as_ref().map_or(d, |h| h.width(d)),
        ..lay
    };

    let mut p = vec![0f32; lay.len()];
    let mut rng = SplitMix(cfg.seed);
    for u in &mut p[lay.u()..lay.theta()] {
        *u = rng.normal() / (lay.d as f32).sqrt();
    }
    for m in 0..lay.n {
        let rate = if counts[m] > 0 {
            score_sum[m] / counts[m] as f64
        } else {
            0.5
        };
        let logit = (rate.clamp(0.02, 0.98) / (1.0 - rate.clamp(0.02, 0.98))).ln() as f32;
        p[lay.theta() + m * lay.t..lay.theta() + (m + 1) * lay.t].fill(logit);
    }

    let mut adam = Adam::new(lay.len(), cfg.learning_rate);
    let mut g = vec![0f32; lay.len()];
    for _ in 0..cfg.epochs {
        gradient(&lay, &p, rows, &x, &counts, cfg, &mut g);
        adam.step(&mut p, &g);
    }

    let slice = |a: usize, len: usize| p[a..a + len].to_vec();
    let rows_of =
        |a: usize, r: usize, c: usize| (0..r).map(|i| slice(a + i * c, c)).collect::<Vec<_>>();
    let ability = rows_of(lay.theta(), lay.n, lay.t);
    let prior_ability = (0..lay.t)
        .map(|t| ability.iter().map(|r| r[t]).sum::<f32>() / lay.n as f32)
        .collect();
    Ok(SuccessModel {
        version: ARTIFACT_VERSION,
        encoder_id: encoder_id.to_string(),
        models,
        tasks,
        dim: d,
        rank: lay.k,
        feature_mean: mean,
        feature_scale: scale,
        difficulty_bias: p[0],
        difficulty_weights: slice(lay.w(), lay.d),
        traits: rows_of(lay.u(), lay.k, lay.d),
        ability,
        log_discrimination: slice(lay.loga(), lay.n),
        loadings: rows_of(lay.v(), lay.n, lay.k),
        prior_ability,
        outcome_counts: counts,
        calibration: Vec::new(),
        selection: None,
        neighbours: None,
        cost: None,
        target_table: None,
        head_features: head,
    })
}

/// Gradient of the (summed) objective, scaled by 1 / number of rows.
fn gradient(
    lay: &Layout,
    p: &[f32],
    rows: &[TrainingRow],
    x: &[f32],
    counts: &[usize],
    cfg: &TrainConfig,
    g: &mut [f32],
) {
    let (d, k, t) = (lay.d, lay.k, lay.t);
    g.fill(0.0);
    let mut z = vec![0f32; k];
    let mut gz = vec![0f32; k];
    for (ri, r) in rows.iter().enumerate() {
        let xr = &x[ri * d..(ri + 1) * d];
        let b = p[0] + dot(&p[lay.w()..lay.w() + d], xr);
        for (kk, zk) in z.iter_mut().enumerate() {
            *zk = dot(&p[lay.u() + kk * d..lay.u() + (kk + 1) * d], xr);
        }
        let mut gb = 0f32;
        gz.fill(0.0);
        for &(m, y) in &r.outcomes {
            let a = p[lay.loga() + m].exp();
            let th = &p[lay.theta() + m * t..lay.theta() + (m + 1) * t];
            let v = &p[lay.v() + m * k..lay.v() + (m + 1) * k];
            let inter = dot(v, &z);
            let mut prob = 0f64;
            for (ti, &pt) in r.task_scores.iter().enumerate() {
                prob += pt as f64 * sigmoid((a * (th[ti] - b) + inter) as f64);
            }
            let prob = prob.clamp(1e-6, 1.0 - 1e-6);
            let dp = ((prob - y as f64) / (prob * (1.0 - prob))) as f32;
            let mut g_inter = 0f32;
            for (ti, &pt) in r.task_scores.iter().enumerate() {
                if pt < 1e-6 {
                    continue;
                }
                let s = sigmoid((a * (th[ti] - b) + inter) as f64) as f32;
                let dl = dp * pt * s * (1.0 - s);
                g[lay.theta() + m * t + ti] += dl * a;
                g[lay.loga() + m] += dl * a * (th[ti] - b);
                gb -= dl * a;
                g_inter += dl;
            }
            for kk in 0..k {
                g[lay.v() + m * k + kk] += g_inter * z[kk];
                gz[kk] += g_inter * v[kk];
            }
        }
        g[0] += gb;
        axpy(gb, xr, &mut g[lay.w()..lay.w() + d]);
        for kk in 0..k {
            axpy(gz[kk], xr, &mut g[lay.u() + kk * d..lay.u() + (kk + 1) * d]);
        }
    }
    // Priors (gradients of their negative log densities).
    let prior: Vec<f32> = counts
        .iter()
        .map(|&c| cfg.ability_prior * (cfg.prior_outcomes / c.max(1) as f32).max(1.0))
        .collect();
    let ridge = cfg.l2_prompt * rows.len() as f32;
    for j in lay.w()..lay.theta() {
        g[j] += ridge * p[j];
    }
    for ti in 0..t {
        let mean: f32 = (0..lay.n).map(|m| p[lay.theta() + m * t + ti]).sum::<f32>() / lay.n as f32;
        for m in 0..lay.n {
            g[lay.theta() + m * t + ti] += prior[m] * (p[lay.theta() + m * t + ti] - mean);
        }
    }
    for m in 0..lay.n {
        g[lay.loga() + m] += 4.0 * p[lay.loga() + m];
    }
    for j in lay.v()..lay.len() {
        g[j] += p[j];
    }
    let scale = 1.0 / rows.len() as f32;
    g.iter_mut().for_each(|v| *v *= scale);
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    step: i32,
    lr: f32,
}

impl Adam {
    fn new(n: usize, lr: f32) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
            lr,
        }
    }

    fn step(&mut self, p: &mut [f32], g: &[f32]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.step += 1;
        let (c1, c2) = (1.0 - B1.powi(self.step), 1.0 - B2.powi(self.step));
        for i in 0..p.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * g[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * g[i] * g[i];
            p[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

/// A tiny seeded generator (SplitMix64) so the crate needs no rand.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// Standard normal by Box-Muller.
    pub(crate) fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.next_f32(), self.next_f32());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holdout::{fit_platt, fit_validated, Validation};

    /// Two models, 2-d embeddings: "strong" succeeds unless the prompt is
    /// hard (x0 > 0), "weak" only on easy prompts; "rare" has 5 outcomes.
    fn rows() -> Vec<TrainingRow> {
        let mut rng = SplitMix(3);
        (0..400)
            .map(|i| {
                let x0 = rng.normal();
                let hard = x0 > 0.0;
                let mut outcomes = vec![
                    (0, if hard && x0 > 1.0 { 0.0 } else { 1.0 }),
                    (1, if hard { 0.0 } else { 1.0 }),
                ];
                if i < 5 {
                    outcomes.push((2, 1.0));
                }
                TrainingRow {
                    embedding: vec![x0, rng.normal()],
                    task_scores: vec![1.0],
                    outcomes,
                    head_outputs: Vec::new(),
                }
            })
            .collect()
    }

    fn fitted(rank: usize) -> SuccessModel {
        let names = ["strong", "weak", "rare"].map(String::from).to_vec();
        let cfg = TrainConfig {
            rank,
            epochs: 300,
            ..Default::default()
        };
        fit(names, vec!["any".into()], &rows(), &cfg, "test").unwrap()
    }

    #[test]
    fn learns_difficulty_and_ability() {
        let m = fitted(0);
        let p = |x0: f32, name: &str| m.predict(&[name], &[x0, 0.0], &[1.0])[0];
        assert!(p(-1.5, "weak") > 0.85, "{}", p(-1.5, "weak"));
        assert!(p(0.5, "weak") < 0.3, "{}", p(0.5, "weak"));
        assert!(p(0.5, "strong") > 0.8, "{}", p(0.5, "strong"));
        assert!(p(0.5, "strong") > p(0.5, "weak"));
    }

    #[test]
    fn few_outcomes_stay_near_the_prior_and_unknown_models_get_it() {
        let m = fitted(2);
        let rare = m.predict(&["rare"], &[0.5, 0.0], &[1.0])[0];
        let unknown = m.predict(&["never-seen"], &[0.5, 0.0], &[1.0])[0];
        // Five successes pull "rare" up from the prior but not to certainty.
        assert!(
            rare > unknown - 0.05 && rare < 0.99,
            "rare {rare}, prior {unknown}"
        );
        assert!((0.05..0.95).contains(&unknown), "{unknown}");
        assert_eq!(m.outcome_counts, [400, 400, 5]);
    }

    #[test]
    fn the_ability_prior_scales_with_few_outcomes() {
        // "rare" has 5 outcomes, all successes: with the count-scaled prior
        // (x 200/5) its P stays nearer the prior than with the plain one.
        let names = ["strong", "weak", "rare"].map(String::from).to_vec();
        let p_rare = |prior_outcomes: f32| {
            let cfg = TrainConfig {
                rank: 0,
                prior_outcomes,
                selection: None,
                ..Default::default()
            };
            let m = fit(names.clone(), vec!["any".into()], &rows(), &cfg, "t").unwrap();
            let rare = m.predict(&["rare"], &[0.5, 0.0], &[1.0])[0];
            let prior = m.predict(&["never-seen"], &[0.5, 0.0], &[1.0])[0];
            (rare, prior)
        };
        let (scaled, prior_a) = p_rare(200.0);
        let (plain, prior_b) = p_rare(0.0);
        assert!(
            scaled - prior_a < 0.5 * (plain - prior_b),
            "scaled {scaled} (prior {prior_a}), plain {plain} (prior {prior_b})"
        );
    }

    #[test]
    fn artifact_round_trips_and_checks_version() {
        let m = fitted(1);
        let back = SuccessModel::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let old = m.to_json().replacen("\"version\": 1", "\"version\": 0", 1);
        assert!(SuccessModel::from_json(&old).is_err());
    }

    #[test]
    fn platt_recovers_known_scalings() {
        let ps: Vec<f64> = (1..200).map(|i| i as f64 / 200.0).collect();
        let logit = |p: f64| (p / (1.0 - p)).ln();
        // Scores equal to P (soft labels): already calibrated, the identity.
        let same: Vec<(f64, f32)> = ps.iter().map(|&p| (p, p as f32)).collect();
        let [a, b] = fit_platt(&same);
        assert!((a - 1.0).abs() < 1e-3 && b.abs() < 1e-3, "{a} {b}");
        // Overconfident P: the truth is σ(0.5 logit(P) + 0.3).
        let over: Vec<(f64, f32)> = ps
            .iter()
            .map(|&p| (p, sigmoid(0.5 * logit(p) + 0.3) as f32))
            .collect();
        let [a, b] = fit_platt(&over);
        // The unit prior pulls a little toward (1, 0) with only 199 pairs.
        assert!((a - 0.5).abs() < 0.03 && (b - 0.3).abs() < 0.03, "{a} {b}");
        // No outcomes: the prior alone, the identity.
        assert_eq!(fit_platt(&[]), [1.0, 0.0]);
    }

    #[test]
    fn validation_picks_a_ridge_from_the_grid_and_calibrates() {
        let names = ["strong", "weak", "rare"].map(String::from).to_vec();
        let cfg = TrainConfig {
            rank: 1,
            epochs: 150,
            ..Default::default()
        };
        let v = Validation {
            l2_grid: vec![0.01, 100.0],
            holdout: 0.25,
            calibrate: true,
        };
        let out = fit_validated(names, vec!["any".into()], &rows(), &cfg, &v, "t").unwrap();
        assert_eq!(out.holdout_loss.len(), 2);
        // A ridge of 100 per row flattens the difficulty the data show
        // clearly (x0 decides): the small ridge must win on held-out rows.
        assert_eq!(out.l2_prompt, 0.01, "{:?}", out.holdout_loss);
        assert!(out.holdout_loss[0].1 < out.holdout_loss[1].1);
        assert_eq!(out.model.calibration.len(), 3);
        // Refitted on all rows; calibrated P still separate easy from hard.
        let p = |x0: f32| out.model.predict(&["weak"], &[x0, 0.0], &[1.0])[0];
        assert!(p(-1.5) > 0.8 && p(0.5) < 0.3, "{} {}", p(-1.5), p(0.5));
        assert_eq!(out.model.outcome_counts, [400, 400, 5]);
    }

    #[test]
    fn refuses_bad_rows() {
        let mut r = rows();
        r[3].outcomes.push((7, 1.0));
        assert!(fit(
            vec!["a".into(), "b".into(), "c".into()],
            vec!["any".into()],
            &r,
            &TrainConfig::default(),
            ""
        )
        .is_err());
    }
}
