//! The difficulty head's data and its leave-one-source-out: which outcome
//! rows the head trains on, their targets (a joint IRT fit over every
//! outcome row, [`crate::difficulty_target`]), and the held-out measurement.
//!
//! Leave-one-source-out is strict: each fold refits the IRT model without
//! the held-out source's rows and drops from training every prompt whose
//! [`item_key`] the held-out source also holds (RouteLLM and RouterDC share
//! the GSM8K test set; RouterBench and RouterDC share ARC), so no held-out
//! prompt is trained on under another source's name.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pointsman_records::Record;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::difficulty_target::{
    item_key, DifficultyTarget, JointDifficulty, JointSummary, OutcomeRow,
};
use crate::error::Result;
use crate::heads::{sigmoid, Mlp};
use crate::irt::IrtConfig;
use crate::train::{ensemble, train_ranker, train_regressor, TrainConfig, DIFFICULTY_PAIR_MARGIN};

use super::difficulty_blend::{inner_choice, neighbours_of, KnnContext};
use super::metrics::spearman;
use super::progress::Progress;

/// Every outcome row, and the ones the head trains on.
pub struct OutcomeData {
    /// Every record with at least one outcome (the IRT fit reads them all).
    pub rows: Vec<OutcomeRow>,
    /// Indices into `rows`: at most `per_file` per file, a seeded sample
    /// (the head needs an embedding of each; the IRT fit does not).
    pub sample: Vec<usize>,
}

/// The outcome rows of `records` (those with at least one outcome) and a
/// seeded sample of at most `per_file` of them per file.
pub fn outcome_data(records: &[(String, Record)], per_file: usize, seed: u64) -> OutcomeData {
    let mut rows = Vec::new();
    let mut by_file: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (file, r) in records {
        if r.outcomes.is_empty() {
            continue;
        }
        by_file.entry(file.as_str()).or_default().push(rows.len());
        rows.push(OutcomeRow {
            source: r.source.clone().unwrap_or_else(|| file.clone()),
            prompt: r.prompt.clone(),
            scores: r
                .outcomes
                .iter()
                .map(|(m, o)| (m.clone(), o.score))
                .collect(),
        });
    }
    // The same seeded shuffle per file as before the IRT target, so the
    // sample (and the embedding cache) is unchanged.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sample = Vec::new();
    for (_, mut idx) in by_file {
        idx.shuffle(&mut rng);
        idx.truncate(per_file);
        sample.extend(idx);
    }
    OutcomeData { rows, sample }
}

impl OutcomeData {
    /// A group number per sampled row (its source), for the pairwise loss.
    pub fn sample_groups(&self, sample: &[usize]) -> Vec<usize> {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        sample
            .iter()
            .map(|&i| {
                let n = ids.len();
                *ids.entry(self.rows[i].source.as_str()).or_insert(n)
            })
            .collect()
    }
}

/// The difficulty head: plain soft-target regression, or with a
/// within-source pairwise ranking term when `pair_weight` > 0; the mean
/// logit of `cfg.members` such heads when more than one.
pub fn fit_difficulty(
    x: &[Vec<f32>],
    targets: &[f32],
    groups: &[usize],
    pair_weight: f64,
    cfg: &TrainConfig,
) -> Result<Mlp> {
    ensemble(cfg, |cfg| {
        if pair_weight > 0.0 {
            train_ranker(x, targets, groups, pair_weight, DIFFICULTY_PAIR_MARGIN, cfg)
        } else {
            train_regressor(x, targets, &vec![1.0; targets.len()], cfg)
        }
    })
}

/// One held-out source's result.
#[derive(Serialize)]
pub struct HeldOutSource {
    /// Held-out prompts scored.
    pub n: usize,
    /// Training prompts dropped because the held-out source holds them too.
    pub dropped_shared: usize,
    /// Against the held-out source's own failure rate (1 − mean score of its models).
    pub spearman: f64,
    /// The kNN part, when blended in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn: Option<KnnPart>,
}

/// A fold's kNN part: what inner CV picked, and each part alone.
#[derive(Serialize)]
pub struct KnnPart {
    pub k: usize,
    pub weight: f64,
    pub head_spearman: f64,
    pub knn_spearman: f64,
}

