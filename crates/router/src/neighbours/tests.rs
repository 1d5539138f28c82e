//! Tests of the neighbour estimates and of the two searches against each
//! other.

use super::*;

fn row(e: Vec<f32>, outcomes: Vec<(usize, f32)>) -> TrainingRow {
    TrainingRow {
        embedding: e,
        task_scores: vec![1.0],
        outcomes,
    }
}

#[test]
fn estimates_average_the_nearest_prompts_shrunk_to_the_parametric_p() {
    let rows = vec![
        row(vec![1.0, 0.0], vec![(0, 1.0), (1, 0.0)]),
        row(vec![0.9, 0.1], vec![(0, 1.0)]),
        row(vec![0.0, 1.0], vec![(0, 0.0), (1, 1.0)]),
        row(vec![-0.1, 1.0], vec![(0, 0.0), (1, 1.0)]),
    ];
    let nb = Neighbours::build(&rows, 2, 2, 1.0, 0);
    assert_eq!(nb.model_means, [0.5, 2.0 / 3.0]);
    let sums = nb.neighbour_sums(&[2.0, 0.05]);
    assert_eq!(sums, [[2.0, 2.0], [0.0, 1.0]]);
    // Model 0: two successes + P_irt 0.4 over 3; model 1: one failure
    // + 0.8 over 2.
    assert!((nb.estimate(sums[0], 0.4) - 2.4 / 3.0).abs() < 1e-6);
    assert!((nb.estimate(sums[1], 0.8) - 0.4).abs() < 1e-6);
    // No neighbour has the model: the parametric P itself.
    assert!((nb.estimate([0.0, 0.0], 0.3) - 0.3).abs() < 1e-9);
}

#[test]
fn round_trips_as_json_and_checks_shapes() {
    let rows = vec![
        row(vec![0.3, -0.2, 0.9], vec![(0, 0.25)]),
        row(vec![-1.0, 0.5, 0.0], vec![(1, 1.0)]),
    ];
    let nb = Neighbours::build(&rows, 2, 25, 2.0, 0);
    let back: Neighbours = serde_json::from_str(&serde_json::to_string(&nb).unwrap()).unwrap();
    assert_eq!(back, nb);
    assert!(nb.check(2, 3).is_ok());
    assert!(nb.check(3, 3).is_err());
    let mut bad = nb.clone();
    bad.weight = 1.5;
    assert!(bad.check(2, 3).is_err());
}

/// Clustered unit vectors, as embeddings of templated prompts are:
/// `clusters` centres, each row a centre plus small noise.
fn clustered(rows: usize, dim: usize, clusters: usize, seed: u64) -> Vec<TrainingRow> {
    let mut rng = SplitMix(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.normal()).collect())
        .collect();
    (0..rows)
        .map(|i| {
            let c = &centres[i % clusters];
            let e = c.iter().map(|x| x + 0.15 * rng.normal()).collect();
            row(e, vec![(i % 3, (i % 7) as f32 / 6.0)])
        })
        .collect()
}

#[test]
fn the_blocked_search_returns_the_row_by_row_neighbours() {
    // Shapes around the layout's edges: rows not a multiple of 16,
    // dimensions not a multiple of 4, k above the row count.
    for (rows, dim, k) in [(2225, 384, 25), (37, 7, 5), (5, 3, 25), (600, 64, 1)] {
        let data = clustered(rows, dim, 12, rows as u64);
        let nb = Neighbours::build(&data, 3, k, 2.0, 0);
        let queries = clustered(50, dim, 12, 99 + rows as u64);
        for q in queries
            .iter()
            .map(|r| &r.embedding)
            .chain(data.iter().take(20).map(|r| &r.embedding))
        {
            let mut a = nb.nearest(q, SearchMode::Blocked);
            let mut b = nb.nearest(q, SearchMode::RowByRow);
            assert_eq!(a.len(), k.min(rows));
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{rows} rows, {dim}-d, k {k}");
            assert_eq!(
                nb.neighbour_sums_by(q, SearchMode::Blocked),
                nb.neighbour_sums_by(q, SearchMode::RowByRow)
            );
        }
    }
}

#[test]
fn zero_width_embeddings_still_answer() {
    let data: Vec<TrainingRow> = (0..3)
        .map(|i| row(vec![], vec![(0, i as f32 / 2.0)]))
        .collect();
    let nb = Neighbours::build(&data, 1, 2, 2.0, 0);
    for mode in [SearchMode::Blocked, SearchMode::RowByRow] {
        assert_eq!(nb.neighbour_sums_by(&[], mode), [[0.5, 2.0]], "{mode:?}");
    }
}

#[test]
fn ties_go_to_the_lower_index_in_both_searches() {
    // Forty copies of one prompt: the ten nearest are the first ten.
    let data: Vec<TrainingRow> = (0..40)
        .map(|i| row(vec![0.6, -0.8, 0.0, 0.0, 0.1], vec![(0, (i % 2) as f32)]))
        .collect();
    let nb = Neighbours::build(&data, 1, 10, 2.0, 0);
    for mode in [SearchMode::Blocked, SearchMode::RowByRow] {
        let mut got = nb.nearest(&[0.6, -0.8, 0.0, 0.0, 0.1], mode);
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<u32>>(), "{mode:?}");
    }
}

#[test]
fn the_shipped_artifact_finds_the_same_neighbours_both_ways() {
    // Real e5 embeddings: the artifact's stored prompts, each queried
    // with a blend of two of them (a prompt near, not on, the rows).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/router/routerbench-e5.json"
    );
    let text = std::fs::read_to_string(path).expect("the shipped router artifact");
    let model = crate::SuccessModel::from_json(&text).unwrap();
    let nb = model.neighbours.expect("the shipped artifact is stacked");
    let d = nb.dim;
    for i in (0..nb.rows).step_by(23) {
        let j = (i * 7 + 3) % nb.rows;
        let q: Vec<f32> = (0..d)
            .map(|t| nb.embeddings[i * d + t] as f32 * 0.7 + nb.embeddings[j * d + t] as f32 * 0.3)
            .collect();
        let mut a = nb.nearest(&q, SearchMode::Blocked);
        let mut b = nb.nearest(&q, SearchMode::RowByRow);
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "query {i}");
    }
}
