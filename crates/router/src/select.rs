//! How much per-prompt signal to use, chosen by cross-validation inside the
//! training rows, and the calibration that goes with it.
//!
//! The rows are split into `folds` (seeded). For each ridge in the grid,
//! `folds` fits each predict the rows they did not see, which gives an
//! out-of-fold logit ℓ for every observed (prompt, model). On those a
//! calibration is fitted:
//!
//! ```text
//! logit P' = ℓ̄_m + δ_m + (α + γ_m) · (ℓ − ℓ̄_m)
//! ```
//!
//! ℓ̄_m is model m's mean out-of-fold logit, α the weight of the per-prompt
//! signal shared by all models (prior N(0, 1): with little or noisy data it
//! stays near 0), γ_m a model's departure from it and δ_m a correction of its
//! average (both with priors around 0). α = 0 gives every prompt its model's
//! average, which, swept over τ or λ, reproduces the zero router; α grows
//! only as far as held-out rows show the per-prompt term predicts outcomes.
//! Weights are kept ≥ 0 (a negative weight would only fit the slight
//! anti-correlation out-of-fold predictions of an over-fitted model show on
//! noise). A further candidate, `averages`, fixes α = γ = 0. The candidate
//! with the lowest out-of-fold cross-entropy, plus the calibration's
//! parameter count per outcome (Akaike), wins; the final model is fitted on all
//! rows with its ridge and carries its calibration as
//! σ(α_m · logit P + β_m) (the artifact's `calibration` field), the choice
//! and every candidate's loss in `selection`.
//!
//! Stacking with kNN: the same folds also give every held-out (prompt,
//! model) the k-nearest-neighbour estimate P_knn from the other folds'
//! prompts ([`crate::neighbours`]). Each ridge is tried with each weight w
//! in `knn_weights`, ℓ = logit((1 − w) · P_irt + w · P_knn), and calibrated
//! as above; a candidate with w > 0 counts one parameter more. w = 0 is the
//! item-response model alone, exactly; w = 1 is kNN alone (calibrated). The
//! final model stores its training prompts only when the winner has w > 0.
//!
//! The space the kNN compares prompts in is a candidate too (`knn_dims`):
//! the full embedding or the first d principal components of the stored
//! prompts, the PCA fitted on each fold's training part only
//! ([`crate::neighbours::Projection`]). Every w > 0 is tried in every
//! space; the winner's space is recorded (`knn_dim`) and the final model
//! stores its prompts projected into it.
//!
//! What the prompt term reads is a candidate too (`inputs`): the
//! embedding (the default, and the only one unless rows carry head
//! outputs), the classifier heads' outputs alone, or the embedding with
//! them ([`crate::head_features`]). Each
//! input is fitted at every ridge and stacked at every kNN weight (the kNN
//! estimate always reads the embedding); the winner's input is recorded
//! (`prompt_input`).
//!
//! Routing value: given costs ([`crate::train::fit_with_costs`]), every
//! candidate is also scored by the AIQ of its λ sweep on the out-of-fold
//! rows that hold every model's outcome and cost
//! ([`crate::routing_value`]), recorded beside its loss. `criterion` says
//! which number picks the winner: cross-entropy by default (selecting by
//! the routing value, or by it among the candidates tied on cross-entropy,
//! measured no better: docs/EVALUATION.md, round 5).

use serde::Serialize;

use crate::cost::RowCosts;
use crate::error::RouterError;
use crate::head_features::PromptInput;
use crate::neighbours::Neighbours;
use crate::routing_value::{pick, Criterion, RoutingRows, Scored};
use crate::success::{sigmoid, CandidateLoss, SelectionRecord, SuccessModel};
use crate::train::{fit_fixed, SplitMix, TrainConfig, TrainingRow};

