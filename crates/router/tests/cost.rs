//! The per-prompt cost model on synthetic costs: where a call's cost
//! follows the prompt (answer length), the fitted artifact must carry and
//! use the estimate; where it does not, it must fall back to the per-model
//! averages (factor 1 everywhere).

use pointsman_router::{fit_with_costs, RowCosts, SuccessModel, TrainConfig, TrainingRow};

mod common;
use common::Rng;

const DIM: usize = 16;
/// Price per unit of length of three models.
const PRICE: [f64; 3] = [1.0, 3.0, 10.0];

/// `n` prompts, each with a 0/1 outcome and a cost for every model, and
/// the true log length of each prompt's answers. With `by_prompt` the
/// answer length is exp(0.8 × the first coordinate) (times ±10% noise), so
/// a prompt's calls cost up to several times the mean for every model;
/// without, the length is noise (±35%) unrelated to the prompt.
fn data(n: usize, by_prompt: bool, rng: &mut Rng) -> (Vec<TrainingRow>, Vec<RowCosts>, Vec<f64>) {
    let (mut rows, mut costs, mut lengths) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let embedding: Vec<f32> = (0..DIM).map(|_| rng.normal() as f32).collect();
        let log_len = if by_prompt {
            0.8 * embedding[0] as f64
        } else {
            0.0
        };
        let outcomes = (0..3)
            .map(|m| {
                (
                    m,
                    if rng.uniform() < 0.3 + 0.2 * m as f64 {
                        1.0
                    } else {
                        0.0
                    },
                )
            })
            .collect();
        let noise = if by_prompt { 0.1 } else { 0.35 };
        costs.push(
            (0..3)
                .map(|m| (m, PRICE[m] * (log_len + noise * rng.normal()).exp()))
                .collect(),
        );
        rows.push(TrainingRow {
            embedding,
            task_scores: vec![1.0],
            outcomes,
            head_outputs: Vec::new(),
        });
        lengths.push(log_len);
    }
    (rows, costs, lengths)
}

fn train(rows: &[TrainingRow], costs: &[RowCosts]) -> SuccessModel {
    let cfg = TrainConfig {
        // The success model's own selection is tested elsewhere.
        selection: None,
        epochs: 50,
        ..Default::default()
    };
    let models = vec!["cheap".into(), "mid".into(), "dear".into()];
    fit_with_costs(models, vec!["any".into()], rows, costs, &cfg, "test").unwrap()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn cost_that_follows_the_prompt_is_estimated_and_used() {
    let mut rng = Rng(11);
    let (rows, costs, _) = data(600, true, &mut rng);
    let model = train(&rows, &costs);
    let cost = model.cost.as_ref().expect("a cost model");
    assert_ne!(cost.choice, "averages", "{cost}");
    // The averages candidate was measured and lost.
    let loss = |name: &str| {
        cost.cv_loss
            .iter()
            .find(|c| c.candidate == name)
            .unwrap()
            .mse
    };
    let chosen = cost
        .cv_loss
        .iter()
        .map(|c| c.mse)
        .fold(f64::INFINITY, f64::min);
    assert!(chosen < 0.5 * loss("averages"), "{cost}");
    // On fresh prompts the factors follow the true length.
    let (test, test_costs, lengths) = data(300, true, &mut rng);
    let names = ["cheap", "mid", "dear"];
    let mut est = Vec::new();
    let (mut err_model, mut err_mean) = (0.0, 0.0);
    for (r, c) in test.iter().zip(&test_costs) {
        let f = model.cost_factors(&names, &r.embedding);
        est.push(f[2].ln());
        for &(m, usd) in c {
            let mean = cost.mean_cost_usd[m];
            err_model += (usd - mean * f[m]).powi(2);
            err_mean += (usd - mean).powi(2);
        }
    }
    let rho = correlation(&est, &lengths);
    assert!(rho > 0.9, "log factor vs true log length: {rho}");
    assert!(
        err_model < 0.3 * err_mean,
        "squared error {err_model} vs {err_mean} with mean costs"
    );
    // A model the artifact never saw keeps its catalog cost.
    assert_eq!(model.cost_factors(&["other"], &test[0].embedding), [1.0]);
    // The estimate survives the artifact's round trip.
    let back = SuccessModel::from_json(&model.to_json()).unwrap();
    assert_eq!(
        back.cost_factors(&names, &test[0].embedding),
        model.cost_factors(&names, &test[0].embedding)
    );
}

#[test]
fn cost_unrelated_to_the_prompt_falls_back_to_the_averages() {
    let mut rng = Rng(12);
    let (rows, costs, _) = data(600, false, &mut rng);
    let model = train(&rows, &costs);
    let cost = model.cost.as_ref().expect("a cost model");
    assert_eq!(cost.choice, "averages", "{cost}");
    assert!(cost.weights.is_empty());
    // Mean costs near the prices times E[exp(0.35 z)] = 1.063.
    for (m, &p) in PRICE.iter().enumerate() {
        let rel = cost.mean_cost_usd[m] / (p * 1.063);
        assert!((rel - 1.0).abs() < 0.05, "model {m}: {rel}");
    }
    let (test, _, _) = data(20, false, &mut rng);
    for r in &test {
        assert_eq!(
            model.cost_factors(&["cheap", "mid", "dear"], &r.embedding),
            [1.0; 3]
        );
    }
}

#[test]
fn too_few_rows_or_no_costs_give_the_averages() {
    let mut rng = Rng(13);
    let (rows, costs, _) = data(20, true, &mut rng);
    let model = train(&rows, &costs);
    let cost = model.cost.as_ref().unwrap();
    assert_eq!((cost.choice.as_str(), cost.folds), ("averages", 0));
    // Unpriced outcomes (NaN, as `train router` without prices gives).
    let (rows, _, _) = data(100, true, &mut rng);
    let nan: Vec<RowCosts> = rows.iter().map(|_| vec![(0, f64::NAN)]).collect();
    let cost = train(&rows, &nan).cost.unwrap();
    assert_eq!(cost.choice, "averages");
    assert_eq!(cost.mean_cost_usd, [0.0; 3]);
}

#[test]
fn a_corrupt_cost_model_fails_at_load() {
    let mut rng = Rng(14);
    let (rows, costs, _) = data(200, true, &mut rng);
    let model = train(&rows, &costs);
    assert!(model.cost.as_ref().is_some_and(|c| !c.weights.is_empty()));
    let mut bad = model.clone();
    bad.cost.as_mut().unwrap().offset.pop();
    let err = SuccessModel::from_json(&bad.to_json()).unwrap_err();
    assert!(err.to_string().contains("cost"), "{err}");
    let mut bad = model.clone();
    bad.cost.as_mut().unwrap().weights[0][3] = f32::NAN;
    // NaN serialises as null: refused by the parser or the check.
    assert!(SuccessModel::from_json(&bad.to_json()).is_err());
    let mut bad = model;
    bad.cost.as_mut().unwrap().mean_cost_usd[1] = -1.0;
    let err = SuccessModel::from_json(&bad.to_json()).unwrap_err();
    assert!(err.to_string().contains("cost"), "{err}");
}
