//! `pointsman train encoder`: fine-tune the top encoder layers with LoRA
//! adapters jointly with a linear task head, measure frozen vs fine-tuned
//! on held-out sources, and write the adapter.
//!
//! Held-out measurement: the training sources are split into `--folds`
//! source-grouped folds (each source in exactly one fold); each fold is
//! predicted by an adapter and head trained on the other folds' sources
//! only, so every number is on sources the adapter never saw. The frozen
//! baseline runs the same protocol with the same linear head and no
//! adapter. The evaluation-only sets are scored by the final adapter and
//! head, and are never used to choose settings.
//!
//! Multi-task with `--outcomes`: the records with per-model outcomes add a
//! difficulty loss on the same pooled embedding (the difficulty head's
//! target and pairwise term, `train_encoder_outcomes`), and each fold also
//! holds out a group of outcome sources to measure difficulty on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use pointsman_classifier::finetune::lora::TARGETS;
use pointsman_classifier::finetune::model::FrozenBert;
use pointsman_classifier::finetune::{
    finetune_multitask_snapshots, source_folds, AdapterMetadata, DifficultyTask, FinetuneConfig,
    Finetuned, LowerCache,
};
use pointsman_classifier::tokenize::PromptTokenizer;
use pointsman_classifier::{ModelDir, Taxonomy, DEFAULT_TASKS};
use serde_json::json;
use sha2::{Digest, Sha256};

use pointsman_classifier::training::metrics::Confusion;
use pointsman_classifier::training::records::{
    example_weights, read_dir_records, read_dirs_records, Example,
};

use crate::paths;
use crate::progress::bar;
use crate::train_encoder_outcomes::{
    self as outcomes_cv, DifficultyLoss, DifficultyRow, EncoderOutcomes,
};

/// Where the shipped MiniLM adapter lives.
pub const DEFAULT_ADAPTER: &str = "models/adapters/minilm-lora.safetensors";

#[derive(Args)]
pub struct TrainEncoderArgs {
    /// Folder(s) of task-labelled JSONL records to train on.
    #[arg(long, num_args = 1.., default_value = "training-data/tasks")]
    tasks: Vec<PathBuf>,
    /// Folder of task-labelled JSONL records used only for evaluation.
    #[arg(long, default_value = "training-data/eval")]
    eval: PathBuf,
    /// The encoder to adapt (default all-MiniLM-L6-v2: the shipped adapter's base; the LoRA path is tested on BERT).
    #[arg(long, default_value = paths::MINILM_MODEL_DIR)]
    model_dir: PathBuf,
    /// Where to write the adapter (metadata goes to the .json beside it).
    #[arg(long, default_value = DEFAULT_ADAPTER)]
    out: PathBuf,
    /// Markdown report of the held-out evaluation.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Source-grouped folds for the held-out measurement (0 = skip it).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Only run the held-out measurement; write no adapter.
    #[arg(long)]
    cv_only: bool,
    /// Adapt the top this many encoder layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 8)]
    rank: usize,
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Adapted dense layers, comma-separated (default: all six of Q, K, V, attention out, FFN in, FFN out).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Choose the number of epochs on the held-out source folds among these (comma-separated, e.g. 1,2,3,4): each fold trains once for the largest and scores a snapshot after each; the final adapter trains for the best (ties to fewer). Overrides --epochs; needs --folds > 1.
    #[arg(long, value_delimiter = ',')]
    select_epochs: Option<Vec<usize>>,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 1e-2)]
    head_learning_rate: f64,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Tokens per prompt while training (head and tail kept).
    #[arg(long, default_value_t = 128)]
    window: usize,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Task-loss weight of an example ∝ (1 / its class's share)^P.
    #[arg(long, default_value_t = 0.5)]
    class_weight_power: f32,
    /// Use at most this many examples per training source, for training and for the held-out folds alike (seeded sample; 0 = all).
    #[arg(long, default_value_t = 0)]
    max_per_source: usize,
    /// Score at most this many examples per evaluation-only source (seeded sample; 0 = all).
    #[arg(long, default_value_t = 0)]
    eval_max_per_source: usize,
    /// Keep the frozen lower layers' output in this file and reuse it when the prompts, window, weights and layer
    /// count match (it is rebuilt and overwritten otherwise): runs that differ only in training settings skip the
    /// costliest step. Several hundred MB for a few thousand prompts.
    #[arg(long)]
    lower_cache: Option<PathBuf>,
    /// Folder(s) of JSONL records with per-model outcomes: makes the run multi-task (a difficulty loss beside the task loss,
    /// and difficulty measured on held-out outcome sources). Default: none, task labels only.
    #[arg(long, num_args = 1..)]
    outcomes: Vec<PathBuf>,
    /// The difficulty loss trains on at most this many records per outcome file (seeded sample; every row feeds the IRT fit).
    #[arg(long, default_value_t = 100)]
    outcomes_per_file: usize,
    /// Weight of the difficulty loss beside the task loss (0 = task-only training, difficulty still measured). Default 1: chosen
    /// among 1, 3, 10 on held-out outcome-source groups (docs/EVALUATION.md, "Multi-task LoRA on outcomes"; none beat task-only).
    #[arg(long, default_value_t = 1.0)]
    difficulty_loss_weight: f64,
    /// Weight of the within-source pairwise ranking term inside the difficulty loss (as `train heads`).
    #[arg(long, default_value_t = 1.0)]
    difficulty_pair_weight: f64,
    /// Weight of a per-model success loss, σ(a_m − b(x)) against each outcome with the joint-IRT abilities a_m held
    /// fixed, beside the difficulty loss (0 = off).
    #[arg(long, default_value_t = 0.0)]
    success_loss_weight: f64,
    /// AdamW learning rate of the jointly trained difficulty (and success) head.
    #[arg(long, default_value_t = 1e-3)]
    difficulty_head_learning_rate: f64,
}

