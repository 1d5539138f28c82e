//! The learning-curve, reliability-diagram and per-row prediction parts of
//! the harness on small synthetic sets (no encoder: embeddings are drawn directly), so they run
//! in seconds.

use pointsman_eval::{
    fold_splits, learning_curve, subsample, summarise, CurveConfig, CurveSize, EvalConfig, EvalRow,
    EvalSet,
};
use pointsman_router::TrainConfig;

mod common;
use common::synthetic;

fn quick() -> EvalConfig {
    EvalConfig {
        train: TrainConfig {
            epochs: 40,
            rank: 2,
            ..Default::default()
        },
        knn_k: 5,
        ..Default::default()
    }
}

#[test]
fn subsample_draws_distinct_rows_reproducibly() {
    let set = synthetic(50, 3, 1);
    let a = subsample(&set, CurveSize::Rows(20), 7);
    let ids = |s: &EvalSet| s.rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let picked = ids(&a);
    assert_eq!(picked.len(), 20);
    let mut unique = picked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 20, "drawn without replacement");
    assert!(picked.iter().all(|id| set.rows.iter().any(|r| &r.id == id)));
    // Same seed, same draw; another seed, another draw.
    assert_eq!(ids(&subsample(&set, CurveSize::Rows(20), 7)), picked);
    assert_ne!(ids(&subsample(&set, CurveSize::Rows(20), 8)), picked);
    // `all`, or a size at least the set's, keeps every row in order.
    assert_eq!(ids(&subsample(&set, CurveSize::All, 7)), ids(&set));
    assert_eq!(ids(&subsample(&set, CurveSize::Rows(500), 7)), ids(&set));
}

