//! `pointsman classify`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pointsman_classifier::{Classifier, Prediction};
use pointsman_records::{read_records, Record};
use serde_json::json;

use crate::{paths, ModelArgs};

#[derive(Args)]
pub struct ClassifyArgs {
    /// The prompt to classify (or use --input).
    #[arg(conflicts_with = "input", required_unless_present = "input")]
    prompt: Option<String>,
    /// JSONL records (DESIGN.md format) to classify; `-` reads stdin.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Prompts per encoder pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    model: ModelArgs,
}

/// One output line: `{"id", "task", "task_scores", "difficulty"}`.
pub fn output_line(id: Option<&str>, p: &Prediction) -> serde_json::Value {
    json!({"id": id, "task": p.task, "task_scores": p.task_scores, "difficulty": p.difficulty})
}

pub fn load_classifier(model: &ModelArgs) -> anyhow::Result<Classifier> {
    let heads = paths::resolve(&model.heads);
    Ok(Classifier::from_dir(
        model.open_dir()?,
        &heads,
        model.device,
        model.engine(),
    )?)
}

pub fn run(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let classifier = load_classifier(&args.model)?;
    if let Some(prompt) = args.prompt {
        let p = classifier.predict(&[prompt.as_str()])?.remove(0);
        println!("{}", output_line(None, &p));
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.input.expect("clap requires prompt or input");
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ))
    };
    let bar = progress_bar(&path);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    let mut pending: Vec<Record> = Vec::new();
    let chunk = args.batch_size.max(1) * 8;
    for item in read_records(reader) {
        match item {
            Ok(r) => pending.push(r),
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("error: {e}"));
            }
        }
        if pending.len() >= chunk {
            emit(&classifier, &mut pending, args.batch_size, &mut out, &bar)?;
        }
    }
    emit(&classifier, &mut pending, args.batch_size, &mut out, &bar)?;
    out.flush()?;
    bar.finish_and_clear();
    if failed > 0 {
        eprintln!("{failed} malformed line(s) skipped; every other record was classified");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn emit(
    classifier: &Classifier,
    pending: &mut Vec<Record>,
    batch: usize,
    out: &mut impl Write,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let texts: Vec<&str> = pending.iter().map(|r| r.prompt.as_str()).collect();
    let results = classifier.embed_and_predict(&texts, batch)?;
    for (r, e) in pending.iter().zip(results) {
        writeln!(out, "{}", output_line(Some(&r.id), &e.prediction))?;
    }
    bar.inc(pending.len() as u64);
    pending.clear();
    Ok(())
}

/// A spinner with a count on a terminal; hidden when stderr is piped.
fn progress_bar(path: &std::path::Path) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let total = (path.as_os_str() != "-")
        .then(|| std::fs::File::open(path).ok())
        .flatten()
        .map(|f| std::io::BufReader::new(f).lines().count() as u64);
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} prompts [{elapsed_precise}] {per_sec}",
        )
        .expect("valid template"),
    );
    bar
}
