//! Synthetic evaluation sets shared by the harness's integration tests.

use pointsman_eval::{EvalRow, EvalSet, Observed};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// `n` prompts, 8-d embeddings; model m succeeds more often on prompts whose
/// embedding points its way, and costs 10^m times the cheapest.
pub fn synthetic(n: usize, models: usize, seed: u64) -> EvalSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = (0..n)
        .map(|i| {
            let embedding: Vec<f32> = (0..8).map(|_| rng.random::<f32>() - 0.5).collect();
            let outcomes = (0..models)
                .map(|m| {
                    let p = (0.3 + 0.15 * m as f32 + embedding[m]).clamp(0.05, 0.95);
                    Some(Observed {
                        score: f64::from(u8::from(rng.random::<f32>() < p)),
                        cost_usd: 1e-4 * 10f64.powi(m as i32),
                    })
                })
                .collect();
            EvalRow {
                id: format!("row{i}"),
                embedding,
                task_scores: vec![1.0],
                outcomes,
                head_outputs: Vec::new(),
            }
        })
        .collect();
    EvalSet {
        models: (0..models).map(|m| format!("m{m}")).collect(),
        tasks: vec!["any".into()],
        encoder_id: "synthetic".into(),
        head_features: Vec::new(),
        rows,
    }
}
