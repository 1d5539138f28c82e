//! Routing value: how well a set of P(success) routes, measured as the
//! eval harness measures a router, on training rows the P did not see.
//!
//! The selection ([`crate::select`]) predicts every training row out of
//! fold. On the rows where every model has an outcome and a cost, each
//! candidate's P is swept through the λ rule (the model maximising
//! P − λ · c̄_m on each row, c̄_m the model's mean training cost, λ on a log
//! grid of 80 steps a decade, 10^±3 around the models' mean cost, plus
//! λ = 0); each λ gives a point (mean observed cost, mean observed score)
//! of the models it chose, and the routing value is the AIQ of those
//! points (the area under their non-decreasing hull over the single
//! models' cost span, divided by the span): the number the harness reports
//! for both policies, since a target τ is the λ rule at λ(τ).
//!
//! The AIQ functions live here because the selection needs them; the eval
//! crate re-exports them.

use serde::{Deserialize, Serialize};

use crate::cost::RowCosts;
use crate::policy::{choose, Policy};
use crate::train::TrainingRow;

/// A (cost in USD, quality in [0, 1]) operating point.
pub type Point = (f64, f64);

/// Fewest complete rows (every model with an outcome and a cost) on which
/// the routing value is measured; below it the selection keeps
/// cross-entropy.
pub const MIN_COMPLETE_ROWS: usize = 30;

/// λ steps a decade of the sweep (the harness's and the target table's):
/// at 20 the hull joined a handful of points of the concave curve on
/// AlpacaEval with straight lines, which rewarded a spread-out sweep over
/// a better-ranked one.
const STEPS_PER_DECADE: usize = 80;
/// Decades below and above 1 / (mean cost) the sweep spans.
const DECADES: i32 = 3;

/// The training rows a routing value is measured on: those where every
/// model has an outcome and a finite cost.
#[derive(Debug, Clone)]
pub(crate) struct RoutingRows {
    /// Index into the training rows.
    rows: Vec<usize>,
    /// Observed score per model, aligned with `rows`.
    score: Vec<Vec<f64>>,
    /// Observed cost per model (USD), aligned with `rows`.
    cost: Vec<Vec<f64>>,
    /// Each model's mean cost over the complete rows: what the λ rule
    /// prices with, and whose span the AIQ is taken over.
    mean_cost: Vec<f64>,
    lambdas: Vec<f64>,
}

impl RoutingRows {
    /// The complete rows of `rows` (`costs[i]` those of `rows[i]`) for `n`
    /// models; None when fewer than [`MIN_COMPLETE_ROWS`] or the models'
    /// mean costs do not span a range.
    pub(crate) fn new(rows: &[TrainingRow], costs: &[RowCosts], n: usize) -> Option<RoutingRows> {
        let mut out = RoutingRows {
            rows: Vec::new(),
            score: Vec::new(),
            cost: Vec::new(),
            mean_cost: vec![0.0; n],
            lambdas: Vec::new(),
        };
        for (i, (r, c)) in rows.iter().zip(costs).enumerate() {
            let mut score = vec![f64::NAN; n];
            let mut cost = vec![f64::NAN; n];
            for &(m, y) in &r.outcomes {
                if m < n {
                    score[m] = y as f64;
                }
            }
            for &(m, usd) in c {
                if m < n && usd.is_finite() && usd >= 0.0 {
                    cost[m] = usd;
                }
            }
            if score.iter().chain(&cost).all(|v| v.is_finite()) {
                out.rows.push(i);
                out.score.push(score);
                out.cost.push(cost);
            }
        }
        if out.rows.len() < MIN_COMPLETE_ROWS {
            return None;
        }
        let count = out.rows.len() as f64;
        for c in &out.cost {
            out.mean_cost
                .iter_mut()
                .zip(c)
                .for_each(|(s, v)| *s += v / count);
        }
        let (lo, hi) = out.span();
        if hi.is_nan() || lo.is_nan() || hi <= lo {
            return None;
        }
        let scale = n as f64 / out.mean_cost.iter().sum::<f64>();
        let steps = 2 * DECADES as usize * STEPS_PER_DECADE;
        out.lambdas =
            std::iter::once(0.0)
                .chain((0..=steps).map(|j| {
                    scale * 10f64.powf(-DECADES as f64 + j as f64 / STEPS_PER_DECADE as f64)
                }))
                .collect();
        Some(out)
    }

