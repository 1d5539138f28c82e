//! The difficulty head's optional kNN blend, (1 − w) · head + w · the mean
//! target of the k nearest training prompts: k and w chosen by an inner CV
//! over the training sources, and the bank the shipped heads carry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::difficulty_knn::{self, KnnBlend, NeighbourBank};
use crate::difficulty_target::item_key;
use crate::error::{ClassifierError, Result};
use crate::heads::{sigmoid, Mlp};
use crate::train::TrainConfig;

use super::difficulty_cv::{fit_difficulty, DifficultyCvOptions, OutcomeData};
use super::metrics::spearman;
use super::progress::Progress;

/// The most neighbours kept per prompt for the kNN part: enough that the
/// largest k survives holding out a source and an inner fold.
const NEIGHBOURS_KEPT: usize = 400;

/// Each sampled row's nearest rows of other groups (cosine over the first
/// `dim` values of its head input), at most [`NEIGHBOURS_KEPT`].
pub(crate) fn neighbours_of(
    x: &[Vec<f32>],
    groups: &[usize],
    dim: usize,
    progress: &dyn Progress,
) -> Vec<Vec<(u32, f32)>> {
    let unit: Vec<Vec<f32>> = x.iter().map(|v| difficulty_knn::unit(&v[..dim])).collect();
    progress.note(&format!(
        "difficulty kNN: neighbours of {} prompts",
        unit.len()
    ));
    difficulty_knn::cross_group_neighbours(&unit, groups, NEIGHBOURS_KEPT)
}

/// The shipped kNN part: k and the weight chosen by the same inner CV,
/// over every sampled row, and a bank of them all. `None` when the blend
/// is off or the inner CV gives the kNN no weight.
pub fn final_knn(
    data: &OutcomeData,
    x: &[Vec<f32>],
    targets: &[f32],
    opts: &DifficultyCvOptions,
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<Option<NeighbourBank>> {
    if !opts.uses_knn() {
        return Ok(None);
    }
    let keys: Vec<String> = data.rows.iter().map(|r| item_key(&r.prompt)).collect();
    let groups = data.sample_groups(&data.sample);
    let neighbours = neighbours_of(x, &groups, opts.embedding_dim, progress);
    let all: Vec<usize> = (0..data.sample.len()).collect();
    let ctx = KnnContext {
        data,
        keys: &keys,
        neighbours: &neighbours,
        train_at: &all,
        targets,
    };
    let fit = |at: &[usize]| -> Result<Mlp> {
        fit_difficulty(
            &at.iter().map(|&j| x[j].clone()).collect::<Vec<_>>(),
            &at.iter().map(|&j| targets[j]).collect::<Vec<_>>(),
            &at.iter().map(|&j| groups[j]).collect::<Vec<_>>(),
            opts.pair_weight,
            cfg,
        )
    };
    let (k, w) = inner_choice(&ctx, x, &groups, opts, &fit)?;
    progress.note(&format!(
        "difficulty kNN: inner CV over every source chose k {k}, weight {w}"
    ));
    if w == 0.0 {
        return Ok(None);
    }
    let dim = opts.embedding_dim;
    let unit: Vec<f32> = x
        .iter()
        .flat_map(|v| difficulty_knn::unit(&v[..dim]))
        .collect();
    let blend = KnnBlend {
        k,
        weight: w as f32,
    };
    NeighbourBank::new(dim, unit, targets.to_vec(), blend)
        .map(Some)
        .map_err(ClassifierError::InvalidOption)
}

/// One outer fold's training rows, seen by the kNN part.
pub(crate) struct KnnContext<'a> {
    pub(crate) data: &'a OutcomeData,
    pub(crate) keys: &'a [String],
    pub(crate) neighbours: &'a [Vec<(u32, f32)>],
    /// Sample positions of the fold's training rows.
    pub(crate) train_at: &'a [usize],
    /// Their targets, in `train_at` order.
    pub(crate) targets: &'a [f32],
}

