//! `pointsman train heads`: the flags of
//! [`pointsman_classifier::training::train_heads`], which fits the task and
//! difficulty heads and measures them on held-out sources; this writes the
//! heads and the report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pointsman_classifier::difficulty_target::DifficultyTarget;
use pointsman_classifier::features::FEATURE_NAMES;
use pointsman_classifier::irt::IrtConfig;
use pointsman_classifier::training::{
    train_heads, ExampleWeighting, HeadsTraining, HeadsTrainingOptions,
};
use pointsman_classifier::Precision;

use crate::paths;
use crate::progress::{training_error, Bars};

/// Chosen by leave-one-source-out over the outcome sources (docs/EVALUATION.md, "Difficulty").
const DEFAULT_DIFFICULTY_TARGET: &str = "irt-rank";

#[derive(Args)]
pub struct TrainHeadsArgs {
    /// Folder(s) of task-labelled JSONL records to train on (each file one source unless records name theirs);
    /// add `training-data/tasks-translated` for the translated labels (not in the shipped heads).
    #[arg(long, num_args = 1.., default_value = "training-data/tasks")]
    tasks: Vec<PathBuf>,
    /// Folder of task-labelled JSONL records used only for evaluation.
    #[arg(long, default_value = "training-data/eval")]
    eval: PathBuf,
    /// Folder of JSONL records with per-model outcomes (the difficulty head's data; every row feeds the IRT fit).
    #[arg(long, default_value = "training-data/outcomes")]
    outcomes: PathBuf,
    /// The difficulty head trains on at most this many records per outcome file (seeded sample).
    #[arg(long, default_value_t = 600)]
    outcomes_per_file: usize,
    /// What the difficulty head fits: irt-rank (percentile of joint-IRT difficulty within its source), irt-centred (each source centred), irt, irt-source-<w> or mean-failure (before 2026-11-30).
    #[arg(long, default_value = DEFAULT_DIFFICULTY_TARGET, value_parser = clap::value_parser!(DifficultyTarget))]
    difficulty_target: DifficultyTarget,
    /// Weight of a within-source pairwise ranking loss added to the difficulty head's (0 = regression only).
    #[arg(long, default_value_t = 1.0)]
    difficulty_pair_weight: f64,
    /// Ridge on each prompt's IRT difficulty (a N(0, 1/ridge) prior).
    #[arg(long, default_value_t = IrtConfig::default().item_ridge)]
    irt_item_ridge: f64,
    /// Task labels, comma-separated; default: the 11 built-in names if the data uses only those, else the labels found.
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Where to write the heads (metadata goes to the .json beside it).
    #[arg(long, default_value = paths::DEFAULT_HEADS)]
    out: PathBuf,
    /// Markdown report of the held-out evaluation.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value = "target/embedding-cache")]
    cache_dir: PathBuf,
    #[arg(long, default_value = paths::DEFAULT_MODEL_DIR)]
    model_dir: PathBuf,
    /// A LoRA adapter (`pointsman train encoder`) merged into the encoder; the heads then fit the merged encoder only.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Number format of the CPU encoder that embeds the training prompts (f32, bf16, int8); heads fit on int8 embeddings match `--precision int8` at inference. The embedding cache keeps each format apart.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Hidden width of the task head (0 = linear).
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Epochs of the task head. Default 15: chosen among 5, 10, 15, 20 and 30 by
    /// leave-one-source-out over the 29 task sources (docs/EVALUATION.md,
    /// "The task head's epochs"); longer training fits each source's style.
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    /// Task heads trained from successive seeds (seed, seed + 1000, ...) whose mean logits are the task head, stored as one
    /// head N times wider.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    task_members: u64,
    /// Train on the embedding alone, without surface features.
    #[arg(long)]
    no_features: bool,
    /// Surface features the task head trains and runs without, read as 0 (comma-separated names, `all`, or `none`); the difficulty head keeps them. Default `non_latin_share`: a script-share feature told the task head "translation" for most non-Latin prompts; without it held-out non-English prompts gain and leave-one-source-out holds (docs/EVALUATION.md, "The non-Latin share off the task head")
    #[arg(long, value_delimiter = ',', default_value = "non_latin_share")]
    task_features_off: Vec<String>,
    /// The task head reads the embedding alone, without the prompt's operation cues. By default it also reads one flag per operation (summarise, extract, translate, classify, list ideas, compose, puzzle, converse), set when the request names it in one of ten languages (crates/classifier/src/cues.rs): leave-one-source-out gains at two seeds (docs/EVALUATION.md, "Operation cues"). The difficulty head never reads them
    #[arg(long)]
    no_task_cues: bool,
    /// Train on the full-prompt embedding only, without the instruction views.
    #[arg(long)]
    no_views: bool,
    /// Folder(s) of translation pairs (records with `translated_from` naming
    /// a training record's id, and `lang`): the task head reads the
    /// embedding less each language's mean translation offset
    /// (docs/EVALUATION.md, "Language directions"); the difficulty head is
    /// unchanged. Default: training-data/tasks-translated (8 languages) when
    /// it holds pairs for the training records (otherwise the heads train
    /// without, and say so); folders given here must hold them. Add
    /// training-data/tasks-translated-more for 7 more languages (measured,
    /// not shipped).
    #[arg(long, value_name = "FOLDER", num_args = 1.., conflicts_with = "no_language_pairs")]
    language_pairs: Vec<PathBuf>,
    /// The task head reads the encoder's embedding as it is (the heads
    /// before 2026-11-30 round 7).
    #[arg(long)]
    no_language_pairs: bool,
    /// Skip the leave-one-source-out runs (faster; the report then has only the eval sources).
    #[arg(long)]
    no_cv: bool,
    /// Only the difficulty head's leave-one-source-out: no heads are trained or written, the report is.
    #[arg(long, conflicts_with = "no_cv")]
    difficulty_cv_only: bool,
    /// With --difficulty-cv-only: K folds inside each outcome source instead of leave-one-source-out (the head trains on
    /// every other row, the source's other folds included): how well the head orders a source once its own outcomes are
    /// in training, e.g. an operator's logged traffic. The head alone (--difficulty-knn-weight 0).
    #[arg(long, requires = "difficulty_cv_only", value_name = "K", value_parser = clap::value_parser!(u64).range(2..))]
    difficulty_cv_within_source: Option<u64>,
    /// Hidden width of the difficulty head (0 = linear); chosen by leave-one-source-out.
    #[arg(long, default_value_t = 64)]
    difficulty_hidden: usize,
    /// Epochs of the difficulty head; chosen by leave-one-source-out.
    #[arg(long, default_value_t = 10)]
    difficulty_epochs: usize,
    /// Difficulty heads trained from successive seeds whose mean logit is the difficulty head (as --task-members).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    difficulty_members: u64,
    /// Neighbour counts tried for the difficulty's kNN part (comma-separated; inner CV over the training sources picks one).
    #[arg(long, value_delimiter = ',', default_value = "10,30,100")]
    difficulty_knn_k: Vec<usize>,
    /// Weights w tried in the difficulty blend (1 − w) · head + w · kNN (comma-separated; inner CV picks one; `0` alone = the head alone, no bank).
    /// Default `0`: the blend's +0.02 within-source Spearman (e5, leave-one-source-out) does not pay for its ~1 ms per prompt, 32 MB of
    /// memory and 8 MB of heads file, and it is worse on AlpacaEval (docs/EVALUATION.md, "Difficulty"); `0,0.25,0.5` is the grid measured there.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    difficulty_knn_weight: Vec<f64>,
    /// Folds of training sources in the inner CV that picks the kNN's k and weight.
    #[arg(long, default_value_t = 3)]
    difficulty_inner_folds: usize,
    /// Skip the task head's leave-one-source-out but run the difficulty head's.
    #[arg(long, conflicts_with = "no_cv")]
    no_task_cv: bool,
    /// Task-loss weight of an example ∝ (1 / its class's share)^P; 0 = unweighted, 1 = fully balanced.
    #[arg(long, default_value_t = 0.5)]
    class_weight_power: f32,
    /// Also multiply by (mean source size / its source's size)^P, so large sources do not dominate.
    #[arg(long, default_value_t = 0.0)]
    source_weight_power: f32,
    /// Also multiply by (its class's mean count per source / its own source's count of that class)^P: at 1 every source that carries a class weighs the same in it
    #[arg(long, default_value_t = 0.0)]
    class_source_weight_power: f32,
    /// AdamW learning rate of both heads.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// AdamW weight decay of both heads.
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f64,
}

