//! `pointsman eval`: the success model against the baselines on held-out
//! outcome rows (see the pointsman-eval crate for the metrics).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use pointsman_eval::{
    cross_validate_rows, evaluate_rows, fold_splits, learning_curve, load_sets, summarise,
    write_predictions, CurveConfig, CurveSize, EvalConfig, EvalSet, HeadOutputs, LoadOptions,
};
use pointsman_router::{PromptInput, Selection, TrainConfig, Validation};

use crate::progress::Bars;
use crate::{paths, ModelArgs};

#[derive(Args)]
pub struct EvalArgs {
    /// Records to fit the success model on (with --test).
    #[arg(long, num_args = 1.., requires = "test", conflicts_with = "data")]
    train: Vec<PathBuf>,
    /// Records to evaluate on (with --train).
    #[arg(long, num_args = 1.., requires = "train")]
    test: Vec<PathBuf>,
    /// Records for K-fold cross-validation (with --folds).
    #[arg(long, num_args = 1.., requires = "folds")]
    data: Vec<PathBuf>,
    /// Number of cross-validation folds.
    #[arg(long)]
    folds: Option<usize>,
    /// Catalog pricing outcomes that carry no cost_usd (input tokens = prompt chars / 4).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Completion tokens assumed when pricing from the catalog.
    #[arg(long, default_value_t = 256)]
    output_tokens: u64,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write report.md, summary.json, cost_quality.svg and
    /// reliability.svg here (with --learning-curve: learning_curve.md,
    /// learning_curve.json and learning_curve.svg).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the trained router's estimates for every held-out row here, one JSON object a line (id, then per model:
    /// P(success), expected cost, observed score and cost); with --folds each row's out-of-fold estimate. Not with
    /// --learning-curve.
    #[arg(long, value_name = "FILE", conflicts_with = "learning_curve")]
    predictions: Option<PathBuf>,
    /// Learning curve instead of one evaluation: fit on seeded subsamples of
    /// this many training rows per fold or split (comma-separated; `all` =
    /// every row) and report every router's AIQ (APGR for two models) per size.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    learning_curve: Vec<CurveSize>,
    /// Subsamples (seeds) averaged per learning-curve size.
    #[arg(long, default_value_t = 3, requires = "learning_curve")]
    curve_seeds: usize,
    /// Prompt traits of the success model (0 = plain IRT).
    #[arg(long, default_value_t = TrainConfig::default().rank)]
    rank: usize,
    /// Training epochs of the success model.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    /// Ridge on the success model's prompt weights, per training row.
    #[arg(long, default_value_t = TrainConfig::default().l2_prompt)]
    l2: f32,
    /// Pick the ridge from these values (comma-separated) on a held-out 20%
    /// of the training rows, then refit on all of them.
    #[arg(long, value_delimiter = ',')]
    l2_grid: Vec<f32>,
    /// Calibrate each model's P (Platt) on a held-out 20% of the training rows.
    #[arg(long)]
    calibrate: bool,
    /// Prior precision of each model's ability around the across-model mean.
    #[arg(long, default_value_t = TrainConfig::default().ability_prior)]
    ability_prior: f32,
    /// Adam step size of the success model.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    learning_rate: f32,
    /// How the success model's cross-validated selection picks its
    /// candidate: cross-entropy (the default), routing-value or
    /// cross-entropy-then-routing (docs/EVALUATION.md, "Selecting by
    /// routing value").
    #[arg(long)]
    selection_criterion: Option<pointsman_router::routing_value::Criterion>,
    /// Neighbours per kNN estimate stacked into the success model (the
    /// selection's `knn_k`).
    #[arg(long, default_value_t = pointsman_router::Selection::default().knn_k)]
    selection_knn_k: usize,
    /// Inner folds of the success model's selection.
    #[arg(long, default_value_t = pointsman_router::Selection::default().folds)]
    selection_folds: usize,
    /// Neighbours of the knn baseline.
    #[arg(long, default_value_t = 25)]
    knn_k: usize,
    /// Spaces the success model's stacked kNN estimate is tried in, chosen by
    /// cross-validation inside the training rows (comma-separated): d = the
    /// first d principal components of the stored prompts' embeddings, 0 =
    /// the full embedding. Default: 0 (the full embedding only;
    /// docs/EVALUATION.md, "kNN in a reduced space", has what 32,64,128
    /// costs and saves).
    #[arg(long, value_delimiter = ',')]
    knn_dims: Vec<usize>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The models every router chooses among and is scored on
    /// (comma-separated); the data's other models are training-only: their
    /// outcomes fit the success model's shared prompt term (difficulty and
    /// traits) and nothing else. Default: every model in the data.
    #[arg(long, value_delimiter = ',')]
    route_models: Vec<String>,
    /// Cold start: keep only --cold-outcomes training outcomes of this model.
    #[arg(long, requires = "cold_outcomes")]
    cold_model: Option<String>,
    #[arg(long)]
    cold_outcomes: Option<usize>,
    /// Use the encoder alone for the success model's task mixture (one
    /// pseudo-task). The heads still run for --head-features.
    #[arg(long)]
    no_task_head: bool,
    /// Experiment, off by default: classifier heads' outputs the success
    /// model's selection may read instead of the embedding
    /// (comma-separated): `task` (the task head's class probabilities),
    /// `difficulty` (the difficulty head's score, fitted on
    /// training-data/outcomes: leaky on those files, fair on AlpacaEval)
    /// and `surface` (ten numbers from the prompt's text: length, code,
    /// digits, ...; read beside the embedding). docs/EVALUATION.md, "The
    /// heads' outputs as success features" and "The prompt's surface
    /// features as success features".
    #[arg(long, value_delimiter = ',')]
    head_features: Vec<HeadOutput>,
    /// With --head-features: the prompt-term inputs the selection tries
    /// (comma-separated: embedding, embedding+heads, heads). Default:
    /// embedding,heads; embedding,embedding+heads for `surface` alone.
    #[arg(long, value_delimiter = ',', requires = "head_features")]
    prompt_inputs: Vec<PromptInput>,
    /// Embedding cache folder.
    #[arg(long, default_value = "target/embedding-cache")]
    cache_dir: PathBuf,
    #[command(flatten)]
    ope: crate::ope::OpeArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// A classifier head whose output the success model may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadOutput {
    /// The task head's probability of each task label.
    Task,
    /// The difficulty head's score (leaky on the outcome files it was fitted on).
    Difficulty,
    /// The prompt's surface features (length in characters and lines, code, digit and maths shares, ...), from the text alone.
    Surface,
}