/// Settings of the selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// Folds the training rows are split into (at least 2).
    pub folds: usize,
    /// Ridge values (`l2_prompt`) tried for the per-prompt terms.
    pub l2_grid: Vec<f32>,
    /// Fewest rows with outcomes for which per-prompt signal is tried at
    /// all; below it the model is the per-model averages.
    pub min_rows: usize,
    /// Weights w of the kNN estimate in the stacked P tried with each
    /// ridge ([0]: no stacking, the item-response model alone).
    pub knn_weights: Vec<f32>,
    /// Neighbours per kNN estimate.
    pub knn_k: usize,
    /// Pseudo-outcomes of a model's mean in each kNN estimate.
    pub knn_prior: f32,
    /// Spaces the kNN estimate is tried in: d, the first d principal
    /// components of the stored prompts' embeddings; 0 (or the embedding's
    /// dimension or more) the full embedding.
    pub knn_dims: Vec<usize>,
    /// How the winner is picked ([`crate::routing_value`]); every
    /// criterion is cross-entropy when the fit has no costs or too few
    /// rows with every model's outcome.
    pub criterion: Criterion,
    /// What the prompt term may read ([`PromptInput`]), each tried at
    /// every ridge; inputs with head features only when the training
    /// config names them ([`TrainConfig::head_features`]), so rows without
    /// head outputs get the embedding alone. Default: the embedding alone
    /// ([`DEFAULT_INPUTS`]).
    pub inputs: Vec<PromptInput>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            folds: 3,
            l2_grid: vec![1.0, 10.0, 100.0],
            min_rows: 30,
            knn_weights: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            knn_k: 25,
            knn_prior: 2.0,
            knn_dims: DEFAULT_KNN_DIMS.to_vec(),
            criterion: Criterion::CrossEntropy,
            inputs: DEFAULT_INPUTS.to_vec(),
        }
    }
}

impl Selection {
    /// This selection with `dims` as its kNN spaces ([`Selection::knn_dims`]),
    /// unless `dims` is empty (then it keeps its own).
    pub fn with_knn_dims(self, dims: &[usize]) -> Selection {
        if dims.is_empty() {
            return self;
        }
        Selection {
            knn_dims: dims.to_vec(),
            ..self
        }
    }
}

/// The prompt inputs tried by default: the embedding alone. The task
/// head's probabilities as a further candidate (`--head-features task`)
/// raised AIQ on AlpacaEval and RouterBench, but not on the AlpacaEval
/// prompts the task head was never trained on (docs/EVALUATION.md, "The
/// heads' outputs as success features"), so they stay opt-in.
pub const DEFAULT_INPUTS: &[PromptInput] = &[PromptInput::Embedding];

/// The spaces tried by default (see [`Selection::knn_dims`]): the full
/// embedding only. Principal-component spaces (`--knn-dims 32,64,128`)
/// decide a stacked artifact in less than half the time but cost 0.002-0.003
/// AIQ on RouterBench and AlpacaEval, and adding them to the full space lets
/// the selection's cross-entropy pick them in some folds at the same cost
/// (docs/EVALUATION.md, "kNN in a reduced space").
pub const DEFAULT_KNN_DIMS: &[usize] = &[0];

/// Prior precisions of the calibration (logit units^-2): α around 0, each
/// γ_m around 0 (models share the signal weight unless their own held-out
/// rows say otherwise), each δ_m around 0.
const PRIOR_ALPHA: f64 = 1.0;
const PRIOR_GAMMA: f64 = 20.0;
const PRIOR_DELTA: f64 = 10.0;

/// One out-of-fold prediction: model, logit, score.
type Pair = (usize, f64, f64);

/// One out-of-fold prediction before stacking: model, P_irt, P_knn, score.
type Raw = (usize, f64, f64, f64);

/// A row index with its out-of-fold P_irt for every model.
type RowP = (usize, Vec<f64>);

/// A fitted calibration: shared α, per-model γ and δ, and the centres ℓ̄.
#[derive(Debug, Clone)]
struct Calib {
    alpha: f64,
    gamma: Vec<f64>,
    delta: Vec<f64>,
    centre: Vec<f64>,
}

impl Calib {
    fn logit(&self, m: usize, l: f64) -> f64 {
        self.centre[m] + self.delta[m] + (self.alpha + self.gamma[m]) * (l - self.centre[m])
    }

