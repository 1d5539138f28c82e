//! Where one decision with the shipped artifact spends its time: each part
//! timed alone (minimum over 30 rounds of the mean of 200 calls, so the
//! shared machine's load shows less), on the `decide` bench's queries
//! (64 blends of two stored prompts):
//! `cargo run --release -p pointsman-router --example decide_parts [ARTIFACT]`.
//! `--loop SECONDS` runs whole decisions only, for `perf record`.
use pointsman_router::{policy::decide, Catalog, Constraints, Policy, SuccessModel};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let looping = args
        .iter()
        .position(|a| a == "--loop")
        .map(|i| args[i + 1].parse::<f64>().expect("--loop SECONDS"));
    let path = args
        .iter()
        .find(|a| a.ends_with(".json"))
        .cloned()
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../models/router/routerbench-e5.json"
            )
            .into()
        });
    let catalog =
        Catalog::from_toml_str(include_str!("../../../models/catalogs/routerbench.toml")).unwrap();
    let names: Vec<&str> = catalog.models.iter().map(|m| m.name.as_str()).collect();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let model = SuccessModel::from_json(&text).unwrap();
    let nb = model.neighbours.as_ref().expect("a stacked artifact");
    let d = nb.space_dim();
    // The bench's queries: blends of two stored prompts (full space only).
    assert!(nb.projection.is_none(), "full-space artifacts only");
    let queries: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            let (a, b) = ((i * 37) % nb.rows, (i * 101 + 7) % nb.rows);
            (0..d)
                .map(|t| {
                    (nb.embeddings[a * d + t] as f32 * 0.7 + nb.embeddings[b * d + t] as f32 * 0.3)
                        / 127.0
                })
                .collect()
        })
        .collect();
    let tasks = model.task_vector([("general", 1.0)]);
    let policy = model.resolve_policy(Policy::Target { target: 0.8 });
    let constraints = Constraints::default();
    let whole = |e: &[f32]| {
        let p = model.predict(&names, e, &tasks);
        let cost = pointsman_router::expected_costs(&catalog, &model, e, 200, 256, true);
        decide(&catalog, &p, &cost, policy, &constraints).unwrap()
    };
    if let Some(seconds) = looping {
        let start = Instant::now();
        let mut turn = 0;
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..1000 {
                turn = (turn + 1) % queries.len();
                black_box(whole(black_box(&queries[turn])));
            }
        }
        return;
    }
    let p0 = model.predict(&names, &queries[0], &tasks);
    let c0 = pointsman_router::expected_costs(&catalog, &model, &queries[0], 200, 256, true);
    let terms0 = model.prompt_terms(&queries[0]);
    let time = |label: &str, f: &mut dyn FnMut(&[f32])| {
        let mut best = f64::MAX;
        let mut turn = 0;
        for _ in 0..30 {
            let s = Instant::now();
            for _ in 0..200 {
                turn = (turn + 1) % queries.len();
                f(black_box(&queries[turn]));
            }
            best = best.min(s.elapsed().as_secs_f64() * 1e6 / 200.0);
        }
        println!("{best:7.2} µs  {label}");
    };
    println!("{path}: {} stored prompts, {d}-d, k {}", nb.rows, nb.k);
    time("one decision (as the bench)", &mut |e| {
        black_box(whole(e));
    });
    time("  success model: predict (all below)", &mut |e| {
        black_box(model.predict(&names, e, &tasks));
    });
    time("    prompt terms (standardise, b, z, kNN)", &mut |e| {
        black_box(model.prompt_terms(e));
    });
    time(
        "      kNN: neighbour sums (quantise, scan, top k, sums)",
        &mut |e| {
            black_box(nb.neighbour_sums(e));
        },
    );
    time("    P per model from fixed terms (11 models)", &mut |_| {
        black_box(
            (0..names.len())
                .map(|m| model.p_model(m, black_box(&terms0), &tasks))
                .sum::<f64>(),
        );
    });
    time("  cost factors + expected costs", &mut |e| {
        black_box(pointsman_router::expected_costs(
            &catalog, &model, e, 200, 256, true,
        ));
    });
    time("  policy (decide on fixed P and costs)", &mut |_| {
        black_box(decide(&catalog, black_box(&p0), &c0, policy, &constraints).unwrap());
    });
}
