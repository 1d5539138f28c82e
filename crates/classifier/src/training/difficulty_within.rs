//! How well the difficulty head orders a source's prompts once part of
//! that source's own outcomes are in its training data: K folds inside
//! each outcome source (`train heads --difficulty-cv-only
//! --difficulty-cv-within-source K`).
//!
//! Why beside leave-one-source-out: the bar is measured on
//! sources the head never saw, and it is not met (docs/EVALUATION.md,
//! "Difficulty"). This answers the two questions that decide what to do
//! next: is the within-source order in the prompt text at all (if a head
//! that has seen four fifths of a benchmark cannot order the last fifth,
//! no unseen-source recipe will), and what an operator gets once their
//! own traffic's outcomes are logged and `train heads --outcomes` reads
//! them.
//!
//! The protocol is the strict one of [`super::difficulty_cv`], applied to
//! a fold of one source instead of the whole source: the IRT model is
//! refitted without the fold's rows, every training prompt whose
//! `item_key` the fold also holds is dropped, and the head trains on every
//! other sampled row (all other sources and the source's other folds).
//! Each source's Spearman is over its out-of-fold predictions pooled
//! across its K folds, against its own failure rate.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::difficulty_target::{item_key, JointDifficulty};
use crate::error::{ClassifierError, Result};
use crate::heads::sigmoid;
use crate::irt::IrtConfig;
use crate::train::TrainConfig;

use super::difficulty_cv::{
    fit_difficulty, held_out_rows, DifficultyCv, DifficultyCvOptions, HeldOutSource, OutcomeData,
};
use super::metrics::spearman;
use super::progress::Progress;

/// Fewest sampled prompts a source needs for `folds` folds of at least
/// ten (a Spearman over fewer says little).
fn enough(n: usize, folds: usize) -> bool {
    n >= 10 * folds
}

/// K-fold cross-validation inside each outcome source (the head alone:
/// `opts.knn_weights` must be `[0]`). `x` holds the head input of each
/// sampled row, in `data.sample` order; `cfg.seed` also draws the folds.
pub fn difficulty_within_source_cv(
    data: &OutcomeData,
    x: &[Vec<f32>],
    opts: &DifficultyCvOptions,
    folds: usize,
    irt: &IrtConfig,
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<DifficultyCv> {
    if folds < 2 {
        return Err(ClassifierError::InvalidOption(format!(
            "--difficulty-cv-within-source needs at least 2 folds, got {folds}"
        )));
    }
    if opts.uses_knn() {
        return Err(ClassifierError::InvalidOption(
            "--difficulty-cv-within-source measures the head alone; \
             use --difficulty-knn-weight 0"
                .into(),
        ));
    }
    let rows = &data.rows;
    let keys: Vec<String> = rows.iter().map(|r| item_key(&r.prompt)).collect();
    let full = JointDifficulty::fit_rows(rows, irt)?;
    // Sample positions of each source, shuffled once, seeded by the seed
    // and the source's name: adding or removing another source leaves a
    // source's folds as they were.
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (j, &i) in data.sample.iter().enumerate() {
        by_source
            .entry(rows[i].source.as_str())
            .or_default()
            .push(j);
    }
    for (s, at) in by_source.iter_mut() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ fnv1a(s));
        at.shuffle(&mut rng);
    }
    let sources: BTreeSet<&str> = by_source
        .iter()
        .filter(|(s, at)| {
            let ok = enough(at.len(), folds);
            if !ok {
                progress.note(&format!(
                    "difficulty within {s}: skipped, {} sampled prompts for {folds} folds (at least {} needed)",
                    at.len(),
                    10 * folds
                ));
            }
            ok
        })
        .map(|(s, _)| *s)
        .collect();
    if sources.is_empty() {
        return Err(ClassifierError::InvalidOption(format!(
            "--difficulty-cv-within-source {folds}: no outcome source has the {} sampled prompts it needs (raise --outcomes-per-file or lower K)",
            10 * folds
        )));
    }
    let total = sources.len() * folds;
    progress.begin("within-source folds (difficulty)", total);
    let mut per_source = BTreeMap::new();
    let (mut pooled_pred, mut pooled_truth) = (Vec::new(), Vec::new());
    let mut done = 0;
    for s in sources {
        let at = &by_source[s];
        let (mut pred, mut truth, mut dropped) = (Vec::new(), Vec::new(), 0);
        for f in 0..folds {
            let fold: HashSet<usize> = at
                .iter()
                .enumerate()
                .filter(|(p, _)| p % folds == f)
                .map(|(_, &j)| data.sample[j])
                .collect();
            let split = held_out_rows(data, &keys, &|i| fold.contains(&i), irt, opts.kind)?;
            let groups = data.sample_groups(
                &split
                    .train_at
                    .iter()
                    .map(|&j| data.sample[j])
                    .collect::<Vec<_>>(),
            );
            let mlp = fit_difficulty(
                &split
                    .train_at
                    .iter()
                    .map(|&j| x[j].clone())
                    .collect::<Vec<_>>(),
                &split.targets,
                &groups,
                opts.pair_weight,
                cfg,
            )?;
            for &j in &split.test_at {
                pred.push(sigmoid(mlp.forward(&x[j])[0]) as f64);
                truth.push(rows[data.sample[j]].mean_failure());
                pooled_truth.push(full.logit(data.sample[j]));
            }
            dropped += split.dropped;
            done += 1;
            progress.update(done, total);
        }
        pooled_pred.extend(&pred);
        let rho = spearman(&pred, &truth);
        progress.note(&format!(
            "difficulty within {s}: n {}, dropped {dropped}, Spearman {rho:.3}",
            pred.len()
        ));
        per_source.insert(
            s.to_string(),
            HeldOutSource {
                n: pred.len(),
                dropped_shared: dropped,
                spearman: rho,
                knn: None,
            },
        );
    }
    progress.end();
    let values: Vec<f64> = per_source.values().map(|v| v.spearman).collect();
    let target = if opts.pair_weight > 0.0 {
        format!("{}, pairwise weight {}", opts.kind, opts.pair_weight)
    } else {
        opts.kind.to_string()
    };
    Ok(DifficultyCv {
        target,
        within_source_folds: Some(folds),
        mean_spearman: values.iter().sum::<f64>() / values.len().max(1) as f64,
        min_spearman: values.iter().copied().fold(f64::INFINITY, f64::min),
        pooled_spearman_vs_joint_irt: spearman(&pooled_pred, &pooled_truth),
        joint_fit: full.summary(rows),
        per_source,
    })
}

/// FNV-1a of `s`: a fixed, platform-independent hash (std's is seeded
/// per process).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
