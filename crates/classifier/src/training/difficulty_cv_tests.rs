//! Unit tests of [`super`]: the protocol on synthetic sources where the
//! inputs do or do not carry the difficulty.

use super::*;
use crate::training::progress::Silent;
use rand::Rng;

/// Four sources of 120 prompts, five models each. A prompt's input is
/// 12 random numbers; when `signal`, its IRT difficulty is 2.5 · x[0]
/// plus a per-source level, else independent noise.
fn synthetic(signal: bool, seed: u64) -> (OutcomeData, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut rows, mut x) = (Vec::new(), Vec::new());
    for s in 0..4 {
        for i in 0..120 {
            let v: Vec<f32> = (0..12).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b = if signal {
                2.5 * v[0] as f64
            } else {
                rng.random_range(-1.5..1.5)
            } + (s as f64 - 1.5) * 0.8;
            let scores = (0..5)
                .map(|m| {
                    let p = 1.0 / (1.0 + (-(m as f64 - 2.0) * 0.7 + b).exp());
                    (format!("model-{m}"), p)
                })
                .collect();
            rows.push(OutcomeRow {
                source: format!("source-{s}"),
                prompt: format!("synthetic prompt number {i} of source {s}"),
                scores,
            });
            x.push(v);
        }
    }
    let sample = (0..rows.len()).collect();
    (OutcomeData { rows, sample }, x)
}

fn options(knn_weights: Vec<f64>) -> DifficultyCvOptions {
    DifficultyCvOptions {
        kind: DifficultyTarget::WithinSourceRank,
        pair_weight: 1.0,
        embedding_dim: 12,
        knn_ks: vec![5, 20],
        knn_weights,
        inner_folds: 3,
    }
}

fn cfg() -> TrainConfig {
    TrainConfig {
        hidden: 16,
        epochs: 30,
        learning_rate: 1e-2,
        seed: 3,
        ..Default::default()
    }
}

#[test]
fn within_source_order_is_learned_when_a_feature_carries_it() {
    let (data, x) = synthetic(true, 1);
    for weights in [vec![0.0], vec![0.0, 0.5, 1.0]] {
        let cv = difficulty_cv(
            &data,
            &x,
            &options(weights.clone()),
            &IrtConfig::default(),
            &cfg(),
            &Silent,
        )
        .unwrap();
        assert_eq!(cv.per_source.len(), 4);
        assert!(
            cv.min_spearman > 0.6,
            "weights {weights:?}: {:?}",
            cv.per_source
                .values()
                .map(|r| r.spearman)
                .collect::<Vec<_>>()
        );
    }
    // The kNN part alone orders the held-out sources too (neighbours in
    // x[0] have similar difficulty).
    let cv = difficulty_cv(
        &data,
        &x,
        &options(vec![1.0]),
        &IrtConfig::default(),
        &cfg(),
        &Silent,
    )
    .unwrap();
    for r in cv.per_source.values() {
        assert!(r.knn.as_ref().unwrap().knn_spearman > 0.4, "{}", r.spearman);
    }
}

#[test]
fn no_order_is_invented_where_the_inputs_carry_none() {
    let (data, x) = synthetic(false, 2);
    let cv = difficulty_cv(
        &data,
        &x,
        &options(vec![0.0, 0.5, 1.0]),
        &IrtConfig::default(),
        &cfg(),
        &Silent,
    )
    .unwrap();
    // 120 prompts per source: |ρ| of pure noise is below 0.25 with
    // probability ~0.994 each.
    for (s, r) in &cv.per_source {
        assert!(r.spearman.abs() < 0.25, "{s}: {}", r.spearman);
    }
    assert!(cv.mean_spearman.abs() < 0.12, "{}", cv.mean_spearman);
}
