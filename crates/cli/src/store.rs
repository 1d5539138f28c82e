//! `pointsman store export` and `store publish` / `activate` /
//! `versions`. Every subcommand takes `--store` as `serve` does: a SQLite
//! file or a PostgreSQL URL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use pointsman_router::{Catalog, SuccessModel};
use pointsman_store::{DecisionWithOutcomes, OutcomeStore};

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Print the logged decisions with their outcomes as JSONL records (the DESIGN.md format).
    Export(ExportArgs),
    /// Publish a router artifact (and optionally its catalog) to the store as a new version and make it active: every `serve` replica on the store swaps it in within its --publish-poll interval.
    Publish(PublishArgs),
    /// Make an earlier published version active again (a fleet-wide rollback).
    Activate(ActivateArgs),
    /// List the published versions (JSON lines; the active one has "active": true).
    Versions(StoreArg),
}

#[derive(Args)]
pub struct StoreArg {
    /// The outcome store: a SQLite file or a PostgreSQL URL (as `pointsman serve --store`).
    #[arg(long, env = "POINTSMAN_STORE")]
    store: String,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Also print decisions that have no outcome yet.
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
pub struct PublishArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The router artifact (JSON from `pointsman train router`).
    #[arg(long)]
    router: PathBuf,
    /// A catalog (TOML) to publish with it; without one, each replica keeps the catalog file it was started with.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Free text kept with the version (who, why).
    #[arg(long)]
    note: Option<String>,
}

#[derive(Args)]
pub struct ActivateArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The version to serve (see `pointsman store versions`).
    #[arg(long)]
    version: i64,
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Export(args) => export(args),
        StoreCommand::Publish(args) => publish(args),
        StoreCommand::Activate(args) => {
            let store = open_existing(&args.store.store)?;
            let v = store.activate_artifact(args.version)?;
            println!("{}", serde_json::to_string(&v)?);
            eprintln!(
                "version {} is active; replicas swap it in at their next poll",
                v.version
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Versions(args) => {
            let store = open_existing(&args.store)?;
            for v in store.artifact_versions()? {
                println!("{}", serde_json::to_string(&v)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens `--store`: a PostgreSQL URL, or a SQLite file that must exist
/// (a typo must not create an empty store to read from).
pub(crate) fn open_existing(store: &str) -> anyhow::Result<Arc<dyn OutcomeStore>> {
    if !pointsman_store::is_postgres_url(store) {
        anyhow::ensure!(Path::new(store).exists(), "--store {store}: no such file");
    }
    pointsman_store::open_store(store)
        .with_context(|| format!("--store {}", pointsman_store::redact_url(store)))
}

/// Checks the files parse as a router artifact and a catalog, and that the
/// catalog has at least one model the artifact predicts (the encoder checks
/// happen on each replica, which knows its encoder), then publishes them.
fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let router = std::fs::read(&args.router)
        .with_context(|| format!("--router {}", args.router.display()))?;
    let model = std::str::from_utf8(&router)
        .map_err(anyhow::Error::from)
        .and_then(|t| Ok(SuccessModel::from_json(t)?))
        .with_context(|| format!("--router {}", args.router.display()))?;
    let catalog = match &args.catalog {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("--catalog {}", p.display()))?;
            let catalog = std::str::from_utf8(&bytes)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(Catalog::from_toml_str(t)?))
                .with_context(|| format!("--catalog {}", p.display()))?;
            if !catalog.lists_any(&model.models) {
                anyhow::bail!(
                    "--catalog {}: none of the artifact's models ({}) is in it",
                    p.display(),
                    model.models.join(", ")
                );
            }
            Some(bytes)
        }
    };
    let store = open_existing(&args.store.store)?;
    let v = store.publish_artifact(&router, catalog.as_deref(), args.note.as_deref())?;
    println!("{}", serde_json::to_string(&v)?);
    eprintln!(
        "published {} as version {} (sha256 {}); replicas swap it in at their next poll",
        args.router.display(),
        v.version,
        v.sha256
    );
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&args.store.store)?;
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
        pointsman_store::redact_url(&args.store.store)
    );
    Ok(ExitCode::SUCCESS)
}