    /// How many complete rows the value is measured on.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The single models' cost span: (cheapest, dearest) mean cost.
    fn span(&self) -> (f64, f64) {
        let lo = self.mean_cost.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .mean_cost
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    /// The routing value of P given by `p_of(row index)` (P per model for a
    /// training row; None for a row it has no P for, which is skipped).
    pub(crate) fn value<'a>(&self, p_of: impl Fn(usize) -> Option<&'a [f64]>) -> f64 {
        let n = self.mean_cost.len();
        let all = vec![true; n];
        let ps: Vec<(usize, &[f64])> = (0..self.rows.len())
            .filter_map(|k| p_of(self.rows[k]).map(|p| (k, p)))
            .collect();
        if ps.is_empty() {
            return f64::NAN;
        }
        let count = ps.len() as f64;
        let points: Vec<Point> = self
            .lambdas
            .iter()
            .map(|&lambda_per_usd| {
                let policy = Policy::WillingnessToPay { lambda_per_usd };
                let (mut c, mut q) = (0.0, 0.0);
                for &(k, p) in &ps {
                    let m = choose(p, &self.mean_cost, &all, policy).expect("all eligible");
                    c += self.cost[k][m];
                    q += self.score[k][m];
                }
                (c / count, q / count)
            })
            .collect();
        let (lo, hi) = self.span();
        aiq(&points, lo, hi).unwrap_or(f64::NAN)
    }
}

/// The non-decreasing concave (upper convex) hull of `points`: vertices
/// sorted by cost, each costlier vertex of higher quality. Mixing two
/// routers at random reaches every point on the segment between them, and
/// a router may always spend less quality for more cost, hence the hull.
pub fn upper_hull(points: &[Point]) -> Vec<Point> {
    let mut pts: Vec<Point> = points
        .iter()
        .copied()
        .filter(|(c, q)| c.is_finite() && q.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    pts.dedup_by(|b, a| a.0 == b.0); // keeps the best quality at each cost
    let mut hull: Vec<Point> = Vec::new();
    for p in pts {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // Drop b if it lies on or below the segment a-p.
            if (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0) >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    // Concave: rises then falls. The non-decreasing hull stops at the top.
    if let Some(top) = hull
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
    {
        hull.truncate(top + 1);
    }
    hull
}

/// The hull's quality at `cost`: linear between vertices, flat beyond the
/// last one and, below the first, equal to the first vertex's quality.
pub fn hull_at(hull: &[Point], cost: f64) -> f64 {
    let (first, last) = (hull[0], hull[hull.len() - 1]);
    if cost <= first.0 {
        return first.1;
    }
    if cost >= last.0 {
        return last.1;
    }
    let i = hull.partition_point(|p| p.0 <= cost);
    let (a, b) = (hull[i - 1], hull[i]);
    a.1 + (b.1 - a.1) * (cost - a.0) / (b.0 - a.0)
}

/// AIQ: the area under the non-decreasing hull of `points` over
/// [`c_min`, `c_max`], divided by `c_max - c_min`; a quality-like number in
/// [0, 1]. None if there are no points or the range is empty. All routers
/// compared should share one range (the harness uses the span of the
/// single models' costs).
// `!(a > b)` is meant: a NaN bound must also give None.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub fn aiq(points: &[Point], c_min: f64, c_max: f64) -> Option<f64> {
    let hull = upper_hull(points);
    if hull.is_empty() || !(c_max > c_min) {
        return None;
    }
    let mut xs: Vec<f64> = vec![c_min, c_max];
    xs.extend(hull.iter().map(|p| p.0).filter(|&c| c > c_min && c < c_max));
    xs.sort_by(f64::total_cmp);
    let area: f64 = xs
        .windows(2)
        .map(|w| (w[1] - w[0]) * (hull_at(&hull, w[0]) + hull_at(&hull, w[1])) / 2.0)
        .sum();
    Some(area / (c_max - c_min))
}

/// How the selection ([`crate::select`]) picks among its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// The lowest penalised out-of-fold cross-entropy (the only criterion
    /// before 2026-11-30, and what an artifact without a recorded
    /// criterion used).
    CrossEntropy,
    /// The highest routing value (AIQ of the λ sweep on the out-of-fold
    /// rows).
    RoutingValue,
    /// Among the candidates whose penalised cross-entropy is within one
    /// standard error (of the per-outcome difference, paired) of the
    /// lowest, the highest routing value.
    CrossEntropyThenRouting,
}

