//! How long one routing decision takes: the success model on one embedding
//! plus the policy, for an 11-model catalog.

use criterion::{criterion_group, criterion_main, Criterion};
use pointsman_router::{
    explore, neighbours::MAX_ROWS, policy::decide, Catalog, Constraints, Neighbours, Policy,
    SuccessModel, TrainingRow,
};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let catalog =
        Catalog::from_toml_str(include_str!("../../../models/catalogs/routerbench.toml")).unwrap();
    let names: Vec<String> = catalog.models.iter().map(|m| m.name.clone()).collect();
    let (dim, rank, tasks) = (384, 8, 11);
    let n = names.len();
    let model = SuccessModel {
        version: pointsman_router::ARTIFACT_VERSION,
        encoder_id: String::new(),
        models: names.clone(),
        tasks: (0..tasks).map(|t| format!("t{t}")).collect(),
        dim,
        rank,
        feature_mean: vec![0.0; dim],
        feature_scale: vec![1.0; dim],
        difficulty_bias: 0.1,
        difficulty_weights: (0..dim).map(|j| (j as f32 * 0.37).sin() * 0.05).collect(),
        traits: (0..rank)
            .map(|k| {
                (0..dim)
                    .map(|j| ((j * (k + 1)) as f32).cos() * 0.05)
                    .collect()
            })
            .collect(),
        ability: (0..n).map(|m| vec![m as f32 * 0.2 - 1.0; tasks]).collect(),
        log_discrimination: vec![0.0; n],
        loadings: vec![vec![0.1; rank]; n],
        prior_ability: vec![0.0; tasks],
        outcome_counts: vec![100; n],
        // As every default-trained artifact now has (see select.rs).
        calibration: vec![[0.8, 0.1]; n],
        selection: None,
        neighbours: None,
        cost: None,
        target_table: None,
        head_features: None,
    };
    let embedding: Vec<f32> = (0..dim).map(|j| (j as f32 * 0.11).sin() / 20.0).collect();
    let task_scores = vec![1.0 / tasks as f32; tasks];
    let costs: Vec<f64> = catalog
        .models
        .iter()
        .map(|m| m.cost_usd(200, 256))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let policy = Policy::Target { target: 0.8 };
    let constraints = Constraints::default();

    c.bench_function("policy only (11 models)", |b| {
        let p = model.predict(&refs, &embedding, &task_scores);
        b.iter(|| {
            decide(
                black_box(&catalog),
                black_box(&p),
                &costs,
                policy,
                &constraints,
            )
            .unwrap()
        })
    });
    c.bench_function("success model + policy (11 models, 384-d, rank 8)", |b| {
        b.iter(|| {
            let p = model.predict(&refs, black_box(&embedding), &task_scores);
            decide(&catalog, &p, &costs, policy, &constraints).unwrap()
        })
    });
    // With a per-model cost model (AlpacaEval's choice): the cost factors
    // add one standardisation and 11 × 384 multiply-adds.
    let mut costed = model.clone();
    costed.cost = Some(pointsman_router::CostModel {
        choice: "per_model".into(),
        l2: 3.0,
        folds: 3,
        mean_cost_usd: vec![1e-3; n],
        offset: vec![0.1; n],
        weights: (0..n)
            .map(|m| {
                (0..dim)
                    .map(|j| ((j + m) as f32 * 0.29).sin() * 0.01)
                    .collect()
            })
            .collect(),
        cv_loss: Vec::new(),
    });
    c.bench_function(
        "success model + cost factors + policy (11 models, 384-d)",
        |b| {
            b.iter(|| {
                let p = costed.predict(&refs, black_box(&embedding), &task_scores);
                let cost = pointsman_router::expected_costs(
                    &catalog,
                    &costed,
                    black_box(&embedding),
                    200,
                    256,
                    true,
                );
                decide(&catalog, &p, &cost, policy, &constraints).unwrap()
            })
        },
    );
    // Shadow rollout (docs/ROLLOUT.md): the server computes the live and
    // the candidate artifact's decisions on the same embedding, so the
    // decision path costs two of the above.
    let mut candidate = model.clone();
    for a in candidate.ability.iter_mut() {
        for x in a.iter_mut() {
            *x = -*x;
        }
    }
    c.bench_function(
        "live + shadow: two success models + two policies (11 models, 384-d, rank 8)",
        |b| {
            b.iter(|| {
                let p = model.predict(&refs, black_box(&embedding), &task_scores);
                let live = decide(&catalog, &p, &costs, policy, &constraints).unwrap();
                let q = candidate.predict(&refs, black_box(&embedding), &task_scores);
                let shadow = decide(&catalog, &q, &costs, policy, &constraints).unwrap();
                (live, shadow)
            })
        },
    );
    // Exploration after the policy at ε = 0.05, as `serve --explore 0.05
    // --explore-min-outcomes 50` runs it: the cold check reads the
    // artifact's outcome counts; the random bits come from a SplitMix64
    // step (the server draws them from rand's thread RNG).
    c.bench_function(
        "success model + policy + exploration (ε 0.05, 11 models)",
        |b| {
            let mut state = 0u64;
            let cold = |m: &str| {
                model
                    .model_index(m)
                    .is_some_and(|i| model.outcome_counts[i] < 50)
            };
            b.iter(|| {
                let p = model.predict(&refs, black_box(&embedding), &task_scores);
                let mut d = decide(&catalog, &p, &costs, policy, &constraints).unwrap();
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                let e = explore::apply(&mut d, 0.05, &cold, z ^ (z >> 31));
                (d, e)
            })
        },
    );
    // Stacked with kNN: RouterBench's ~1,800 training prompts per fold,
    // and the most an artifact stores.
    for rows in [1800, MAX_ROWS] {
        let mut stacked = model.clone();
        let training: Vec<TrainingRow> = (0..rows)
            .map(|i| TrainingRow {
                embedding: (0..dim)
                    .map(|j| ((i * 7 + j * 13) as f32 * 0.017).sin())
                    .collect(),
                task_scores: vec![1.0 / tasks as f32; tasks],
                outcomes: (0..n).map(|m| (m, ((i + m) % 3) as f32 / 2.0)).collect(),
                head_outputs: Vec::new(),
            })
            .collect();
        // The full embedding, then a 64-d principal-component space (the
        // query projected first: 64 × 384 multiply-adds).
        let spaces = Neighbours::build_in_spaces(&training, n, 25, 2.0, 0, &[0, 64]);
        for (mut nb, space) in spaces.into_iter().zip(["", ", 64-d space"]) {
            nb.weight = 0.5;
            stacked.neighbours = Some(nb);
            c.bench_function(
                &format!("stacked success model + policy ({rows} stored prompts, k 25{space})"),
                |b| {
                    b.iter(|| {
                        let p = stacked.predict(&refs, black_box(&embedding), &task_scores);
                        decide(&catalog, &p, &costs, policy, &constraints).unwrap()
                    })
                },
            );
        }
    }
}

