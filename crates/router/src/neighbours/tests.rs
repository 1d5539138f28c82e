//! Tests of the neighbour estimates and of the two searches against each
//! other.

use super::*;

fn row(e: Vec<f32>, outcomes: Vec<(usize, f32)>) -> TrainingRow {
    TrainingRow {
        embedding: e,
        task_scores: vec![1.0],
        outcomes,
        head_outputs: Vec::new(),
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
    let d = nb.space_dim();
    for i in (0..nb.rows).step_by(23) {
        let j = (i * 7 + 3) % nb.rows;
        let near: Vec<f32> = (0..d)
            .map(|t| nb.embeddings[i * d + t] as f32 * 0.7 + nb.embeddings[j * d + t] as f32 * 0.3)
            .collect();
        // In a reduced space: an embedding whose map is `near` (W Wᵀ = I,
        // so W Wᵀ near = near).
        let q = match &nb.projection {
            Some(p) => embedding_onto(p, &near),
            None => near,
        };
        let mut a = nb.nearest(&q, SearchMode::Blocked);
        let mut b = nb.nearest(&q, SearchMode::RowByRow);
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "query {i}");
    }
}

/// Wᵀ y: an embedding whose map W x is y.
fn embedding_onto(p: &Projection, y: &[f32]) -> Vec<f32> {
    let input = p.matrix.len() / p.dim;
    let mut x = vec![0f32; input];
    for (row, &yi) in p.matrix.chunks_exact(input).zip(y) {
        for (xj, &w) in x.iter_mut().zip(row) {
            *xj += w * yi;
        }
    }
    x
}

/// A query's side of the score in a reduced space: W x.
fn map(p: &Projection, x: &[f32]) -> Vec<f32> {
    let mut y = Vec::new();
    p.map_into(x, &mut y);
    y
}

/// The k nearest by an i8 dot product written out here, independent of
/// the index: highest first, the lower index winning a tie.
fn reference_nearest(stored: &[i8], dim: usize, q: &[i8], k: usize) -> Vec<u32> {
    let mut all: Vec<(i32, u32)> = stored
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, r)| {
            let dot = r.iter().zip(q).map(|(&a, &b)| a as i32 * b as i32).sum();
            (dot, i as u32)
        })
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut top: Vec<u32> = all[..k.min(all.len())].iter().map(|r| r.1).collect();
    top.sort_unstable();
    top
}

#[test]
fn a_reduced_space_searches_the_projected_rows_exactly() {
    let (rows, dim) = (900, 96);
    let data = clustered(rows, dim, 30, 5);
    let spaces = Neighbours::build_in_spaces(&data, 3, 25, 2.0, 0, &[8, 32, 0, 500]);
    assert_eq!(
        spaces.iter().map(Neighbours::space_dim).collect::<Vec<_>>(),
        [8, 32, 96, 96]
    );
    // 0 and anything at or above the embedding's dimension: the full
    // space, no projection, the rows as `build` stores them.
    assert!(spaces[2].projection.is_none() && spaces[3].projection.is_none());
    assert_eq!(spaces[2], Neighbours::build(&data, 3, 25, 2.0, 0));
    let queries = clustered(40, dim, 30, 77);
    for nb in &spaces[..2] {
        let p = nb.projection.as_ref().unwrap();
        assert_eq!(
            (p.dim, p.matrix.len()),
            (nb.space_dim(), nb.space_dim() * dim)
        );
        assert_eq!(nb.embeddings.len(), rows * nb.space_dim());
        // Leading components first.
        assert!(
            p.variance.windows(2).all(|w| w[0] >= w[1]),
            "{:?}",
            p.variance
        );
        for q in queries.iter().map(|r| &r.embedding) {
            let want = reference_nearest(&nb.embeddings, nb.space_dim(), &quantise(&map(p, q)), 25);
            for mode in [SearchMode::Blocked, SearchMode::RowByRow] {
                let mut got = nb.nearest(q, mode);
                got.sort_unstable();
                assert_eq!(got, want, "{}-d, {mode:?}", nb.space_dim());
            }
        }
        // It round-trips, projection included.
        let back: Neighbours = serde_json::from_str(&serde_json::to_string(nb).unwrap()).unwrap();
        assert_eq!(&back, nb);
        assert!(back.check(3, dim).is_ok());
    }
    // On clustered prompts 32 components keep most of the neighbourhood:
    // most of the full space's 25 nearest are among the reduced space's.
    let (full, reduced) = (&spaces[2], &spaces[1]);
    let mut shared = 0;
    for q in queries.iter().map(|r| &r.embedding) {
        let a = full.nearest(q, SearchMode::Blocked);
        let b = reduced.nearest(q, SearchMode::Blocked);
        shared += a.iter().filter(|i| b.contains(i)).count();
    }
    assert!(shared as f64 > 0.6 * 25.0 * 40.0, "{shared} of 1000");
}