impl Criterion {
    /// The criterion's name as the CLI and the artifact spell it.
    pub fn name(self) -> &'static str {
        match self {
            Criterion::CrossEntropy => "cross-entropy",
            Criterion::RoutingValue => "routing-value",
            Criterion::CrossEntropyThenRouting => "cross-entropy-then-routing",
        }
    }
}

impl std::str::FromStr for Criterion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Criterion::CrossEntropy,
            Criterion::RoutingValue,
            Criterion::CrossEntropyThenRouting,
        ]
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| {
            format!("unknown selection criterion `{s}` (cross-entropy, routing-value, cross-entropy-then-routing)")
        })
    }
}

/// One candidate as the criterion sees it.
pub(crate) struct Scored<'a> {
    /// Penalised out-of-fold cross-entropy per outcome.
    pub penalised: f64,
    /// Cross-entropy of every out-of-fold outcome, in one order shared by
    /// all candidates.
    pub per_outcome: &'a [f64],
    /// Routing value; NaN when not measured.
    pub routing_value: f64,
}

/// The index of the winner among `cands` (not empty) under `criterion`.
/// Without routing values (NaN) every criterion is cross-entropy.
pub(crate) fn pick(cands: &[Scored], criterion: Criterion) -> usize {
    let by_ce = (0..cands.len())
        .min_by(|&a, &b| cands[a].penalised.total_cmp(&cands[b].penalised))
        .expect("candidates");
    let measured = cands.iter().all(|c| c.routing_value.is_finite());
    let best_value_among = |keep: &dyn Fn(usize) -> bool| {
        (0..cands.len())
            .filter(|&i| keep(i))
            // Ties go to the earlier (simpler) candidate.
            .fold(None::<usize>, |best, i| match best {
                Some(b) if cands[b].routing_value >= cands[i].routing_value => Some(b),
                _ => Some(i),
            })
            .unwrap_or(by_ce)
    };
    match criterion {
        _ if !measured => by_ce,
        Criterion::CrossEntropy => by_ce,
        Criterion::RoutingValue => best_value_among(&|_| true),
        Criterion::CrossEntropyThenRouting => {
            let best = &cands[by_ce];
            best_value_among(&|i| {
                let c = &cands[i];
                i == by_ce
                    || c.penalised - best.penalised
                        <= paired_standard_error(c.per_outcome, best.per_outcome)
            })
        }
    }
}

