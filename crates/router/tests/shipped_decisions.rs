//! The shipped artifact's decisions, pinned: every P, every expected cost
//! (to the bit) and every chosen model and fallback order on a fixed set
//! of queries must stay what the code at main 6dc6215 computed, so a speed
//! change to the decision path (batched dot products, the kNN scan, the
//! policy) cannot change a single routing decision unnoticed.
//!
//! The fixture (tests/fixtures/shipped-decisions.json) also records the
//! artifact's checksum: a retrained artifact makes this test fail with a
//! message saying so. Regenerate it only for a new artifact, with the code
//! before the change under test:
//! `POINTSMAN_WRITE_FIXTURE=1 cargo test --release -p pointsman-router --test shipped_decisions`.

use pointsman_router::{
    expected_costs, policy::decide, Catalog, Constraints, Neighbours, Policy, SuccessModel,
};
use serde_json::{json, Value};

const ARTIFACT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/router/routerbench-e5.json"
);
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/shipped-decisions.json"
);

/// FNV-1a, 64 bits: a fingerprint of the artifact's bytes and of the bits
/// of every P and cost (detects change; not a security hash).
fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

/// Query `i`: a blend of two stored prompts (real e5 embeddings near, not
/// on, the rows), at a length an encoder gives (not unit).
fn query(nb: &Neighbours, i: usize) -> Vec<f32> {
    let d = nb.space_dim();
    let (a, b) = ((i * 37) % nb.rows, (i * 101 + 7) % nb.rows);
    let w = 0.5 + 0.45 * ((i as f32) * 0.7).sin().abs();
    (0..d)
        .map(|t| {
            (nb.embeddings[a * d + t] as f32 * w + nb.embeddings[b * d + t] as f32 * (1.0 - w))
                / 127.0
                * 0.9
        })
        .collect()
}

#[test]
fn the_shipped_artifact_decides_as_it_did() {
    let bytes = std::fs::read(ARTIFACT).expect("the shipped router artifact");
    let mut artifact_hash = 0xcbf2_9ce4_8422_2325u64;
    fnv(&mut artifact_hash, &bytes);
    let model = SuccessModel::from_json(std::str::from_utf8(&bytes).unwrap()).unwrap();
    let catalog =
        Catalog::from_toml_str(include_str!("../../../models/catalogs/routerbench.toml")).unwrap();
    let names: Vec<&str> = catalog.models.iter().map(|m| m.name.as_str()).collect();
    let nb = model
        .neighbours
        .as_ref()
        .expect("the shipped artifact is stacked");
    assert!(nb.projection.is_none(), "full-space queries below");
    // Task vectors as the heads give them (every task some weight), one
    // task alone, and the uniform fallback.
    let n_tasks = model.tasks.len();
    let skewed: Vec<f32> = {
        let raw: Vec<f32> = (0..n_tasks).map(|t| 1.0 + (t * t) as f32 * 0.3).collect();
        let s: f32 = raw.iter().sum();
        raw.iter().map(|x| x / s).collect()
    };
    let general = model.task_vector([("general", 1.0)]);
    let uniform = model.task_vector([]);
    let cheap_cap = Constraints {
        max_cost_usd: Some(2e-4),
        min_context_tokens: Some(500),
        ..Constraints::default()
    };
    let setups: Vec<(&str, &[f32], Policy, Constraints)> = vec![
        (
            "target 0.8, heads-like tasks",
            &skewed,
            Policy::Target { target: 0.8 },
            Constraints::default(),
        ),
        (
            "target 0.9, one task",
            &general,
            Policy::Target { target: 0.9 },
            Constraints::default(),
        ),
        (
            "lambda 300, uniform tasks",
            &uniform,
            Policy::WillingnessToPay {
                lambda_per_usd: 300.0,
            },
            Constraints::default(),
        ),
        (
            "target 0.8, max cost and context",
            &skewed,
            Policy::Target { target: 0.8 },
            cheap_cap,
        ),
    ];
    let mut numbers = 0xcbf2_9ce4_8422_2325u64;
    let mut decisions = Vec::new();
    for i in 0..96 {
        let e = query(nb, i);
        for (label, tasks, policy, constraints) in &setups {
            let p = model.predict(&names, &e, tasks);
            let cost = expected_costs(&catalog, &model, &e, 200 + i as u64, 256, true);
            for x in p.iter().chain(&cost) {
                fnv(&mut numbers, &x.to_bits().to_le_bytes());
            }
            let d = decide(
                &catalog,
                &p,
                &cost,
                model.resolve_policy(*policy),
                constraints,
            );
            decisions.push(match d {
                Ok(d) => json!({"query": i, "setup": label, "model": d.model, "fallbacks": d.fallbacks, "reason": d.reason}),
                Err(e) => json!({"query": i, "setup": label, "error": e.to_string()}),
            });
        }
    }
    let got = json!({
        "artifact_fnv1a64": format!("{artifact_hash:016x}"),
        "numbers_fnv1a64": format!("{numbers:016x}"),
        "decisions": decisions,
    });
    if std::env::var_os("POINTSMAN_WRITE_FIXTURE").is_some() {
        std::fs::create_dir_all(std::path::Path::new(FIXTURE).parent().unwrap()).unwrap();
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("the fixture")).unwrap();
    assert_eq!(
        got["artifact_fnv1a64"], want["artifact_fnv1a64"],
        "models/router/routerbench-e5.json is not the artifact the fixture was made with: \
         regenerate the fixture from the code before your change (see this file's header)"
    );
    let (g, w) = (
        got["decisions"].as_array().unwrap(),
        want["decisions"].as_array().unwrap(),
    );
    assert_eq!(g.len(), w.len());
    for (a, b) in g.iter().zip(w) {
        assert_eq!(a, b, "a decision changed");
    }
    assert_eq!(
        got["numbers_fnv1a64"], want["numbers_fnv1a64"],
        "the same decisions, but some P or expected cost changed in its bits"
    );
}
