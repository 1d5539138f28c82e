//! `train encoder`'s held-out measurement: the training sources split into
//! source-grouped folds (each source in exactly one), each fold predicted
//! by an adapter and head trained on the other folds' sources only, and
//! the frozen baseline (the same linear head, no adapter) on the same folds.
//! With outcomes, fold f also holds out outcome group f and measures
//! difficulty on it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::error::{ClassifierError, Result};
use crate::finetune::model::FrozenBert;
use crate::finetune::{
    finetune_multitask_snapshots, source_folds, DifficultyTask, FinetuneConfig, Finetuned,
    LowerCache,
};
use crate::taxonomy::Taxonomy;

use super::encoder_outcomes::{held_sources, EncoderOutcomes};
use super::encoder_report::{FoldsReport, OutcomeFoldsReport};
use super::metrics::Confusion;
use super::progress::Progress;
use super::records::Example;

/// Fits adapters and task heads on rows of the lower-layer cache (the
/// training examples are its first rows).
pub struct Trainer<'a> {
    pub bert: &'a FrozenBert,
    pub cache: &'a LowerCache,
    pub train: &'a [Example],
    /// Task-loss weight of each training example.
    pub weights: &'a [f32],
    pub taxonomy: &'a Taxonomy,
    pub progress: &'a dyn Progress,
}

impl Trainer<'_> {
    /// One run over training rows `rows` for `cfg.epochs`, a snapshot
    /// after each epoch count in `after`; `what` names it in the notes.
    pub fn fit_snapshots(
        &self,
        rows: &[usize],
        cfg: &FinetuneConfig,
        difficulty: Option<&DifficultyTask>,
        after: &[usize],
        what: &str,
    ) -> Result<Vec<Finetuned>> {
        let per_epoch = rows.len().div_ceil(cfg.batch_size.max(1));
        let total = per_epoch * cfg.epochs;
        self.progress.begin("training", total);
        let t = Instant::now();
        let out = finetune_multitask_snapshots(
            self.bert,
            self.cache,
            rows,
            &rows
                .iter()
                .map(|&i| self.train[i].label)
                .collect::<Vec<_>>(),
            &rows.iter().map(|&i| self.weights[i]).collect::<Vec<_>>(),
            self.taxonomy.len(),
            cfg,
            difficulty,
            after,
            &|e, d, _| self.progress.update(e * per_epoch + d, total),
        )?;
        self.progress.end();
        self.progress.note(&format!(
            "{what}: {} examples{}, {:.0} s, epoch losses {:?}{}",
            rows.len(),
            difficulty
                .map(|d| format!(" + {} with outcomes", d.rows.len()))
                .unwrap_or_default(),
            t.elapsed().as_secs_f64(),
            out.last().map(|m| &m.epoch_losses),
            out.last()
                .filter(|m| !m.difficulty_losses.is_empty())
                .map(|m| format!(", difficulty losses {:?}", m.difficulty_losses))
                .unwrap_or_default()
        ));
        Ok(out)
    }

    /// One snapshot, after the last epoch: what `finetune` returns.
    pub fn fit(
        &self,
        rows: &[usize],
        cfg: &FinetuneConfig,
        difficulty: Option<&DifficultyTask>,
        what: &str,
    ) -> Result<Finetuned> {
        self.fit_snapshots(rows, cfg, difficulty, &[cfg.epochs], what)?
            .pop()
            .ok_or_else(|| ClassifierError::InvalidOption("0 epochs: nothing trained".into()))
    }
}

