//! `pointsman store export`, and reading the store as training rows for
//! `pointsman train router --from-store`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use pointsman_router::{fit, SuccessModel, TrainConfig, TrainingRow};
use pointsman_server::core::named::is_unclassified;
use pointsman_store::{DecisionWithOutcomes, OutcomeStore, SqliteStore};

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Print the logged decisions with their outcomes as JSONL records (the DESIGN.md format).
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// The outcome store (SQLite file written by `pointsman serve --store`).
    #[arg(long)]
    store: PathBuf,
    /// Also print decisions that have no outcome yet.
    #[arg(long)]
    all: bool,
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Export(args) => export(args),
    }
}

fn open_existing(path: &Path) -> anyhow::Result<SqliteStore> {
    anyhow::ensure!(path.exists(), "--store {}: no such file", path.display());
    Ok(SqliteStore::open(path)?)
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&args.store)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut written = 0usize;
    let mut io_error = None;
    let total = store.export(&mut |d: DecisionWithOutcomes| {
        if !args.all && d.outcomes.is_empty() {
            return Ok(());
        }
        if let Err(e) = writeln!(out, "{}", d.to_record().to_line()) {
            io_error = Some(e);
            return Err(pointsman_store::StoreError::Backend {
                path: "stdout".into(),
                message: "write failed".into(),
            });
        }
        written += 1;
        Ok(())
    });
    if let Some(e) = io_error {
        return Err(e).context("writing to stdout");
    }
    let total = total?;
    out.flush()?;
    eprintln!(
        "exported {written} of {total} decisions from {}",
        args.store.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Fits a success model on the store's logged embeddings, predictions and
/// outcomes (no prompt text needed). Decisions without outcomes are
/// skipped; when several outcomes for one model are logged on one decision
/// the last counts. Only decisions logged with the most recent encoder are
/// used. Models are those with outcomes, tasks those the classifier scored.
pub fn fit_from_store(path: &Path, cfg: &TrainConfig) -> anyhow::Result<(SuccessModel, usize)> {
    let store = open_existing(path)?;
    let mut logged = Vec::new();
    let mut unclassified = 0;
    store.export(&mut |d| {
        if d.outcomes.is_empty() {
            return Ok(());
        }
        if is_unclassified(&d.decision) {
            // A named model's decision: no embedding to fit on.
            unclassified += 1;
        } else {
            logged.push(d);
        }
        Ok(())
    })?;
    if unclassified > 0 {
        eprintln!(
            "skipped {unclassified} decisions with outcomes but no embedding (named models, logged unclassified: docs/GATEWAY.md)"
        );
    }
    anyhow::ensure!(
        !logged.is_empty(),
        "--from-store {}: no classified decision has an outcome yet",
        path.display()
    );
    let encoder_id = logged
        .last()
        .and_then(|d| d.decision.versions.get("encoder").cloned())
        .unwrap_or_default();
    let before = logged.len();
    logged.retain(|d| {
        d.decision
            .versions
            .get("encoder")
            .cloned()
            .unwrap_or_default()
            == encoder_id
    });
    if logged.len() < before {
        eprintln!(
            "skipped {} decisions logged with another encoder",
            before - logged.len()
        );
    }
    let models: Vec<String> = logged
        .iter()
        .flat_map(|d| d.outcomes.iter().map(|o| o.model.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tasks: Vec<String> = logged
        .iter()
        .flat_map(|d| d.decision.task_scores.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<TrainingRow> = logged
        .iter()
        .map(|d| {
            let mut outcomes: Vec<(usize, f32)> = Vec::new();
            for o in &d.outcomes {
                let m = models
                    .iter()
                    .position(|n| n == &o.model)
                    .expect("collected above");
                outcomes.retain(|(i, _)| *i != m);
                outcomes.push((m, o.score as f32));
            }
            TrainingRow {
                embedding: d.decision.embedding.clone(),
                task_scores: tasks
                    .iter()
                    .map(|t| d.decision.task_scores.get(t).copied().unwrap_or(0.0))
                    .collect(),
                outcomes,
            }
        })
        .collect();
    let model = fit(models, tasks, &rows, cfg, &encoder_id)
        .with_context(|| format!("--from-store {}", path.display()))?;
    Ok((model, rows.len()))
}
