//! The difficulty half of `pointsman train heads`: which outcome rows the
//! head trains on, their targets (a joint IRT fit over every outcome row,
//! `pointsman_classifier::difficulty_target`), and the head's
//! leave-one-source-out measurement.
//!
//! Leave-one-source-out is strict: each fold refits the IRT model without
//! the held-out source's rows and drops from training every prompt whose
//! [`item_key`] the held-out source also holds (RouteLLM and RouterDC share
//! the GSM8K test set; RouterBench and RouterDC share ARC), so no held-out
//! prompt is trained on under another source's name.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pointsman_classifier::difficulty_target::{
    item_key, DifficultyTarget, JointDifficulty, JointSummary, OutcomeRow,
};
use pointsman_classifier::heads::sigmoid;
use pointsman_classifier::heads::Mlp;
use pointsman_classifier::irt::IrtConfig;
use pointsman_classifier::train::{train_ranker, train_regressor, TrainConfig};
use pointsman_records::Record;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::metrics::spearman;
use crate::train_heads::bar;

/// Every outcome row, and the ones the head trains on.
pub(crate) struct OutcomeData {
    /// Every record with at least one outcome (the IRT fit reads them all).
    pub rows: Vec<OutcomeRow>,
    /// Indices into `rows`: at most `per_file` per file, a seeded sample
    /// (the head needs an embedding of each; the IRT fit does not).
    pub sample: Vec<usize>,
}

pub(crate) fn outcome_data(
    records: &[(String, Record)],
    per_file: usize,
    seed: u64,
) -> OutcomeData {
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
/// within-source pairwise ranking term when `pair_weight` > 0.
pub(crate) fn fit_difficulty(
    x: &[Vec<f32>],
    targets: &[f32],
    groups: &[usize],
    pair_weight: f64,
    cfg: &TrainConfig,
) -> anyhow::Result<Mlp> {
    Ok(if pair_weight > 0.0 {
        train_ranker(x, targets, groups, pair_weight, PAIR_MARGIN, cfg)?
    } else {
        train_regressor(x, targets, &vec![1.0; targets.len()], cfg)?
    })
}

/// Pairs whose targets differ by less than this are ties to the pairwise loss.
const PAIR_MARGIN: f32 = 0.05;

#[derive(Serialize)]
pub(crate) struct HeldOutSource {
    /// Held-out prompts scored.
    pub n: usize,
    /// Training prompts dropped because the held-out source holds them too.
    pub dropped_shared: usize,
    /// Against the held-out source's own failure rate (1 − mean score of its models).
    pub spearman: f64,
}

#[derive(Serialize)]
pub(crate) struct DifficultyCv {
    pub target: String,
    pub per_source: BTreeMap<String, HeldOutSource>,
    pub mean_spearman: f64,
    pub min_spearman: f64,
    /// All held-out predictions pooled, against the joint-IRT difficulty
    /// fitted on every row: ordering across sources as well as within.
    pub pooled_spearman_vs_joint_irt: f64,
    /// The joint fit over every row (the final head's targets come from it).
    pub joint_fit: JointSummary,
}

/// Leave-one-source-out of the difficulty head with target `kind`.
/// `x` holds the head input of each sampled row, in `data.sample` order.
pub(crate) fn difficulty_cv(
    data: &OutcomeData,
    x: &[Vec<f32>],
    kind: DifficultyTarget,
    pair_weight: f64,
    irt: &IrtConfig,
    cfg: &TrainConfig,
) -> anyhow::Result<DifficultyCv> {
    let rows = &data.rows;
    let keys: Vec<String> = rows.iter().map(|r| item_key(&r.prompt)).collect();
    let full = JointDifficulty::fit_rows(rows, irt)?;
    let sources: BTreeSet<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let mut per_source = BTreeMap::new();
    let (mut pooled_pred, mut pooled_truth) = (Vec::new(), Vec::new());
    let b = bar("leave-one-source-out (difficulty)");
    b.set_length(sources.len() as u64);
    for s in sources {
        let held_keys: HashSet<&str> = rows
            .iter()
            .zip(&keys)
            .filter(|(r, k)| r.source == s && !k.is_empty())
            .map(|(_, k)| k.as_str())
            .collect();
        // Refit without the held-out source.
        let kept: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].source != s).collect();
        let position: HashMap<usize, usize> =
            kept.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        let sub: Vec<OutcomeRow> = kept.iter().map(|&i| rows[i].clone()).collect();
        let joint = JointDifficulty::fit_rows(&sub, irt)?;
        let (mut train_at, mut test_at, mut dropped) = (Vec::new(), Vec::new(), 0);
        for (j, &i) in data.sample.iter().enumerate() {
            if rows[i].source == s {
                test_at.push(j);
            } else if held_keys.contains(keys[i].as_str()) {
                dropped += 1;
            } else {
                train_at.push(j);
            }
        }
        if test_at.is_empty() || train_at.is_empty() {
            continue;
        }
        let picked: Vec<usize> = train_at
            .iter()
            .map(|&j| position[&data.sample[j]])
            .collect();
        let targets = joint.targets(&sub, &picked, kind);
        let groups =
            data.sample_groups(&train_at.iter().map(|&j| data.sample[j]).collect::<Vec<_>>());
        let mlp = fit_difficulty(
            &train_at.iter().map(|&j| x[j].clone()).collect::<Vec<_>>(),
            &targets,
            &groups,
            pair_weight,
            cfg,
        )?;
        let pred: Vec<f64> = test_at
            .iter()
            .map(|&j| sigmoid(mlp.forward(&x[j])[0]) as f64)
            .collect();
        let truth: Vec<f64> = test_at
            .iter()
            .map(|&j| rows[data.sample[j]].mean_failure())
            .collect();
        pooled_pred.extend(&pred);
        pooled_truth.extend(test_at.iter().map(|&j| full.logit(data.sample[j])));
        per_source.insert(
            s.to_string(),
            HeldOutSource {
                n: test_at.len(),
                dropped_shared: dropped,
                spearman: spearman(&pred, &truth),
            },
        );
        eprintln!(
            "difficulty fold {s}: n {}, dropped {dropped}, Spearman {:.3}",
            test_at.len(),
            per_source[s].spearman
        );
        b.inc(1);
    }
    b.finish_and_clear();
    let values: Vec<f64> = per_source.values().map(|v| v.spearman).collect();
    Ok(DifficultyCv {
        target: if pair_weight > 0.0 {
            format!("{kind}, pairwise weight {pair_weight}")
        } else {
            kind.to_string()
        },
        mean_spearman: values.iter().sum::<f64>() / values.len().max(1) as f64,
        min_spearman: values.iter().copied().fold(f64::INFINITY, f64::min),
        pooled_spearman_vs_joint_irt: spearman(&pooled_pred, &pooled_truth),
        joint_fit: full.summary(rows),
        per_source,
    })
}

impl DifficultyCv {
    pub(crate) fn markdown(&self) -> String {
        let mut out = format!(
            "\n### Difficulty, leave-one-source-out (target `{}`)\n\n\
             Spearman correlation between predicted difficulty and the held-out source's failure \
             rate (1 - mean score across its models), per held-out source. Each fold refits the \
             joint IRT model without the held-out source and drops from training every prompt the \
             held-out source also holds (`dropped`).\n\n\
             | held-out source | n | dropped | Spearman |\n|---|---|---|---|\n",
            self.target
        );
        for (s, r) in &self.per_source {
            out += &format!(
                "| {s} | {} | {} | {:.3} |\n",
                r.n, r.dropped_shared, r.spearman
            );
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
