//! Routing metrics as the literature defines them: AIQ (RouterBench), APGR
//! and CPT (RouteLLM), and the expected calibration error.

// The AIQ functions moved to the router crate (the selection scores its
// candidates by AIQ on held-out training rows); re-exported here.
pub use pointsman_router::routing_value::{aiq, hull_at, upper_hull, Point};

/// The smallest cost at which the hull of `points` reaches `quality`, if it does.
pub fn cost_to_reach(points: &[Point], quality: f64) -> Option<f64> {
    let hull = upper_hull(points);
    let first = *hull.first()?;
    if first.1 >= quality {
        return Some(first.0);
    }
    hull.windows(2)
        .find(|w| w[1].1 >= quality)
        .map(|w| w[0].0 + (quality - w[0].1) / (w[1].1 - w[0].1) * (w[1].0 - w[0].0))
}

/// A two-model curve as (share of calls to the strong model in [0, 1],
/// performance gap recovered), sorted by share, with the pure routers
/// (0, 0) and (1, 1) added; at a repeated share the best PGR is kept.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN quality must also give None
fn pgr_curve(points: &[(f64, f64)], q_weak: f64, q_strong: f64) -> Option<Vec<(f64, f64)>> {
    if !(q_strong > q_weak) {
        return None;
    }
    let mut c: Vec<(f64, f64)> = points
        .iter()
        .map(|&(s, q)| (s, (q - q_weak) / (q_strong - q_weak)))
        .collect();
    c.push((0.0, 0.0));
    c.push((1.0, 1.0));
    c.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    c.dedup_by(|b, a| a.0 == b.0);
    Some(c)
}

/// APGR (RouteLLM): the area under PGR = (q − q_weak) / (q_strong − q_weak)
/// against the share of strong-model calls, over shares 0..1, with linear
/// interpolation between measured points. `points` are (strong share,
/// quality). A random mix scores 0.5. None if q_strong <= q_weak.
pub fn apgr(points: &[(f64, f64)], q_weak: f64, q_strong: f64) -> Option<f64> {
    let c = pgr_curve(points, q_weak, q_strong)?;
    Some(
        c.windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum(),
    )
}

/// CPT(x) (RouteLLM): the smallest share of strong-model calls at which
/// the router's (interpolated) PGR reaches `x` (e.g. 0.5 for CPT(50%)), in [0, 1].
pub fn cpt(points: &[(f64, f64)], q_weak: f64, q_strong: f64, x: f64) -> Option<f64> {
    let c = pgr_curve(points, q_weak, q_strong)?;
    if c[0].1 >= x {
        return Some(c[0].0);
    }
    c.windows(2)
        .find(|w| w[1].1 >= x)
        .map(|w| w[0].0 + (x - w[0].1) / (w[1].1 - w[0].1) * (w[1].0 - w[0].0))
}

/// One non-empty bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityBin {
    /// The bin's range of predicted probability, [lower, upper).
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub mean_observed: f64,
}

/// Running sums for the expected calibration error over equal-width bins
/// of predicted probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Per bin: (count, Σ predicted, Σ observed).
    pub bins: Vec<(usize, f64, f64)>,
}

impl Calibration {
    /// `bins` equal-width bins over [0, 1].
    pub fn new(bins: usize) -> Calibration {
        Calibration {
            bins: vec![(0, 0.0, 0.0); bins.max(1)],
        }
    }

    /// Adds one prediction `p` in [0, 1] with its observed score in [0, 1].
    pub fn add(&mut self, p: f64, observed: f64) {
        let n = self.bins.len();
        let b = &mut self.bins[((p * n as f64) as usize).min(n - 1)];
        b.0 += 1;
        b.1 += p;
        b.2 += observed;
    }

    /// Adds another accumulator's counts (same number of bins).
    pub fn merge(&mut self, other: &Calibration) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.0 += b.0;
            a.1 += b.1;
            a.2 += b.2;
        }
    }

    /// The non-empty bins in order of predicted probability: what a
    /// reliability diagram draws (ECE is their count-weighted mean gap).
    pub fn reliability(&self) -> Vec<ReliabilityBin> {
        let width = 1.0 / self.bins.len() as f64;
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, b)| ReliabilityBin {
                lower: i as f64 * width,
                upper: (i + 1) as f64 * width,
                count: b.0,
                mean_predicted: b.1 / b.0 as f64,
                mean_observed: b.2 / b.0 as f64,
            })
            .collect()
    }

    /// ECE = Σ_bins (n_b / N) · |mean observed − mean predicted|; None if empty.
    pub fn ece(&self) -> Option<f64> {
        let total: usize = self.bins.iter().map(|b| b.0).sum();
        (total > 0).then(|| {
            self.bins
                .iter()
                .filter(|b| b.0 > 0)
                .map(|b| (b.1 - b.2).abs() / total as f64)
                .sum()
        })
    }
}

/// The q-th percentile (0 to 100) of sorted values: linear interpolation
/// between the closest ranks (numpy's default, so side-by-side scripts
/// compute the same statistic); NaN for no values. Shared by `pointsman
/// bench` and the end-to-end benches (benches/serve_process.rs).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Where timing samples lie: the median, the 10th and 90th percentiles
/// ([`percentile`], numpy's interpolation) and the count. `pointsman bench
/// classify` reports one per timed case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    /// How many samples (the percentiles are NaN for none).
    pub n: usize,
}

