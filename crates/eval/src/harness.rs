//! The routers compared and the loop that runs them on held-out rows.
//!
//! Every router sees the same training rows and is scored on the same test
//! rows: a decision costs the chosen model's cost on that row and earns
//! that model's score on that row.

use pointsman_router::{
    choose, fit_cost_model, fit_validated, fit_with_costs, Policy, RowCosts, SuccessModel,
    TrainConfig, TrainingRow, Validation,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::EvalError;
use crate::metrics::Calibration;

/// One observed outcome: score in [0, 1] and cost in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    pub score: f64,
    pub cost_usd: f64,
}

pub use crate::predictions::{Evaluated, RowPrediction};

/// One prompt with its features and outcomes, aligned with [`EvalSet::models`].
#[derive(Debug, Clone)]
pub struct EvalRow {
    pub id: String,
    pub embedding: Vec<f32>,
    /// P(task | prompt) in [`EvalSet::tasks`] order.
    pub task_scores: Vec<f32>,
    pub outcomes: Vec<Option<Observed>>,
    /// The classifier heads' outputs in [`EvalSet::head_features`] order
    /// (empty when the prompts were read by the encoder alone).
    pub head_outputs: Vec<f32>,
}

/// Rows plus the model and task lists their vectors are aligned with.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub models: Vec<String>,
    pub tasks: Vec<String>,
    /// Identifies the embeddings (see the classifier's `encoder_id`).
    pub encoder_id: String,
    /// Names of each row's `head_outputs` (`task:<label>`, `difficulty`;
    /// see pointsman_router::head_features); empty: none.
    pub head_features: Vec<String>,
    pub rows: Vec<EvalRow>,
}

impl EvalSet {
    /// One pseudo-task (`any`) for the success model's task mixture, as
    /// when the prompts are read without the task head; the head outputs
    /// stay (`eval --no-task-head --head-features`).
    pub fn one_task(&mut self) {
        self.tasks = vec!["any".into()];
        self.rows.iter_mut().for_each(|r| r.task_scores = vec![1.0]);
    }

    /// Keeps only the head outputs whose names `keep` accepts, in order.
    pub fn keep_head_features(&mut self, keep: impl Fn(&str) -> bool) {
        let idx: Vec<usize> = (0..self.head_features.len())
            .filter(|&i| keep(&self.head_features[i]))
            .collect();
        self.head_features = idx.iter().map(|&i| self.head_features[i].clone()).collect();
        for r in &mut self.rows {
            r.head_outputs = idx
                .iter()
                .filter_map(|&i| r.head_outputs.get(i).copied())
                .collect();
        }
    }
}

/// Settings of one evaluation.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub train: TrainConfig,
    /// Neighbours the knn router averages over.
    pub knn_k: usize,
    /// Seed for the random router and the fold split.
    pub seed: u64,
    /// Cold start: keep only this many training outcomes of this model.
    pub cold_start: Option<(String, usize)>,
    /// Pick the ridge and calibrate on a held-out share of the training
    /// rows (never the test rows); None: fit once with `train`.
    pub validation: Option<Validation>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            train: TrainConfig::default(),
            knn_k: 25,
            seed: 7,
            cold_start: None,
            validation: None,
        }
    }
}

/// Sums over test rows for one setting of one router (one operating point).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub rows: usize,
    pub cost_usd: f64,
    pub quality: f64,
    /// Calls per model, aligned with the set's models.
    pub calls: Vec<usize>,
}

impl Tally {
    fn add(&mut self, model: usize, o: Observed, n_models: usize) {
        if self.calls.is_empty() {
            self.calls = vec![0; n_models];
        }
        self.rows += 1;
        self.cost_usd += o.cost_usd;
        self.quality += o.score;
        self.calls[model] += 1;
    }

    fn merge(&mut self, other: &Tally) {
        if self.calls.is_empty() {
            self.calls = vec![0; other.calls.len()];
        }
        self.rows += other.rows;
        self.cost_usd += other.cost_usd;
        self.quality += other.quality;
        self.calls
            .iter_mut()
            .zip(&other.calls)
            .for_each(|(a, b)| *a += b);
    }