impl KnnContext<'_> {
    /// kNN predictions (one per k in `ks`) for the sample positions `at`,
    /// from training rows that `admit` accepts and that hold another item.
    pub(crate) fn predict(
        &self,
        at: &[usize],
        ks: &[usize],
        admit: impl Fn(usize) -> bool,
    ) -> Vec<Vec<f32>> {
        let target_of: HashMap<usize, f32> = self
            .train_at
            .iter()
            .zip(self.targets)
            .map(|(&j, &t)| (j, t))
            .collect();
        let fallback = self.targets.iter().sum::<f32>() / self.targets.len().max(1) as f32;
        at.iter()
            .map(|&j| {
                let key = self.keys[self.data.sample[j]].as_str();
                difficulty_knn::prefix_means(
                    &self.neighbours[j],
                    |n| {
                        target_of.contains_key(&n)
                            && admit(n)
                            && (key.is_empty() || self.keys[self.data.sample[n]] != key)
                    },
                    |n| target_of[&n],
                    ks,
                    fallback,
                )
            })
            .collect()
    }
}

/// Picks the kNN's k and the blend weight by CV inside the fold's training
/// rows: their sources split into `opts.inner_folds` groups; for each, the
/// head is refitted on the other groups and the kNN reads only them; the
/// (k, w) with the best mean within-source Spearman wins (ties: the
/// smaller weight, then the smaller k).
pub(crate) fn inner_choice(
    ctx: &KnnContext,
    x: &[Vec<f32>],
    sample_groups: &[usize],
    opts: &DifficultyCvOptions,
    fit: &dyn Fn(&[usize]) -> Result<Mlp>,
) -> Result<(usize, f64)> {
    let (ks, ws) = (&opts.knn_ks, &opts.knn_weights);
    if ks.len() == 1 && ws.len() == 1 {
        return Ok((ks[0], ws[0]));
    }
    let sources: BTreeSet<usize> = ctx.train_at.iter().map(|&j| sample_groups[j]).collect();
    let fold_of: HashMap<usize, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, &g)| (g, i % opts.inner_folds.max(2)))
        .collect();
    let n = ctx.train_at.len();
    let (mut head, mut knn) = (vec![0.0f64; n], vec![Vec::new(); n]);
    let position: HashMap<usize, usize> = ctx
        .train_at
        .iter()
        .enumerate()
        .map(|(p, &j)| (j, p))
        .collect();
    for f in 0..opts.inner_folds.max(2) {
        let (inside, outside): (Vec<usize>, Vec<usize>) = ctx
            .train_at
            .iter()
            .partition(|&&j| fold_of[&sample_groups[j]] != f);
        if inside.is_empty() || outside.is_empty() {
            continue;
        }
        // The kNN alone (w = 1 only) needs no inner heads.
        let mlp = if ws.iter().any(|&w| w < 1.0) {
            Some(fit(&inside)?)
        } else {
            None
        };
        let preds = ctx.predict(&outside, ks, |n| fold_of[&sample_groups[n]] != f);
        for (&j, p) in outside.iter().zip(preds) {
            if let Some(mlp) = &mlp {
                head[position[&j]] = sigmoid(mlp.forward(&x[j])[0]) as f64;
            }
            knn[position[&j]] = p;
        }
    }
    let truth: Vec<f64> = ctx
        .train_at
        .iter()
        .map(|&j| ctx.data.rows[ctx.data.sample[j]].mean_failure())
        .collect();
    let mut best = (f64::NEG_INFINITY, ks[0], ws[0]);
    for &w in ws {
        for (ki, &k) in ks.iter().enumerate() {
            let pred: Vec<f64> = (0..n)
                .map(|p| match knn[p].get(ki) {
                    Some(&m) => (1.0 - w) * head[p] + w * m as f64,
                    None => head[p],
                })
                .collect();
            let score = mean_within_source_spearman(&pred, &truth, ctx.train_at, sample_groups);
            if score > best.0 + 1e-9 {
                best = (score, k, w);
            }
        }
    }
    Ok((best.1, best.2))
}

/// Mean over sources of the Spearman within each source.
fn mean_within_source_spearman(
    pred: &[f64],
    truth: &[f64],
    at: &[usize],
    sample_groups: &[usize],
) -> f64 {
    let mut by: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (p, &j) in at.iter().enumerate() {
        let e = by.entry(sample_groups[j]).or_default();
        e.0.push(pred[p]);
        e.1.push(truth[p]);
    }
    by.values().map(|(a, b)| spearman(a, b)).sum::<f64>() / by.len().max(1) as f64
}
