//! `pointsman train router`: fit the success model on outcome records and
//! write the versioned JSON artifact `pointsman route` reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use pointsman_eval::{fit_logged, fit_set, load_sets, EvalError, LoadOptions, LoggedFit};
use pointsman_router::{Selection, SuccessModel, TrainConfig};

use crate::eval::{load_options, HeadOutput};
use crate::progress::Bars;
use crate::ModelArgs;

#[derive(Args)]
pub struct TrainRouterArgs {
    /// Record files with per-model outcomes (partial outcomes are fine).
    #[arg(long, num_args = 1.., required_unless_present = "from_store")]
    outcomes: Vec<PathBuf>,
    /// Fit on the decisions and outcomes logged by `pointsman serve --store PATH_OR_URL` instead (a SQLite file or a PostgreSQL URL; uses the logged embeddings; no prompt text needed).
    #[arg(long, conflicts_with = "outcomes")]
    from_store: Option<String>,
    /// Where to write the artifact (JSON).
    #[arg(long, default_value = "models/router/success-model.json")]
    out: PathBuf,
    /// Catalog pricing outcomes without cost_usd (not needed for fitting).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Prompt traits (0 = plain IRT).
    #[arg(long, default_value_t = TrainConfig::default().rank)]
    rank: usize,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    /// Use the encoder alone for the task mixture (one pseudo-task); the
    /// heads still run for the head features.
    #[arg(long)]
    no_task_head: bool,
    /// Experiment, off by default: heads' outputs the success model's
    /// selection may read instead of the embedding (as `eval
    /// --head-features`; the selection then tries the embedding or them;
    /// `surface` alone: the embedding, or the embedding and them). Not
    /// with --from-store (the store logs no prompt text to compute them).
    #[arg(long, value_delimiter = ',', conflicts_with = "from_store")]
    head_features: Vec<HeadOutput>,
    /// Spaces the stacked kNN estimate is tried in, chosen by
    /// cross-validation (comma-separated): d = the first d principal
    /// components of the stored prompts' embeddings, 0 = the full embedding.
    /// Default: 0 (the full embedding only; docs/EVALUATION.md, "kNN in a
    /// reduced space", has what 32,64,128 costs and saves).
    #[arg(long, value_delimiter = ',')]
    knn_dims: Vec<usize>,
    /// The models `serve` will route among (comma-separated), when the
    /// outcomes hold more (a model since dropped from the catalog): the
    /// target table (τ → λ) is built over them and the selection is scored
    /// on their outcomes; the others still fit the shared prompt term.
    /// Default: every model with outcomes.
    #[arg(long, value_delimiter = ',')]
    route_models: Vec<String>,
    #[arg(long, default_value = "target/embedding-cache")]
    cache_dir: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: TrainRouterArgs) -> anyhow::Result<ExitCode> {
    if let Some(store) = &args.from_store {
        let cfg = TrainConfig {
            rank: args.rank,
            epochs: args.epochs,
            selection: Some(Selection::default().with_knn_dims(&args.knn_dims)),
            routed_models: args.route_models.clone(),
            ..Default::default()
        };
        let opened = crate::store::open_existing(store)?;
        let LoggedFit { model, rows } = fit_logged(opened.as_ref(), &cfg, &Bars::default())
            .map_err(|e| match e {
                // The store's own errors name it already.
                EvalError::Store(e) => anyhow::Error::from(e),
                e => anyhow::Error::from(e).context(format!(
                    "--from-store {}",
                    pointsman_store::redact_url(store)
                )),
            })?;
        write_artifact(&model, &args.out)?;
        eprintln!(
            "fitted on {rows} logged decisions, {} outcomes over {} models; wrote {}",
            model.outcome_counts.iter().sum::<usize>(),
            model.models.len(),
            args.out.display()
        );
        print_selection(&model);
        return Ok(ExitCode::SUCCESS);
    }
    // Fitting needs no costs, so unpriced outcomes are allowed.
    let head_outputs = HeadOutput::set(&args.head_features);
    let opts = LoadOptions {
        catalog: args.catalog.clone(),
        allow_unpriced: true,
        no_task_head: args.no_task_head,
        head_outputs,
        ..load_options(&args.model, &args.cache_dir)
    };
    let set = load_sets(&[&args.outcomes], &opts, &Bars::default())?.remove(0);
    let cfg = TrainConfig {
        rank: args.rank,
        epochs: args.epochs,
        selection: Some(Selection {
            inputs: head_outputs.prompt_inputs(&[]),
            ..Selection::default().with_knn_dims(&args.knn_dims)
        }),
        routed_models: args.route_models.clone(),
        ..Default::default()
    };
    let model = fit_set(&set, &cfg)?;
    write_artifact(&model, &args.out)?;
    eprintln!(
        "fitted on {} prompts, {} outcomes over {} models; wrote {}",
        set.rows.len(),
        model.outcome_counts.iter().sum::<usize>(),
        model.models.len(),
        args.out.display()
    );
    print_selection(&model);
    Ok(ExitCode::SUCCESS)
}

/// Writes the artifact to `out` (its folder created): to a temporary file
/// beside it, then renamed, so a server reloading meanwhile never reads
/// half a file.
fn write_artifact(model: &SuccessModel, out: &Path) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension("json.tmp");
    std::fs::write(&tmp, model.to_json())?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// What the cross-validated selection chose (also in the artifact).
fn print_selection(model: &SuccessModel) {
    if let Some(sel) = &model.selection {
        eprintln!("per-prompt signal: {sel}");
    }
    if let Some(cost) = &model.cost {
        eprintln!("cost: {cost}");
    }
    if let Some(table) = &model.target_table {
        eprintln!("{table}");
    }
}