    /// (mean cost in USD, mean quality) over the tallied rows.
    pub fn point(&self) -> (f64, f64) {
        let n = self.rows.max(1) as f64;
        (self.cost_usd / n, self.quality / n)
    }

    /// Share of calls that went to model `m`, in [0, 1].
    pub fn share(&self, m: usize) -> f64 {
        self.calls
            .get(m)
            .map_or(0.0, |&c| c as f64 / self.rows.max(1) as f64)
    }
}

/// One router's operating points (one per setting) and, where it predicts
/// P(success), its calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterResult {
    pub name: String,
    /// What was swept, e.g. "target" or "lambda"; one value per point.
    pub setting: &'static str,
    pub settings: Vec<f64>,
    pub tallies: Vec<Tally>,
    pub calibration: Option<Calibration>,
}

impl RouterResult {
    fn new(
        name: &str,
        setting: &'static str,
        settings: Vec<f64>,
        calibrated: bool,
    ) -> RouterResult {
        let tallies = vec![Tally::default(); settings.len()];
        RouterResult {
            name: name.into(),
            setting,
            settings,
            tallies,
            calibration: calibrated.then(|| Calibration::new(10)),
        }
    }

    /// Adds another fold's tallies for the same router and settings.
    pub fn merge(&mut self, other: &RouterResult) {
        self.tallies
            .iter_mut()
            .zip(&other.tallies)
            .for_each(|(a, b)| a.merge(b));
        if let (Some(a), Some(b)) = (&mut self.calibration, &other.calibration) {
            a.merge(b);
        }
    }
}

/// The targets the target-policy routers sweep: 0, 0.01, ..., 1.
pub fn targets() -> Vec<f64> {
    (0..=100).map(|i| i as f64 / 100.0).collect()
}

/// Fits the success model on `train` and runs every router on the rows of
/// `test` that have an outcome for every model. Returns the routers'
/// results (pointsman, pointsman_wtp, knn, random, cheapest, best_single,
/// oracle, pointsman_wtp_knn_cost, then one `model:<name>` per single model) and the number of
/// test rows used.
pub fn evaluate(
    train: &EvalSet,
    test: &EvalSet,
    cfg: &EvalConfig,
) -> Result<(Vec<RouterResult>, usize), EvalError> {
    evaluate_rows(train, test, cfg).map(|e| (e.results, e.rows))
}

