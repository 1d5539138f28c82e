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

use pointsman_classifier::difficulty_knn::{self, KnnBlend, NeighbourBank};
use pointsman_classifier::difficulty_target::{
    item_key, DifficultyTarget, JointDifficulty, JointSummary, OutcomeRow,
};
use pointsman_classifier::heads::sigmoid;
use pointsman_classifier::heads::Mlp;
use pointsman_classifier::irt::IrtConfig;
use pointsman_classifier::train::{
    train_ranker, train_regressor, TrainConfig, DIFFICULTY_PAIR_MARGIN,
};
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
        train_ranker(x, targets, groups, pair_weight, DIFFICULTY_PAIR_MARGIN, cfg)?
    } else {
        train_regressor(x, targets, &vec![1.0; targets.len()], cfg)?
    })
}

#[derive(Serialize)]
pub(crate) struct HeldOutSource {
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
pub(crate) struct KnnPart {
    pub k: usize,
    pub weight: f64,
    pub head_spearman: f64,
    pub knn_spearman: f64,
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

/// How the difficulty head is measured and blended with its neighbours.
pub(crate) struct DifficultyCvOptions {
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
    pub(crate) fn uses_knn(&self) -> bool {
        self.knn_weights.iter().any(|&w| w > 0.0)
    }
}

/// The most neighbours kept per prompt for the kNN part: enough that the
/// largest k survives holding out a source and an inner fold.
const NEIGHBOURS_KEPT: usize = 400;

/// Leave-one-source-out of the difficulty head with target `opts.kind`.
/// `x` holds the head input of each sampled row, in `data.sample` order.
pub(crate) fn difficulty_cv(
    data: &OutcomeData,
    x: &[Vec<f32>],
    opts: &DifficultyCvOptions,
    irt: &IrtConfig,
    cfg: &TrainConfig,
) -> anyhow::Result<DifficultyCv> {
    let kind = opts.kind;
    let rows = &data.rows;
    let keys: Vec<String> = rows.iter().map(|r| item_key(&r.prompt)).collect();
    let full = JointDifficulty::fit_rows(rows, irt)?;
    let sources: BTreeSet<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let sample_groups = data.sample_groups(&data.sample);
    let neighbours = if opts.uses_knn() {
        neighbours_of(x, &sample_groups, opts.embedding_dim)
    } else {
        Vec::new()
    };
    let mut per_source = BTreeMap::new();
    let (mut pooled_pred, mut pooled_truth) = (Vec::new(), Vec::new());
    let b = bar("leave-one-source-out (difficulty)");
    b.set_length(sources.len() as u64);
    for s in sources {
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
        let fit = |at: &[usize]| -> anyhow::Result<Mlp> {
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
        eprintln!(
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
        );
        b.inc(1);
    }
    b.finish_and_clear();
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
        mean_spearman: values.iter().sum::<f64>() / values.len().max(1) as f64,
        min_spearman: values.iter().copied().fold(f64::INFINITY, f64::min),
        pooled_spearman_vs_joint_irt: spearman(&pooled_pred, &pooled_truth),
        joint_fit: full.summary(rows),
        per_source,
    })
}

/// One strict held-out fold over the sampled outcome rows.
pub(crate) struct HeldOutSplit {
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
pub(crate) fn held_out_split(
    data: &OutcomeData,
    keys: &[String],
    held: &dyn Fn(&str) -> bool,
    irt: &IrtConfig,
    kind: DifficultyTarget,
) -> anyhow::Result<HeldOutSplit> {
    let rows = &data.rows;
    let held_keys: HashSet<&str> = rows
        .iter()
        .zip(keys)
        .filter(|(r, k)| held(&r.source) && !k.is_empty())
        .map(|(_, k)| k.as_str())
        .collect();
    let kept: Vec<usize> = (0..rows.len())
        .filter(|&i| !held(&rows[i].source))
        .collect();
    let position: HashMap<usize, usize> = kept.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let (mut train_at, mut test_at, mut dropped) = (Vec::new(), Vec::new(), 0);
    for (j, &i) in data.sample.iter().enumerate() {
        if held(&rows[i].source) {
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

fn neighbours_of(x: &[Vec<f32>], groups: &[usize], dim: usize) -> Vec<Vec<(u32, f32)>> {
    let unit: Vec<Vec<f32>> = x.iter().map(|v| difficulty_knn::unit(&v[..dim])).collect();
    eprintln!("difficulty kNN: neighbours of {} prompts", unit.len());
    difficulty_knn::cross_group_neighbours(&unit, groups, NEIGHBOURS_KEPT)
}

/// The shipped kNN part: k and the weight chosen by the same inner CV,
/// over every sampled row, and a bank of them all. `None` when the blend
/// is off or the inner CV gives the kNN no weight.
pub(crate) fn final_knn(
    data: &OutcomeData,
    x: &[Vec<f32>],
    targets: &[f32],
    opts: &DifficultyCvOptions,
    cfg: &TrainConfig,
) -> anyhow::Result<Option<NeighbourBank>> {
    if !opts.uses_knn() {
        return Ok(None);
    }
    let keys: Vec<String> = data.rows.iter().map(|r| item_key(&r.prompt)).collect();
    let groups = data.sample_groups(&data.sample);
    let neighbours = neighbours_of(x, &groups, opts.embedding_dim);
    let all: Vec<usize> = (0..data.sample.len()).collect();
    let ctx = KnnContext {
        data,
        keys: &keys,
        neighbours: &neighbours,
        train_at: &all,
        targets,
    };
    let fit = |at: &[usize]| -> anyhow::Result<Mlp> {
        fit_difficulty(
            &at.iter().map(|&j| x[j].clone()).collect::<Vec<_>>(),
            &at.iter().map(|&j| targets[j]).collect::<Vec<_>>(),
            &at.iter().map(|&j| groups[j]).collect::<Vec<_>>(),
            opts.pair_weight,
            cfg,
        )
    };
    let (k, w) = inner_choice(&ctx, x, &groups, opts, &fit)?;
    eprintln!("difficulty kNN: inner CV over every source chose k {k}, weight {w}");
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
        .map_err(anyhow::Error::msg)
}

/// One outer fold's training rows, seen by the kNN part.
struct KnnContext<'a> {
    data: &'a OutcomeData,
    keys: &'a [String],
    neighbours: &'a [Vec<(u32, f32)>],
    /// Sample positions of the fold's training rows.
    train_at: &'a [usize],
    /// Their targets, in `train_at` order.
    targets: &'a [f32],
}

impl KnnContext<'_> {
    /// kNN predictions (one per k in `ks`) for the sample positions `at`,
    /// from training rows that `admit` accepts and that hold another item.
    fn predict(&self, at: &[usize], ks: &[usize], admit: impl Fn(usize) -> bool) -> Vec<Vec<f32>> {
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
fn inner_choice(
    ctx: &KnnContext,
    x: &[Vec<f32>],
    sample_groups: &[usize],
    opts: &DifficultyCvOptions,
    fit: &dyn Fn(&[usize]) -> anyhow::Result<Mlp>,
) -> anyhow::Result<(usize, f64)> {
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
mod tests {
    use super::*;
    use rand::Rng;

    /// Four sources of 120 prompts, five models each. A prompt's input is
    /// 12 random numbers; when `signal`, its IRT difficulty is 2.5 · x[0]
    /// plus a per-source level, else independent noise.
    fn synthetic(signal: bool, seed: u64) -> (OutcomeData, Vec<Vec<f32>>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut rows, mut x) = (Vec::new(), Vec::new());
        for s in 0..4 {
            for i in 0..120 {
                let v: Vec<f32> = (0..12).map(|_| rng.random_range(-1.0..1.0)).collect();
                let b = if signal {
                    2.5 * v[0] as f64
                } else {
                    rng.random_range(-1.5..1.5)
                } + (s as f64 - 1.5) * 0.8;
                let scores = (0..5)
                    .map(|m| {
                        let p = 1.0 / (1.0 + (-(m as f64 - 2.0) * 0.7 + b).exp());
                        (format!("model-{m}"), p)
                    })
                    .collect();
                rows.push(OutcomeRow {
                    source: format!("source-{s}"),
                    prompt: format!("synthetic prompt number {i} of source {s}"),
                    scores,
                });
                x.push(v);
            }
        }
        let sample = (0..rows.len()).collect();
        (OutcomeData { rows, sample }, x)
    }

    fn options(knn_weights: Vec<f64>) -> DifficultyCvOptions {
        DifficultyCvOptions {
            kind: DifficultyTarget::WithinSourceRank,
            pair_weight: 1.0,
            embedding_dim: 12,
            knn_ks: vec![5, 20],
            knn_weights,
            inner_folds: 3,
        }
    }

    fn cfg() -> TrainConfig {
        TrainConfig {
            hidden: 16,
            epochs: 30,
            learning_rate: 1e-2,
            seed: 3,
            ..Default::default()
        }
    }

    #[test]
    fn within_source_order_is_learned_when_a_feature_carries_it() {
        let (data, x) = synthetic(true, 1);
        for weights in [vec![0.0], vec![0.0, 0.5, 1.0]] {
            let cv = difficulty_cv(
                &data,
                &x,
                &options(weights.clone()),
                &IrtConfig::default(),
                &cfg(),
            )
            .unwrap();
            assert_eq!(cv.per_source.len(), 4);
            assert!(
                cv.min_spearman > 0.6,
                "weights {weights:?}: {:?}",
                cv.per_source
                    .values()
                    .map(|r| r.spearman)
                    .collect::<Vec<_>>()
            );
        }
        // The kNN part alone orders the held-out sources too (neighbours in
        // x[0] have similar difficulty).
        let cv = difficulty_cv(
            &data,
            &x,
            &options(vec![1.0]),
            &IrtConfig::default(),
            &cfg(),
        )
        .unwrap();
        for r in cv.per_source.values() {
            assert!(r.knn.as_ref().unwrap().knn_spearman > 0.4, "{}", r.spearman);
        }
    }

    #[test]
    fn no_order_is_invented_where_the_inputs_carry_none() {
        let (data, x) = synthetic(false, 2);
        let cv = difficulty_cv(
            &data,
            &x,
            &options(vec![0.0, 0.5, 1.0]),
            &IrtConfig::default(),
            &cfg(),
        )
        .unwrap();
        // 120 prompts per source: |ρ| of pure noise is below 0.25 with
        // probability ~0.994 each.
        for (s, r) in &cv.per_source {
            assert!(r.spearman.abs() < 0.25, "{s}: {}", r.spearman);
        }
        assert!(cv.mean_spearman.abs() < 0.12, "{}", cv.mean_spearman);
    }
}
