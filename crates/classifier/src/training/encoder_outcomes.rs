//! The outcome half of `train encoder` with outcomes: which outcome
//! rows the adapter trains its difficulty loss on (the difficulty head's
//! sample, targets and strict held-out protocol, [`super::difficulty_cv`]), and
//! the measurement of difficulty on held-out outcome sources: the
//! difficulty head (as `train heads` fits it) on the frozen embedding
//! against the same head on the fold's adapted embedding.
//!
//! Folds: the outcome sources are split into as many source groups as the
//! task folds (`source_folds`, by sampled size), and fold f holds out task
//! fold f and outcome group f together, so one adapter per fold measures
//! both its task accuracy and its difficulty ordering on sources it never
//! saw.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pointsman_records::Record;
use serde::Serialize;

use crate::difficulty_target::{canonical_model, item_key, DifficultyTarget, JointDifficulty};
use crate::error::Result;
use crate::finetune::model::{FrozenBert, LoraSet};
use crate::finetune::{source_folds, DifficultyTask, Finetuned, LowerCache};
use crate::heads::sigmoid;
use crate::irt::IrtConfig;
use crate::train::TrainConfig;

use super::difficulty_cv::{fit_difficulty, held_out_split, outcome_data, OutcomeData};
use super::metrics::spearman;
use super::progress::Progress;

/// The target the adapter's difficulty loss fits: the shipped difficulty
/// head's (docs/EVALUATION.md, "Difficulty").
pub const TARGET: DifficultyTarget = DifficultyTarget::WithinSourceRank;

/// The sampled outcome rows, where they sit in the lower-layer cache, and
/// the settings of their difficulty loss.
pub struct EncoderOutcomes {
    pub data: OutcomeData,
    keys: Vec<String>,
    /// Cache row of sample position 0 (the rest follow in order).
    pub offset: usize,
    pub loss: DifficultyLoss,
    /// The measuring head: `train heads`' difficulty head settings.
    pub head: TrainConfig,
    irt: IrtConfig,
}

impl EncoderOutcomes {
    pub fn new(
        records: &[(String, Record)],
        per_file: usize,
        seed: u64,
        offset: usize,
        loss: DifficultyLoss,
    ) -> EncoderOutcomes {
        let data = outcome_data(records, per_file, seed);
        EncoderOutcomes {
            keys: data.rows.iter().map(|r| item_key(&r.prompt)).collect(),
            data,
            offset,
            loss,
            // `train heads` defaults: 64 hidden, 10 epochs, seed + 1, AdamW 1e-3, decay 1e-2.
            head: TrainConfig {
                hidden: 64,
                epochs: 10,
                seed: seed + 1,
                learning_rate: 1e-3,
                weight_decay: 1e-2,
                ..Default::default()
            },
            irt: IrtConfig::default(),
        }
    }

    pub fn prompts(&self) -> impl Iterator<Item = &str> {
        self.data
            .sample
            .iter()
            .map(|&i| self.data.rows[i].prompt.as_str())
    }

    fn source_of(&self, j: usize) -> &str {
        &self.data.rows[self.data.sample[j]].source
    }

    /// The sampled sources, sorted, with their sampled sizes.
    pub fn sources(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for j in 0..self.data.sample.len() {
            *out.entry(self.source_of(j).to_string()).or_default() += 1;
        }
        out
    }

    /// Each outcome source's fold, balanced by sampled size.
    pub fn folds(&self, k: usize) -> BTreeMap<String, usize> {
        let sources = self.sources();
        let sizes: Vec<usize> = sources.values().copied().collect();
        sources.into_keys().zip(source_folds(&sizes, k)).collect()
    }