impl HeadOutput {
    /// The library's set of head outputs for a `--head-features` list.
    pub fn set(list: &[HeadOutput]) -> HeadOutputs {
        HeadOutputs {
            task: list.contains(&HeadOutput::Task),
            difficulty: list.contains(&HeadOutput::Difficulty),
            surface: list.contains(&HeadOutput::Surface),
        }
    }
}

/// The library's loading options for `model` and `cache_dir` (paths
/// resolved), with no catalog, 256 completion tokens, costs required, the
/// task head on and no head outputs: callers override what their flags set.
pub fn load_options(model: &ModelArgs, cache_dir: &Path) -> LoadOptions {
    LoadOptions {
        model_dir: paths::resolve(&model.model_dir),
        adapter: model.adapter.as_deref().map(paths::resolve),
        heads: paths::resolve(&model.heads),
        device: model.device,
        engine: model.engine(),
        cache_dir: cache_dir.to_path_buf(),
        catalog: None,
        output_tokens: 256,
        allow_unpriced: false,
        no_task_head: false,
        head_outputs: HeadOutputs::default(),
    }
}

/// What `eval` measures on: one set in K folds (`--data --folds`), or a
/// training and a test set (`--train --test`).
enum EvalData {
    Folds(EvalSet, usize),
    Split(EvalSet, EvalSet),
}

impl EvalArgs {
    /// Loads `--data` for `--folds`, else `--train` and `--test` (`missing`
    /// is the error when neither is given).
    fn data(&self, missing: &str) -> anyhow::Result<EvalData> {
        if let Some(folds) = self.folds {
            return Ok(EvalData::Folds(
                self.load_sets(&[&self.data])?.remove(0),
                folds,
            ));
        }
        anyhow::ensure!(!self.train.is_empty(), "{missing}");
        let mut sets = self.load_sets(&[&self.train, &self.test])?;
        let test = sets.remove(1);
        Ok(EvalData::Split(sets.remove(0), test))
    }

