//! `pointsman route`: embed a prompt, estimate each catalog model's
//! P(success) and print the policy's decision as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pointsman_classifier::{classifier::load_encoder, embed_cache, Encoder};
use pointsman_router::{
    catalog::estimate_tokens, policy::decide, Catalog, Constraints, Policy, SuccessModel,
};
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
    /// Quality target in [0, 1] (default: the catalog's): the cheapest model
    /// whose P(success) is at least target - (1 - the best model's P), i.e.
    /// at most 1 - target below the best model for this prompt.
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
    #[arg(long, default_value_t = 256)]
    output_tokens: u64,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let catalog_path = paths::resolve(&args.catalog);
    let text = std::fs::read_to_string(&catalog_path)
        .with_context(|| format!("cannot read {}", catalog_path.display()))?;
    let catalog =
        Catalog::from_toml_str(&text).with_context(|| catalog_path.display().to_string())?;
    let router_path = paths::resolve(&args.router);
    let artifact = std::fs::read_to_string(&router_path)
        .with_context(|| format!("cannot read {}", router_path.display()))?;
    let success =
        SuccessModel::from_json(&artifact).with_context(|| router_path.display().to_string())?;
    let dir = args.model.open_dir()?;
    // An artifact fitted without the task head needs only the encoder.
    let encoder_only = success.tasks == ["any"];
    let (classifier, encoder) = if encoder_only {
        (
            None,
            Some(load_encoder(&dir, args.model.device, args.model.engine())?),
        )
    } else {
        (Some(load_classifier(&args.model)?), None)
    };
    let enc: &dyn Encoder = match (&classifier, &encoder) {
        (Some(c), _) => c.encoder(),
        (_, Some(e)) => e.as_ref(),
        _ => unreachable!(),
    };
    let encoder_id = embed_cache::encoder_id(enc, &dir.weights_sha256);
    anyhow::ensure!(
        success.encoder_id.is_empty() || success.encoder_id == encoder_id,
        "{} was fitted on embeddings of encoder {}, but this encoder is {encoder_id}; retrain with `pointsman train router`",
        router_path.display(),
        success.encoder_id
    );
    anyhow::ensure!(!args.prompt.trim().is_empty(), "the prompt is empty");
    let (embedding, prediction) = match &classifier {
        Some(c) => {
            let e = c.embed_and_predict(&[args.prompt.as_str()], 1)?.remove(0);
            (e.embedding, Some(e.prediction))
        }
        None => (enc.embed(&[args.prompt.as_str()])?.remove(0), None),
    };
    let task_scores = match &prediction {
        Some(p) => success.task_vector(p.task_scores.iter().map(|(k, v)| (k.as_str(), *v))),
        None => vec![1.0],
    };
    let names = catalog.names();
    let p = success.predict(&names, &embedding, &task_scores);
    let input_tokens = estimate_tokens(&args.prompt);
    let cost: Vec<f64> = catalog
        .models
        .iter()
        .map(|m| m.cost_usd(input_tokens, args.output_tokens))
        .collect();
    let policy = match args.lambda {
        Some(l) => Policy::WillingnessToPay { lambda_per_usd: l },
        None => Policy::Target {
            target: args.target.unwrap_or(catalog.default_target),
        },
    };
    let constraints = Constraints {
        allowed: (!args.allow.is_empty()).then_some(args.allow),
        max_cost_usd: args.max_cost,
        max_latency_ms: args.max_latency_ms,
        min_context_tokens: Some(input_tokens + args.output_tokens),
    };
    let decision = decide(&catalog, &p, &cost, policy, &constraints)?;
    let unfitted: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| success.model_index(n).is_none())
        .collect();
    let mut out = serde_json::to_value(&decision)?;
    out["prediction"] = match &prediction {
        Some(p) => json!({"task": p.task, "difficulty": p.difficulty}),
        None => serde_json::Value::Null,
    };
    out["estimated_input_tokens"] = json!(input_tokens);
    out["models_on_prior"] = json!(unfitted);
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
