//! `pointsman bench classify`: how fast the encoder and the classifier run
//! on this machine, on built-in prompts or your own. Prints one JSON object.
//!
//! Two timings per case, taken back to back in every iteration so machine
//! noise hits both alike:
//! - `encoder_ms`: one encoder pass over the call's full prompts
//!   (`Encoder::embed`);
//! - `classify_ms`: `Classifier::predict` end to end. For a prompt over 400
//!   characters it also embeds the prompt's first and last 200 characters
//!   (the instruction views, when the heads use them), so a long prompt costs
//!   three encoded sequences, then the heads run.
//!
//! The cases and the timing loop are `pointsman_classifier::speed`; this
//! file reads `--prompts`, picks `--cases` and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use pointsman_classifier::speed::{builtin_cases, prompt_cases, time_cases, Case, CaseShape};
use pointsman_classifier::DEFAULT_BATCH;
// numpy's default percentile, like the side-by-side script.
use pointsman_eval::metrics::Spread;
use pointsman_records::read_file;
use serde_json::{json, Value};

use crate::classify::load_classifier;
use crate::ModelArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time the encoder alone and classify end to end (encoder plus heads) on built-in or your own prompts; prints JSON with median, p10 and p90 milliseconds.
    Classify(BenchClassifyArgs),
}

#[derive(Args)]
pub struct BenchClassifyArgs {
    /// JSONL records (`prompt` field) to time instead of the built-in cases: every prompt alone (batch 1), then the file in batches of --batch-size.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Prompts per call in the file's batched case (at most 32, the classifier's pass size).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=DEFAULT_BATCH as i64))]
    batch_size: u16,
    /// Timed repetitions of each case.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Untimed repetitions of each case before timing.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// Run only these cases (comma-separated names, e.g. batch1_short,batch1_long).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Put each case's prompt texts in the output (scripts/side_by_side.py times the same ones).
    #[arg(long)]
    with_texts: bool,
    /// Put every timed sample (milliseconds) in the output.
    #[arg(long)]
    samples: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// `--prompts`: the file's prompts as cases (every prompt alone, then in
/// calls of `batch`).
fn file_cases(path: &std::path::Path, batch: usize) -> anyhow::Result<Vec<Case>> {
    let (records, errors) =
        read_file(path).with_context(|| format!("--prompts {}", path.display()))?;
    if let Some(e) = errors.first() {
        anyhow::bail!("--prompts {}: {e}", path.display());
    }
    let prompts: Vec<String> = records.into_iter().map(|r| r.prompt).collect();
    anyhow::ensure!(
        !prompts.is_empty(),
        "--prompts {}: no records",
        path.display()
    );
    Ok(prompt_cases(&prompts, batch))
}

/// A case's timings as JSON: [`Spread`] in milliseconds rounded to the
/// microsecond, and every sample with `--samples`.
fn summary(samples: &[f64], keep: bool) -> Value {
    let spread = Spread::of(samples);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut v = json!({
        "median": round(spread.median),
        "p10": round(spread.p10),
        "p90": round(spread.p90),
        "n": spread.n,
    });
    if keep {
        v["samples"] = json!(samples.iter().map(|&x| round(x)).collect::<Vec<_>>());
    }
    v
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Classify(args) => classify(args),
    }
}

fn classify(args: BenchClassifyArgs) -> anyhow::Result<ExitCode> {
    let mut cases = match &args.prompts {
        Some(p) => file_cases(p, args.batch_size as usize)?,
        None => builtin_cases(),
    };
    if !args.cases.is_empty() {
        let known: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
        for name in &args.cases {
            anyhow::ensure!(
                known.contains(name),
                "--cases: no case `{name}` (cases: {})",
                known.join(", ")
            );
        }
        cases.retain(|c| args.cases.contains(&c.name));
    }
    let started = Instant::now();
    let clf = load_classifier(&args.model)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let views = clf.heads().uses_views();

    let times = time_cases(&clf, &cases, args.warmup, args.iterations)?;

    let mut out = Vec::new();
    for (case, t) in cases.iter().zip(&times) {
        let shape = CaseShape::of(&clf, case)?;
        let tokens = &shape.tokens;
        let mut v = json!({
            "name": case.name,
            "calls": shape.calls,
            "prompts": shape.prompts,
            "tokens_mean": (tokens.iter().sum::<usize>() as f64 / tokens.len() as f64 * 10.0).round() / 10.0,
            "tokens_max": tokens.iter().max(),
            "prompts_with_views": shape.prompts_with_views,
            "sequences_encoded": {
                "encoder": shape.encoder_sequences,
                "classify": shape.classify_sequences,
            },
            "encoder_ms": summary(&t.encoder_ms, args.samples),
            "classify_ms": summary(&t.classify_ms, args.samples),
        });
        if args.with_texts {
            v["texts"] = json!(case.calls);
        }
        out.push(v);
    }
    let report = json!({
        "pointsman": env!("CARGO_PKG_VERSION"),
        "device": format!("{:?}", args.model.device).to_lowercase(),
        "precision": clf.encoder().precision(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "model_dir": args.model.model_dir,
        "load_ms": (load_ms * 10.0).round() / 10.0,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "views": views,
        "what": "per call: encoder_ms = one Encoder::embed of the call's full prompts; classify_ms = Classifier::predict (full prompts, plus the first and last 200 characters of every prompt over 400 characters when the heads use views, then the heads)",
        "cases": out,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