    /// Reads the record files of each group into aligned sets.
    fn load_sets(&self, groups: &[&[PathBuf]]) -> anyhow::Result<Vec<EvalSet>> {
        let opts = LoadOptions {
            catalog: self.catalog.clone(),
            output_tokens: self.output_tokens,
            no_task_head: self.no_task_head,
            head_outputs: HeadOutput::set(&self.head_features),
            ..load_options(&self.model, &self.cache_dir)
        };
        Ok(load_sets(groups, &opts, &Bars::default())?)
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let cfg = EvalConfig {
        train: TrainConfig {
            rank: args.rank,
            epochs: args.epochs,
            l2_prompt: args.l2,
            learning_rate: args.learning_rate,
            ability_prior: args.ability_prior,
            selection: Some({
                let sel = Selection::default().with_knn_dims(&args.knn_dims);
                Selection {
                    criterion: args.selection_criterion.unwrap_or(sel.criterion),
                    knn_k: args.selection_knn_k,
                    folds: args.selection_folds,
                    inputs: HeadOutput::set(&args.head_features).prompt_inputs(&args.prompt_inputs),
                    ..sel
                }
            }),
            routed_models: args.route_models.clone(),
            ..Default::default()
        },
        knn_k: args.knn_k,
        seed: args.seed,
        cold_start: args.cold_model.clone().zip(args.cold_outcomes),
        validation: (args.calibrate || !args.l2_grid.is_empty()).then(|| Validation {
            l2_grid: args.l2_grid.clone(),
            holdout: 0.2,
            calibrate: args.calibrate,
        }),
    };
    anyhow::ensure!(
        args.route_models.is_empty()
            || (args.learning_curve.is_empty() && args.ope.explore.is_none()),
        "--route-models works with a plain --data or --train/--test evaluation, not with --learning-curve or --explore"
    );
    if args.ope.wanted() {
        anyhow::ensure!(
            args.predictions.is_none(),
            "--predictions writes a --data or --train/--test evaluation's rows; an off-policy estimate (--from-store, --from-export) has none"
        );
        return crate::ope::run(&args.ope, args.json, args.seed);
    }
    if !args.learning_curve.is_empty() {
        return run_learning_curve(&args, &cfg);
    }
    let (evaluated, models) = match args.data(
        "give --train A.jsonl --test B.jsonl, or --data F.jsonl --folds K (or --from-store/--from-export with --candidate)",
    )? {
        EvalData::Folds(set, folds) => {
            let evaluated = cross_validate_rows(&set, folds, &cfg)?;
            if args.ope.explore.is_some() {
                let splits = fold_splits(&set, folds, cfg.seed)?;
                crate::ope::print_exploration_cost(&args.ope, &splits, &cfg, args.json)?;
            }
            (evaluated, routed_names(set.models, &args.route_models))
        }
        EvalData::Split(train, test) => {
            let evaluated = evaluate_rows(&train, &test, &cfg)?;
            let models = routed_names(test.models.clone(), &args.route_models);
            if args.ope.explore.is_some() {
                let splits = [(train, test)];
                crate::ope::print_exploration_cost(&args.ope, &splits, &cfg, args.json)?;
            }
            (evaluated, models)
        }
    };
    if let Some(path) = &args.predictions {
        write_predictions(path, &models, &evaluated.predictions)?;
        eprintln!(
            "{} rows' predictions written to {}",
            evaluated.predictions.len(),
            path.display()
        );
    }
    let summary = summarise(&evaluated.results, &models, evaluated.rows);
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.table());
    }
    if let Some(dir) = &args.report {
        summary.write_report(dir)?;
        eprintln!("report written to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The models the results are aligned with: `--route-models` in its
/// order, else every model of the data.
fn routed_names(all: Vec<String>, routed: &[String]) -> Vec<String> {
    if routed.is_empty() {
        all
    } else {
        routed.to_vec()
    }
}

/// `eval --learning-curve`: the same splits as the plain evaluation, each
/// training side subsampled to every size.
fn run_learning_curve(args: &EvalArgs, cfg: &EvalConfig) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.curve_seeds >= 1,
        "--curve-seeds must be at least 1 (got 0)"
    );
    let splits =
        match args.data("give --train A.jsonl --test B.jsonl, or --data F.jsonl --folds K")? {
            EvalData::Folds(set, folds) => fold_splits(&set, folds, cfg.seed)?,
            EvalData::Split(train, test) => vec![(train, test)],
        };
    let curve = learning_curve(
        &splits,
        &CurveConfig {
            sizes: args.learning_curve.clone(),
            seeds: args.curve_seeds,
        },
        cfg,
    )?;
    if args.json {
        println!("{}", curve.to_json());
    } else {
        print!("{}", curve.table());
    }
    if let Some(dir) = &args.report {
        curve.write(dir)?;
        eprintln!("learning curve written to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