impl Spread {
    /// The spread of `samples`, in any order (they are sorted here).
    pub fn of(samples: &[f64]) -> Spread {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Spread {
            median: percentile(&s, 50.0),
            p10: percentile(&s, 10.0),
            p90: percentile(&s, 90.0),
            n: s.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&s, 50.0), 2.5);
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 100.0), 4.0);
        assert!((percentile(&s, 10.0) - 1.3).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn spread_sorts_its_samples_first() {
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.median, s.n), (2.5, 4));
        assert!((s.p10 - 1.3).abs() < 1e-12 && (s.p90 - 3.7).abs() < 1e-12);
        let empty = Spread::of(&[]);
        assert!(empty.median.is_nan() && empty.n == 0);
    }

    #[test]
    fn hull_drops_dominated_and_declining_points() {
        let pts = [
            (1.0, 0.5),
            (0.0, 0.5),
            (2.0, 0.8),
            (1.0, 0.7),
            (3.0, 0.6),
            (1.5, 0.7),
        ];
        assert_eq!(upper_hull(&pts), vec![(0.0, 0.5), (1.0, 0.7), (2.0, 0.8)]);
    }

    #[test]
    fn aiq_by_hand() {
        let pts = [(0.0, 0.5), (1.0, 0.7), (2.0, 0.8), (1.0, 0.5), (3.0, 0.6)];
        // Trapezoids over [0,1], [1,2]: 0.6 + 0.75, over a range of 2.
        assert!(close(aiq(&pts, 0.0, 2.0).unwrap(), 0.675));
        // Flat at 0.8 after the top: (0.6 + 0.75 + 0.8) / 3.
        assert!(close(aiq(&pts, 0.0, 3.0).unwrap(), 2.15 / 3.0));
        // A single point is flat everywhere.
        assert!(close(aiq(&[(5.0, 0.4)], 0.0, 10.0).unwrap(), 0.4));
        assert_eq!(aiq(&pts, 1.0, 1.0), None);
        assert!(close(cost_to_reach(&pts, 0.75).unwrap(), 1.5));
        assert_eq!(cost_to_reach(&pts, 0.9), None);
    }

    #[test]
    fn apgr_and_cpt_by_hand() {
        // Weak 0.6, strong 0.8; at half the strong calls quality 0.76 = PGR 0.8.
        let pts = [(0.5, 0.76)];
        // 0.5 * (0 + 0.8) / 2 + 0.5 * (0.8 + 1) / 2 = 0.2 + 0.45.
        assert!(close(apgr(&pts, 0.6, 0.8).unwrap(), 0.65));
        // PGR 0.5 is reached at 0.5 * 0.5 / 0.8 of the way to share 0.5.
        assert!(close(cpt(&pts, 0.6, 0.8, 0.5).unwrap(), 0.3125));
        // PGR 0.9: between (0.5, 0.8) and (1, 1): 0.5 + 0.5 * 0.1 / 0.2.
        assert!(close(cpt(&pts, 0.6, 0.8, 0.9).unwrap(), 0.75));
        // A random mix lies on the diagonal: APGR 0.5, CPT(x) = x.
        let random: Vec<(f64, f64)> = (0..=10)
            .map(|i| (i as f64 / 10.0, 0.6 + 0.02 * i as f64))
            .collect();
        assert!(close(apgr(&random, 0.6, 0.8).unwrap(), 0.5));
        assert!((cpt(&random, 0.6, 0.8, 0.8).unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(apgr(&pts, 0.8, 0.8), None);
    }

    #[test]
    fn ece_by_hand() {
        let mut c = Calibration::new(10);
        // Bin [0.1, 0.2): predicted 0.1 and 0.2? 0.2 falls in the next bin.
        c.add(0.15, 0.0);
        c.add(0.15, 1.0); // bin 1: mean p 0.15, mean y 0.5, gap 0.35, n 2
        c.add(0.95, 1.0); // bin 9: gap 0.05, n 1
        c.add(1.0, 1.0); // p = 1 goes to the last bin: bin 9 now mean p 0.975, y 1: gap 0.025, n 2
                         // (2 * 0.35 + 2 * 0.025) / 4
        assert!(close(c.ece().unwrap(), 0.1875));
        // The diagram's bins: only the two filled ones, with their means.
        let r = c.reliability();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].count, r[1].count), (2, 2));
        assert!(close(r[0].lower, 0.1) && close(r[0].upper, 0.2));
        assert!(close(r[0].mean_predicted, 0.15) && close(r[0].mean_observed, 0.5));
        assert!(close(r[1].mean_predicted, 0.975) && close(r[1].mean_observed, 1.0));
        // ECE is the count-weighted mean gap of the diagram's bins.
        let weighted: f64 = r
            .iter()
            .map(|b| b.count as f64 * (b.mean_predicted - b.mean_observed).abs())
            .sum::<f64>()
            / 4.0;
        assert!(close(weighted, c.ece().unwrap()));
        assert!(Calibration::new(10).reliability().is_empty());
        assert_eq!(Calibration::new(10).ece(), None);
        let mut perfect = Calibration::new(10);
        (0..10).for_each(|i| perfect.add(0.55, if i < 5 || i == 9 { 1.0 } else { 0.0 }));
        assert!(perfect.ece().unwrap() < 0.051);
    }
}