/// The shipped artifact (models/router/routerbench-e5.json, or the file
/// `DECIDE_ARTIFACT` names) as `serve` runs it: P for every catalog model,
/// the cost factors, the target resolved through the artifact's target
/// table and the policy; the case names say whether it is stacked, over how
/// many stored prompts, in which space. Queries, taken in turn: for a
/// stacked artifact 64 blends of two stored prompts each (real e5
/// embeddings near, not on, the stored rows; in a principal-component
/// space the blends are made there and mapped back to 384-d embeddings
/// that project onto them, at the stored rows' typical distance from their
/// mean); for an unstacked one 64 points around the training mean.
fn shipped(c: &mut Criterion) {
    let catalog =
        Catalog::from_toml_str(include_str!("../../../models/catalogs/routerbench.toml")).unwrap();
    let names: Vec<&str> = catalog.models.iter().map(|m| m.name.as_str()).collect();
    let artifact = SuccessModel::from_json(&artifact_text()).unwrap();
    let queries: Vec<Vec<f32>> = match &artifact.neighbours {
        Some(nb) => (0..64).map(|i| near_stored(nb, i)).collect(),
        // Unstacked: no stored prompts; points around the training mean,
        // half a standard deviation out in a different pattern each.
        None => (0..64)
            .map(|i| {
                let (mean, scale) = (&artifact.feature_mean, &artifact.feature_scale);
                (0..artifact.dim)
                    .map(|t| mean[t] + 0.5 * scale[t] * ((i * 31 + t * 7) as f32 * 0.13).sin())
                    .collect()
            })
            .collect(),
    };
    let shape = match &artifact.neighbours {
        Some(nb) => format!("stacked, {} rows, {}-d", nb.rows, nb.space_dim()),
        None => "unstacked".to_string(),
    };
    let tasks = artifact.task_vector([("general", 1.0)]);
    let policy = Policy::Target { target: 0.8 };
    let constraints = Constraints::default();
    let decision = |model: &SuccessModel, e: &[f32]| {
        let p = model.predict(&names, e, &tasks);
        let cost = pointsman_router::expected_costs(&catalog, model, e, 200, 256, true);
        // As `serve` does: the target through the artifact's table.
        decide(
            &catalog,
            &p,
            &cost,
            model.resolve_policy(policy),
            &constraints,
        )
        .unwrap()
    };
    let mut turn = 0;
    c.bench_function(
        &format!("shipped artifact ({shape}): one decision with cost factors"),
        |b| {
            b.iter(|| {
                turn = (turn + 1) % queries.len();
                decision(&artifact, black_box(&queries[turn]))
            })
        },
    );
    // A second copy of the artifact, as `serve --candidate-router` loads
    // one: its own stored prompts in memory, so the shadow search does not
    // find the live one's rows in cache any more than a real candidate's.
    let candidate = SuccessModel::from_json(&artifact_text()).unwrap();
    c.bench_function(
        &format!("live + shadow, both the shipped artifact ({shape}, two loaded copies)"),
        |b| {
            b.iter(|| {
                turn = (turn + 1) % queries.len();
                let e = black_box(&queries[turn]);
                (decision(&artifact, e), decision(&candidate, e))
            })
        },
    );
}

