//! `pointsman train encoder`: the flags of
//! [`pointsman_classifier::training::train_encoder`], which fine-tunes the
//! top encoder layers with LoRA adapters and measures frozen vs fine-tuned
//! on held-out source folds; this writes the adapter and the report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use pointsman_classifier::training::{train_encoder, EncoderTrainingOptions};

use crate::paths;
use crate::progress::{training_error, Bars};

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

impl TrainEncoderArgs {
    /// The library's options: the flags, paths resolved.
    fn options(&self) -> EncoderTrainingOptions {
        EncoderTrainingOptions {
            tasks: self.tasks.clone(),
            eval: self.eval.clone(),
            model_dir: paths::resolve(&self.model_dir),
            folds: self.folds,
            cv_only: self.cv_only,
            layers: self.layers,
            rank: self.rank,
            alpha: self.alpha,
            targets: self.targets.clone(),
            epochs: self.epochs,
            select_epochs: self.select_epochs.clone(),
            learning_rate: self.learning_rate,
            head_learning_rate: self.head_learning_rate,
            batch_size: self.batch_size,
            window: self.window,
            seed: self.seed,
            class_weight_power: self.class_weight_power,
            max_per_source: self.max_per_source,
            eval_max_per_source: self.eval_max_per_source,
            lower_cache: self.lower_cache.clone(),
            outcomes: self.outcomes.clone(),
            outcomes_per_file: self.outcomes_per_file,
            difficulty_loss_weight: self.difficulty_loss_weight,
            difficulty_pair_weight: self.difficulty_pair_weight,
            success_loss_weight: self.success_loss_weight,
            difficulty_head_learning_rate: self.difficulty_head_learning_rate,
        }
    }
}

pub fn run(args: TrainEncoderArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let trained = train_encoder(&args.options(), &Bars::default()).map_err(training_error)?;
    if let Some((adapter, metadata)) = &trained.adapter {
        let written = adapter.save(&args.out, metadata)?;
        eprintln!(
            "wrote {} (sha256 {}); total wall time {:.0} s",
            args.out.display(),
            written.adapter_sha256,
            started.elapsed().as_secs_f64()
        );
    }
    let report = trained.report.markdown();
    match &args.report {
        Some(path) => {
            std::fs::write(path, report)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => eprintln!("{report}"),
    }
    Ok(ExitCode::SUCCESS)
}
