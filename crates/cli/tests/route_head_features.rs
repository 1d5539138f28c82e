//! `pointsman route` (the decision pipeline `serve` runs) with a router
//! artifact that reads the task head's outputs: the real classifier's task
//! scores reach the router by label, and an artifact naming a label the
//! heads lack refuses to decide. Likewise the prompt's surface features,
//! computed from its text.

use pointsman_classifier::features::surface_features;
use pointsman_classifier::DEFAULT_TASKS;
use pointsman_router::head_features::{surface_feature, task_feature};
use pointsman_router::{fit, PromptInput, Selection, TrainConfig, TrainingRow};

mod serve_support;
use serve_support::pointsman;

/// An artifact over two catalog models that reads only the head outputs
/// `labels`: `gpt-4-1106-preview` always succeeds, `mistralai/mistral-7b-chat`
/// only on prompts whose first label's probability is low.
fn write_artifact(path: &std::path::Path, labels: &[&str]) {
    let mut seed = 11u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f32 / (1u64 << 31) as f32
    };
    let rows: Vec<TrainingRow> = (0..200)
        .map(|_| {
            let heads: Vec<f32> = labels.iter().map(|_| rnd()).collect();
            let weak = if heads[0] < 0.5 { 1.0 } else { 0.0 };
            TrainingRow {
                embedding: (0..384).map(|_| rnd() - 0.5).collect(),
                task_scores: vec![1.0],
                outcomes: vec![(0, 1.0), (1, weak)],
                head_outputs: heads,
            }
        })
        .collect();
    let features = labels.iter().map(|l| task_feature(l)).collect();
    fit_and_write(path, &rows, features, PromptInput::Heads);
}

/// Fits the two-model artifact on `rows`, its prompt term reading
/// `features` as `input` (no kNN part), and writes it to `path`.
fn fit_and_write(
    path: &std::path::Path,
    rows: &[TrainingRow],
    features: Vec<String>,
    input: PromptInput,
) {
    let cfg = TrainConfig {
        rank: 0,
        epochs: 150,
        head_features: features,
        selection: Some(Selection {
            inputs: vec![input],
            knn_weights: vec![0.0],
            ..Default::default()
        }),
        ..Default::default()
    };
    let names = vec![
        "gpt-4-1106-preview".into(),
        "mistralai/mistral-7b-chat".into(),
    ];
    let model = fit(names, vec!["any".into()], rows, &cfg, "").unwrap();
    assert_eq!(model.selection.as_ref().unwrap().prompt_input, input);
    std::fs::write(path, model.to_json()).unwrap();
}

/// P(success) of `model` in `route`'s answer for `prompt`.
fn p_success(router: &str, prompt: &str, model: &str) -> f64 {
    let out = pointsman(&["route", prompt, "--router", router, "--lambda", "1"]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == model)
        .and_then(|c| c["p_success"].as_f64())
        .unwrap_or_else(|| panic!("{model} in {v}"))
}

#[test]
fn route_passes_the_task_heads_outputs_to_an_artifact_that_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heads.json");
    write_artifact(&path, &DEFAULT_TASKS);
    let router = path.to_str().unwrap();
    // The weak model fails where the task head says "code".
    let code = p_success(
        router,
        "Write a Python function that reverses a linked list in place.",
        "mistralai/mistral-7b-chat",
    );
    let chat = p_success(
        router,
        "Hi! How are you doing today? Tell me about your weekend.",
        "mistralai/mistral-7b-chat",
    );
    assert!(code + 0.2 < chat, "code {code}, chat {chat}");

    // A label the shipped heads do not have: no decision.
    let bad = dir.path().join("bad.json");
    write_artifact(&bad, &["no_such_task", "chat"]);
    let out = pointsman(&[
        "route",
        "Hi there",
        "--router",
        bad.to_str().unwrap(),
        "--lambda",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("task:no_such_task"), "{err}");
}

/// An artifact over the same two models that reads the embedding and one
/// surface feature, the prompt's length (`surface:log_chars`): the weak
/// model succeeds on prompts under 60 words only. The training prompts
/// are real texts, their feature computed as `serve` computes it.
fn write_length_artifact(path: &std::path::Path) {
    let rows: Vec<TrainingRow> = (0..240)
        .map(|i| {
            let words = 1 + (i * 7919) % 400;
            let text = "word ".repeat(words);
            let weak = if words < 60 { 1.0 } else { 0.0 };
            TrainingRow {
                embedding: (0..384)
                    .map(|d| ((i * 31 + d * 17) % 97) as f32 / 97.0 - 0.5)
                    .collect(),
                task_scores: vec![1.0],
                outcomes: vec![(0, 1.0), (1, weak)],
                head_outputs: vec![surface_features(&text)[0]],
            }
        })
        .collect();
    let features = vec![surface_feature("log_chars")];
    fit_and_write(path, &rows, features, PromptInput::EmbeddingAndHeads);
}

#[test]
fn route_computes_the_surface_features_an_artifact_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("length.json");
    write_length_artifact(&path);
    let router = path.to_str().unwrap();
    let short = p_success(
        router,
        "Hi, what is the capital of France?",
        "mistralai/mistral-7b-chat",
    );
    let long_prompt = format!(
        "Please review the following design document carefully. {}",
        "The service keeps one queue per tenant and drains them in turn. ".repeat(40)
    );
    let long = p_success(router, &long_prompt, "mistralai/mistral-7b-chat");
    assert!(long + 0.3 < short, "short {short}, long {long}");
}