#[test]
fn an_artifact_without_a_projection_searches_the_full_embedding_as_before() {
    // The field set written before reduced spaces existed, verbatim: two
    // 4-d rows (i8 × 127 as base64), two models.
    let old = r#"{"k":1,"prior_count":2.0,"weight":0.5,"rows":2,"dim":4,
        "model_means":[0.5,1.0],"embeddings":"fwAAAAAAAH8=","scores":"/v8A/g=="}"#;
    let nb: Neighbours = serde_json::from_str(old).unwrap();
    assert!(nb.projection.is_none());
    assert_eq!(nb.space_dim(), 4);
    assert_eq!(nb.embeddings, [127, 0, 0, 0, 0, 0, 0, 127]);
    assert!(nb.check(2, 4).is_ok());
    assert_eq!(nb.nearest(&[0.1, 0.0, 0.0, 0.9], SearchMode::Blocked), [1]);
    assert_eq!(
        nb.neighbour_sums(&[0.9, 0.0, 0.1, 0.0]),
        [[1.0, 1.0], [0.0, 0.0]]
    );
    // A full-space build writes exactly those fields (no `projection`)
    // and searches the stored 384-d rows as the reference does.
    let data = clustered(300, 384, 10, 3);
    let full = Neighbours::build(&data, 3, 25, 2.0, 0);
    let json: serde_json::Value = serde_json::to_value(&full).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dim",
            "embeddings",
            "k",
            "model_means",
            "prior_count",
            "rows",
            "scores",
            "weight"
        ]
    );
    let back: Neighbours = serde_json::from_value(json).unwrap();
    for q in clustered(20, 384, 10, 4).iter().map(|r| &r.embedding) {
        let mut got = back.nearest(q, SearchMode::Blocked);
        got.sort_unstable();
        assert_eq!(
            got,
            reference_nearest(&back.embeddings, 384, &quantise(q), 25)
        );
    }
}

#[test]
fn a_projection_of_the_wrong_shape_is_refused() {
    let data = clustered(200, 48, 8, 6);
    let nb = Neighbours::build_in_spaces(&data, 3, 25, 2.0, 0, &[16]).remove(0);
    assert!(nb.check(3, 48).is_ok());
    let mut short = nb.clone();
    short
        .projection
        .as_mut()
        .unwrap()
        .matrix
        .truncate(16 * 48 - 1);
    let err = short.check(3, 48).unwrap_err();
    assert!(
        err.contains("projection") && err.contains("767 matrix values"),
        "{err}"
    );
    let mut offsets = nb.clone();
    offsets.projection.as_mut().unwrap().offset.push(0.0);
    assert!(offsets.check(3, 48).unwrap_err().contains("projection"));
    // Rows stored in another space than the projection's.
    let mut rows = nb.clone();
    rows.projection.as_mut().unwrap().dim = 8;
    assert!(rows.check(3, 48).is_err());
    let mut nan = nb;
    nan.projection.as_mut().unwrap().matrix[5] = f32::NAN;
    assert!(nan.check(3, 48).unwrap_err().contains("not finite"));
}
