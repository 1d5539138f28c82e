//! `train encoder`: fine-tune the top encoder layers with LoRA adapters
//! jointly with a linear task head, measure frozen vs fine-tuned on
//! held-out sources ([`super::encoder_folds`]), and return the adapter.
//!
//! The evaluation-only sets are scored by the final adapter and head, and
//! are never used to choose settings.
//!
//! Multi-task with outcomes: the records with per-model outcomes add a
//! difficulty loss on the same pooled embedding (the difficulty head's
//! target and pairwise term, [`super::encoder_outcomes`]), and each fold
//! also holds out a group of outcome sources to measure difficulty on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{ClassifierError, Result};
use crate::finetune::lora::TARGETS;
use crate::finetune::model::FrozenBert;
use crate::finetune::{AdapterMetadata, FinetuneConfig, LoraAdapter, LowerCache};
use crate::model_dir::ModelDir;
use crate::taxonomy::{Taxonomy, DEFAULT_TASKS};
use crate::tokenize::PromptTokenizer;

use super::encoder_folds::{held_out_folds, Trainer};
use super::encoder_outcomes::{self as outcomes_cv, DifficultyLoss, EncoderOutcomes};
use super::encoder_report::EncoderReport;
use super::metrics::Confusion;
use super::progress::Progress;
use super::records::{
    example_weights, examples, no_labelled_records, read_dirs_records, read_optional_dir_records,
    sample_per_source, ExampleWeighting,
};

/// Everything a `train encoder` run reads and how it trains (the
/// command's flags, paths already resolved).
#[derive(Debug, Clone)]
pub struct EncoderTrainingOptions {
    /// Folders of task-labelled JSONL records to train on.
    pub tasks: Vec<PathBuf>,
    /// Folder of task-labelled records used only for evaluation (skipped
    /// when it is not a folder).
    pub eval: PathBuf,
    /// The encoder to adapt (BERT layout).
    pub model_dir: PathBuf,
    /// Source-grouped folds for the held-out measurement (0 or 1 = none).
    pub folds: usize,
    /// Only the held-out measurement; no adapter.
    pub cv_only: bool,
    /// Adapt the top this many encoder layers.
    pub layers: usize,
    pub rank: usize,
    pub alpha: f32,
    /// Adapted dense layers ([`TARGETS`] names); `None`: all of them.
    pub targets: Option<Vec<String>>,
    pub epochs: usize,
    /// Epoch counts to choose among on the held-out folds (overrides `epochs`).
    pub select_epochs: Option<Vec<usize>>,
    pub learning_rate: f64,
    pub head_learning_rate: f64,
    pub batch_size: usize,
    /// Tokens per prompt while training.
    pub window: usize,
    pub seed: u64,
    /// Task-loss weight ∝ (1 / class share)^P.
    pub class_weight_power: f32,
    /// At most this many examples per training source (0 = all).
    pub max_per_source: usize,
    /// At most this many examples per evaluation-only source (0 = all).
    pub eval_max_per_source: usize,
    /// A file keeping the frozen lower layers' output between runs.
    pub lower_cache: Option<PathBuf>,
    /// Folders of records with per-model outcomes (empty: task-only).
    pub outcomes: Vec<PathBuf>,
    /// The difficulty loss trains on at most this many records per outcome file.
    pub outcomes_per_file: usize,
    /// Weight of the difficulty loss beside the task loss (finite, >= 0).
    pub difficulty_loss_weight: f64,
    /// Weight of the pairwise term inside the difficulty loss.
    pub difficulty_pair_weight: f64,
    /// Weight of the per-model success loss (finite, >= 0; 0 = off).
    pub success_loss_weight: f64,
    /// AdamW learning rate of the jointly trained difficulty head.
    pub difficulty_head_learning_rate: f64,
}

/// What a `train encoder` run produced.
pub struct EncoderTraining {
    /// The held-out measurements.
    pub report: EncoderReport,
    /// The adapter and its metadata (not with `cv_only`).
    pub adapter: Option<(LoraAdapter, AdapterMetadata)>,
}