pub fn run(args: TrainEncoderArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    for (flag, w) in [
        ("--difficulty-loss-weight", args.difficulty_loss_weight),
        ("--success-loss-weight", args.success_loss_weight),
    ] {
        if !(w.is_finite() && w >= 0.0) {
            bail!("{flag} must be finite and >= 0");
        }
    }
    let model_dir = paths::resolve(&args.model_dir);
    let dir = ModelDir::open(&model_dir)?;
    let (task_records, task_hashes) = read_dirs_records(&args.tasks)?;
    let (eval_records, eval_hashes) = if args.eval.is_dir() {
        read_dir_records(&args.eval)?
    } else {
        (Vec::new(), Vec::new())
    };
    let taxonomy = Taxonomy::default_tasks();
    let to_examples = |records: &[(String, pointsman_records::Record)]| -> Vec<Example> {
        records
            .iter()
            .filter_map(|(file, r)| {
                Some(Example {
                    label: taxonomy.index_of(r.task.as_deref()?)?,
                    source: r.source.clone().unwrap_or_else(|| file.clone()),
                    prompt: r.prompt.clone(),
                })
            })
            .collect()
    };
    let train = sample_per_source(to_examples(&task_records), args.max_per_source, args.seed);
    let evals = sample_per_source(
        to_examples(&eval_records),
        args.eval_max_per_source,
        args.seed,
    );
    if train.is_empty() {
        bail!(
            "no records in {} carry a task label from {:?}",
            args.tasks
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            DEFAULT_TASKS
        );
    }
    let cfg = FinetuneConfig {
        layers: args.layers,
        rank: args.rank,
        alpha: args.alpha,
        targets: args
            .targets
            .clone()
            .unwrap_or_else(|| TARGETS.iter().map(|s| s.to_string()).collect()),
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        head_learning_rate: args.head_learning_rate,
        batch_size: args.batch_size,
        window: args.window,
        seed: args.seed,
        ..Default::default()
    };
    if let Some(t) = cfg.targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        bail!("--targets: `{t}` is not one of {TARGETS:?}");
    }
    let candidates: Vec<usize> = match &args.select_epochs {
        Some(c) => {
            let set: BTreeSet<usize> = c.iter().copied().collect();
            if set.is_empty() || set.contains(&0) || args.folds < 2 {
                bail!("--select-epochs needs epoch counts >= 1 and --folds > 1");
            }
            set.into_iter().collect()
        }
        None => vec![args.epochs],
    };
    let mut cfg = cfg;
    cfg.epochs = *candidates.last().expect("non-empty");
    let (outcome_records, outcome_hashes) = read_dirs_records(&args.outcomes)?;
    let outcomes = if args.outcomes.is_empty() {
        None
    } else {
        let o = EncoderOutcomes::new(
            &outcome_records,
            args.outcomes_per_file,
            args.seed,
            train.len() + evals.len(),
            DifficultyLoss {
                weight: args.difficulty_loss_weight,
                pair_weight: args.difficulty_pair_weight,
                success_weight: args.success_loss_weight,
                head_learning_rate: args.difficulty_head_learning_rate,
            },
        );
        if o.data.sample.is_empty() {
            bail!("no record in --outcomes carries an outcome");
        }
        Some(o)
    };

    // ---- tokens and the frozen lower layers, once
    let t0 = Instant::now();
    let tokenizer = PromptTokenizer::load(&dir, args.window)?;
    let texts: Vec<&str> = train
        .iter()
        .chain(&evals)
        .map(|e| e.prompt.as_str())
        .chain(outcomes.iter().flat_map(EncoderOutcomes::prompts))
        .collect();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.ids(t))
        .collect::<Result<_, _>>()?;
    let bert = FrozenBert::load(&dir.config_path(), &dir.weights_path())?;
    if args.layers > bert.num_layers() {
        bail!(
            "--layers {} but the encoder has {}",
            args.layers,
            bert.num_layers()
        );
    }
    let split = bert.num_layers() - args.layers;
    let key = LowerCache::key(&dir.weights_sha256, split, &ids);
    let saved = match &args.lower_cache {
        Some(path) => LowerCache::load(path, &key)?,
        None => None,
    };
    let cache = match saved {
        Some(c) => {
            eprintln!(
                "lower layers: reusing {}",
                args.lower_cache.as_ref().expect("loaded").display()
            );
            c
        }
        None => {
            let b = bar("caching frozen lower layers");
            b.set_length(ids.len() as u64);
            let c = LowerCache::build(&bert, &ids, split, &|d| b.set_position(d as u64))?;
            b.finish_and_clear();
            if let Some(path) = &args.lower_cache {
                c.save(path, &key)?;
            }
            c
        }
    };
    let cache_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "{} training prompts, {} eval prompts, {} outcome prompts, {} tokens; lower {split} layers cached in {cache_s:.0} s",
        train.len(),
        evals.len(),
        outcomes.as_ref().map_or(0, |o| o.data.sample.len()),
        cache.lens.iter().sum::<usize>()
    );

    let all_weights = example_weights(&train, taxonomy.len(), args.class_weight_power, 0.0);
    let sources: Vec<String> = train
        .iter()
        .map(|e| e.source.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fit_snapshots = |rows: &[usize],
                         cfg: &FinetuneConfig,
                         difficulty: Option<&DifficultyTask>,
                         after: &[usize],
                         what: &str|
     -> anyhow::Result<Vec<Finetuned>> {
        let b = bar("training");
        let per_epoch = rows.len().div_ceil(cfg.batch_size.max(1));
        b.set_length((per_epoch * cfg.epochs) as u64);
        let t = Instant::now();
        let out = finetune_multitask_snapshots(
            &bert,
            &cache,
            rows,
            &rows.iter().map(|&i| train[i].label).collect::<Vec<_>>(),
            &rows.iter().map(|&i| all_weights[i]).collect::<Vec<_>>(),
            taxonomy.len(),
            cfg,
            difficulty,
            after,
            &|e, d, _| b.set_position((e * per_epoch + d) as u64),
        )?;
        b.finish_and_clear();
        eprintln!(
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
        );
        Ok(out)
    };
    // One snapshot, after the last epoch: what `finetune` returns.
    let fit = |rows: &[usize],
               cfg: &FinetuneConfig,
               difficulty: Option<&DifficultyTask>,
               what: &str|
     -> anyhow::Result<Finetuned> {
        fit_snapshots(rows, cfg, difficulty, &[cfg.epochs], what)?
            .pop()
            .context("0 epochs: nothing trained")
    };
    let frozen_cfg = FinetuneConfig {
        layers: 0,
        ..cfg.clone()
    };

    // ---- held-out sources: frozen vs fine-tuned, same folds, same head
    let mut report = String::new();
    let mut metrics = serde_json::Map::new();
    // Epochs of the final frozen and fine-tuned fits.
    let mut chosen = (cfg.epochs, cfg.epochs);
    // Difficulty on held-out outcome sources, per source.
    let mut difficulty_rows: BTreeMap<String, DifficultyRow> = BTreeMap::new();
    if args.folds > 1 {
        let outcome_fold_of = outcomes.as_ref().map(|o| o.folds(args.folds));
        let frozen_x = match &outcomes {
            Some(o) => o.embed(&bert, &cache, None)?,
            None => Vec::new(),
        };
        let sizes: Vec<usize> = sources
            .iter()
            .map(|s| train.iter().filter(|e| &e.source == s).count())
            .collect();
        let fold_of: BTreeMap<&str, usize> = sources
            .iter()
            .map(String::as_str)
            .zip(source_folds(&sizes, args.folds))
            .collect();
        // One confusion per candidate epoch count, frozen [0] and fine-tuned [1];
        // per source: n, then correct per candidate for each.
        let k = candidates.len();
        let mut conf: [Vec<Confusion>; 2] = [
            (0..k).map(|_| Confusion::new(taxonomy.labels())).collect(),
            (0..k).map(|_| Confusion::new(taxonomy.labels())).collect(),
        ];
        let mut per_source: BTreeMap<String, (usize, [Vec<usize>; 2])> = BTreeMap::new();
        for f in 0..args.folds {
            let (tr, te): (Vec<usize>, Vec<usize>) =
                (0..train.len()).partition(|&i| fold_of[train[i].source.as_str()] != f);
            if te.is_empty() {
                continue;
            }
            let held: BTreeSet<&str> = te.iter().map(|&i| train[i].source.as_str()).collect();
            eprintln!("fold {f}: holding out {held:?}");
            let outcome_fold = match (&outcomes, &outcome_fold_of) {
                (Some(o), Some(fold_of)) => {
                    eprintln!(
                        "fold {f}: holding out outcome sources {:?}",
                        outcomes_cv::held_sources(fold_of, f)
                    );
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
            for (slot, run_cfg, what) in [(0, &frozen_cfg, "frozen"), (1, &cfg, "fine-tuned")] {
                // Only the adapter is multi-task; the frozen baseline trains its task head alone.
                let difficulty = outcome_fold
                    .as_ref()
                    .and_then(|(_, t)| t.as_ref())
                    .filter(|_| slot == 1);
                let models = fit_snapshots(&tr, run_cfg, difficulty, &candidates, what)?;
                if let (Some(o), Some((fold, _)), 1) = (&outcomes, &outcome_fold, slot) {
                    o.score_fold(
                        f,
                        fold,
                        &models,
                        &bert,
                        &cache,
                        &frozen_x,
                        &mut difficulty_rows,
                    )?;
                }
                for (c, model) in models.iter().enumerate() {
                    let emb = cache.embed(&bert, &te, model.lora())?;
                    for (&i, p) in te.iter().zip(model.predict(&emb)) {
                        conf[slot][c].add(train[i].label, p);
                        let row = per_source.get_mut(&train[i].source).expect("counted above");
                        row.1[slot][c] += usize::from(p == train[i].label);
                    }
                }
            }
            eprintln!(
                "after fold {f}: frozen {:?}, fine-tuned {:?} after epochs {candidates:?} ({} predictions)",
                conf[0].iter().map(|c| format!("{:.3}", c.accuracy())).collect::<Vec<_>>(),
                conf[1].iter().map(|c| format!("{:.3}", c.accuracy())).collect::<Vec<_>>(),
                conf[0][0].total()
            );
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
        if k > 1 {
            report += &format!(
                "### Epochs chosen on the held-out source folds\n\n\
                 Each fold trains once for {} epochs and scores a snapshot after each candidate count.\n\n\
                 | epochs | frozen accuracy | frozen macro recall | fine-tuned accuracy | fine-tuned macro recall |\n|---|---|---|---|---|\n",
                cfg.epochs
            );
            for (c, e) in candidates.iter().enumerate() {
                report += &format!(
                    "| {e} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                    conf[0][c].accuracy(),
                    conf[0][c].macro_recall(),
                    conf[1][c].accuracy(),
                    conf[1][c].macro_recall()
                );
            }
            report += &format!(
                "\nChosen: frozen {} epochs, fine-tuned {} epochs (the tables below are at these).\n\n",
                candidates[bf], candidates[bt]
            );
            metrics.insert(
                "epoch_selection".into(),
                json!({"candidates": candidates,
                       "frozen_accuracy": conf[0].iter().map(Confusion::accuracy).collect::<Vec<_>>(),
                       "fine_tuned_accuracy": conf[1].iter().map(Confusion::accuracy).collect::<Vec<_>>(),
                       "chosen_frozen": candidates[bf], "chosen_fine_tuned": candidates[bt]}),
            );
        }
        chosen = (candidates[bf], candidates[bt]);
        let (frozen, tuned) = (&conf[0][bf], &conf[1][bt]);
        let per_source: BTreeMap<String, (usize, usize, usize)> = per_source
            .into_iter()
            .map(|(s, (n, c))| (s, (n, c[0][bf], c[1][bt])))
            .collect();
        report += &format!(
            "### Held-out sources, {} source-grouped folds: frozen vs fine-tuned\n\n\
             Both rows use the same folds and the same linear head trained jointly (frozen: head only). \
             Frozen: accuracy {:.3}, macro recall {:.3}. Fine-tuned: accuracy {:.3}, macro recall {:.3}. n = {}.\n\n\
             | held-out source | fold | n | frozen | fine-tuned |\n|---|---|---|---|---|\n",
            args.folds,
            frozen.accuracy(),
            frozen.macro_recall(),
            tuned.accuracy(),
            tuned.macro_recall(),
            frozen.total()
        );
        for (s, (n, a, b)) in &per_source {
            report += &format!(
                "| {s} | {} | {n} | {:.3} | {:.3} |\n",
                fold_of[s.as_str()],
                *a as f64 / *n as f64,
                *b as f64 / *n as f64
            );
        }
        report += &format!(
            "\nConfusion matrix, frozen:\n\n{}\nConfusion matrix, fine-tuned:\n\n{}\n",
            frozen.markdown(),
            tuned.markdown()
        );
        if let Some(o) = &outcomes {
            report += &outcomes_cv::markdown(
                &difficulty_rows,
                bt,
                o.loss.weight,
                o.loss.success_weight,
                args.folds,
            );
            metrics.insert(
                "difficulty_outcome_folds".into(),
                json!({"folds": args.folds, "loss_weight": o.loss.weight,
                       "success_loss_weight": o.loss.success_weight,
                       "candidate": candidates[bt], "per_source": difficulty_rows}),
            );
        }
        metrics.insert(
            "task_source_folds".into(),
            json!({"folds": args.folds, "frozen": frozen.to_json(), "fine_tuned": tuned.to_json(),
                   "fold_of_source": fold_of}),
        );
    }
    if args.cv_only {
        emit_report(&args, &report)?;
        return Ok(ExitCode::SUCCESS);
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
    let model = fit(&all, &cfg, final_task.as_ref(), "final fine-tuned")?;
    let final_s = t_final.elapsed().as_secs_f64();
    if !evals.is_empty() {
        let frozen_model = fit(&all, &frozen_cfg, None, "final frozen")?;
        let rows: Vec<usize> = (train.len()..train.len() + evals.len()).collect();
        let mut by_source: BTreeMap<String, (Confusion, Confusion)> = BTreeMap::new();
        let pf = frozen_model.predict(&cache.embed(&bert, &rows, None)?);
        let pt = model.predict(&cache.embed(&bert, &rows, model.lora())?);
        for ((e, a), b) in evals.iter().zip(pf).zip(pt) {
            let c = by_source.entry(e.source.clone()).or_insert_with(|| {
                (
                    Confusion::new(taxonomy.labels()),
                    Confusion::new(taxonomy.labels()),
                )
            });
            c.0.add(e.label, a);
            c.1.add(e.label, b);
        }
        report += "\n### Evaluation-only sources (never trained on, never used to choose settings), final adapter and linear head\n\n| source | n | frozen | fine-tuned | fine-tuned macro recall |\n|---|---|---|---|---|\n";
        for (s, (a, b)) in &by_source {
            report += &format!(
                "| {s} | {} | {:.3} | {:.3} | {:.3} |\n",
                a.total(),
                a.accuracy(),
                b.accuracy(),
                b.macro_recall()
            );
        }
        for (s, (_, b)) in &by_source {
            report += &format!("\nConfusion matrix, {s}, fine-tuned:\n\n{}\n", b.markdown());
        }
        metrics.insert(
            "task_eval_sources".into(),
            json!(by_source
                .iter()
                .map(|(s, (a, b))| (
                    s.clone(),
                    json!({"frozen": a.to_json(), "fine_tuned": b.to_json()})
                ))
                .collect::<serde_json::Map<_, _>>()),
        );
    }
    let adapter = model
        .adapter
        .as_ref()
        .context("--layers 0 trains no adapter")?;
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
            "base_model": model_dir.file_name().map(|n| n.to_string_lossy().to_string()),
            "training_data_sha256": hex::encode(hasher.finalize()),
            "task_files": task_hashes,
            "eval_files": eval_hashes,
            "task_examples": train.len(),
            "max_per_source": args.max_per_source,
            "eval_max_per_source": args.eval_max_per_source,
            "class_weight_power": args.class_weight_power,
            "settings": cfg,
            "select_epochs": args.select_epochs,
            "epoch_losses": model.epoch_losses,
            "outcome_files": outcome_hashes,
            "outcome_examples": outcomes.as_ref().map_or(0, |o| o.data.sample.len()),
            "outcome_rows": outcomes.as_ref().map_or(0, |o| o.data.rows.len()),
            "outcomes_per_file": outcomes.as_ref().map(|_| args.outcomes_per_file),
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
            "metrics": metrics,
        }),
    };
    let written = adapter.save(&args.out, &metadata)?;
    eprintln!(
        "wrote {} (sha256 {}); total wall time {:.0} s",
        args.out.display(),
        written.adapter_sha256,
        started.elapsed().as_secs_f64()
    );
    emit_report(&args, &report)?;
    Ok(ExitCode::SUCCESS)
}

fn emit_report(args: &TrainEncoderArgs, report: &str) -> anyhow::Result<()> {
    match &args.report {
        Some(path) => {
            std::fs::write(path, report)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => eprintln!("{report}"),
    }
    Ok(())
}

/// All examples, or a seeded sample of at most `cap` per source (in their
/// original order).
fn sample_per_source(examples: Vec<Example>, cap: usize, seed: u64) -> Vec<Example> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if cap == 0 {
        return examples;
    }
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        by_source.entry(e.source.as_str()).or_default().push(i);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut keep = vec![false; examples.len()];
    for (_, mut rows) in by_source {
        rows.shuffle(&mut rng);
        rows.into_iter().take(cap).for_each(|i| keep[i] = true);
    }
    examples
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}