    /// As the artifact's `[α_m, β_m]`: σ(α_m · ℓ + β_m).
    fn platt(&self) -> Vec<[f32; 2]> {
        (0..self.centre.len())
            .map(|m| {
                let a = self.alpha + self.gamma[m];
                [
                    a as f32,
                    (self.centre[m] + self.delta[m] - a * self.centre[m]) as f32,
                ]
            })
            .collect()
    }

    /// The candidate's loss over `pairs`: mean cross-entropy, and that plus
    /// the free parameters per pair (`slopes`: α and every γ_m, δ_m;
    /// otherwise the δ_m; plus `extra`, e.g. a stacking weight).
    fn loss(&self, name: String, pairs: &[Pair], slopes: bool, extra: f64) -> CandidateLoss {
        let total: f64 = pairs
            .iter()
            .map(|&(m, l, y)| cross_entropy(sigmoid(self.logit(m, l)), y))
            .sum();
        let count = pairs.len().max(1) as f64;
        let n = self.centre.len() as f64;
        let params = extra + if slopes { 1.0 + 2.0 * n } else { n };
        CandidateLoss {
            candidate: name,
            cross_entropy: (total / count) as f32,
            penalised: ((total + params) / count) as f32,
            routing_value: None,
        }
    }
}

/// P(success) of every model on training rows, as the final model would
/// give them but from fits that did not see the row (when `out_of_fold`):
/// what the target table ([`crate::target`]) is measured on.
#[derive(Debug, Clone)]
pub(crate) struct RowPredictions {
    /// Index into the training rows of each entry of `p`.
    pub rows: Vec<usize>,
    /// P per model, aligned with the success model's `models`.
    pub p: Vec<Vec<f64>>,
    pub out_of_fold: bool,
}

impl RowPredictions {
    /// The fitted model's own P on the rows with outcomes (in-sample).
    pub(crate) fn in_sample(model: &SuccessModel, rows: &[TrainingRow]) -> RowPredictions {
        let names: Vec<&str> = model.models.iter().map(String::as_str).collect();
        let idx: Vec<usize> = (0..rows.len())
            .filter(|&i| !rows[i].outcomes.is_empty())
            .collect();
        let p = idx
            .iter()
            .map(|&i| predict_row(model, &names, &rows[i]))
            .collect();
        RowPredictions {
            rows: idx,
            p,
            out_of_fold: false,
        }
    }
}

/// [`crate::fit`] with a selection: see the module docs.
pub fn fit_selected(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    cfg: &TrainConfig,
    sel: &Selection,
    encoder_id: &str,
) -> Result<SuccessModel, RouterError> {
    fit_selected_with_predictions(models, tasks, rows, None, cfg, sel, encoder_id).map(|(m, _)| m)
}

