//! `pointsman eval --from-store/--from-export --candidate`: off-policy
//! evaluation of a candidate router on logged traffic, and `eval --explore`:
//! what an exploration rate costs on a data set. The estimators live in
//! the eval crate (`pointsman_eval::ope`, `explore_cost`); this file parses
//! and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pointsman_eval::ope::{self, OpeConfig};
use pointsman_eval::{exploration_cost_over_splits, read_records, EvalConfig, EvalSet};
use pointsman_records::Record;
use pointsman_router::{Policy, SuccessModel};

/// Flags of the off-policy evaluation and of the exploration cost.
#[derive(Args, Clone, Default)]
pub struct OpeArgs {
    /// Off-policy evaluation on this outcome store (a SQLite file or PostgreSQL URL, as `serve --store`): the logged decisions, their propensities and outcomes. Needs --candidate.
    #[arg(long, requires = "candidate", conflicts_with_all = ["data", "train", "from_export"])]
    pub from_store: Option<String>,
    /// Off-policy evaluation on a `pointsman store export` file (JSONL) instead of the store. Needs --candidate.
    #[arg(long, requires = "candidate", conflicts_with_all = ["data", "train"])]
    pub from_export: Option<PathBuf>,
    /// The candidate router artifact estimated from the logs (`train router` output).
    #[arg(long)]
    pub candidate: Option<PathBuf>,
    /// The candidate's policy (target:T or lambda:L successes per USD); also the policy `--explore` prices. A target is resolved through the candidate artifact's target table (a mean P over the traffic within 1 - T of the best, at least cost), or is the per-prompt floor for an artifact without one. Default target:0.8.
    #[arg(long, value_parser = ope::parse_policy)]
    pub policy: Option<Policy>,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Fewest logged decisions with an outcome the estimate needs.
    #[arg(long, default_value_t = 50)]
    pub min_rows: usize,
    /// With --train/--test or --data/--folds: also print the expected extra spend per 1,000 requests and the quality change of exploring at this rate in [0, 1) under --policy.
    #[arg(long, value_parser = explore_rate)]
    pub explore: Option<f64>,
}

/// An exploration rate (`eval --explore`, `serve --explore`): a number in
/// [0, 1).
pub fn explore_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    pointsman_router::explore::check_rate(v)
}

impl OpeArgs {
    pub fn policy(&self) -> Policy {
        self.policy.unwrap_or(Policy::Target { target: 0.8 })
    }

    pub fn wanted(&self) -> bool {
        self.from_store.is_some() || self.from_export.is_some()
    }
}

/// The logged records, from the store (through `OutcomeStore::export`) or
/// an export file.
fn logged_records(args: &OpeArgs) -> anyhow::Result<Vec<Record>> {
    if let Some(path) = &args.from_store {
        let store = crate::store::open_existing(path).context("--from-store")?;
        let mut out = Vec::new();
        store.export(&mut |d| {
            out.push(d.to_record());
            Ok(())
        })?;
        return Ok(out);
    }
    let path = args.from_export.as_ref().expect("checked by the caller");
    Ok(read_records(path)?)
}

pub fn run(args: &OpeArgs, json: bool, seed: u64) -> anyhow::Result<ExitCode> {
    let path = args.candidate.as_ref().expect("clap requires --candidate");
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--candidate {}", path.display()))?;
    let model = SuccessModel::from_json(&text)
        .with_context(|| format!("--candidate {}", path.display()))?;
    let records = logged_records(args)?;
    let logged = ope::logged_rows(&records)?;
    eprintln!(
        "{} logged decisions: {} with an outcome for their model, {} without (skipped)",
        records.len(),
        logged.rows.len(),
        logged.without_outcome
    );
    let cfg = OpeConfig {
        policy: args.policy(),
        bootstrap: args.bootstrap,
        seed,
        min_rows: args.min_rows,
    };
    let report = ope::evaluate(&model, &logged.rows, &cfg)?;
    if json {
        println!("{}", report.to_json());
    } else {
        println!("candidate {} under {:?}", path.display(), cfg.policy);
        print!("{}", report.table());
    }
    if json {
        // The table carries them otherwise.
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `eval --explore`: exploration's cost over the evaluation's splits.
pub fn print_exploration_cost(
    args: &OpeArgs,
    splits: &[(EvalSet, EvalSet)],
    cfg: &EvalConfig,
    json: bool,
) -> anyhow::Result<()> {
    let Some(rate) = args.explore else {
        return Ok(());
    };
    let cost = exploration_cost_over_splits(splits, cfg, args.policy(), rate)?;
    // With --json, stdout holds one JSON document: the line goes to stderr.
    if json {
        eprint!("{}", cost.line(args.policy()));
    } else {
        print!("{}", cost.line(args.policy()));
    }
    Ok(())
}