/// Reads the records, caches the frozen lower layers, runs the held-out
/// folds and, unless `cv_only`, trains the final adapter.
pub fn train_encoder(
    opts: &EncoderTrainingOptions,
    progress: &dyn Progress,
) -> Result<EncoderTraining> {
    let started = Instant::now();
    for (flag, w) in [
        ("--difficulty-loss-weight", opts.difficulty_loss_weight),
        ("--success-loss-weight", opts.success_loss_weight),
    ] {
        if !(w.is_finite() && w >= 0.0) {
            return Err(ClassifierError::InvalidOption(format!(
                "{flag} must be finite and >= 0"
            )));
        }
    }
    let dir = ModelDir::open(&opts.model_dir)?;
    let (task_records, task_hashes) = read_dirs_records(&opts.tasks)?;
    let (eval_records, eval_hashes) = read_optional_dir_records(&opts.eval)?;
    let taxonomy = Taxonomy::default_tasks();
    let train = sample_per_source(
        examples(&task_records, &taxonomy),
        opts.max_per_source,
        opts.seed,
    );
    let evals = sample_per_source(
        examples(&eval_records, &taxonomy),
        opts.eval_max_per_source,
        opts.seed,
    );
    if train.is_empty() {
        return Err(no_labelled_records(&opts.tasks, &DEFAULT_TASKS));
    }
    let cfg = FinetuneConfig {
        layers: opts.layers,
        rank: opts.rank,
        alpha: opts.alpha,
        targets: opts
            .targets
            .clone()
            .unwrap_or_else(|| TARGETS.iter().map(|s| s.to_string()).collect()),
        epochs: opts.epochs,
        learning_rate: opts.learning_rate,
        head_learning_rate: opts.head_learning_rate,
        batch_size: opts.batch_size,
        window: opts.window,
        seed: opts.seed,
        ..Default::default()
    };
    if let Some(t) = cfg.targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        return Err(ClassifierError::InvalidOption(format!(
            "--targets: `{t}` is not one of {TARGETS:?}"
        )));
    }
    let candidates: Vec<usize> = match &opts.select_epochs {
        Some(c) => {
            let set: BTreeSet<usize> = c.iter().copied().collect();
            if set.is_empty() || set.contains(&0) || opts.folds < 2 {
                return Err(ClassifierError::InvalidOption(
                    "--select-epochs needs epoch counts >= 1 and --folds > 1".into(),
                ));
            }
            set.into_iter().collect()
        }
        None => vec![opts.epochs],
    };
    let mut cfg = cfg;
    cfg.epochs = *candidates.last().expect("non-empty");
    let (outcome_records, outcome_hashes) = read_dirs_records(&opts.outcomes)?;
    let outcomes = if opts.outcomes.is_empty() {
        None
    } else {
        let o = EncoderOutcomes::new(
            &outcome_records,
            opts.outcomes_per_file,
            opts.seed,
            train.len() + evals.len(),
            DifficultyLoss {
                weight: opts.difficulty_loss_weight,
                pair_weight: opts.difficulty_pair_weight,
                success_weight: opts.success_loss_weight,
                head_learning_rate: opts.difficulty_head_learning_rate,
            },
        );
        if o.data.sample.is_empty() {
            return Err(ClassifierError::NoTrainingData(
                "no record in --outcomes carries an outcome".into(),
            ));
        }
        Some(o)
    };

    // ---- tokens and the frozen lower layers, once
    let t0 = Instant::now();
    let tokenizer = PromptTokenizer::load(&dir, opts.window)?;
    let texts: Vec<&str> = train
        .iter()
        .chain(&evals)
        .map(|e| e.prompt.as_str())
        .chain(outcomes.iter().flat_map(EncoderOutcomes::prompts))
        .collect();
    let (bert, cache, split) = lower_layers(&dir, &tokenizer, &texts, opts, progress)?;
    let cache_s = t0.elapsed().as_secs_f64();
    progress.note(&format!(
        "{} training prompts, {} eval prompts, {} outcome prompts, {} tokens; lower {split} layers cached in {cache_s:.0} s",
        train.len(),
        evals.len(),
        outcomes.as_ref().map_or(0, |o| o.data.sample.len()),
        cache.lens.iter().sum::<usize>()
    ));

    let all_weights = example_weights(
        &train,
        taxonomy.len(),
        ExampleWeighting {
            class_power: opts.class_weight_power,
            ..ExampleWeighting::default()
        },
    );
    let trainer = Trainer {
        bert: &bert,
        cache: &cache,
        train: &train,
        weights: &all_weights,
        taxonomy: &taxonomy,
        progress,
    };
    let frozen_cfg = FinetuneConfig {
        layers: 0,
        ..cfg.clone()
    };

    // ---- held-out sources: frozen vs fine-tuned, same folds, same head
    let mut report = EncoderReport {
        folds: None,
        eval_sources: BTreeMap::new(),
    };
    // Epochs of the final frozen and fine-tuned fits.
    let mut chosen = (cfg.epochs, cfg.epochs);
    if opts.folds > 1 {
        let folds = held_out_folds(
            &trainer,
            opts.folds,
            &candidates,
            &cfg,
            &frozen_cfg,
            outcomes.as_ref(),
        )?;
        chosen = (candidates[folds.chosen.0], candidates[folds.chosen.1]);
        report.folds = Some(folds);
    }
    if opts.cv_only {
        return Ok(EncoderTraining {
            report,
            adapter: None,
        });
    }

    // ---- final adapter on every source; eval-only sets
    let frozen_cfg = FinetuneConfig {
        epochs: chosen.0,
        ..frozen_cfg
    };
    let cfg = FinetuneConfig {
        epochs: chosen.1,
        ..cfg
    };
    let all: Vec<usize> = (0..train.len()).collect();
    let t_final = Instant::now();
    let final_task = match &outcomes {
        Some(o) => o.final_task()?,
        None => None,
    };
    let mut model = trainer.fit(&all, &cfg, final_task.as_ref(), "final fine-tuned")?;
    let final_s = t_final.elapsed().as_secs_f64();
    if !evals.is_empty() {
        let frozen_model = trainer.fit(&all, &frozen_cfg, None, "final frozen")?;
        let rows: Vec<usize> = (train.len()..train.len() + evals.len()).collect();
        let pf = frozen_model.predict(&cache.embed(&bert, &rows, None)?);
        let pt = model.predict(&cache.embed(&bert, &rows, model.lora())?);
        for ((e, a), b) in evals.iter().zip(pf).zip(pt) {
            let c = report
                .eval_sources
                .entry(e.source.clone())
                .or_insert_with(|| {
                    (
                        Confusion::new(taxonomy.labels()),
                        Confusion::new(taxonomy.labels()),
                    )
                });
            c.0.add(e.label, a);
            c.1.add(e.label, b);
        }
    }
    let Some(adapter) = model.adapter.take() else {
        return Err(ClassifierError::InvalidOption(
            "--layers 0 trains no adapter".into(),
        ));
    };
    let mut hasher = Sha256::new();
    for h in task_hashes.iter().chain(&outcome_hashes) {
        hasher.update(h.as_bytes());
    }
    let metadata = AdapterMetadata {
        format_version: 0,
        rank: 0,
        alpha: 0.0,
        base_weights_sha256: dir.weights_sha256.clone(),
        adapter_sha256: String::new(),
        training: json!({
            "base_model": opts.model_dir.file_name().map(|n| n.to_string_lossy().to_string()),
            "training_data_sha256": hex::encode(hasher.finalize()),
            "task_files": task_hashes,
            "eval_files": eval_hashes,
            "task_examples": train.len(),
            "max_per_source": opts.max_per_source,
            "eval_max_per_source": opts.eval_max_per_source,
            "class_weight_power": opts.class_weight_power,
            "settings": cfg,
            "select_epochs": opts.select_epochs,
            "epoch_losses": model.epoch_losses,
            "outcome_files": outcome_hashes,
            "outcome_examples": outcomes.as_ref().map_or(0, |o| o.data.sample.len()),
            "outcome_rows": outcomes.as_ref().map_or(0, |o| o.data.rows.len()),
            "outcomes_per_file": outcomes.as_ref().map(|_| opts.outcomes_per_file),
            "difficulty_loss": outcomes.as_ref().map(|o| json!({
                "weight": o.loss.weight, "pair_weight": o.loss.pair_weight,
                "success_weight": o.loss.success_weight,
                "head_learning_rate": o.loss.head_learning_rate,
                "target": outcomes_cv::TARGET.to_string(),
                "trained": final_task.is_some(),
                "epoch_losses": model.difficulty_losses})),
            "wall_seconds": {"lower_layer_cache": cache_s, "final_training": final_s,
                              "total": started.elapsed().as_secs_f64()},
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "metrics": report.metrics(),
        }),
    };
    Ok(EncoderTraining {
        report,
        adapter: Some((adapter, metadata)),
    })
}