/// Standard error of the mean of a − b over paired entries.
fn paired_standard_error(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scores: [f32; 2]) -> TrainingRow {
        TrainingRow {
            embedding: vec![0.0],
            task_scores: vec![1.0],
            outcomes: vec![(0, scores[0]), (1, scores[1])],
            head_outputs: Vec::new(),
        }
    }

    /// Two models, cheap (cost 1) and dear (cost 3); the dear one succeeds
    /// everywhere, the cheap one on the first half of the rows only.
    fn two_model_rows() -> RoutingRows {
        let rows: Vec<TrainingRow> = (0..40)
            .map(|i| row([if i < 20 { 1.0 } else { 0.0 }, 1.0]))
            .collect();
        let costs: Vec<RowCosts> = rows.iter().map(|_| vec![(0, 1.0), (1, 3.0)]).collect();
        RoutingRows::new(&rows, &costs, 2).unwrap()
    }

    #[test]
    fn routing_value_is_the_aiq_of_the_lambda_sweep() {
        let rr = two_model_rows();
        assert_eq!(rr.len(), 40);
        // Per-model averages: the single models only, (1, 0.5) and (3, 1):
        // the hull's area over [1, 3] is 0.75.
        let avg = [0.5, 1.0];
        let v = rr.value(|_| Some(&avg[..]));
        assert!((v - 0.75).abs() < 1e-9, "{v}");
        // P that knows which rows the cheap model solves: at the λ where
        // cheap is bought only when it succeeds, (2, 1), so the hull is
        // (1, 0.5) – (2, 1) – flat: (0.75 + 1) / 2 = 0.875.
        let good = [1.0, 1.0];
        let bad = [0.0, 1.0];
        let v = rr.value(|i| Some(if i < 20 { &good[..] } else { &bad[..] }));
        assert!((v - 0.875).abs() < 1e-9, "{v}");
    }

    #[test]
    fn too_few_complete_rows_measure_nothing() {
        let mut rows: Vec<TrainingRow> = (0..40).map(|_| row([0.5, 1.0])).collect();
        // Half the rows miss a model's outcome: 20 complete rows < 30.
        for r in rows.iter_mut().take(20) {
            r.outcomes.pop();
        }
        let costs: Vec<RowCosts> = rows.iter().map(|_| vec![(0, 1.0), (1, 3.0)]).collect();
        assert!(RoutingRows::new(&rows, &costs, 2).is_none());
        // All rows complete but one price: no cost span.
        let rows: Vec<TrainingRow> = (0..40).map(|_| row([0.5, 1.0])).collect();
        let flat: Vec<RowCosts> = rows.iter().map(|_| vec![(0, 2.0), (1, 2.0)]).collect();
        assert!(RoutingRows::new(&rows, &flat, 2).is_none());
    }

    /// The log-loss winner routes worse: cross-entropy keeps it, routing
    /// value takes the other, and cross-entropy-then-routing takes the
    /// other only while its loss is within a standard error of the best.
    #[test]
    fn each_criterion_picks_its_winner() {
        // Per-outcome losses: b is worse than a by 0.01 ± noise.
        let a: Vec<f64> = (0..400)
            .map(|i| 0.5 + 0.1 * ((i % 7) as f64 - 3.0) / 3.0)
            .collect();
        let b: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.01 + 0.4 * ((i % 5) as f64 - 2.0) / 2.0)
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let se = paired_standard_error(&b, &a);
        assert!(se > 0.0);
        let cands = |b_penalty: f64| {
            vec![
                Scored {
                    penalised: mean(&a),
                    per_outcome: &a,
                    routing_value: 0.30,
                },
                Scored {
                    penalised: mean(&b) + b_penalty,
                    per_outcome: &b,
                    routing_value: 0.32,
                },
            ]
        };
        // b's loss within one standard error of a's (0.01 < se here).
        let near = cands(0.0);
        assert!(near[1].penalised - near[0].penalised <= se, "se {se}");
        assert_eq!(pick(&near, Criterion::CrossEntropy), 0);
        assert_eq!(pick(&near, Criterion::RoutingValue), 1);
        assert_eq!(pick(&near, Criterion::CrossEntropyThenRouting), 1);
        // b's loss far beyond it: only routing value still takes b.
        let far = cands(10.0 * se);
        assert_eq!(pick(&far, Criterion::CrossEntropyThenRouting), 0);
        assert_eq!(pick(&far, Criterion::RoutingValue), 1);
        // Without routing values every criterion is cross-entropy.
        let mut unmeasured = cands(0.0);
        unmeasured
            .iter_mut()
            .for_each(|c| c.routing_value = f64::NAN);
        assert_eq!(pick(&unmeasured, Criterion::RoutingValue), 0);
    }

    #[test]
    fn criteria_parse_by_name() {
        for c in [
            Criterion::CrossEntropy,
            Criterion::RoutingValue,
            Criterion::CrossEntropyThenRouting,
        ] {
            assert_eq!(c.name().parse::<Criterion>(), Ok(c));
        }
        let err = "loss".parse::<Criterion>().unwrap_err();
        assert!(err.contains("loss"), "{err}");
    }
}