/// [`evaluate`], with what the trained router predicted for each test row.
pub fn evaluate_rows(
    train: &EvalSet,
    test: &EvalSet,
    cfg: &EvalConfig,
) -> Result<Evaluated, EvalError> {
    if train.models != test.models
        || train.tasks != test.tasks
        || train.head_features != test.head_features
    {
        return Err(EvalError::Data(
            "train and test sets must list the same models, tasks and head features".into(),
        ));
    }
    let cfg = &EvalConfig {
        train: TrainConfig {
            head_features: train.head_features.clone(),
            ..cfg.train.clone()
        },
        ..cfg.clone()
    };
    let n = train.models.len();
    let train_rows = training_rows(train, cfg)?;
    // The models every router chooses among; the others only train the
    // success model's shared prompt term, and their costs are not read.
    let routed = routed_indices(train, &cfg.train.routed_models)?;
    let train_costs = row_costs(train, &routed);
    let mut model = match &cfg.validation {
        Some(v) => {
            let fitted = fit_validated(
                train.models.clone(),
                train.tasks.clone(),
                &train_rows,
                &cfg.train,
                v,
                &train.encoder_id,
            )?;
            eprintln!(
                "ridge chosen on held-out training rows: {} (cross-entropy per ridge: {})",
                fitted.l2_prompt,
                fitted
                    .holdout_loss
                    .iter()
                    .map(|(l, c)| format!("{l}: {c:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            fitted.model
        }
        None => fit_with_costs(
            train.models.clone(),
            train.tasks.clone(),
            &train_rows,
            &train_costs,
            &cfg.train,
            &train.encoder_id,
        )?,
    };
    if let (Some(sel), None) = (&cfg.train.cost, &model.cost) {
        // The held-out-split path fits no cost model itself.
        model.cost = Some(fit_cost_model(
            &train_rows,
            &train_costs,
            n,
            &model.feature_mean,
            &model.feature_scale,
            sel,
            cfg.train.seed,
        ));
    }
    if let Some(sel) = &model.selection {
        eprintln!("selection: {sel}");
    }
    if let Some(c) = &model.cost {
        eprintln!("cost: {c}");
    }
    let rows: Vec<&EvalRow> = test
        .rows
        .iter()
        .filter(|r| routed.iter().all(|&m| r.outcomes[m].is_some()))
        .collect();
    if rows.is_empty() {
        return Err(EvalError::Data(
            "no test row has an outcome for every routed model".into(),
        ));
    }

    // What each baseline knows from training: mean cost and quality per model.
    let (mean_cost, mean_quality) = train_means(&train_rows, train, n);
    let pick = |v: &[f64]| -> Vec<f64> { routed.iter().map(|&m| v[m]).collect() };
    let (mean_cost, mean_quality) = (pick(&mean_cost), pick(&mean_quality));
    let n = routed.len();
    let cheapest = argmin(&mean_cost);
    let best = argmax(&mean_quality);
    let all = vec![true; n];
    let knn = Knn::new(&train_rows, train, cfg.knn_k);
    let lambda_scale = 1.0 / mean_cost.iter().sum::<f64>().max(1e-12) * n as f64;
    // 80 steps a decade, the target table's resolution (20 before round 5,
    // 10 before that): on AlpacaEval the λ rule's whole trade between
    // GPT-4-turbo and the cheap models happens within one decade of λ, and
    // at 20 a decade the AIQ hull drew straight lines between a handful of
    // points of a concave curve (docs/EVALUATION.md, "Round 5").
    let lambdas: Vec<f64> = std::iter::once(0.0)
        .chain((0..=480).map(|i| 10f64.powf(-3.0 + i as f64 / 80.0) * lambda_scale))
        .collect();

    let mut sy = RouterResult::new("pointsman", "target", targets(), true);
    // What each target means under this fold's artifact: the λ its target
    // table gives (pointsman_router::target), or the per-prompt floor
    // without a table (fits given no costs).
    let target_policies: Vec<Policy> = sy
        .settings
        .iter()
        .map(|&t| model.resolve_policy(Policy::Target { target: t }))
        .collect();
    if let Some(t) = &model.target_table {
        eprintln!("{t}");
    }
    let mut wtp = RouterResult::new("pointsman_wtp", "lambda_per_usd", lambdas.clone(), false);
    let mut kn = RouterResult::new("knn", "target", targets(), true);
    // An experiment, not a serving policy: the λ policy with each model's
    // cost on this prompt estimated as its mean over the k nearest
    // training prompts instead of the artifact's cost model (what both
    // policies above and `serve` use): the comparison for that model. On
    // AlpacaEval cost per row follows answer length, which follows how
    // hard the prompt is (docs/EVALUATION.md, "Per-prompt cost").
    let mut sy_cost = RouterResult::new(
        "pointsman_wtp_knn_cost",
        "lambda_per_usd",
        lambdas.clone(),
        false,
    );
    let fractions: Vec<f64> = (0..=20).map(|i| i as f64 / 20.0).collect();
    let mut random = RouterResult::new("random", "share_best_single", fractions.clone(), false);
    let mut cheap = RouterResult::new("cheapest", "none", vec![0.0], false);
    let mut best_single = RouterResult::new("best_single", "none", vec![0.0], false);
    let mut oracle = RouterResult::new("oracle", "none", vec![0.0], false);
    let mut singles: Vec<RouterResult> = routed
        .iter()
        .map(|&m| {
            let name = &train.models[m];
            RouterResult::new(&format!("model:{name}"), "none", vec![0.0], false)
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(cfg.seed);

    let names: Vec<&str> = train.models.iter().map(String::as_str).collect();
    let mut predictions = Vec::with_capacity(rows.len());
    for row in &rows {
        let obs: Vec<Observed> = routed
            .iter()
            .map(|&m| row.outcomes[m].expect("filtered"))
            .collect();
        let p_all =
            model.try_predict(&names, &row.embedding, &row.task_scores, &row.head_outputs)?;
        let p_sy = pick(&p_all);
        // What both policies pay by their own estimate: each model's mean
        // cost times the artifact's per-prompt factor (1 when its cost
        // model chose the averages), as `serve` does with catalog prices.
        let factors = model.cost_factors(&names, &row.embedding);
        let cost_sy: Vec<f64> = pick(&factors)
            .iter()
            .zip(&mean_cost)
            .map(|(f, c)| f * c)
            .collect();
        predictions.push(RowPrediction::new(&row.id, &p_sy, &cost_sy, &obs));
        let (p_kn, cost_kn) = knn.predict(&row.embedding, &routed, &mean_quality, &mean_cost);
        for (m, o) in obs.iter().enumerate() {
            sy.calibration.as_mut().unwrap().add(p_sy[m], o.score);
            kn.calibration.as_mut().unwrap().add(p_kn[m], o.score);
        }
        for (i, &t) in sy.settings.clone().iter().enumerate() {
            let c = choose(&p_sy, &cost_sy, &all, target_policies[i]).unwrap();
            sy.tallies[i].add(c, obs[c], n);
            let c = choose(&p_kn, &mean_cost, &all, Policy::Target { target: t }).unwrap();
            kn.tallies[i].add(c, obs[c], n);
        }
        for (i, &l) in lambdas.iter().enumerate() {
            let c = choose(
                &p_sy,
                &cost_sy,
                &all,
                Policy::WillingnessToPay { lambda_per_usd: l },
            )
            .unwrap();
            wtp.tallies[i].add(c, obs[c], n);
            let c = choose(
                &p_sy,
                &cost_kn,
                &all,
                Policy::WillingnessToPay { lambda_per_usd: l },
            )
            .unwrap();
            sy_cost.tallies[i].add(c, obs[c], n);
        }
        for (i, &f) in fractions.iter().enumerate() {
            let c = if rng.random::<f64>() < f {
                best
            } else {
                cheapest
            };
            random.tallies[i].add(c, obs[c], n);
        }
        cheap.tallies[0].add(cheapest, obs[cheapest], n);
        best_single.tallies[0].add(best, obs[best], n);
        let top = obs.iter().map(|o| o.score).fold(f64::MIN, f64::max);
        let o = (0..n)
            .filter(|&m| obs[m].score >= top)
            .min_by(|&a, &b| obs[a].cost_usd.total_cmp(&obs[b].cost_usd))
            .unwrap();
        oracle.tallies[0].add(o, obs[o], n);
        for (m, s) in singles.iter_mut().enumerate() {
            s.tallies[0].add(m, obs[m], n);
        }
    }
    let mut out = vec![sy, wtp, kn, random, cheap, best_single, oracle, sy_cost];
    out.extend(singles);
    Ok(Evaluated {
        results: out,
        rows: rows.len(),
        predictions,
    })
}

/// K-fold cross-validation: rows shuffled with `cfg.seed`, each fold
/// evaluated with a model fitted on the others; tallies pooled over folds.
pub fn cross_validate(
    data: &EvalSet,
    folds: usize,
    cfg: &EvalConfig,
) -> Result<(Vec<RouterResult>, usize), EvalError> {
    cross_validate_rows(data, folds, cfg).map(|e| (e.results, e.rows))
}

/// [`cross_validate`], with every row's out-of-fold prediction (in fold
/// order).
pub fn cross_validate_rows(
    data: &EvalSet,
    folds: usize,
    cfg: &EvalConfig,
) -> Result<Evaluated, EvalError> {
    let mut pooled: Option<Evaluated> = None;
    for (train, test) in fold_splits(data, folds, cfg.seed)? {
        let fold = evaluate_rows(&train, &test, cfg)?;
        match &mut pooled {
            None => pooled = Some(fold),
            Some(p) => {
                p.results
                    .iter_mut()
                    .zip(&fold.results)
                    .for_each(|(a, b)| a.merge(b));
                p.rows += fold.rows;
                p.predictions.extend(fold.predictions);
            }
        }
    }
    Ok(pooled.expect("folds >= 2"))
}

/// The (train, test) pairs of K-fold cross-validation: rows shuffled with
/// `seed`, fold f tests on every K-th shuffled row from f and trains on the rest.
pub fn fold_splits(
    data: &EvalSet,
    folds: usize,
    seed: u64,
) -> Result<Vec<(EvalSet, EvalSet)>, EvalError> {
    if folds < 2 || folds > data.rows.len() {
        return Err(EvalError::Data(format!(
            "--folds {folds} needs 2 <= K <= rows ({})",
            data.rows.len()
        )));
    }
    let mut order: Vec<usize> = (0..data.rows.len()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    Ok((0..folds)
        .map(|f| {
            let pick = |test: bool| EvalSet {
                rows: order
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i % folds == f) == test)
                    .map(|(_, &r)| data.rows[r].clone())
                    .collect(),
                ..data.clone()
            };
            (pick(false), pick(true))
        })
        .collect())
}

/// Indices into `set.models` of the `routed` names, in that order; every
/// model when empty. A routed name without outcomes in the set is an error
/// naming it.
fn routed_indices(set: &EvalSet, routed: &[String]) -> Result<Vec<usize>, EvalError> {
    pointsman_router::routed_indices(&set.models, routed).map_err(|e| {
        EvalError::Data(format!(
            "--route-models: {e} in the data (models: {})",
            set.models.join(", ")
        ))
    })
}

/// The success model's training rows; applies the cold-start cut.
fn training_rows(train: &EvalSet, cfg: &EvalConfig) -> Result<Vec<TrainingRow>, EvalError> {
    let cold = match &cfg.cold_start {
        Some((name, keep)) => {
            let m = train.models.iter().position(|x| x == name).ok_or_else(|| {
                EvalError::Data(format!("cold-start model `{name}` has no outcomes"))
            })?;
            // Keep `keep` of its outcomes, spread over the rows by a seeded shuffle.
            let mut with: Vec<usize> = (0..train.rows.len())
                .filter(|&i| train.rows[i].outcomes[m].is_some())
                .collect();
            let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0xC01D);
            for i in (1..with.len()).rev() {
                with.swap(i, rng.random_range(0..=i));
            }
            with.truncate(*keep);
            Some((
                m,
                with.into_iter()
                    .collect::<std::collections::HashSet<usize>>(),
            ))
        }
        None => None,
    };
    Ok(train
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| TrainingRow {
            embedding: r.embedding.clone(),
            task_scores: r.task_scores.clone(),
            head_outputs: r.head_outputs.clone(),
            outcomes: r
                .outcomes
                .iter()
                .enumerate()
                .filter(|(m, _)| {
                    cold.as_ref()
                        .is_none_or(|(cm, keep)| m != cm || keep.contains(&i))
                })
                .filter_map(|(m, o)| o.map(|o| (m, o.score as f32)))
                .collect(),
        })
        .collect())
}

/// The observed costs of each training row's outcomes, for the cost model
/// (all of them: the cold-start cut applies to scores, and
/// [`train_means`] prices from all outcomes too).
/// Only the `routed` models' costs are kept.
fn row_costs(train: &EvalSet, routed: &[usize]) -> Vec<RowCosts> {
    train
        .rows
        .iter()
        .map(|r| {
            routed
                .iter()
                .filter_map(|&m| r.outcomes[m].map(|o| (m, o.cost_usd)))
                .collect()
        })
        .collect()
}

/// Per-model mean cost (USD) and mean score over the training outcomes the
/// success model sees (cost from all training outcomes of the model).
fn train_means(rows: &[TrainingRow], train: &EvalSet, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut cost = vec![(0.0, 0usize); n];
    let mut quality = vec![(0.0, 0usize); n];
    for r in &train.rows {
        for (m, o) in r.outcomes.iter().enumerate() {
            if let Some(o) = o {
                cost[m].0 += o.cost_usd;
                cost[m].1 += 1;
            }
        }
    }
    for r in rows {
        for &(m, s) in &r.outcomes {
            quality[m].0 += s as f64;
            quality[m].1 += 1;
        }
    }
    let mean = |v: Vec<(f64, usize)>, default: f64| {
        v.into_iter()
            .map(|(s, c)| if c > 0 { s / c as f64 } else { default })
            .collect()
    };
    (mean(cost, 0.0), mean(quality, 0.5))
}

fn argmin(v: &[f64]) -> usize {
    (0..v.len())
        .min_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// k-nearest-neighbour success estimates: the mean score of each model
/// over the k training prompts most cosine-similar to the query (and, for
/// the cost experiment, its mean cost there).
struct Knn<'a> {
    rows: &'a [TrainingRow],
    /// Observed cost per training row and model.
    costs: Vec<Vec<Option<f64>>>,
    norms: Vec<f32>,
    k: usize,
    n_models: usize,
}

impl<'a> Knn<'a> {
    fn new(rows: &'a [TrainingRow], set: &EvalSet, k: usize) -> Knn<'a> {
        let norms = rows
            .iter()
            .map(|r| {
                r.embedding
                    .iter()
                    .map(|x| x * x)
                    .sum::<f32>()
                    .sqrt()
                    .max(1e-12)
            })
            .collect();
        let costs = set
            .rows
            .iter()
            .map(|r| r.outcomes.iter().map(|o| o.map(|o| o.cost_usd)).collect())
            .collect();
        Knn {
            rows,
            costs,
            norms,
            k: k.max(1),
            n_models: set.models.len(),
        }
    }

    /// (P, cost) per model; a model none of the neighbours has falls back
    /// to `prior` and `prior_cost`.
    /// Only the `routed` models' estimates are returned, in that order.
    fn predict(
        &self,
        e: &[f32],
        routed: &[usize],
        prior: &[f64],
        prior_cost: &[f64],
    ) -> (Vec<f64>, Vec<f64>) {
        let qn = e.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let mut sims: Vec<(f32, usize)> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.embedding.iter().zip(e).map(|(a, b)| a * b).sum::<f32>()
                        / (self.norms[i] * qn),
                    i,
                )
            })
            .collect();
        let k = self.k.min(sims.len());
        sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        let mut sum = vec![(0.0, 0usize); self.n_models];
        let mut cost = vec![(0.0, 0usize); self.n_models];
        for &(_, i) in &sims[..k] {
            for &(m, s) in &self.rows[i].outcomes {
                sum[m].0 += s as f64;
                sum[m].1 += 1;
            }
            for (m, c) in self.costs[i].iter().enumerate() {
                if let Some(c) = c {
                    cost[m].0 += c;
                    cost[m].1 += 1;
                }
            }
        }
        let mean = |v: &[(f64, usize)], prior: &[f64]| {
            routed
                .iter()
                .zip(prior)
                .map(|(&m, &p)| match v[m] {
                    (s, c) if c > 0 => s / c as f64,
                    _ => p,
                })
                .collect()
        };
        (mean(&sum, prior), mean(&cost, prior_cost))
    }
}

/// The fitted success model for a whole set (what `pointsman train router` writes).
pub fn fit_set(set: &EvalSet, cfg: &TrainConfig) -> Result<SuccessModel, EvalError> {
    let cfg = &TrainConfig {
        head_features: set.head_features.clone(),
        ..cfg.clone()
    };
    let rows = training_rows(
        set,
        &EvalConfig {
            train: cfg.clone(),
            ..Default::default()
        },
    )?;
    Ok(fit_with_costs(
        set.models.clone(),
        set.tasks.clone(),
        &rows,
        &row_costs(set, &routed_indices(set, &cfg.routed_models)?),
        cfg,
        &set.encoder_id,
    )?)
}
