//! Checks the blocked neighbour search against the row-by-row reference on
//! real embeddings, and what each costs; also how far the i8 search itself
//! is from the f32 cosine neighbours:
//!
//! ```sh
//! cargo run --release -p pointsman-router --example knn_recall -- \
//!     [ARTIFACT] [EMBEDDING_CACHE_FILE...]
//! ```
//!
//! ARTIFACT (default models/router/routerbench-e5.json) is a stacked router
//! artifact; its stored prompts are queried by every fifth of themselves
//! (against an index of the other four fifths) and by every entry of each
//! EMBEDDING_CACHE_FILE (target/embedding-cache/*.emb of the same encoder:
//! 32-byte key, then dim × f32). "same" is the share of queries whose k
//! nearest are the same set both ways. Times are the minimum over 5 rounds
//! of the mean per query (the shared machine's load inflates means; the
//! minimum shows the work).

use pointsman_router::{Neighbours, SearchMode, SuccessModel, TrainingRow};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "models/router/routerbench-e5.json".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let model = SuccessModel::from_json(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let nb = model
        .neighbours
        .expect("a stacked artifact (with neighbours)");
    if let Some(p) = &nb.projection {
        eprintln!(
            "{path}: its kNN searches a {}-d principal-component space, so it stores projected \
             rows, not embeddings; give an artifact trained with `--knn-dims 0`",
            p.dim
        );
        std::process::exit(2);
    }
    let (dim, n) = (nb.dim, nb.model_means.len());
    println!(
        "{path}: {} stored prompts, {dim}-d, k {}, {n} models",
        nb.rows, nb.k
    );

    let row = |i: usize| -> Vec<f32> {
        nb.embeddings[i * dim..(i + 1) * dim]
            .iter()
            .map(|&x| x as f32 / 127.0)
            .collect()
    };
    let (mut base, mut queries) = (Vec::new(), Vec::new());
    for i in 0..nb.rows {
        if i % 5 == 4 {
            queries.push(row(i));
        } else {
            base.push(TrainingRow {
                embedding: row(i),
                task_scores: vec![1.0],
                outcomes: (0..n)
                    .filter(|&m| nb.scores[i * n + m] != 255)
                    .map(|m| (m, nb.scores[i * n + m] as f32 / 254.0))
                    .collect(),
                head_outputs: Vec::new(),
            });
        }
    }
    let held = Neighbours::build(&base, n, nb.k, nb.prior_count, 0);
    report(
        &format!(
            "held-out stored prompts ({} queries, {} rows)",
            queries.len(),
            held.rows
        ),
        &held,
        &queries,
    );
    report(
        &format!("the same queries against all {} stored prompts", nb.rows),
        &nb,
        &queries,
    );

    for file in args.iter().skip(1) {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let queries: Vec<Vec<f32>> = bytes
            .chunks_exact(32 + 4 * dim)
            .map(|c| {
                c[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            })
            .collect();
        report(
            &format!("{file} ({} queries, {} rows)", queries.len(), nb.rows),
            &nb,
            &queries,
        );
        against_f32(file, &queries, nb.k, n);
    }
}

fn report(what: &str, nb: &Neighbours, queries: &[Vec<f32>]) {
    nb.prepare();
    let same = queries
        .iter()
        .filter(|q| {
            let mut a = nb.nearest(q, SearchMode::Blocked);
            let mut b = nb.nearest(q, SearchMode::RowByRow);
            a.sort_unstable();
            b.sort_unstable();
            a == b
        })
        .count();
    let time = |mode: SearchMode| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let s = Instant::now();
            for q in queries {
                std::hint::black_box(nb.neighbour_sums_by(std::hint::black_box(q), mode));
            }
            best = best.min(s.elapsed().as_secs_f64() * 1e6 / queries.len() as f64);
        }
        best
    };
    println!(
        "{what}: same k nearest in {same} of {} queries; {:.2} us blocked, {:.2} us row by row per search (neighbour sums)",
        queries.len(),
        time(SearchMode::Blocked),
        time(SearchMode::RowByRow),
    );
}

/// Every other cached embedding (up to 2,225) stored, the rest (up to
/// 2,000) queried: the i8 search's recall of the f32 cosine top k.
fn against_f32(file: &str, all: &[Vec<f32>], k: usize, n: usize) {
    let unit = |e: &Vec<f32>| {
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        e.iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let base: Vec<Vec<f32>> = all.iter().step_by(2).take(2225).map(unit).collect();
    let queries: Vec<Vec<f32>> = all.iter().skip(1).step_by(2).take(2000).map(unit).collect();
    let rows: Vec<TrainingRow> = base
        .iter()
        .map(|e| TrainingRow {
            embedding: e.clone(),
            task_scores: vec![1.0],
            outcomes: (0..n).map(|m| (m, 0.5)).collect(),
            head_outputs: Vec::new(),
        })
        .collect();
    let nb = Neighbours::build(&rows, n, k, 2.0, 0);
    let mut recall = 0f64;
    for q in &queries {
        let mut sims: Vec<(f32, u32)> = base
            .iter()
            .enumerate()
            .map(|(i, b)| (b.iter().zip(q).map(|(x, y)| x * y).sum(), i as u32))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut truth: Vec<u32> = sims[..k].iter().map(|s| s.1).collect();
        truth.sort_unstable();
        let got = nb.nearest(q, SearchMode::Blocked);
        recall += got
            .iter()
            .filter(|i| truth.binary_search(i).is_ok())
            .count() as f64
            / k as f64;
    }
    println!(
        "{file}, {} stored / {} queried: recall@{k} of the f32 cosine neighbours by the i8 search {:.4}",
        base.len(),
        queries.len(),
        recall / queries.len() as f64
    );
}