/// The difficulty head's leave-one-source-out (the metadata's
/// `difficulty_leave_one_source_out`).
#[derive(Serialize)]
pub struct DifficultyCv {
    pub target: String,
    /// `Some(K)`: K folds inside each source
    /// ([`super::difficulty_within`]), not leave-one-source-out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_source_folds: Option<usize>,
    pub per_source: BTreeMap<String, HeldOutSource>,
    pub mean_spearman: f64,
    pub min_spearman: f64,
    /// All held-out predictions pooled, against the joint-IRT difficulty
    /// fitted on every row: ordering across sources as well as within.
    pub pooled_spearman_vs_joint_irt: f64,
    /// The joint fit over every row (the final head's targets come from it).
    pub joint_fit: JointSummary,
}

/// How the difficulty head is measured and blended with its neighbours.
pub struct DifficultyCvOptions {
    pub kind: DifficultyTarget,
    pub pair_weight: f64,
    /// Length of the encoder embedding at the front of each head input
    /// (the kNN part's cosine is over it).
    pub embedding_dim: usize,
    /// Neighbour counts tried for the kNN part (inner CV picks one).
    pub knn_ks: Vec<usize>,
    /// kNN weights tried in the blend (1 − w) · head + w · kNN (inner CV picks
    /// one); `[0.0]` is the head alone and skips the inner CV.
    pub knn_weights: Vec<f64>,
    /// Folds of training sources in the inner CV that picks k and w.
    pub inner_folds: usize,
}

impl DifficultyCvOptions {
    /// Whether any blend weight is above 0 (else the head alone, no bank).
    pub fn uses_knn(&self) -> bool {
        self.knn_weights.iter().any(|&w| w > 0.0)
    }
}

