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

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use pointsman_classifier::bench_prompts::{LONG, SHORT};
use pointsman_classifier::classifier::instruction_views;
use pointsman_classifier::{Classifier, DEFAULT_BATCH};
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

/// A named set of calls; each call is one batch handed to the encoder and
/// to the classifier, and is timed on its own.
struct Case {
    name: String,
    calls: Vec<Vec<String>>,
}

fn builtin_cases() -> Vec<Case> {
    let one = |name: &str, text: &str| Case {
        name: name.into(),
        calls: vec![vec![text.to_string()]],
    };
    // As in benches/classify.rs: every fourth prompt is the long one.
    let mixed = (0..32)
        .map(|i| if i % 4 == 0 { LONG } else { SHORT }.to_string())
        .collect();
    vec![
        one("batch1_short", SHORT),
        one("batch1_long", LONG),
        Case {
            name: "batch32_mixed".into(),
            calls: vec![mixed],
        },
    ]
}

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
    Ok(vec![
        Case {
            name: "file_batch1".into(),
            calls: prompts.iter().map(|p| vec![p.clone()]).collect(),
        },
        Case {
            name: format!("file_batch{batch}"),
            calls: prompts.chunks(batch).map(<[String]>::to_vec).collect(),
        },
    ])
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

    let mut encoder_ms: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut classify_ms: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..args.warmup + args.iterations {
        let timed = round >= args.warmup;
        for (i, case) in cases.iter().enumerate() {
            for call in &case.calls {
                let texts: Vec<&str> = call.iter().map(String::as_str).collect();
                let (e, c) = time_call(&clf, &texts)?;
                if timed {
                    encoder_ms[i].push(e);
                    classify_ms[i].push(c);
                }
            }
        }
    }

    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let prompts: Vec<&str> = case.calls.iter().flatten().map(String::as_str).collect();
        let tokens: Vec<usize> = prompts
            .iter()
            .map(|p| clf.encoder().token_count(p))
            .collect::<Result<_, _>>()?;
        let long = prompts
            .iter()
            .filter(|p| instruction_views(p).is_some())
            .count();
        let mut v = json!({
            "name": case.name,
            "calls": case.calls.len(),
            "prompts": prompts.len(),
            "tokens_mean": (tokens.iter().sum::<usize>() as f64 / tokens.len() as f64 * 10.0).round() / 10.0,
            "tokens_max": tokens.iter().max(),
            "prompts_with_views": if views { long } else { 0 },
            "sequences_encoded": {
                "encoder": prompts.len(),
                "classify": prompts.len() + if views { 2 * long } else { 0 },
            },
            "encoder_ms": summary(&encoder_ms[i], args.samples),
            "classify_ms": summary(&classify_ms[i], args.samples),
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

/// Milliseconds for the encoder alone, then for classify, on one call.
fn time_call(clf: &Classifier, texts: &[&str]) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let e = clf.encoder().embed(texts)?;
    let encoder = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(e);
    let t = Instant::now();
    let p = clf.predict(texts)?;
    let classify = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(p);
    Ok((encoder, classify))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_prompts_match_the_criterion_bench() {
        assert_eq!(LONG.chars().count(), 783);
        assert!(instruction_views(LONG).is_some() && instruction_views(SHORT).is_none());
        let cases = builtin_cases();
        let mixed = &cases[2].calls[0];
        assert_eq!(mixed.len(), 32);
        assert_eq!(mixed.iter().filter(|t| t.as_str() == LONG).count(), 8);
    }
}
