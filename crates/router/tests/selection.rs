//! The default training path's selection on synthetic outcomes: with no
//! per-prompt signal the router must be the zero router (per-model
//! averages), with a strong one it must use it. Both policies are swept on
//! held-out rows and scored by AIQ, as the eval harness does. Fitted with
//! costs, a target τ means a mean P over the traffic (the artifact's target
//! table): the λ it maps to must reach τ on held-out rows.

use pointsman_router::routing_value::{self, Criterion};
use pointsman_router::{
    choose, fit, fit_with_costs, Policy, PromptInput, Selection, SuccessModel, TrainConfig,
    TrainingRow,
};

mod common;
use common::Rng;

const DIM: usize = 16;
/// Three models: cheap and weak, mid, dear and strong.
const COST: [f64; 3] = [1.0, 3.0, 10.0];
const ABILITY: [f64; 3] = [-0.6, 0.6, 1.6];

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A training row for `embedding` with a 0/1 outcome for each of the three
/// models, drawn with P(success) = sigmoid(`logit(model)`).
fn drawn_row(embedding: Vec<f32>, logit: impl Fn(usize) -> f64, rng: &mut Rng) -> TrainingRow {
    let outcomes = (0..3)
        .map(|m| {
            (
                m,
                if rng.uniform() < sigmoid(logit(m)) {
                    1.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    TrainingRow {
        embedding,
        task_scores: vec![1.0],
        outcomes,
        head_outputs: Vec::new(),
    }
}

/// `n` prompts with random embeddings and a 0/1 outcome for every model.
/// With `signal`, a prompt's difficulty is 1.5 × its first coordinate and
/// the cheap (mid) model is 3 (1.5) logits better on prompts with a high
/// second coordinate, so that routing by prompt pays (with the true P the λ
/// sweep's AIQ is 0.72 against the zero router's 0.64); without, every
/// prompt is alike and outcomes depend on the model only.
fn rows(n: usize, signal: bool, rng: &mut Rng) -> Vec<TrainingRow> {
    (0..n)
        .map(|_| {
            let embedding: Vec<f32> = (0..DIM).map(|_| rng.normal() as f32).collect();
            let (x0, x1) = (embedding[0] as f64, embedding[1] as f64);
            let logit = |m: usize| {
                if signal {
                    ABILITY[m] - 1.5 * x0 + [3.0, 1.5, 0.0][m] * x1
                } else {
                    ABILITY[m]
                }
            };
            drawn_row(embedding, logit, rng)
        })
        .collect()
}

/// AIQ over [1, 10], the span of the single models' costs (the
/// harness's metric, from the router crate).
fn aiq(points: &[(f64, f64)]) -> f64 {
    routing_value::aiq(points, COST[0], COST[2]).expect("points and a non-empty span")
}

/// (zero router, target policy, willingness-to-pay policy) AIQ on `test`.
fn aiqs(model: &SuccessModel, test: &[TrainingRow]) -> (f64, f64, f64) {
    let names = ["cheap", "mid", "dear"];
    let score = |r: &TrainingRow, m: usize| r.outcomes[m].1 as f64;
    let n = test.len() as f64;
    let singles: Vec<(f64, f64)> = (0..3)
        .map(|m| (COST[m], test.iter().map(|r| score(r, m)).sum::<f64>() / n))
        .collect();
    let ps: Vec<Vec<f64>> = test
        .iter()
        .map(|r| {
            model
                .try_predict(&names, &r.embedding, &[1.0], &r.head_outputs)
                .unwrap()
        })
        .collect();
    let sweep = |policies: Vec<Policy>| {
        let points: Vec<(f64, f64)> = policies
            .into_iter()
            .map(|policy| {
                let (mut cost, mut quality) = (0.0, 0.0);
                for (r, p) in test.iter().zip(&ps) {
                    let c = choose(p, &COST, &[true; 3], policy).unwrap();
                    cost += COST[c];
                    quality += score(r, c);
                }
                (cost / n, quality / n)
            })
            .collect();
        aiq(&points)
    };
    // Resolved as serve and the harness do: with a target table a target
    // is the λ rule at its λ, without one the per-prompt floor.
    let target = sweep(
        (0..=200)
            .map(|i| {
                model.resolve_policy(Policy::Target {
                    target: i as f64 / 200.0,
                })
            })
            .collect(),
    );
    let lambda = sweep(
        std::iter::once(0.0)
            .chain((0..=80).map(|i| 10f64.powf(-4.0 + i as f64 / 20.0)))
            .map(|l| Policy::WillingnessToPay { lambda_per_usd: l })
            .collect(),
    );
    (aiq(&singles), target, lambda)
}

fn trained(train: &[TrainingRow]) -> SuccessModel {
    let names = ["cheap", "mid", "dear"].map(String::from).to_vec();
    fit(
        names,
        vec!["any".into()],
        train,
        &TrainConfig::default(),
        "test",
    )
    .unwrap()
}

/// [`trained`] given every outcome's cost (each model's price in
/// [`COST`]): the path `train router` and `eval` take, with a target table.
fn trained_with_costs(train: &[TrainingRow]) -> SuccessModel {
    let names = ["cheap", "mid", "dear"].map(String::from).to_vec();
    let costs: Vec<Vec<(usize, f64)>> = train
        .iter()
        .map(|r| r.outcomes.iter().map(|&(m, _)| (m, COST[m])).collect())
        .collect();
    let model = fit_with_costs(
        names,
        vec!["any".into()],
        train,
        &costs,
        &TrainConfig::default(),
        "test",
    )
    .unwrap();
    assert!(model.target_table.as_ref().is_some_and(|t| t.out_of_fold));
    model
}

#[test]
fn the_quality_target_matches_the_zero_router_without_signal_and_uses_a_strong_one() {
    let mut rng = Rng(31);
    let (train, test) = (rows(600, false, &mut rng), rows(3000, false, &mut rng));
    let (zero, target, lambda) = aiqs(&trained_with_costs(&train), &test);
    assert!(
        (target - zero).abs() <= 0.005 && (lambda - zero).abs() <= 0.005,
        "no signal: zero {zero:.4}, target {target:.4}, lambda {lambda:.4}"
    );
    let (train, test) = (rows(600, true, &mut rng), rows(3000, true, &mut rng));
    let (zero, target, lambda) = aiqs(&trained_with_costs(&train), &test);
    assert!(
        target > zero + 0.04 && lambda > zero + 0.04,
        "signal: zero {zero:.4}, target {target:.4}, lambda {lambda:.4}"
    );
}

/// On fresh prompts, the λ a target maps to reaches it: the mean true
/// P(success) of the chosen models is within 0.02 of Q_best − (1 − τ),
/// Q_best the table's mean best P (the training rows' out-of-fold
/// estimate of what always picking the likeliest model reaches), and
/// targets that ask for less buy less.
#[test]
fn the_mapped_lambda_reaches_the_target_on_held_out_rows() {
    let mut rng = Rng(32);
    let model = trained_with_costs(&rows(1000, true, &mut rng));
    let table = model.target_table.as_ref().unwrap();
    // Fresh prompts with their true P, as `rows(.., true, ..)` draws them.
    let test: Vec<(Vec<f32>, [f64; 3])> = (0..4000)
        .map(|_| {
            let e: Vec<f32> = (0..DIM).map(|_| rng.normal() as f32).collect();
            let (x0, x1) = (e[0] as f64, e[1] as f64);
            let p =
                std::array::from_fn(|m| sigmoid(ABILITY[m] - 1.5 * x0 + [3.0, 1.5, 0.0][m] * x1));
            (e, p)
        })
        .collect();
    let names = ["cheap", "mid", "dear"];
    let reached = |tau: f64| {
        let policy = model.resolve_policy(Policy::Target { target: tau });
        assert!(matches!(policy, Policy::TargetAtLambda { .. }));
        let (mut p_sum, mut cost) = (0.0, 0.0);
        for (e, truth) in &test {
            let p = model.predict(&names, e, &[1.0]);
            let c = choose(&p, &COST, &[true; 3], policy).unwrap();
            p_sum += truth[c];
            cost += COST[c];
        }
        let n = test.len() as f64;
        (p_sum / n, cost / n)
    };
    let mut last_cost = f64::INFINITY;
    for tau in [1.0, 0.97, 0.94, 0.9, 0.85, 0.8] {
        let want = table.best_mean_p - (1.0 - tau);
        let (got, cost) = reached(tau);
        assert!(
            (got - want).abs() <= 0.02,
            "τ {tau}: held-out mean P {got:.4}, target {want:.4}"
        );
        assert!(
            cost <= last_cost,
            "τ {tau}: cost {cost} above the higher target's"
        );
        last_cost = cost;
    }
}

#[test]
fn no_signal_gives_the_zero_router() {
    let mut rng = Rng(11);
    let train = rows(600, false, &mut rng);
    let test = rows(3000, false, &mut rng);
    let model = trained(&train);
    let sel = model.selection.as_ref().expect("selection recorded");
    let (zero, target, lambda) = aiqs(&model, &test);
    assert!(
        (target - zero).abs() <= 0.005 && (lambda - zero).abs() <= 0.005,
        "zero {zero:.4}, target {target:.4}, lambda {lambda:.4}, selection {sel:?}"
    );
    // Whatever was chosen, the per-prompt term carries next to no weight.
    assert!(sel.prompt_weight.abs() < 0.2, "{sel:?}");
}

#[test]
fn strong_signal_is_used() {
    let mut rng = Rng(12);
    let train = rows(600, true, &mut rng);
    let test = rows(3000, true, &mut rng);
    let model = trained(&train);
    let sel = model.selection.as_ref().expect("selection recorded");
    assert_eq!(sel.choice, "prompt", "{sel:?}");
    assert!(sel.prompt_weight > 0.5, "{sel:?}");
    let (zero, target, lambda) = aiqs(&model, &test);
    assert!(
        target > zero + 0.04 && lambda > zero + 0.04,
        "zero {zero:.4}, target {target:.4}, lambda {lambda:.4}"
    );
}

#[test]
fn artifact_records_the_choice_and_round_trips() {
    let mut rng = Rng(13);
    let model = trained(&rows(200, true, &mut rng));
    let back = SuccessModel::from_json(&model.to_json()).unwrap();
    assert_eq!(back, model);
    let sel = back.selection.unwrap();
    let default = TrainConfig::default().selection.unwrap();
    assert_eq!(
        sel.cv_loss.len(),
        1 + default.l2_grid.len() * default.knn_weights.len()
    );
    assert_eq!(back.calibration.len(), 3);
    // Too few rows to cross-validate: the per-model averages.
    let few = trained(&rows(10, true, &mut rng));
    let sel = few.selection.unwrap();
    assert_eq!((sel.choice.as_str(), sel.folds), ("averages", 0));
    assert!(few.calibration.iter().all(|c| c[0] == 0.0));
}

/// `n` prompts in `clusters` tight clusters of a 16-d space; each cluster
/// gives each model its own success rate (logits uniform in ±3), so what
/// predicts an outcome is which cluster a prompt is in: local structure a
/// 25-nearest-neighbour average finds and a linear function of the
/// embedding (rank 8) cannot fit over 40 clusters.
fn clustered_rows(n: usize, rng: &mut Rng) -> Vec<TrainingRow> {
    let clusters = 40;
    let mut centre_rng = Rng(99);
    let centres: Vec<Vec<f64>> = (0..clusters)
        .map(|_| (0..DIM).map(|_| centre_rng.normal()).collect())
        .collect();
    let logits: Vec<[f64; 3]> = (0..clusters)
        .map(|_| std::array::from_fn(|_| 6.0 * centre_rng.uniform() - 3.0))
        .collect();
    (0..n)
        .map(|i| {
            let c = i % clusters;
            let embedding = centres[c]
                .iter()
                .map(|&x| (x + 0.1 * rng.normal()) as f32)
                .collect();
            drawn_row(embedding, |m| logits[c][m], rng)
        })
        .collect()
}

fn cross_entropy(model: &SuccessModel, test: &[TrainingRow]) -> f64 {
    let names = ["cheap", "mid", "dear"];
    let (mut total, mut count) = (0.0, 0.0);
    for r in test {
        let p = model.predict(&names, &r.embedding, &[1.0]);
        for &(m, y) in &r.outcomes {
            let q = p[m].clamp(1e-9, 1.0 - 1e-9);
            total -= y as f64 * q.ln() + (1.0 - y as f64) * (1.0 - q).ln();
            count += 1.0;
        }
    }
    total / count
}

fn trained_with_weights(train: &[TrainingRow], weights: Vec<f32>) -> SuccessModel {
    let mut cfg = TrainConfig::default();
    cfg.selection.as_mut().unwrap().knn_weights = weights;
    let names = ["cheap", "mid", "dear"].map(String::from).to_vec();
    fit(names, vec!["any".into()], train, &cfg, "test").unwrap()
}

#[test]
fn local_signal_chooses_stacking_with_knn() {
    let mut rng = Rng(21);
    let train = clustered_rows(1200, &mut rng);
    let test = clustered_rows(1200, &mut rng);
    let stacked = trained(&train);
    let sel = stacked.selection.as_ref().unwrap();
    assert!(sel.knn_weight >= 0.5, "{sel}");
    let nb = stacked.neighbours.as_ref().expect("neighbours stored");
    assert_eq!((nb.rows, nb.weight), (1200, sel.knn_weight));
    // It pays on held-out prompts, against the item-response model alone.
    let plain = trained_with_weights(&train, vec![0.0]);
    let (ce_stacked, ce_plain) = (cross_entropy(&stacked, &test), cross_entropy(&plain, &test));
    assert!(
        ce_stacked < ce_plain - 0.03,
        "{ce_stacked:.4} vs {ce_plain:.4}"
    );
    let back = SuccessModel::from_json(&stacked.to_json()).unwrap();
    assert_eq!(back, stacked);
}

#[test]
fn stacking_weight_zero_is_the_plain_model() {
    let mut rng = Rng(22);
    let train = clustered_rows(600, &mut rng);
    let test = clustered_rows(200, &mut rng);
    // Weight 0 on a model that stores neighbours: the same P, bit for bit,
    // as without them.
    let stacked = trained(&train);
    assert!(stacked.neighbours.is_some());
    let mut zero = stacked.clone();
    zero.neighbours.as_mut().unwrap().weight = 0.0;
    let mut none = stacked.clone();
    none.neighbours = None;
    let names = ["cheap", "mid", "dear"];
    for r in &test {
        let a = zero.predict(&names, &r.embedding, &[1.0]);
        let b = none.predict(&names, &r.embedding, &[1.0]);
        assert_eq!(a, b);
    }
    // Only w = 0 offered: no neighbours stored, and each w = 0 candidate's
    // cross-validated loss is the one the stacked selection measured for it
    // (the same folds, fits and calibration: w = 0 is today's model).
    let plain = trained_with_weights(&train, vec![0.0]);
    let sel = plain.selection.as_ref().unwrap();
    assert!(plain.neighbours.is_none() && sel.knn_weight == 0.0);
    let all = &stacked.selection.as_ref().unwrap().cv_loss;
    for c in &sel.cv_loss {
        let same = all.iter().find(|x| x.candidate == c.candidate).unwrap();
        assert_eq!(same, c);
    }
}

/// The table travels in the artifact: it round-trips, a corrupt one fails
/// at load naming `target_table`, and an artifact without it (trained
/// before the table existed) loads and keeps the per-prompt floor.
#[test]
fn the_target_table_loads_fails_clearly_or_is_absent() {
    let mut rng = Rng(33);
    let model = trained_with_costs(&rows(300, true, &mut rng));
    // serde_json's default float parsing may be one ulp off: compare λ.
    let back = SuccessModel::from_json(&model.to_json()).unwrap();
    let (a, b) = (
        model.target_table.as_ref().unwrap(),
        back.target_table.as_ref().unwrap(),
    );
    assert_eq!(a.points.len(), b.points.len());
    for tau in [1.0, 0.95, 0.9, 0.8] {
        assert!((a.lambda(tau) - b.lambda(tau)).abs() <= 1e-12 * a.lambda(tau).max(1.0));
    }
    let mut json: serde_json::Value = serde_json::from_str(&model.to_json()).unwrap();
    json["target_table"]["points"][0]["lambda_per_usd"] = serde_json::json!(-1.0);
    let err = SuccessModel::from_json(&json.to_string()).unwrap_err();
    assert!(err.to_string().contains("target_table"), "{err}");
    json.as_object_mut().unwrap().remove("target_table");
    let old = SuccessModel::from_json(&json.to_string()).unwrap();
    let target = Policy::Target { target: 0.9 };
    assert_eq!(old.resolve_policy(target), target);
    assert!(matches!(
        model.resolve_policy(target),
        Policy::TargetAtLambda { target, .. } if target == 0.9
    ));
}

/// Fitted with costs and every model's outcome on every row, the selection
/// measures each candidate's routing value (AIQ of its λ sweep on the
/// out-of-fold rows) and records it; under the routing-value criterion the
/// winner is the candidate with the highest one, and the per-model
/// averages route like the zero router (only single models on the sweep).
#[test]
fn the_selection_records_each_candidates_routing_value() {
    let mut rng = Rng(34);
    let train = rows(600, true, &mut rng);
    let costs: Vec<Vec<(usize, f64)>> = train
        .iter()
        .map(|r| r.outcomes.iter().map(|&(m, _)| (m, COST[m])).collect())
        .collect();
    let names = ["cheap", "mid", "dear"].map(String::from).to_vec();
    let fit_by = |criterion: Criterion| {
        let mut cfg = TrainConfig::default();
        cfg.selection.as_mut().unwrap().criterion = criterion;
        fit_with_costs(
            names.clone(),
            vec!["any".into()],
            &train,
            &costs,
            &cfg,
            "test",
        )
        .unwrap()
    };
    let model = fit_by(Criterion::RoutingValue);
    let sel = model.selection.as_ref().unwrap();
    assert_eq!(
        (sel.criterion, sel.routing_rows),
        (Criterion::RoutingValue, 600)
    );
    let values: Vec<f32> = sel
        .cv_loss
        .iter()
        .map(|c| c.routing_value.expect("measured"))
        .collect();
    // The zero router on these rows: the hull of the single models.
    let n = train.len() as f64;
    let singles: Vec<(f64, f64)> = (0..3)
        .map(|m| {
            let q = train.iter().map(|r| r.outcomes[m].1 as f64).sum::<f64>() / n;
            (COST[m], q)
        })
        .collect();
    let zero = aiq(&singles);
    assert_eq!(sel.cv_loss[0].candidate, "averages");
    assert!(
        (values[0] as f64 - zero).abs() < 1e-3,
        "averages {} vs zero {zero}",
        values[0]
    );
    // The strong signal routes better than the averages out of fold too.
    let top = values.iter().copied().fold(f32::MIN, f32::max);
    assert!(top as f64 > zero + 0.04, "{values:?}");
    let won = sel
        .cv_loss
        .iter()
        .find(|c| c.routing_value == Some(top))
        .unwrap();
    let expect = if sel.knn_weight > 0.0 {
        format!("prompt l2={} knn={}", sel.l2_prompt, sel.knn_weight)
    } else {
        format!("prompt l2={}", sel.l2_prompt)
    };
    assert_eq!(won.candidate, expect, "{sel}");
    // Cross-entropy as the criterion: the same values recorded, the
    // lowest penalised loss chosen.
    let by_ce = fit_by(Criterion::CrossEntropy);
    let sel = by_ce.selection.as_ref().unwrap();
    assert_eq!(sel.criterion, Criterion::CrossEntropy);
    let best = sel
        .cv_loss
        .iter()
        .min_by(|a, b| a.penalised.total_cmp(&b.penalised))
        .unwrap();
    assert!(best.candidate.starts_with("prompt"), "{sel}");
    let back = SuccessModel::from_json(&model.to_json()).unwrap();
    assert_eq!(back.selection, model.selection);
}

/// Rows whose outcomes follow two of three numbers handed over as head
/// outputs (as [`rows`] with signal follow the embedding's first two
/// coordinates), the embedding pure noise.
fn head_signal_rows(n: usize, rng: &mut Rng) -> Vec<TrainingRow> {
    (0..n)
        .map(|_| {
            let embedding: Vec<f32> = (0..DIM).map(|_| rng.normal() as f32).collect();
            let heads: Vec<f32> = (0..3).map(|_| rng.normal() as f32).collect();
            let (h0, h1) = (heads[0] as f64, heads[1] as f64);
            let logit = |m: usize| ABILITY[m] - 1.5 * h0 + [3.0, 1.5, 0.0][m] * h1;
            let mut row = drawn_row(embedding, logit, rng);
            row.head_outputs = heads;
            row
        })
        .collect()
}

#[test]
fn head_outputs_that_carry_the_signal_are_chosen() {
    let mut rng = Rng(21);
    let train = head_signal_rows(600, &mut rng);
    let test = head_signal_rows(3000, &mut rng);
    let names = ["cheap", "mid", "dear"].map(String::from).to_vec();
    let features: Vec<String> = ["task:a", "task:b", "task:c"].map(String::from).to_vec();
    let cfg = TrainConfig {
        head_features: features.clone(),
        selection: Some(Selection {
            inputs: vec![
                PromptInput::Embedding,
                PromptInput::EmbeddingAndHeads,
                PromptInput::Heads,
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = fit(names, vec!["any".into()], &train, &cfg, "test").unwrap();
    let sel = model.selection.as_ref().expect("selection recorded");
    assert!(sel.prompt_input.uses_heads(), "{sel}");
    assert_eq!(model.head_feature_names(), features.as_slice());
    // Every input was a candidate at every ridge and kNN weight.
    let default = Selection::default();
    assert_eq!(
        sel.cv_loss.len(),
        1 + 3 * default.l2_grid.len() * default.knn_weights.len()
    );
    let (zero, target, lambda) = aiqs(&model, &test);
    assert!(
        target > zero + 0.04 && lambda > zero + 0.04,
        "zero {zero:.4}, target {target:.4}, lambda {lambda:.4}, {sel}"
    );
    // The default (the embedding alone) finds nothing in the same rows.
    let plain = trained(&train);
    let (_, plain_target, plain_lambda) = aiqs(&plain, &test);
    assert!(
        plain_target < zero + 0.01 && plain_lambda < zero + 0.01,
        "zero {zero:.4}, embedding alone: target {plain_target:.4}, lambda {plain_lambda:.4}"
    );
    // Without the outputs it reads, the artifact refuses to decide.
    let err = model
        .try_predict(&["cheap"], &test[0].embedding, &[1.0], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("head_features.names"), "{err}");
    assert!(model.predict(&["cheap"], &test[0].embedding, &[1.0])[0].is_nan());
}

/// With `routed_models` the target table answers for the models a policy
/// chooses among: without the most able model its best mean P is lower,
/// since the table is built over those columns alone. A routed model with
/// no outcomes is refused by name.
#[test]
fn the_target_table_is_built_over_the_routed_models() {
    let mut rng = Rng(33);
    let train = rows(600, true, &mut rng);
    let names = ["cheap", "mid", "dear"].map(String::from).to_vec();
    let costs: Vec<Vec<(usize, f64)>> = train
        .iter()
        .map(|r| r.outcomes.iter().map(|&(m, _)| (m, COST[m])).collect())
        .collect();
    let fit = |routed: &[&str]| {
        fit_with_costs(
            names.clone(),
            vec!["any".into()],
            &train,
            &costs,
            &TrainConfig {
                routed_models: routed.iter().map(|s| s.to_string()).collect(),
                ..TrainConfig::default()
            },
            "test",
        )
    };
    let all = fit(&[]).unwrap();
    let two = fit(&["cheap", "mid"]).unwrap();
    let (t_all, t_two) = (
        all.target_table.as_ref().unwrap(),
        two.target_table.as_ref().unwrap(),
    );
    assert!(
        t_two.best_mean_p < t_all.best_mean_p - 0.01,
        "routed {} vs all {}",
        t_two.best_mean_p,
        t_all.best_mean_p
    );
    // The table records the models it was built over, and the artifact
    // says when a catalog routes among others.
    assert_eq!(t_two.models, ["cheap", "mid"]);
    assert!(t_all.models.is_empty());
    assert_eq!(two.target_table_mismatch(&["mid", "cheap"]), None);
    assert_eq!(all.target_table_mismatch(&["cheap", "mid", "dear"]), None);
    let why = two
        .target_table_mismatch(&["cheap", "mid", "dear"])
        .unwrap();
    assert!(why.contains("in the catalog only: dear"), "{why}");
    let why = all.target_table_mismatch(&["cheap", "mid"]).unwrap();
    assert!(why.contains("in the table only: dear"), "{why}");
    // A recorded model the artifact never fitted fails at load.
    let mut bad = two.clone();
    bad.target_table.as_mut().unwrap().models[1] = "gpt-9".into();
    let err = SuccessModel::from_json(&bad.to_json()).unwrap_err();
    assert!(
        err.to_string().contains("target_table") && err.to_string().contains("gpt-9"),
        "{err}"
    );
    let err = fit(&["cheap", "gpt-9"]).unwrap_err().to_string();
    assert!(err.contains("gpt-9"), "{err}");
}
