//! `pointsman`: one binary, one subcommand per job.

mod bench;
mod classify;
mod eval;
mod ope;
mod paths;
mod progress;
mod route;
mod serve;
mod store;
mod train_encoder;
mod train_heads;
mod train_router;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pointsman_classifier::{DeviceChoice, Engine, ModelDir, Precision};

#[derive(Parser)]
#[command(
    name = "pointsman",
    version,
    about = "A learned LLM query router: classify prompts, route them to the cheapest model likely to succeed"
)]
struct Cli {
    /// Log as JSON lines instead of text (logs go to stderr).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predict task type and difficulty for a prompt or a JSONL file of records.
    Classify(classify::ClassifyArgs),
    /// Fit predictors from data.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Choose the cheapest catalog model likely to succeed on a prompt; prints the decision as JSON.
    Route(route::RouteArgs),
    /// Compare the router with baselines on held-out outcome records (AIQ, APGR, CPT, ECE).
    Eval(eval::EvalArgs),
    /// Serve the gRPC API (Route, Classify, ReportOutcome, catalog), with health, reflection and metrics.
    Serve(serve::ServeArgs),
    /// Read the outcome store written by `serve`.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Measure speed on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train the task-type and difficulty heads on the encoder's embeddings.
    Heads(train_heads::TrainHeadsArgs),
    /// Fine-tune the encoder's top layers with LoRA adapters (jointly with a task head); writes the adapter.
    Encoder(train_encoder::TrainEncoderArgs),
    /// Fit the success model P(model succeeds | prompt) on outcome records; writes a JSON artifact.
    Router(train_router::TrainRouterArgs),
}

/// Where the encoder and the heads come from; shared by every command that reads prompts.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A BERT-family model directory in Hugging Face layout (config.json, tokenizer.json, model.safetensors).
    #[arg(long, default_value = paths::DEFAULT_MODEL_DIR)]
    pub model_dir: PathBuf,
    /// Trained heads (safetensors; metadata in the .json beside it).
    #[arg(long, default_value = paths::DEFAULT_HEADS)]
    pub heads: PathBuf,
    /// Where the encoder runs: cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Number format of the CPU encoder's dense products: f32; bf16 (AVX-512 BF16 CPUs) or int8 (AVX-512 VNNI, or AVX2 with FMA: the same results), faster with embeddings moved slightly (f32, with a warning, on other CPUs). Default: int8 where the CPU has AVX-512 VNNI or AVX2 with FMA, else f32. See docs/PERFORMANCE.md.
    #[arg(long)]
    pub precision: Option<Precision>,
    /// A LoRA adapter (from `pointsman train encoder`) merged into the encoder weights at load; the heads must be trained for it (`train heads --adapter`). Default: none.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

impl ModelArgs {
    /// The classifier's CPU engine for `--precision`.
    pub fn engine(&self) -> Engine {
        Engine::Native(self.precision.unwrap_or_else(Precision::cpu_default))
    }

    /// The verified model directory, with `--adapter` merged in when given.
    pub fn open_dir(&self) -> anyhow::Result<ModelDir> {
        let adapter = self.adapter.as_deref().map(paths::resolve);
        Ok(ModelDir::open_with_adapter(
            &paths::resolve(&self.model_dir),
            adapter.as_deref(),
        )?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let result = match cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Train(TrainCommand::Heads(args)) => train_heads::run(args),
        Command::Train(TrainCommand::Encoder(args)) => train_encoder::run(args),
        Command::Train(TrainCommand::Router(args)) => train_router::run(args),
        Command::Route(args) => route::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Store(cmd) => store::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POINTSMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