/// Query `i` of the stacked cases: a blend of two stored prompts.
fn near_stored(nb: &Neighbours, i: usize) -> Vec<f32> {
    let d = nb.space_dim();
    let (a, b) = ((i * 37) % nb.rows, (i * 101 + 7) % nb.rows);
    let near: Vec<f32> = (0..d)
        .map(|t| {
            (nb.embeddings[a * d + t] as f32 * 0.7 + nb.embeddings[b * d + t] as f32 * 0.3) / 127.0
        })
        .collect();
    match &nb.projection {
        // x = Wᵀ(s · near + c), so that W x − c = s · near.
        Some(p) => {
            let s = p.variance.iter().sum::<f32>().sqrt();
            let mut x = vec![0f32; nb.dim];
            for ((row, &y), &c) in p.matrix.chunks_exact(nb.dim).zip(&near).zip(&p.offset) {
                for (xj, &w) in x.iter_mut().zip(row) {
                    *xj += w * (s * y + c);
                }
            }
            x
        }
        None => near,
    }
}

/// The shipped artifact, or the one `DECIDE_ARTIFACT` names (to compare
/// artifacts trained with other settings under the same bench).
fn artifact_text() -> String {
    let path = std::env::var("DECIDE_ARTIFACT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/router/routerbench-e5.json"
        )
        .into()
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

criterion_group!(benches, bench, shipped);
criterion_main!(benches);