/// The held-out folds of `trainer`'s examples: frozen (`frozen_cfg`) and
/// fine-tuned (`cfg`, trained for the largest of `candidates` and scored
/// after each), the best candidate of each by pooled held-out accuracy
/// (ties to fewer epochs).
pub fn held_out_folds(
    trainer: &Trainer,
    folds: usize,
    candidates: &[usize],
    cfg: &FinetuneConfig,
    frozen_cfg: &FinetuneConfig,
    outcomes: Option<&EncoderOutcomes>,
) -> Result<FoldsReport> {
    let (train, taxonomy, progress) = (trainer.train, trainer.taxonomy, trainer.progress);
    let (bert, cache) = (trainer.bert, trainer.cache);
    let sources: Vec<String> = train
        .iter()
        .map(|e| e.source.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Difficulty on held-out outcome sources, per source.
    let mut difficulty_rows = BTreeMap::new();
    let outcome_fold_of = outcomes.map(|o| o.folds(folds));
    let frozen_x = match outcomes {
        Some(o) => o.embed(bert, cache, None)?,
        None => Vec::new(),
    };
    let sizes: Vec<usize> = sources
        .iter()
        .map(|s| train.iter().filter(|e| &e.source == s).count())
        .collect();
    let fold_of: BTreeMap<&str, usize> = sources
        .iter()
        .map(String::as_str)
        .zip(source_folds(&sizes, folds))
        .collect();
    // One confusion per candidate epoch count, frozen [0] and fine-tuned [1];
    // per source: n, then correct per candidate for each.
    let k = candidates.len();
    let mut conf: [Vec<Confusion>; 2] = [
        (0..k).map(|_| Confusion::new(taxonomy.labels())).collect(),
        (0..k).map(|_| Confusion::new(taxonomy.labels())).collect(),
    ];
    let mut per_source: BTreeMap<String, (usize, [Vec<usize>; 2])> = BTreeMap::new();
    for f in 0..folds {
        let (tr, te): (Vec<usize>, Vec<usize>) =
            (0..train.len()).partition(|&i| fold_of[train[i].source.as_str()] != f);
        if te.is_empty() {
            continue;
        }
        let held: BTreeSet<&str> = te.iter().map(|&i| train[i].source.as_str()).collect();
        progress.note(&format!("fold {f}: holding out {held:?}"));
        let outcome_fold = match (outcomes, &outcome_fold_of) {
            (Some(o), Some(fold_of)) => {
                progress.note(&format!(
                    "fold {f}: holding out outcome sources {:?}",
                    held_sources(fold_of, f)
                ));
                Some(o.fold(fold_of, f)?)
            }
            _ => None,
        };
        for &i in &te {
            per_source
                .entry(train[i].source.clone())
                .or_insert((0, [vec![0; k], vec![0; k]]))
                .0 += 1;
        }
        for (slot, run_cfg, what) in [(0, frozen_cfg, "frozen"), (1, cfg, "fine-tuned")] {
            // Only the adapter is multi-task; the frozen baseline trains its task head alone.
            let difficulty = outcome_fold
                .as_ref()
                .and_then(|(_, t)| t.as_ref())
                .filter(|_| slot == 1);
            let models = trainer.fit_snapshots(&tr, run_cfg, difficulty, candidates, what)?;
            if let (Some(o), Some((fold, _)), 1) = (outcomes, &outcome_fold, slot) {
                o.score_fold(
                    f,
                    fold,
                    &models,
                    bert,
                    cache,
                    &frozen_x,
                    &mut difficulty_rows,
                    progress,
                )?;
            }
            for (c, model) in models.iter().enumerate() {
                let emb = cache.embed(bert, &te, model.lora())?;
                for (&i, p) in te.iter().zip(model.predict(&emb)) {
                    conf[slot][c].add(train[i].label, p);
                    let row = per_source.get_mut(&train[i].source).expect("counted above");
                    row.1[slot][c] += usize::from(p == train[i].label);
                }
            }
        }
        progress.note(&format!(
            "after fold {f}: frozen {:?}, fine-tuned {:?} after epochs {candidates:?} ({} predictions)",
            conf[0].iter().map(|c| format!("{:.3}", c.accuracy())).collect::<Vec<_>>(),
            conf[1].iter().map(|c| format!("{:.3}", c.accuracy())).collect::<Vec<_>>(),
            conf[0][0].total()
        ));
    }
    // The best epoch count of each, by pooled held-out accuracy (ties to fewer).
    let best = |slot: usize| -> usize {
        (0..k)
            .max_by(|&a, &b| {
                conf[slot][a]
                    .accuracy()
                    .partial_cmp(&conf[slot][b].accuracy())
                    .expect("finite")
                    .then(b.cmp(&a))
            })
            .expect("k >= 1")
    };
    let (bf, bt) = (best(0), best(1));
    let per_source = per_source
        .into_iter()
        .map(|(s, (n, c))| (s, (n, c[0][bf], c[1][bt])))
        .collect();
    Ok(FoldsReport {
        folds,
        candidates: candidates.to_vec(),
        confusions: conf,
        chosen: (bf, bt),
        per_source,
        fold_of: fold_of
            .into_iter()
            .map(|(s, f)| (s.to_string(), f))
            .collect(),
        difficulty: outcomes.map(|o| OutcomeFoldsReport {
            rows: difficulty_rows,
            loss_weight: o.loss.weight,
            success_weight: o.loss.success_weight,
        }),
    })
}
