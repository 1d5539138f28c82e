//! Minimum over repetitions of the mean time of one kNN search of the
//! stacked success model (the shared machine's load inflates criterion's
//! means; the minimum shows the work):
//! `cargo run --release -p pointsman-router --example knn_search_time`.
use pointsman_router::{Neighbours, SearchMode, TrainingRow};
use std::time::Instant;
fn main() {
    let (dim, n) = (384, 11);
    for rows in [1800usize, 8192] {
        let training: Vec<TrainingRow> = (0..rows)
            .map(|i| TrainingRow {
                embedding: (0..dim)
                    .map(|j| ((i * 7 + j * 13) as f32 * 0.017).sin())
                    .collect(),
                task_scores: vec![1.0],
                outcomes: (0..n).map(|m| (m, ((i + m) % 3) as f32 / 2.0)).collect(),
                head_outputs: Vec::new(),
            })
            .collect();
        let q: Vec<f32> = (0..dim).map(|j| (j as f32 * 0.11).sin() / 20.0).collect();
        // The full embedding, then principal-component spaces (the query's
        // projection included in the time).
        for nb in Neighbours::build_in_spaces(&training, n, 25, 2.0, 0, &[0, 128, 64]) {
            nb.prepare();
            let space = nb.space_dim();
            for mode in [SearchMode::Blocked, SearchMode::RowByRow] {
                let mut best = f64::MAX;
                for _ in 0..30 {
                    let s = Instant::now();
                    for _ in 0..50 {
                        std::hint::black_box(nb.neighbour_sums_by(std::hint::black_box(&q), mode));
                    }
                    best = best.min(s.elapsed().as_secs_f64() * 1e6 / 50.0);
                }
                println!(
                "{rows} stored prompts, {space}-d, {mode:?}: {best:.1} us per neighbour search (min of 30 x 50)"
            );
            }
        }
    }
}