#[test]
fn curve_fits_each_size_and_seed_and_writes_its_chart() {
    let set = synthetic(120, 3, 2);
    let splits = fold_splits(&set, 2, 7).unwrap();
    let sizes = vec![CurveSize::Rows(15), CurveSize::Rows(30), CurveSize::All];
    let curve = learning_curve(
        &splits,
        &CurveConfig {
            sizes: sizes.clone(),
            seeds: 3,
        },
        &quick(),
    )
    .unwrap();
    assert_eq!(curve.metric, "AIQ");
    assert_eq!(
        curve.test_rows, 120,
        "every row is tested once over the folds"
    );
    assert_eq!(
        curve.points.iter().map(|p| p.size).collect::<Vec<_>>(),
        sizes
    );
    let rows: Vec<f64> = curve.points.iter().map(|p| p.train_rows).collect();
    assert_eq!(rows, vec![15.0, 30.0, 60.0]);
    for p in &curve.points {
        let seeds = if p.size == CurveSize::All { 1 } else { 3 };
        for name in ["pointsman", "pointsman_wtp", "knn", "zero"] {
            let r = p.router(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(r.values.len(), seeds, "{name} at {}", p.size);
            assert!(r.mean().is_some_and(|v| (0.0..=1.0).contains(&v)));
        }
        assert!(p.router("pointsman").unwrap().mean_ece().is_some());
    }
    // The zero router does not learn: the same value at every size.
    let zero: Vec<f64> = curve
        .points
        .iter()
        .map(|p| p.router("zero").unwrap().mean().unwrap())
        .collect();
    assert!(zero.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-12));
    // Different subsamples give different fits (not one fit copied three times).
    let first = curve.points[0].router("knn").unwrap();
    assert!(first.range().is_some_and(|(lo, hi)| hi > lo));

    let dir = std::env::temp_dir().join(format!("pointsman-curve-{}", std::process::id()));
    curve.write(&dir).unwrap();
    let svg = std::fs::read_to_string(dir.join("learning_curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for name in ["pointsman_wtp", "knn", "zero router"] {
        assert!(svg.contains(name), "legend names {name}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("learning_curve.json")).unwrap())
            .unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 3);
    assert!(json["pays_from"].get("pointsman").is_some());
    let md = std::fs::read_to_string(dir.join("learning_curve.md")).unwrap();
    assert!(md.contains("| 15 | 15 |") && md.contains("| all | 60 |"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_model_curves_report_apgr() {
    let set = synthetic(60, 2, 3);
    let splits = fold_splits(&set, 2, 7).unwrap();
    let curve = learning_curve(
        &splits,
        &CurveConfig {
            sizes: vec![CurveSize::Rows(10), CurveSize::All],
            seeds: 2,
        },
        &quick(),
    )
    .unwrap();
    assert_eq!(curve.metric, "APGR");
    // APGR of the zero router (all-weak, all-strong) is 0.5 by definition.
    let zero = curve.points[0].router("zero").unwrap().mean().unwrap();
    assert!((zero - 0.5).abs() < 1e-9);
}

#[test]
fn report_draws_the_reliability_diagram() {
    let set = synthetic(80, 3, 4);
    let (results, rows) = pointsman_eval::cross_validate(&set, 2, &quick()).unwrap();
    let summary = summarise(&results, &set.models, rows);
    let sy = summary.router("pointsman").unwrap();
    // Every held-out prediction lands in one bin: rows x models in all.
    let counted: usize = sy.reliability.iter().map(|b| b.count).sum();
    assert_eq!(counted, 80 * 3);
    assert!(sy
        .reliability
        .iter()
        .all(|b| b.lower <= b.mean_predicted && b.mean_predicted <= b.upper));
    assert!(summary.router("zero").unwrap().reliability.is_empty());

    let dir = std::env::temp_dir().join(format!("pointsman-rel-{}", std::process::id()));
    summary.write_report(&dir).unwrap();
    let svg = std::fs::read_to_string(dir.join("reliability.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains(&format!("pointsman (ECE {:.3})", sy.ece.unwrap())));
    assert!(svg.contains("knn (ECE"));
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("reliability.svg"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let bins = json["routers"]["pointsman"]["reliability"]
        .as_array()
        .unwrap();
    assert_eq!(bins.len(), sy.reliability.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cross_validation_returns_each_rows_out_of_fold_prediction() {
    let set = synthetic(120, 3, 5);
    let cfg = quick();
    let e = pointsman_eval::cross_validate_rows(&set, 3, &cfg).unwrap();
    let (results, rows) = pointsman_eval::cross_validate(&set, 3, &cfg).unwrap();
    assert_eq!((e.rows, e.predictions.len()), (rows, 120));
    assert_eq!(
        summarise(&e.results, &set.models, e.rows).to_json(),
        summarise(&results, &set.models, rows).to_json()
    );
    let by_id: std::collections::HashMap<&str, &EvalRow> =
        set.rows.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(
        e.predictions
            .iter()
            .map(|p| p.id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len(),
        120
    );
    // Each prediction is its own row's: the observed scores match, and
    // model m's P is higher where the embedding points its way (the
    // synthetic truth), so the rows are not shuffled against the P.
    for m in 0..3 {
        let (mut hi, mut lo) = (Vec::new(), Vec::new());
        for p in &e.predictions {
            let row = by_id[p.id.as_str()];
            assert_eq!(p.score[m], row.outcomes[m].unwrap().score);
            match row.embedding[m] {
                x if x > 0.2 => hi.push(p.p[m]),
                x if x < -0.2 => lo.push(p.p[m]),
                _ => {}
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(&hi) > mean(&lo) + 0.05,
            "model {m}: {} vs {}",
            mean(&hi),
            mean(&lo)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.jsonl");
    pointsman_eval::write_predictions(&path, &set.models, &e.predictions).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 120);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["p"].as_object().unwrap().len(), 3);
    let err = pointsman_eval::write_predictions(
        &dir.path().join("no/such/dir/p.jsonl"),
        &set.models,
        &e.predictions,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no/such/dir"), "{err}");
}
