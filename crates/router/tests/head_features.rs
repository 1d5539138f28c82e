//! The heads' outputs as success features (crate::head_features): rows
//! without them (and fits told to read the embedding alone) give the
//! artifact of before; an artifact that reads them records which, round-trips, refuses
//! to decide without them and fails at load when they are corrupt.

use pointsman_router::{
    fit, PromptInput, RouterError, Selection, SuccessModel, TrainConfig, TrainingRow,
};

mod common;
use common::Rng;

const DIM: usize = 8;

/// Rows with 0/1 outcomes for two models that follow the first head
/// output; the embedding is noise.
fn rows(n: usize, rng: &mut Rng, with_heads: bool) -> Vec<TrainingRow> {
    (0..n)
        .map(|_| {
            let embedding: Vec<f32> = (0..DIM).map(|_| rng.normal() as f32).collect();
            let heads = [rng.normal() as f32, rng.uniform() as f32];
            let outcomes = (0..2)
                .map(|m| {
                    let logit = [0.0, 1.0][m] - 2.0 * heads[0] as f64;
                    let y = rng.uniform() < 1.0 / (1.0 + (-logit).exp());
                    (m, if y { 1.0 } else { 0.0 })
                })
                .collect();
            TrainingRow {
                embedding,
                task_scores: vec![1.0],
                outcomes,
                head_outputs: if with_heads { heads.to_vec() } else { vec![] },
            }
        })
        .collect()
}

fn names() -> Vec<String> {
    vec!["small".into(), "large".into()]
}

fn features() -> Vec<String> {
    vec!["task:code".into(), "difficulty".into()]
}

fn config(inputs: Vec<PromptInput>) -> TrainConfig {
    TrainConfig {
        epochs: 100,
        head_features: features(),
        selection: Some(Selection {
            inputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn without_head_outputs_or_with_the_embedding_alone_the_fit_is_as_before() {
    let with = rows(300, &mut Rng(5), true);
    let without = rows(300, &mut Rng(5), false);
    // The default selection on rows without head outputs (what `eval`,
    // `train router` and `--from-store` give without --head-features)...
    let cfg = TrainConfig {
        epochs: 100,
        ..Default::default()
    };
    let plain = fit(names(), vec!["any".into()], &without, &cfg, "t").unwrap();
    // ...and named features on the rows with the embedding alone tried:
    // the same artifact, byte for byte.
    let named = fit(
        names(),
        vec!["any".into()],
        &with,
        &config(vec![PromptInput::Embedding]),
        "t",
    )
    .unwrap();
    assert_eq!(plain.to_json(), named.to_json());
    // The default selection given the named outputs tries the embedding
    // alone too: head features are opt-in.
    let default = TrainConfig {
        epochs: 100,
        head_features: features(),
        ..Default::default()
    };
    let defaulted = fit(names(), vec!["any".into()], &with, &default, "t").unwrap();
    assert_eq!(plain.to_json(), defaulted.to_json());
    let json = plain.to_json();
    assert!(
        !json.contains("head_features") && !json.contains("prompt_input"),
        "an artifact without head features keeps the old layout"
    );
    // It decides with or without head outputs, identically.
    let e = &with[0].embedding;
    let p = plain.predict(&["small", "large"], e, &[1.0]);
    let q = plain
        .try_predict(&["small", "large"], e, &[1.0], &[0.3, 0.1])
        .unwrap();
    assert_eq!(p, q);
}

#[test]
fn a_head_feature_artifact_records_them_round_trips_and_refuses_without_them() {
    let train = rows(400, &mut Rng(6), true);
    let model = fit(
        names(),
        vec!["any".into()],
        &train,
        &config(vec![PromptInput::Heads]),
        "t",
    )
    .unwrap();
    let sel = model.selection.as_ref().unwrap();
    assert_eq!(sel.prompt_input, PromptInput::Heads, "{sel}");
    assert_eq!(model.head_feature_names(), features().as_slice());
    assert_eq!(model.difficulty_weights.len(), 2);
    let back = SuccessModel::from_json(&model.to_json()).unwrap();
    assert_eq!(back, model);
    // The signal is read: an easy prompt (low first output) beats a hard one.
    let e = &train[0].embedding;
    let p = |h0: f32| back.try_predict(&["small"], e, &[1.0], &[h0, 0.5]).unwrap()[0];
    assert!(p(-1.5) > p(1.5) + 0.3, "{} {}", p(-1.5), p(1.5));
    // Missing or non-finite outputs: an error naming the field.
    for bad in [&[][..], &[0.1][..], &[f32::NAN, 0.0][..]] {
        let err = back.try_predict(&["small"], e, &[1.0], bad).unwrap_err();
        assert!(matches!(err, RouterError::MissingFeatures(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("head_features") || text.contains("task:code"),
            "{text}"
        );
    }
    // By name from a classification, with the difficulty score.
    let h = back.head_features.as_ref().unwrap();
    let scores = [("chat", 0.6f32), ("code", 0.4)];
    assert_eq!(
        h.outputs_from(scores.iter().copied(), Some(0.7), &[])
            .unwrap(),
        [0.4, 0.7]
    );
    let err = h
        .outputs_from(scores.iter().copied(), None, &[])
        .unwrap_err();
    assert!(err.to_string().contains("difficulty"), "{err}");
}

#[test]
fn corrupt_head_features_fail_at_load_naming_them() {
    let train = rows(200, &mut Rng(7), true);
    let model = fit(
        names(),
        vec!["any".into()],
        &train,
        &config(vec![PromptInput::EmbeddingAndHeads]),
        "t",
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&model.to_json()).unwrap();
    v["head_features"]["mean"] = serde_json::json!([0.0]);
    let err = SuccessModel::from_json(&v.to_string()).unwrap_err();
    assert!(err.to_string().contains("head_features"), "{err}");
    // Weights for the embedding alone under a feature block: a shape error.
    let mut v: serde_json::Value = serde_json::from_str(&model.to_json()).unwrap();
    let w = v["difficulty_weights"].as_array().unwrap()[..DIM].to_vec();
    v["difficulty_weights"] = serde_json::Value::Array(w);
    assert!(SuccessModel::from_json(&v.to_string()).is_err());
}

#[test]
fn rows_without_the_named_outputs_are_refused() {
    let mut train = rows(200, &mut Rng(8), true);
    train[17].head_outputs.pop();
    let err = fit(
        names(),
        vec!["any".into()],
        &train,
        &config(vec![PromptInput::Embedding, PromptInput::Heads]),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("row 17"), "{err}");
}