/// Leave-one-source-out of the difficulty head with target `opts.kind`.
/// `x` holds the head input of each sampled row, in `data.sample` order.
pub fn difficulty_cv(
    data: &OutcomeData,
    x: &[Vec<f32>],
    opts: &DifficultyCvOptions,
    irt: &IrtConfig,
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<DifficultyCv> {
    let kind = opts.kind;
    let rows = &data.rows;
    let keys: Vec<String> = rows.iter().map(|r| item_key(&r.prompt)).collect();
    let full = JointDifficulty::fit_rows(rows, irt)?;
    let sources: BTreeSet<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let sample_groups = data.sample_groups(&data.sample);
    let neighbours = if opts.uses_knn() {
        neighbours_of(x, &sample_groups, opts.embedding_dim, progress)
    } else {
        Vec::new()
    };
    let mut per_source = BTreeMap::new();
    let (mut pooled_pred, mut pooled_truth) = (Vec::new(), Vec::new());
    let total = sources.len();
    progress.begin("leave-one-source-out (difficulty)", total);
    for (done, s) in sources.into_iter().enumerate() {
        let HeldOutSplit {
            train_at,
            test_at,
            dropped,
            targets,
            ..
        } = held_out_split(data, &keys, &|src| src == s, irt, kind)?;
        if test_at.is_empty() || train_at.is_empty() {
            continue;
        }
        let fit = |at: &[usize]| -> Result<Mlp> {
            let groups =
                data.sample_groups(&at.iter().map(|&j| data.sample[j]).collect::<Vec<_>>());
            let index: HashMap<usize, usize> =
                train_at.iter().enumerate().map(|(p, &j)| (j, p)).collect();
            fit_difficulty(
                &at.iter().map(|&j| x[j].clone()).collect::<Vec<_>>(),
                &at.iter().map(|&j| targets[index[&j]]).collect::<Vec<_>>(),
                &groups,
                opts.pair_weight,
                cfg,
            )
        };
        let mlp = fit(&train_at)?;
        let head: Vec<f64> = test_at
            .iter()
            .map(|&j| sigmoid(mlp.forward(&x[j])[0]) as f64)
            .collect();
        let truth: Vec<f64> = test_at
            .iter()
            .map(|&j| rows[data.sample[j]].mean_failure())
            .collect();
        let (pred, knn) = if opts.uses_knn() {
            let ctx = KnnContext {
                data,
                keys: &keys,
                neighbours: &neighbours,
                train_at: &train_at,
                targets: &targets,
            };
            let (k, w) = inner_choice(&ctx, x, &sample_groups, opts, &fit)?;
            let knn = ctx.predict(&test_at, &[k], |_| true);
            let pred: Vec<f64> = head
                .iter()
                .zip(&knn)
                .map(|(h, n)| (1.0 - w) * h + w * n[0] as f64)
                .collect();
            let knn_alone: Vec<f64> = knn.iter().map(|n| n[0] as f64).collect();
            (
                pred,
                Some(KnnPart {
                    k,
                    weight: w,
                    head_spearman: spearman(&head, &truth),
                    knn_spearman: spearman(&knn_alone, &truth),
                }),
            )
        } else {
            (head, None)
        };
        pooled_pred.extend(&pred);
        pooled_truth.extend(test_at.iter().map(|&j| full.logit(data.sample[j])));
        per_source.insert(
            s.to_string(),
            HeldOutSource {
                n: test_at.len(),
                dropped_shared: dropped,
                spearman: spearman(&pred, &truth),
                knn,
            },
        );
        progress.note(&format!(
            "difficulty fold {s}: n {}, dropped {dropped}, Spearman {:.3}{}",
            test_at.len(),
            per_source[s].spearman,
            per_source[s]
                .knn
                .as_ref()
                .map(|k| format!(
                    " (head {:.3}, kNN {:.3}; k {}, w {})",
                    k.head_spearman, k.knn_spearman, k.k, k.weight
                ))
                .unwrap_or_default()
        ));
        progress.update(done + 1, total);
    }
    progress.end();
    let values: Vec<f64> = per_source.values().map(|v| v.spearman).collect();
    let mut target = if opts.pair_weight > 0.0 {
        format!("{kind}, pairwise weight {}", opts.pair_weight)
    } else {
        kind.to_string()
    };
    if opts.uses_knn() {
        target += &format!(
            ", kNN blend (k from {:?}, weight from {:?}, {} inner folds)",
            opts.knn_ks, opts.knn_weights, opts.inner_folds
        );
    }
    Ok(DifficultyCv {
        target,
        within_source_folds: None,
        mean_spearman: values.iter().sum::<f64>() / values.len().max(1) as f64,
        min_spearman: values.iter().copied().fold(f64::INFINITY, f64::min),
        pooled_spearman_vs_joint_irt: spearman(&pooled_pred, &pooled_truth),
        joint_fit: full.summary(rows),
        per_source,
    })
}

/// One strict held-out fold over the sampled outcome rows.
pub struct HeldOutSplit {
    /// Sample positions the difficulty model may train on.
    pub train_at: Vec<usize>,
    /// Sample positions of the held-out sources.
    pub test_at: Vec<usize>,
    /// Sampled training rows dropped because a held-out source holds the same item.
    pub dropped: usize,
    /// The training rows' targets, in `train_at` order, from a joint IRT
    /// fit without the held-out sources' rows.
    pub targets: Vec<f32>,
    /// That fit's ability of each model (canonical name).
    pub abilities: HashMap<String, f64>,
}

/// The strict protocol of one fold: the sources `held` accepts are held
/// out; the joint IRT model is refitted on every other row; every sampled
/// training row whose [`item_key`] a held-out source also holds is
/// dropped, so no held-out prompt is trained on under another source's name.
pub fn held_out_split(
    data: &OutcomeData,
    keys: &[String],
    held: &dyn Fn(&str) -> bool,
    irt: &IrtConfig,
    kind: DifficultyTarget,
) -> Result<HeldOutSplit> {
    held_out_rows(data, keys, &|i| held(&data.rows[i].source), irt, kind)
}

/// The same protocol with the held-out rows named one by one (indices
/// into `data.rows`), so part of a source can be held out
/// ([`super::difficulty_within`]).
pub fn held_out_rows(
    data: &OutcomeData,
    keys: &[String],
    held: &dyn Fn(usize) -> bool,
    irt: &IrtConfig,
    kind: DifficultyTarget,
) -> Result<HeldOutSplit> {
    let rows = &data.rows;
    let held_keys: HashSet<&str> = keys
        .iter()
        .enumerate()
        .filter(|(i, k)| held(*i) && !k.is_empty())
        .map(|(_, k)| k.as_str())
        .collect();
    let kept: Vec<usize> = (0..rows.len()).filter(|&i| !held(i)).collect();
    let position: HashMap<usize, usize> = kept.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let (mut train_at, mut test_at, mut dropped) = (Vec::new(), Vec::new(), 0);
    for (j, &i) in data.sample.iter().enumerate() {
        if held(i) {
            test_at.push(j);
        } else if held_keys.contains(keys[i].as_str()) {
            dropped += 1;
        } else {
            train_at.push(j);
        }
    }
    if test_at.is_empty() || train_at.is_empty() {
        return Ok(HeldOutSplit {
            train_at,
            test_at,
            dropped,
            targets: Vec::new(),
            abilities: HashMap::new(),
        });
    }
    let sub: Vec<OutcomeRow> = kept.iter().map(|&i| rows[i].clone()).collect();
    let joint = JointDifficulty::fit_rows(&sub, irt)?;
    let picked: Vec<usize> = train_at
        .iter()
        .map(|&j| position[&data.sample[j]])
        .collect();
    let targets = joint.targets(&sub, &picked, kind);
    Ok(HeldOutSplit {
        train_at,
        test_at,
        dropped,
        targets,
        abilities: joint.abilities(),
    })
}

impl DifficultyCv {
    /// The report section.
    pub fn markdown(&self) -> String {
        let mut out = match self.within_source_folds {
            None => format!(
                "\n### Difficulty, leave-one-source-out (target `{}`)\n\n\
                 Spearman correlation between predicted difficulty and the held-out source's failure \
                 rate (1 - mean score across its models), per held-out source. Each fold refits the \
                 joint IRT model without the held-out source and drops from training every prompt the \
                 held-out source also holds (`dropped`).\n\n",
                self.target
            ),
            Some(k) => format!(
                "\n### Difficulty, {k} folds within each source (target `{}`)\n\n\
                 Spearman correlation between predicted difficulty and the source's failure rate \
                 (1 - mean score across its models), over each source's out-of-fold predictions. \
                 Each fold holds out a {k}th of one source: the joint IRT model is refitted without \
                 those rows and every training prompt they also hold is dropped (`dropped`, summed \
                 over the folds); the head trains on everything else, the source's other folds \
                 included.\n\n",
                self.target
            ),
        };
        out += "| held-out source | n | dropped | Spearman |\n|---|---|---|---|\n";
        let with_knn = self.per_source.values().any(|r| r.knn.is_some());
        if with_knn {
            out = out.replace(
                "| held-out source | n | dropped | Spearman |\n|---|---|---|---|\n",
                "| held-out source | n | dropped | Spearman | head alone | kNN alone | k | w |\n\
                 |---|---|---|---|---|---|---|---|\n",
            );
        }
        for (s, r) in &self.per_source {
            out += &format!(
                "| {s} | {} | {} | {:.3} |",
                r.n, r.dropped_shared, r.spearman
            );
            if let Some(k) = &r.knn {
                out += &format!(
                    " {:.3} | {:.3} | {} | {} |",
                    k.head_spearman, k.knn_spearman, k.k, k.weight
                );
            }
            out += "\n";
        }
        out += &format!(
            "\nMean over sources: {:.3}; lowest: {:.3}. All held-out predictions pooled, against \
             the joint-IRT difficulty (across sources too): {:.3}.\n",
            self.mean_spearman, self.min_spearman, self.pooled_spearman_vs_joint_irt
        );
        let j = &self.joint_fit;
        out += &format!(
            "\nJoint IRT over every outcome row: {} rows, {} prompts ({} held by more than one \
             source), {} models, {} sweeps.\n",
            j.rows,
            j.items,
            j.items_shared_across_sources,
            j.models.len(),
            j.sweeps
        );
        out
    }
}

#[cfg(test)]
#[path = "difficulty_cv_tests.rs"]
mod tests;