/// The translation pairs the heads use unless told otherwise.
const DEFAULT_LANGUAGE_PAIRS: &str = "training-data/tasks-translated";

impl TrainHeadsArgs {
    /// The library's options: the flags, paths resolved.
    /// `--task-features-off` as names: `all` is every feature, `none` (or
    /// `--no-features`, where there are none to turn off) is none.
    fn task_features_off(&self) -> Vec<String> {
        let names = &self.task_features_off;
        if self.no_features || names.iter().any(|f| f == "none") {
            vec![]
        } else if names.iter().any(|f| f == "all") {
            FEATURE_NAMES.iter().map(|f| f.to_string()).collect()
        } else {
            names.clone()
        }
    }

    fn options(&self) -> HeadsTrainingOptions {
        HeadsTrainingOptions {
            tasks: self.tasks.clone(),
            eval: self.eval.clone(),
            outcomes: self.outcomes.clone(),
            outcomes_per_file: self.outcomes_per_file,
            difficulty_target: self.difficulty_target,
            difficulty_pair_weight: self.difficulty_pair_weight,
            irt_item_ridge: self.irt_item_ridge,
            labels: self.labels.clone(),
            cache_dir: self.cache_dir.clone(),
            model_dir: paths::resolve(&self.model_dir),
            adapter: self.adapter.as_deref().map(paths::resolve),
            precision: self.precision,
            seed: self.seed,
            hidden: self.hidden,
            epochs: self.epochs,
            task_members: self.task_members as usize,
            features: !self.no_features,
            task_features_off: self.task_features_off(),
            task_cues: !self.no_task_cues,
            views: !self.no_views,
            language_pairs: match (self.language_pairs.is_empty(), self.no_language_pairs) {
                (_, true) => vec![],
                (false, false) => self.language_pairs.clone(),
                (true, false) => vec![PathBuf::from(DEFAULT_LANGUAGE_PAIRS)],
            },
            language_pairs_optional: self.language_pairs.is_empty(),
            task_cv: !self.no_cv && !self.no_task_cv,
            difficulty_cv: !self.no_cv,
            difficulty_cv_only: self.difficulty_cv_only,
            difficulty_within_source_folds: self.difficulty_cv_within_source.unwrap_or(0) as usize,
            difficulty_hidden: self.difficulty_hidden,
            difficulty_epochs: self.difficulty_epochs,
            difficulty_members: self.difficulty_members as usize,
            difficulty_knn_k: self.difficulty_knn_k.clone(),
            difficulty_knn_weight: self.difficulty_knn_weight.clone(),
            difficulty_inner_folds: self.difficulty_inner_folds,
            weighting: ExampleWeighting {
                class_power: self.class_weight_power,
                source_power: self.source_weight_power,
                class_source_power: self.class_source_weight_power,
            },
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
        }
    }
}

pub fn run(args: TrainHeadsArgs) -> anyhow::Result<ExitCode> {
    let trained = train_heads(&args.options(), &Bars::default()).map_err(training_error)?;
    let report = trained.markdown();
    if let HeadsTraining::Trained { heads, .. } = &trained {
        heads.save(&args.out)?;
        eprintln!("wrote {} ({})", args.out.display(), heads.metadata.version);
    }
    match &args.report {
        Some(path) => {
            std::fs::write(path, &report)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if matches!(trained, HeadsTraining::Trained { .. }) {
                eprintln!("wrote {}", path.display());
            }
        }
        None => eprintln!("{report}"),
    }
    Ok(ExitCode::SUCCESS)
}
