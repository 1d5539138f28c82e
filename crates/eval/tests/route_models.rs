//! `eval --route-models`: the routers choose among a subset of the data's
//! models; the others only train the success model. Synthetic sets (no
//! encoder), so they run in seconds.

use pointsman_eval::{evaluate, summarise, EvalConfig, EvalRow, EvalSet};
use pointsman_router::TrainConfig;

mod common;
use common::synthetic;

fn config(routed: &[&str]) -> EvalConfig {
    EvalConfig {
        train: TrainConfig {
            epochs: 40,
            rank: 2,
            routed_models: routed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        knn_k: 5,
        ..Default::default()
    }
}

/// The set with only `keep`'s models, in that order.
fn only(set: &EvalSet, keep: &[usize]) -> EvalSet {
    EvalSet {
        models: keep.iter().map(|&m| set.models[m].clone()).collect(),
        rows: set
            .rows
            .iter()
            .map(|r| EvalRow {
                outcomes: keep.iter().map(|&m| r.outcomes[m]).collect(),
                ..r.clone()
            })
            .collect(),
        ..set.clone()
    }
}

fn json_of(set: &EvalSet, test: &EvalSet, cfg: &EvalConfig, models: &[String]) -> String {
    let (results, rows) = evaluate(set, test, cfg).unwrap();
    summarise(&results, models, rows).to_json().to_string()
}

#[test]
fn naming_every_model_in_order_changes_nothing() {
    let (train, test) = (synthetic(150, 3, 1), synthetic(60, 3, 2));
    assert_eq!(
        json_of(&train, &test, &config(&[]), &train.models),
        json_of(&train, &test, &config(&["m0", "m1", "m2"]), &train.models)
    );
}

#[test]
fn the_baselines_see_only_the_routed_models() {
    // The zero router, the single models, kNN and the oracle do not read
    // the training-only model: they equal a run on data without it.
    let (train, test) = (synthetic(150, 4, 3), synthetic(60, 4, 4));
    let keep = [0, 2, 3];
    let names: Vec<String> = keep.iter().map(|&m| train.models[m].clone()).collect();
    let routed: Vec<&str> = names.iter().map(String::as_str).collect();
    let (with, rows) = evaluate(&train, &test, &config(&routed)).unwrap();
    let (without, rows_without) =
        evaluate(&only(&train, &keep), &only(&test, &keep), &config(&[])).unwrap();
    assert_eq!(rows, rows_without);
    let a = summarise(&with, &names, rows).to_json();
    let b = summarise(&without, &names, rows).to_json();
    assert_eq!(a["models"], b["models"]);
    for router in ["knn", "cheapest", "best_single", "oracle", "zero", "random"] {
        assert!(a["routers"][router].is_object(), "no router {router}");
        assert_eq!(a["routers"][router], b["routers"][router], "{router}");
    }
    // Every decision is one of the three routed models: each operating
    // point's shares are three and sum to one.
    for share in a["routers"]["pointsman"]["shares"].as_array().unwrap() {
        let share: Vec<f64> = serde_json::from_value(share.clone()).unwrap();
        assert_eq!(share.len(), 3);
        assert!((share.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{share:?}");
    }
}

#[test]
fn an_unknown_routed_model_is_named() {
    let (train, test) = (synthetic(60, 2, 5), synthetic(20, 2, 6));
    let err = evaluate(&train, &test, &config(&["m0", "gpt-9"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gpt-9") && err.contains("--route-models"),
        "{err}"
    );
}
