//! Unit tests of [`super`]: the protocol on synthetic sources where the
//! inputs do or do not carry the difficulty.

use super::*;
use crate::training::progress::Silent;
use rand::Rng;

/// Four sources of 120 prompts, five models each. A prompt's input is
/// 12 random numbers; when `signal`, its IRT difficulty is 2.5 · x[0]
/// plus a per-source level, else independent noise.
fn synthetic(signal: bool, seed: u64) -> (OutcomeData, Vec<Vec<f32>>) {
    sources(seed, |s, v, rng| {
        let b = if signal {
            2.5 * v[0] as f64
        } else {
            rng.random_range(-1.5..1.5)
        };
        b + (s as f64 - 1.5) * 0.8
    })
}

/// Four sources of 120 prompts, five models each, inputs 12 random
/// numbers; `difficulty(source, input, rng)` gives each prompt's IRT
/// difficulty.
fn sources(
    seed: u64,
    difficulty: impl Fn(usize, &[f32], &mut rand::rngs::StdRng) -> f64,
) -> (OutcomeData, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut rows, mut x) = (Vec::new(), Vec::new());
    for s in 0..4 {
        for i in 0..120 {
            let v: Vec<f32> = (0..12).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b = difficulty(s, &v, &mut rng);
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

/// Four sources of 120 prompts; only source 3's difficulty is in the
/// inputs (2.5 · x[1]); the others' is noise.
fn one_source_signal(seed: u64) -> (OutcomeData, Vec<Vec<f32>>) {
    sources(seed, |s, v, rng| {
        if s == 3 {
            2.5 * v[1] as f64
        } else {
            rng.random_range(-1.5..1.5)
        }
    })
}

fn within(data: &OutcomeData, x: &[Vec<f32>], knn: Vec<f64>, folds: usize) -> Result<DifficultyCv> {
    crate::training::difficulty_within::difficulty_within_source_cv(
        data,
        x,
        &options(knn),
        folds,
        &IrtConfig::default(),
        &cfg(),
        &Silent,
    )
}

#[test]
fn within_source_folds_order_every_source_when_the_inputs_carry_it() {
    let (data, x) = synthetic(true, 1);
    let cv = within(&data, &x, vec![0.0], 5).unwrap();
    assert_eq!(cv.within_source_folds, Some(5));
    assert_eq!(cv.per_source.len(), 4);
    for (s, r) in &cv.per_source {
        // Every prompt of the source is predicted once, out of fold.
        assert_eq!(r.n, 120, "{s}");
        assert!(r.spearman > 0.6, "{s}: {}", r.spearman);
    }
    assert!(cv.markdown().contains("5 folds within each source"));
}

#[test]
fn within_source_folds_learn_what_only_the_source_itself_shows() {
    // Held out whole, source 3 cannot be ordered (the other sources teach
    // nothing about x[1]); with four fifths of it in training, it can.
    let (data, x) = one_source_signal(4);
    let loso = difficulty_cv(
        &data,
        &x,
        &options(vec![0.0]),
        &IrtConfig::default(),
        &cfg(),
        &Silent,
    )
    .unwrap();
    let inside = within(&data, &x, vec![0.0], 5).unwrap();
    let (l, w) = (
        loso.per_source["source-3"].spearman,
        inside.per_source["source-3"].spearman,
    );
    assert!(l.abs() < 0.25, "leave-one-source-out {l}");
    assert!(w > 0.35, "within the source {w}");
}

#[test]
fn within_source_folds_refuse_the_knn_blend_and_one_fold() {
    let (data, x) = synthetic(true, 1);
    let err = within(&data, &x, vec![0.0, 0.5], 5)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--difficulty-knn-weight 0"), "{err}");
    let err = within(&data, &x, vec![0.0], 1).err().unwrap().to_string();
    assert!(err.contains("at least 2 folds"), "{err}");
    // 120 prompts a source: 13 folds of ten would need 130.
    let err = within(&data, &x, vec![0.0], 13).err().unwrap().to_string();
    assert!(err.contains("130 sampled prompts"), "{err}");
}