/// The frozen encoder and its lower layers' output for every text (from
/// `opts.lower_cache` when it holds these prompts, else computed and kept
/// there), and the number of lower layers.
fn lower_layers(
    dir: &ModelDir,
    tokenizer: &PromptTokenizer,
    texts: &[&str],
    opts: &EncoderTrainingOptions,
    progress: &dyn Progress,
) -> Result<(FrozenBert, LowerCache, usize)> {
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.ids(t))
        .collect::<Result<_>>()?;
    let bert = FrozenBert::load(&dir.config_path(), &dir.weights_path())?;
    if opts.layers > bert.num_layers() {
        return Err(ClassifierError::InvalidOption(format!(
            "--layers {} but the encoder has {}",
            opts.layers,
            bert.num_layers()
        )));
    }
    let split = bert.num_layers() - opts.layers;
    let key = LowerCache::key(&dir.weights_sha256, split, &ids);
    let saved = match &opts.lower_cache {
        Some(path) => LowerCache::load(path, &key)?,
        None => None,
    };
    let cache = match saved {
        Some(c) => {
            progress.note(&format!(
                "lower layers: reusing {}",
                opts.lower_cache.as_ref().expect("loaded").display()
            ));
            c
        }
        None => {
            progress.begin("caching frozen lower layers", ids.len());
            let c = LowerCache::build(&bert, &ids, split, &|d| progress.update(d, ids.len()))?;
            progress.end();
            if let Some(path) = &opts.lower_cache {
                c.save(path, &key)?;
            }
            c
        }
    };
    Ok((bert, cache, split))
}
