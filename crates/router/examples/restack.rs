//! Re-stores a stacked artifact's kNN in a d-dimensional principal-component
//! space (its own stored prompts, projected; k, w and the prior kept), so
//! the `decide` bench can time a stacked artifact of the shipped shape in
//! that space whatever the selection chose when it was trained:
//!
//! ```sh
//! cargo run --release -p pointsman-router --example restack -- FULL.json 64 OUT.json
//! DECIDE_ARTIFACT=OUT.json cargo bench --locked -p pointsman-router --bench decide -- shipped
//! ```
//!
//! FULL.json must store full-space rows (an artifact trained with
//! `--knn-dims 0`, or any written before reduced spaces existed).

use pointsman_router::{Neighbours, SuccessModel, TrainingRow};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, dim, out] = &args[..] else {
        eprintln!("usage: restack FULL.json DIM OUT.json");
        std::process::exit(2);
    };
    let dim: usize = dim.parse().expect("DIM: a number");
    let text = std::fs::read_to_string(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let mut model = SuccessModel::from_json(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
    let nb = model.neighbours.take().expect("a stacked artifact");
    assert!(
        nb.projection.is_none(),
        "{input}: already in a reduced space"
    );
    let (d, n) = (nb.dim, nb.model_means.len());
    let rows: Vec<TrainingRow> = (0..nb.rows)
        .map(|i| TrainingRow {
            embedding: nb.embeddings[i * d..(i + 1) * d]
                .iter()
                .map(|&x| x as f32 / 127.0)
                .collect(),
            task_scores: vec![1.0],
            outcomes: (0..n)
                .filter(|&m| nb.scores[i * n + m] != 255)
                .map(|m| (m, nb.scores[i * n + m] as f32 / 254.0))
                .collect(),
            head_outputs: Vec::new(),
        })
        .collect();
    let mut restacked =
        Neighbours::build_in_spaces(&rows, n, nb.k, nb.prior_count, 0, &[dim]).remove(0);
    restacked.weight = nb.weight;
    model.neighbours = Some(restacked);
    std::fs::write(out, model.to_json()).unwrap_or_else(|e| panic!("{out}: {e}"));
    println!(
        "{out}: {} stored prompts in a {dim}-d space, weight {}",
        nb.rows, nb.weight
    );
}
