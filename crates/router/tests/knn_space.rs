//! The space the stacked kNN estimate searches, chosen by the selection:
//! a principal-component space is a candidate like a ridge or a weight,
//! its choice is recorded in the artifact, and the artifact carries the
//! projection (and refuses a corrupt one at load).

use pointsman_router::{fit, SuccessModel, TrainConfig, TrainingRow};

mod common;
use common::Rng;

const DIM: usize = 64;
/// Coordinates the clusters differ in; the rest is noise.
const SIGNAL_DIM: usize = 8;
const NAMES: [&str; 3] = ["cheap", "mid", "dear"];

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `n` prompts in 40 clusters whose centres differ in the first 8 of 64
/// coordinates (spread 3) and share noise in all 64 (0.3); each cluster
/// gives each model its own success rate (logits uniform in ±3). Which
/// cluster a prompt is in predicts its outcomes, and the 8 leading
/// principal components are where the clusters are told apart.
fn clustered_rows(n: usize, rng: &mut Rng) -> Vec<TrainingRow> {
    let clusters = 40;
    let mut centre_rng = Rng(199);
    let centres: Vec<Vec<f64>> = (0..clusters)
        .map(|_| {
            (0..DIM)
                .map(|j| {
                    if j < SIGNAL_DIM {
                        3.0 * centre_rng.normal()
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let logits: Vec<[f64; 3]> = (0..clusters)
        .map(|_| std::array::from_fn(|_| 6.0 * centre_rng.uniform() - 3.0))
        .collect();
    (0..n)
        .map(|i| {
            let c = i % clusters;
            let embedding = centres[c]
                .iter()
                .map(|&x| (x + 0.3 * rng.normal()) as f32)
                .collect();
            let outcomes = (0..3)
                .map(|m| {
                    let y = rng.uniform() < sigmoid(logits[c][m]);
                    (m, if y { 1.0 } else { 0.0 })
                })
                .collect();
            TrainingRow {
                embedding,
                task_scores: vec![1.0],
                outcomes,
                head_outputs: Vec::new(),
            }
        })
        .collect()
}

fn trained_in(train: &[TrainingRow], knn_dims: Vec<usize>) -> SuccessModel {
    let mut cfg = TrainConfig::default();
    cfg.selection.as_mut().unwrap().knn_dims = knn_dims;
    let names = NAMES.map(String::from).to_vec();
    fit(names, vec!["any".into()], train, &cfg, "test").unwrap()
}

fn cross_entropy(model: &SuccessModel, test: &[TrainingRow]) -> f64 {
    let (mut total, mut count) = (0.0, 0.0);
    for r in test {
        let p = model.predict(&NAMES, &r.embedding, &[1.0]);
        for &(m, y) in &r.outcomes {
            let q = p[m].clamp(1e-9, 1.0 - 1e-9);
            total -= y as f64 * q.ln() + (1.0 - y as f64) * (1.0 - q).ln();
            count += 1.0;
        }
    }
    total / count
}

#[test]
fn a_reduced_space_is_stored_recorded_and_round_trips() {
    let mut rng = Rng(31);
    let train = clustered_rows(1200, &mut rng);
    let test = clustered_rows(600, &mut rng);
    let reduced = trained_in(&train, vec![SIGNAL_DIM]);
    let sel = reduced.selection.as_ref().unwrap();
    assert!(sel.knn_weight >= 0.5, "{sel}");
    assert_eq!(sel.knn_dim, SIGNAL_DIM, "{sel}");
    assert!(sel.to_string().contains("in 8-d"), "{sel}");
    let nb = reduced.neighbours.as_ref().expect("neighbours stored");
    let p = nb.projection.as_ref().expect("a projection stored");
    assert_eq!((nb.dim, nb.space_dim(), p.matrix.len()), (DIM, 8, 8 * DIM));
    assert_eq!(nb.embeddings.len(), nb.rows * 8);
    // At unit length the leading components hold the clusters' spread
    // (≈ 1/8 each), the rest only noise (≈ (0.3 / 8.5)² = 0.0012).
    assert!(p.variance.iter().all(|&v| v > 0.01), "{:?}", p.variance);
    assert!(sel
        .cv_loss
        .iter()
        .any(|c| c.candidate.ends_with("knn=0.5 d=8")));
    let json = reduced.to_json();
    assert!(json.contains("\"projection\""));
    let back = SuccessModel::from_json(&json).unwrap();
    assert_eq!(back, reduced);
    for r in &test {
        assert_eq!(
            back.predict(&NAMES, &r.embedding, &[1.0]),
            reduced.predict(&NAMES, &r.embedding, &[1.0])
        );
    }
    // On these prompts the 8-d space keeps what the kNN estimate is for:
    // held-out cross-entropy as good as the full space's (within 0.01)
    // and clearly better than the item-response model alone.
    let full = trained_in(&train, vec![0]);
    assert!(full.neighbours.as_ref().unwrap().projection.is_none());
    assert_eq!(full.selection.as_ref().unwrap().knn_dim, DIM);
    let plain = {
        let mut cfg = TrainConfig::default();
        cfg.selection.as_mut().unwrap().knn_weights = vec![0.0];
        fit(
            NAMES.map(String::from).to_vec(),
            vec!["any".into()],
            &train,
            &cfg,
            "test",
        )
        .unwrap()
    };
    let (ce_reduced, ce_full, ce_plain) = (
        cross_entropy(&reduced, &test),
        cross_entropy(&full, &test),
        cross_entropy(&plain, &test),
    );
    assert!(
        ce_reduced < ce_full + 0.01 && ce_reduced < ce_plain - 0.03,
        "8-d {ce_reduced:.4}, full {ce_full:.4}, plain {ce_plain:.4}"
    );
}

#[test]
fn the_space_is_chosen_with_the_weight_by_cross_validated_loss() {
    let mut rng = Rng(32);
    let train = clustered_rows(900, &mut rng);
    let model = trained_in(&train, vec![4, 0, DIM + 10]);
    let sel = model.selection.as_ref().unwrap();
    let default = TrainConfig::default().selection.unwrap();
    // The grid's distinct spaces: 4-d and the full 64 (0 and 74 are both
    // the full embedding). w = 0 once per ridge, every w > 0 in each.
    let per_ridge = 1 + (default.knn_weights.len() - 1) * 2;
    assert_eq!(sel.cv_loss.len(), 1 + default.l2_grid.len() * per_ridge);
    let best = sel
        .cv_loss
        .iter()
        .min_by(|a, b| a.penalised.total_cmp(&b.penalised))
        .unwrap();
    let want = format!(
        "prompt l2={} knn={}{}",
        sel.l2_prompt,
        sel.knn_weight,
        if sel.knn_dim < DIM {
            format!(" d={}", sel.knn_dim)
        } else {
            String::new()
        }
    );
    assert_eq!(best.candidate, want, "{sel}");
    let space = model.neighbours.as_ref().map_or(0, |nb| nb.space_dim());
    assert_eq!(space, sel.knn_dim);
}

#[test]
fn a_corrupt_projection_fails_at_load_with_the_reason() {
    let mut rng = Rng(33);
    let train = clustered_rows(600, &mut rng);
    let model = trained_in(&train, vec![SIGNAL_DIM]);
    assert!(model.neighbours.is_some(), "{:?}", model.selection);
    let good: serde_json::Value = serde_json::from_str(&model.to_json()).unwrap();
    // A matrix one value short (base64 of 8 × 64 − 1 f32 values).
    let mut short = good.clone();
    let m = model
        .neighbours
        .as_ref()
        .unwrap()
        .projection
        .as_ref()
        .unwrap();
    let bytes: Vec<u8> = m.matrix[1..].iter().flat_map(|x| x.to_le_bytes()).collect();
    short["neighbours"]["projection"]["matrix"] = encode(&bytes).into();
    let err = SuccessModel::from_json(&short.to_string()).unwrap_err();
    assert!(
        err.to_string().contains("projection") && err.to_string().contains("511 matrix values"),
        "{err}"
    );
    // Not a whole number of f32 values.
    let mut ragged = good.clone();
    ragged["neighbours"]["projection"]["matrix"] = encode(&bytes[1..]).into();
    let err = SuccessModel::from_json(&ragged.to_string()).unwrap_err();
    assert!(err.to_string().contains("whole number of f32"), "{err}");
    // Rows stored in another space than the projection's.
    let mut rows = good;
    rows["neighbours"]["projection"]["dim"] = 7.into();
    assert!(SuccessModel::from_json(&rows.to_string()).is_err());
}

/// Standard base64 with padding (what the artifact stores).
fn encode(bytes: &[u8]) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine};
    STANDARD.encode(bytes)
}