/// [`fit_selected`], with the winner's out-of-fold P on every training row
/// with outcomes (in-sample when there were too few rows to cross-validate).
/// `costs` (`costs[i]` those of `rows[i]`) let the criterion measure each
/// candidate's routing value; without them it is cross-entropy.
pub(crate) fn fit_selected_with_predictions(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    costs: Option<&[RowCosts]>,
    cfg: &TrainConfig,
    sel: &Selection,
    encoder_id: &str,
) -> Result<(SuccessModel, RowPredictions), RouterError> {
    let n = models.len();
    let with_outcomes: Vec<usize> = (0..rows.len())
        .filter(|&i| !rows[i].outcomes.is_empty())
        .collect();
    let grid: Vec<f32> = if sel.l2_grid.is_empty() {
        vec![cfg.l2_prompt]
    } else {
        sel.l2_grid.clone()
    };
    if sel.folds < 2 || with_outcomes.len() < sel.min_rows.max(2 * sel.folds) {
        // Too few rows to measure anything: the per-model averages (the
        // fit's own mean logit per model, so its ability prior still
        // shrinks a model with few outcomes).
        let c = TrainConfig {
            prompt_input: PromptInput::Embedding,
            ..cfg.clone()
        };
        let mut model = fit_fixed(models, tasks, rows, &c, encoder_id)?;
        let pairs = in_sample_pairs(&model, rows);
        let calib = fit_calibration(&pairs, n, false);
        model.calibration = calib.platt();
        model.selection = Some(SelectionRecord {
            folds: 0,
            choice: "averages".into(),
            l2_prompt: cfg.l2_prompt,
            prompt_weight: 0.0,
            knn_weight: 0.0,
            knn_dim: 0,
            criterion: Criterion::CrossEntropy,
            routing_rows: 0,
            prompt_input: PromptInput::Embedding,
            cv_loss: Vec::new(),
        });
        let predictions = RowPredictions::in_sample(&model, rows);
        return Ok((model, predictions));
    }

    // Seeded fold of each row with outcomes.
    let mut order = with_outcomes.clone();
    let mut rng = SplitMix(cfg.seed ^ 0xF01D_5EED);
    for i in (1..order.len()).rev() {
        let j = ((rng.next_f32() as f64 * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    let mut fold_of = vec![usize::MAX; rows.len()];
    for (pos, &r) in order.iter().enumerate() {
        fold_of[r] = pos % sel.folds;
    }

    let weights: Vec<f32> = if sel.knn_weights.is_empty() {
        vec![0.0]
    } else {
        sel.knn_weights.clone()
    };
    let stacking = weights.iter().any(|&w| w > 0.0);
    let input = rows.first().map_or(0, |r| r.embedding.len());
    let dims = if stacking {
        knn_spaces(&sel.knn_dims, input)
    } else {
        vec![input]
    };
    // Per space: every row's out-of-fold neighbour sums.
    let knn_by_dim = if stacking {
        out_of_fold_knn(rows, &fold_of, sel, n, cfg.seed, &dims)
    } else {
        vec![vec![Vec::new(); rows.len()]]
    };

    let routing = costs.and_then(|c| RoutingRows::new(rows, c, n));
    // The candidates are compared on the routed models' outcomes only
    // (every model's when none are named): the others' outcomes fit the
    // shared prompt term but are not what the policy will choose among.
    let mut scored_model = vec![false; n];
    for m in crate::train::routed_indices(&models, &cfg.routed_models)? {
        scored_model[m] = true;
    }
    let routed_pairs = |pairs: &[Pair]| -> Vec<Pair> {
        pairs
            .iter()
            .copied()
            .filter(|p| scored_model[p.0])
            .collect()
    };
    let mut cands: Vec<Candidate> = Vec::new();
    // Per (input, ridge): each row's out-of-fold P_irt for every model.
    let inputs = prompt_inputs(sel, cfg, rows)?;
    let fitted: Vec<(PromptInput, f32)> = inputs
        .iter()
        .flat_map(|&p| grid.iter().map(move |&l2| (p, l2)))
        .collect();
    let mut full_p = Vec::with_capacity(fitted.len());
    for (gi, &(prompt_input, l2)) in fitted.iter().enumerate() {
        let c = TrainConfig {
            l2_prompt: l2,
            selection: None,
            prompt_input,
            ..cfg.clone()
        };
        let fits = out_of_fold_fits(&models, &tasks, rows, &fold_of, sel.folds, &c, encoder_id)?;
        for (di, &d) in dims.iter().enumerate() {
            let raw = out_of_fold_pairs(rows, &fits, &knn_by_dim[di], sel.knn_prior as f64);
            if cands.is_empty() {
                // Per-model averages, measured on the first ridge's centres.
                let pairs = stacked(&raw, 0.0);
                let calib = fit_calibration(&pairs, n, false);
                let scored = routed_pairs(&pairs);
                let loss = calib.loss("averages".into(), &scored, false, 0.0);
                cands.push(Candidate {
                    per_outcome: per_outcome(&calib, &scored),
                    loss,
                    choice: "averages".into(),
                    l2: cfg.l2_prompt,
                    knn_weight: 0.0,
                    calib,
                    fit_index: gi,
                    space_index: di,
                });
            }
            // w = 0 does not depend on the space: tried in the first only.
            for &w in weights.iter().filter(|&&w| w > 0.0 || di == 0) {
                let pairs = stacked(&raw, w as f64);
                let calib = fit_calibration(&pairs, n, true);
                // "prompt on heads l2=…" where the prompt term reads the
                // heads' outputs; the plain names as before.
                let prompt = match prompt_input.uses_heads() {
                    true => format!("prompt on {}", prompt_input.name()),
                    false => "prompt".to_string(),
                };
                let name = match w > 0.0 {
                    true if d < input => format!("{prompt} l2={l2} knn={w} d={d}"),
                    true => format!("{prompt} l2={l2} knn={w}"),
                    false => format!("{prompt} l2={l2}"),
                };
                let extra = if w > 0.0 { 1.0 } else { 0.0 };
                let scored = routed_pairs(&pairs);
                let loss = calib.loss(name, &scored, true, extra);
                cands.push(Candidate {
                    per_outcome: per_outcome(&calib, &scored),
                    loss,
                    choice: "prompt".into(),
                    l2,
                    knn_weight: w,
                    calib,
                    fit_index: gi,
                    space_index: di,
                });
            }
        }
        full_p.push(fits);
    }
    if let Some(routing) = &routing {
        for cand in &mut cands {
            let p = winner_predictions(
                &full_p[cand.fit_index],
                &knn_by_dim[cand.space_index],
                cand.knn_weight as f64,
                sel.knn_prior as f64,
                &cand.calib,
            );
            let mut at = vec![None; rows.len()];
            for (k, &i) in p.rows.iter().enumerate() {
                at[i] = Some(k);
            }
            let value = routing.value(|i| at[i].map(|k| p.p[k].as_slice()));
            cand.loss.routing_value = Some(value as f32);
        }
    }
    let scored: Vec<Scored> = cands
        .iter()
        .map(|c| Scored {
            penalised: c.loss.penalised as f64,
            per_outcome: &c.per_outcome,
            routing_value: c.loss.routing_value.map_or(f64::NAN, f64::from),
        })
        .collect();
    let criterion = if routing.is_some() {
        sel.criterion
    } else {
        Criterion::CrossEntropy
    };
    let won = pick(&scored, criterion);
    let losses: Vec<CandidateLoss> = cands.iter().map(|c| c.loss.clone()).collect();
    let Candidate {
        choice,
        l2,
        knn_weight: w,
        calib,
        fit_index: gi,
        space_index: di,
        ..
    } = cands.swap_remove(won);
    // The averages ignore the prompt: fitted on the embedding as before.
    let prompt_input = match choice.as_str() {
        "averages" => PromptInput::Embedding,
        _ => fitted[gi].0,
    };
    let knn = &knn_by_dim[di];
    let predictions = winner_predictions(&full_p[gi], knn, w as f64, sel.knn_prior as f64, &calib);
    let c = TrainConfig {
        l2_prompt: l2,
        selection: None,
        prompt_input,
        ..cfg.clone()
    };
    let mut model = fit_fixed(models, tasks, rows, &c, encoder_id)?;
    model.calibration = calib.platt();
    let knn_dim = if w > 0.0 {
        let spaces = [dims[di]];
        let mut nb =
            Neighbours::build_in_spaces(rows, n, sel.knn_k, sel.knn_prior, cfg.seed, &spaces)
                .remove(0);
        nb.weight = w;
        let d = nb.space_dim();
        model.neighbours = Some(nb);
        d
    } else {
        0
    };
    model.selection = Some(SelectionRecord {
        folds: sel.folds,
        choice,
        l2_prompt: l2,
        prompt_weight: calib.alpha as f32,
        knn_weight: w,
        knn_dim,
        criterion,
        routing_rows: routing.as_ref().map_or(0, RoutingRows::len),
        prompt_input,
        cv_loss: losses,
    });
    Ok((model, predictions))
}

/// One candidate of the selection with what it was scored on.
struct Candidate {
    loss: CandidateLoss,
    /// `averages` or `prompt`.
    choice: String,
    l2: f32,
    knn_weight: f32,
    calib: Calib,
    /// Index of its (input, ridge) fit.
    fit_index: usize,
    /// Index of its kNN space in the spaces tried.
    space_index: usize,
    /// Cross-entropy of each out-of-fold outcome after its calibration.
    per_outcome: Vec<f64>,
}

/// The cross-entropy of each pair after `calib`.
fn per_outcome(calib: &Calib, pairs: &[Pair]) -> Vec<f64> {
    pairs
        .iter()
        .map(|&(m, l, y)| cross_entropy(sigmoid(calib.logit(m, l)), y))
        .collect()
}

/// The winner's P on every row of `full` (row, out-of-fold P_irt per
/// model): stacked with the row's kNN estimate at weight `w` and
/// calibrated, as the final model computes P.
fn winner_predictions(
    full: &[RowP],
    knn: &[Vec<[f32; 2]>],
    w: f64,
    prior: f64,
    calib: &Calib,
) -> RowPredictions {
    let p = full
        .iter()
        .map(|(i, p_irt)| {
            p_irt
                .iter()
                .enumerate()
                .map(|(m, &p)| {
                    let q = match knn[*i].get(m) {
                        Some(&[s, c]) if w > 0.0 => {
                            let k = (s as f64 + prior * p) / (c as f64 + prior).max(1e-12);
                            (1.0 - w) * p + w * k
                        }
                        _ => p,
                    };
                    sigmoid(calib.logit(m, logit(q)))
                })
                .collect()
        })
        .collect();
    RowPredictions {
        rows: full.iter().map(|(i, _)| *i).collect(),
        p,
        out_of_fold: true,
    }
}

/// The logit of (1 − w) · P_irt + w · P_knn for every raw pair.
fn stacked(raw: &[Raw], w: f64) -> Vec<Pair> {
    raw.iter()
        .map(|&(m, p, k, y)| {
            let q = if w > 0.0 { (1.0 - w) * p + w * k } else { p };
            (m, logit(q), y)
        })
        .collect()
}

/// The distinct spaces of a `knn_dims` grid over `input`-d embeddings, as
/// dimensions (`input`: the full embedding), in the grid's order.
fn knn_spaces(grid: &[usize], input: usize) -> Vec<usize> {
    let mut dims = Vec::new();
    for &d in grid {
        let d = if d == 0 || d >= input { input } else { d };
        if !dims.contains(&d) {
            dims.push(d);
        }
    }
    if dims.is_empty() {
        dims.push(input);
    }
    dims
}

/// Per space in `dims`: the neighbour (sum, count) of every model on every
/// row, from the other folds' prompts (empty for rows without outcomes).
/// A reduced space is fitted on each fold's training part alone.
fn out_of_fold_knn(
    rows: &[TrainingRow],
    fold_of: &[usize],
    sel: &Selection,
    n: usize,
    seed: u64,
    dims: &[usize],
) -> Vec<Vec<Vec<[f32; 2]>>> {
    let mut out = vec![vec![Vec::new(); rows.len()]; dims.len()];
    for f in 0..sel.folds {
        let train: Vec<TrainingRow> = (0..rows.len())
            .filter(|&i| fold_of[i] != f)
            .map(|i| rows[i].clone())
            .collect();
        let spaces = Neighbours::build_in_spaces(&train, n, sel.knn_k, sel.knn_prior, seed, dims);
        for (o, nb) in out.iter_mut().zip(&spaces) {
            for i in (0..rows.len()).filter(|&i| fold_of[i] == f) {
                o[i] = nb.neighbour_sums(&rows[i].embedding);
            }
        }
    }
    out
}

/// Fits on all folds but one and predicts that one, for every fold: each
/// held-out row's P_irt for every model, fold by fold.
fn out_of_fold_fits(
    models: &[String],
    tasks: &[String],
    rows: &[TrainingRow],
    fold_of: &[usize],
    folds: usize,
    cfg: &TrainConfig,
    encoder_id: &str,
) -> Result<Vec<RowP>, RouterError> {
    let names: Vec<&str> = models.iter().map(String::as_str).collect();
    let mut full = Vec::new();
    for f in 0..folds {
        let train: Vec<TrainingRow> = (0..rows.len())
            .filter(|&i| fold_of[i] != f)
            .map(|i| rows[i].clone())
            .collect();
        let m = fit_fixed(models.to_vec(), tasks.to_vec(), &train, cfg, encoder_id)?;
        for i in (0..rows.len()).filter(|&i| fold_of[i] == f) {
            let r = &rows[i];
            full.push((i, predict_row(&m, &names, r)));
        }
    }
    Ok(full)
}

/// The out-of-fold fits' `(model, P_irt, P_knn, score)` for every observed
/// pair, P_knn from `knn`'s neighbour sums shrunk toward P_irt with `prior`
/// pseudo-outcomes ([`Neighbours::estimate`]).
fn out_of_fold_pairs(
    rows: &[TrainingRow],
    fits: &[RowP],
    knn: &[Vec<[f32; 2]>],
    prior: f64,
) -> Vec<Raw> {
    let mut pairs = Vec::new();
    for (i, p) in fits {
        for &(mi, y) in &rows[*i].outcomes {
            let k = knn[*i].get(mi).map_or(p[mi], |&[s, c]| {
                (s as f64 + prior * p[mi]) / (c as f64 + prior).max(1e-12)
            });
            pairs.push((mi, p[mi], k, y as f64));
        }
    }
    pairs
}

/// The fitted model's own (in-sample) logits on its training rows.
fn in_sample_pairs(model: &SuccessModel, rows: &[TrainingRow]) -> Vec<Pair> {
    let names: Vec<&str> = model.models.iter().map(String::as_str).collect();
    let mut pairs = Vec::new();
    for r in rows {
        let p = predict_row(model, &names, r);
        for &(mi, y) in &r.outcomes {
            pairs.push((mi, logit(p[mi]), y as f64));
        }
    }
    pairs
}

/// P of every model on a training row, with its head outputs when the
/// model reads them (the fit checked their count: a mismatch is a bug).
pub(crate) fn predict_row(model: &SuccessModel, names: &[&str], r: &TrainingRow) -> Vec<f64> {
    model
        .try_predict(names, &r.embedding, &r.task_scores, &r.head_outputs)
        .expect("training rows carry the head outputs the fit read")
}

/// The inputs the selection tries: `sel.inputs` (the embedding if empty),
/// those with head features only when `cfg` names some, every row then
/// carrying that many outputs.
fn prompt_inputs(
    sel: &Selection,
    cfg: &TrainConfig,
    rows: &[TrainingRow],
) -> Result<Vec<PromptInput>, RouterError> {
    let mut inputs: Vec<PromptInput> = Vec::new();
    for &p in &sel.inputs {
        if !inputs.contains(&p) && (!p.uses_heads() || !cfg.head_features.is_empty()) {
            inputs.push(p);
        }
    }
    if inputs.is_empty() {
        inputs.push(PromptInput::Embedding);
    }
    if inputs.iter().any(|p| p.uses_heads()) {
        let f = cfg.head_features.len();
        if let Some(i) = rows.iter().position(|r| r.head_outputs.len() != f) {
            return Err(RouterError::Training(format!(
                "row {i}: {} head outputs, but the training config names {f} ({})",
                rows[i].head_outputs.len(),
                cfg.head_features.join(", ")
            )));
        }
    }
    Ok(inputs)
}

/// Newton's method on the penalised cross-entropy of the calibration.
#[allow(clippy::needless_range_loop)] // matrix indices read clearer
/// `slopes = false` fixes α = γ = 0 (the per-model averages).
fn fit_calibration(pairs: &[Pair], n: usize, slopes: bool) -> Calib {
    let mut centre = vec![0f64; n];
    let mut count = vec![0usize; n];
    for &(m, l, _) in pairs {
        centre[m] += l;
        count[m] += 1;
    }
    for m in 0..n {
        if count[m] > 0 {
            centre[m] /= count[m] as f64;
        }
    }
    let mut c = Calib {
        alpha: 0.0,
        gamma: vec![0.0; n],
        delta: vec![0.0; n],
        centre,
    };
    // Parameters: [α, δ_0..δ_n-1, γ_0..γ_n-1] (only the δ without slopes).
    let dim = if slopes { 1 + 2 * n } else { n };
    let di = |m: usize| if slopes { 1 + m } else { m };
    let gi = |m: usize| 1 + n + m;
    for _ in 0..50 {
        let mut g = vec![0f64; dim];
        let mut h = vec![vec![0f64; dim]; dim];
        for &(m, l, y) in pairs {
            let z = l - c.centre[m];
            let q = sigmoid(c.logit(m, l));
            let (r, w) = (q - y, (q * (1.0 - q)).max(1e-12));
            g[di(m)] += r;
            h[di(m)][di(m)] += w;
            if slopes {
                g[0] += r * z;
                g[gi(m)] += r * z;
                h[0][0] += w * z * z;
                h[0][di(m)] += w * z;
                h[0][gi(m)] += w * z * z;
                h[di(m)][gi(m)] += w * z;
                h[gi(m)][gi(m)] += w * z * z;
            }
        }
        for m in 0..n {
            g[di(m)] += PRIOR_DELTA * c.delta[m];
            h[di(m)][di(m)] += PRIOR_DELTA;
            if slopes {
                g[gi(m)] += PRIOR_GAMMA * c.gamma[m];
                h[gi(m)][gi(m)] += PRIOR_GAMMA;
            }
        }
        if slopes {
            g[0] += PRIOR_ALPHA * c.alpha;
            h[0][0] += PRIOR_ALPHA;
            for i in 0..dim {
                for j in 0..i {
                    h[i][j] = h[j][i];
                }
            }
        }
        let Some(step) = solve(h, g) else { break };
        // Backtracking: halve the Newton step until the objective falls
        // (near-separable data make the full step overshoot).
        let before = objective(&c, pairs, slopes);
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..40 {
            let mut trial = c.clone();
            if slopes {
                trial.alpha = (trial.alpha - t * step[0]).max(0.0);
            }
            for m in 0..n {
                trial.delta[m] -= t * step[di(m)];
                if slopes {
                    // Projected: every model's weight α + γ_m stays >= 0.
                    trial.gamma[m] = (trial.gamma[m] - t * step[gi(m)]).max(-trial.alpha);
                }
            }
            if objective(&trial, pairs, slopes) <= before {
                c = trial;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        if !moved || t * step.iter().map(|s| s.abs()).sum::<f64>() < 1e-9 {
            break;
        }
    }
    c
}

/// The penalised cross-entropy [`fit_calibration`] minimises.
fn objective(c: &Calib, pairs: &[Pair], slopes: bool) -> f64 {
    let data: f64 = pairs
        .iter()
        .map(|&(m, l, y)| cross_entropy(sigmoid(c.logit(m, l)), y))
        .sum();
    let delta: f64 = c.delta.iter().map(|d| d * d).sum::<f64>() * PRIOR_DELTA;
    let slope = if slopes {
        PRIOR_ALPHA * c.alpha * c.alpha + PRIOR_GAMMA * c.gamma.iter().map(|g| g * g).sum::<f64>()
    } else {
        0.0
    };
    data + 0.5 * (delta + slope)
}

/// Solves `a x = b` (a symmetric positive definite) by Gaussian elimination
/// with partial pivoting; None if singular.
#[allow(clippy::needless_range_loop)] // matrix indices read clearer
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            if f != 0.0 {
                for k in col..n {
                    a[row][k] -= f * a[col][k];
                }
                b[row] -= f * b[col];
            }
        }
    }
    let mut x = vec![0f64; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| a[i][k] * x[k]).sum();
        x[i] = (b[i] - s) / a[i][i];
    }
    Some(x)
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn cross_entropy(q: f64, y: f64) -> f64 {
    let q = q.clamp(1e-9, 1.0 - 1e-9);
    -(y * q.ln() + (1.0 - y) * (1.0 - q).ln())
}
