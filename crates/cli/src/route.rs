//! `pointsman route`: embed a prompt, estimate each catalog model's
//! P(success) and print the policy's decision as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use pointsman_classifier::embed_cache;
use pointsman_server::core::decide::decide;
use pointsman_server::core::validate::check_route;
use pointsman_server::core::{RouteConstraints, RouteRequest};
use pointsman_server::{Limits, StateHolder, StateSource};
use serde_json::json;

use crate::classify::load_classifier;
use crate::{paths, ModelArgs};

#[derive(Args)]
pub struct RouteArgs {
    /// The prompt to route.
    prompt: String,
    /// Model catalog (TOML).
    #[arg(long, default_value = "models/catalogs/routerbench.toml")]
    catalog: PathBuf,
    /// Success-model artifact from `pointsman train router`.
    #[arg(long, default_value = crate::paths::DEFAULT_ROUTER)]
    router: PathBuf,
    /// Quality target in [0, 1] (default: the catalog's): a mean
    /// P(success) over the traffic at most 1 - target below always picking
    /// the likeliest model, met at least cost (the lambda the router
    /// artifact's target table gives for it; an artifact trained before the
    /// table keeps the older per-prompt floor).
    #[arg(long, conflicts_with = "lambda")]
    target: Option<f64>,
    /// Willingness-to-pay policy instead: maximise P - lambda x cost (lambda per USD).
    #[arg(long)]
    lambda: Option<f64>,
    /// Only these models may be chosen (repeat the flag).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// Most a call may be expected to cost, in USD.
    #[arg(long)]
    max_cost: Option<f64>,
    /// Most a model's typical latency may be, in ms.
    #[arg(long)]
    max_latency_ms: Option<f64>,
    /// Completion tokens expected (for cost and the context-window check).
    /// Unset: the router artifact's per-prompt estimate (its cost model
    /// times serve's default of 256 tokens), as `serve` prices a request
    /// that states none; set: the catalog's prices for exactly this many.
    #[arg(long)]
    output_tokens: Option<u32>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: RouteArgs) -> anyhow::Result<ExitCode> {
    // The same core as `pointsman serve` (validate, decide), in-process:
    // only the classifier call and the store differ.
    let classifier = load_classifier(&args.model)?;
    let dir = args.model.open_dir()?;
    let encoder_id = embed_cache::encoder_id(classifier.encoder(), &dir.weights_sha256);
    let state = StateHolder::load(StateSource {
        catalog: paths::resolve(&args.catalog),
        router: Some(paths::resolve(&args.router)),
        heads_version: classifier.heads().metadata.version.clone(),
        embedding_dim: classifier.encoder().dim(),
        encoder_id: encoder_id.clone(),
    })?
    .snapshot();
    let limits = Limits {
        // The encoder truncates long prompts itself; a local command has no
        // memory to protect from a remote client.
        max_prompt_bytes: usize::MAX,
        default_output_tokens: args
            .output_tokens
            .unwrap_or(Limits::default().default_output_tokens),
        ..Limits::default()
    };
    let request = RouteRequest {
        prompt: args.prompt,
        target: args.target,
        lambda_per_usd: args.lambda,
        constraints: RouteConstraints {
            allowed_models: args.allow,
            max_cost_usd: args.max_cost,
            max_latency_ms: args.max_latency_ms,
        },
        expected_output_tokens: args.output_tokens,
        tenant: None,
    };
    let plan = check_route(&limits, "", &request, &state)?;
    let embedded = classifier
        .embed_and_predict(&[request.prompt.as_str()], 1)?
        .remove(0);
    let routed = decide(&limits, &encoder_id, &state, "", &request, embedded, plan)?;
    let success = state.success.as_ref().expect("check_route needs one");
    let unfitted = state.catalog.names_outside(&success.models);
    let mut out = serde_json::to_value(&routed.decision)?;
    out["prediction"] = json!({
        "task": routed.classification.task,
        "difficulty": routed.classification.difficulty,
    });
    out["typical_failure"] = json!(routed.typical_failure);
    out["estimated_input_tokens"] = json!(routed.input_tokens);
    out["models_on_prior"] = json!(unfitted);
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