    /// The difficulty task over sample positions `at` with their targets
    /// (`None` when the loss weight is 0: the run is then task-only).
    fn task(
        &self,
        at: &[usize],
        targets: &[f32],
        abilities: &HashMap<String, f64>,
    ) -> Option<DifficultyTask> {
        if (self.loss.weight == 0.0 && self.loss.success_weight == 0.0) || at.is_empty() {
            return None;
        }
        let success = if self.loss.success_weight > 0.0 {
            at.iter()
                .map(|&j| {
                    self.data.rows[self.data.sample[j]]
                        .scores
                        .iter()
                        .filter_map(|(m, s)| {
                            let a = abilities.get(&canonical_model(m))?;
                            Some((*a as f32, *s as f32))
                        })
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(DifficultyTask {
            rows: at.iter().map(|&j| self.offset + j).collect(),
            targets: targets.to_vec(),
            groups: self
                .data
                .sample_groups(&at.iter().map(|&j| self.data.sample[j]).collect::<Vec<_>>()),
            loss_weight: self.loss.weight,
            pair_weight: self.loss.pair_weight,
            success,
            success_weight: self.loss.success_weight,
            head_learning_rate: self.loss.head_learning_rate,
        })
    }

    /// The final adapter's difficulty task: every sampled row, targets from
    /// the joint IRT fit over every outcome row.
    pub fn final_task(&self) -> Result<Option<DifficultyTask>> {
        let joint = JointDifficulty::fit_rows(&self.data.rows, &self.irt)?;
        let targets = joint.targets(&self.data.rows, &self.data.sample, TARGET);
        let all: Vec<usize> = (0..self.data.sample.len()).collect();
        Ok(self.task(&all, &targets, &joint.abilities()))
    }

    /// Fold `f`'s strict split (outcome sources of group `f` held out,
    /// IRT refitted without them, shared items dropped) and its task.
    pub fn fold(
        &self,
        fold_of: &BTreeMap<String, usize>,
        f: usize,
    ) -> Result<(OutcomeFold, Option<DifficultyTask>)> {
        let split = held_out_split(
            &self.data,
            &self.keys,
            &|s| fold_of.get(s) == Some(&f),
            &self.irt,
            TARGET,
        )?;
        let task = self.task(&split.train_at, &split.targets, &split.abilities);
        Ok((
            OutcomeFold {
                train_at: split.train_at,
                test_at: split.test_at,
                dropped: split.dropped,
                targets: split.targets,
            },
            task,
        ))
    }

    /// Embeddings of every sampled row, through the top layers with `lora`.
    pub fn embed(
        &self,
        bert: &FrozenBert,
        cache: &LowerCache,
        lora: Option<&LoraSet>,
    ) -> Result<Vec<Vec<f32>>> {
        let rows: Vec<usize> = (0..self.data.sample.len())
            .map(|j| self.offset + j)
            .collect();
        cache.embed(bert, &rows, lora)
    }

    /// The difficulty head fitted on the fold's training rows of `x` (one
    /// embedding per sample position), scored within each held-out
    /// source against its failure rate (1 − mean score of its models).
    pub fn head_spearman(
        &self,
        fold: &OutcomeFold,
        x: &[Vec<f32>],
    ) -> Result<BTreeMap<String, f64>> {
        let groups = self.data.sample_groups(
            &fold
                .train_at
                .iter()
                .map(|&j| self.data.sample[j])
                .collect::<Vec<_>>(),
        );
        let mlp = fit_difficulty(
            &fold
                .train_at
                .iter()
                .map(|&j| x[j].clone())
                .collect::<Vec<_>>(),
            &fold.targets,
            &groups,
            self.loss.pair_weight,
            &self.head,
        )?;
        let pred: Vec<f64> = fold
            .test_at
            .iter()
            .map(|&j| sigmoid(mlp.forward(&x[j])[0]) as f64)
            .collect();
        Ok(self.within_source(fold, &pred))
    }

    /// The adapter's own jointly trained (linear) difficulty head, scored
    /// the same way; `None` for a task-only adapter.
    pub fn joint_head_spearman(
        &self,
        fold: &OutcomeFold,
        model: &Finetuned,
        x: &[Vec<f32>],
    ) -> Option<BTreeMap<String, f64>> {
        let test: Vec<Vec<f32>> = fold.test_at.iter().map(|&j| x[j].clone()).collect();
        let pred = model.predict_difficulty(&test)?;
        let pred: Vec<f64> = pred.into_iter().map(f64::from).collect();
        Some(self.within_source(fold, &pred))
    }

    fn within_source(&self, fold: &OutcomeFold, pred: &[f64]) -> BTreeMap<String, f64> {
        let mut by: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for (&j, &p) in fold.test_at.iter().zip(pred) {
            let e = by.entry(self.source_of(j)).or_default();
            e.0.push(p);
            e.1.push(self.data.rows[self.data.sample[j]].mean_failure());
        }
        by.into_iter()
            .map(|(s, (p, t))| (s.to_string(), spearman(&p, &t)))
            .collect()
    }

    /// Scores fold `f`: the difficulty head on the frozen embedding
    /// (`frozen_x`) and, for each snapshot in `models`, on its adapted
    /// embedding, plus its joint head; one row per held-out source.
    #[allow(clippy::too_many_arguments)]
    pub fn score_fold(
        &self,
        f: usize,
        fold: &OutcomeFold,
        models: &[Finetuned],
        bert: &FrozenBert,
        cache: &LowerCache,
        frozen_x: &[Vec<f32>],
        rows: &mut BTreeMap<String, DifficultyRow>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let frozen = self.head_spearman(fold, frozen_x)?;
        let counts = self.held_counts(fold);
        for model in models {
            let x = self.embed(bert, cache, model.lora())?;
            let adapted = self.head_spearman(fold, &x)?;
            let joint = self.joint_head_spearman(fold, model, &x);
            for (s, &rho) in &adapted {
                let row = rows.entry(s.clone()).or_insert(DifficultyRow {
                    fold: f,
                    n: counts[s],
                    fold_dropped: fold.dropped,
                    frozen_head: frozen[s],
                    adapted_head: Vec::new(),
                    joint_head: joint.as_ref().map(|_| Vec::new()),
                });
                row.adapted_head.push(rho);
                if let (Some(j), Some(v)) = (&joint, row.joint_head.as_mut()) {
                    v.push(j[s]);
                }
            }
        }
        let (fm, _) = mean_min(frozen.values().copied());
        let (am, _) = mean_min(
            rows.values()
                .filter(|r| r.fold == f)
                .map(|r| *r.adapted_head.last().expect("pushed")),
        );
        progress.note(&format!("fold {f}: difficulty Spearman, mean over its held-out outcome sources: frozen {fm:.3}, adapted {am:.3} (last snapshot)"));
        Ok(())
    }

    /// Held-out sample count per source of the fold.
    fn held_counts(&self, fold: &OutcomeFold) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for &j in &fold.test_at {
            *out.entry(self.source_of(j).to_string()).or_default() += 1;
        }
        out
    }
}

/// The multi-task loss settings (`train encoder`'s flags).
#[derive(Debug, Clone, Copy)]
pub struct DifficultyLoss {
    /// Weight of the difficulty loss beside the task loss.
    pub weight: f64,
    /// Weight of the pairwise term inside it.
    pub pair_weight: f64,
    /// Weight of the per-model success part (0 = off).
    pub success_weight: f64,
    /// AdamW learning rate of the jointly trained difficulty head.
    pub head_learning_rate: f64,
}

/// One fold of the outcome rows (positions into the sample).
pub struct OutcomeFold {
    pub train_at: Vec<usize>,
    pub test_at: Vec<usize>,
    pub dropped: usize,
    /// Targets of `train_at`, from the IRT fit without the held-out sources.
    pub targets: Vec<f32>,
}

/// One held-out outcome source's difficulty Spearman under each encoder.
#[derive(Serialize, Clone)]
pub struct DifficultyRow {
    pub fold: usize,
    pub n: usize,
    /// Training rows of the fold dropped for sharing an item with its held-out sources.
    pub fold_dropped: usize,
    pub frozen_head: f64,
    /// The same head on the fold's adapter's embedding, per candidate epoch count.
    pub adapted_head: Vec<f64>,
    /// The adapter's jointly trained linear head, per candidate (multi-task runs only).
    pub joint_head: Option<Vec<f64>>,
}

/// Mean and lowest of a column.
pub fn mean_min(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = v.collect();
    (
        v.iter().sum::<f64>() / v.len().max(1) as f64,
        v.iter().copied().fold(f64::INFINITY, f64::min),
    )
}

/// The outcome sources of fold `f`.
pub fn held_sources(fold_of: &BTreeMap<String, usize>, f: usize) -> BTreeSet<&str> {
    fold_of
        .iter()
        .filter(|(_, &g)| g == f)
        .map(|(s, _)| s.as_str())
        .collect()
}
