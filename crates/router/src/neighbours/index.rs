//! The stored prompts in the layout of the VNNI scan, built when the
//! artifact is loaded (never serialised), and the top-k selection over the
//! scan's scores. Any dimension works (the last 4-dimension step is padded),
//! so a reduced space (`projection.rs`) uses the same scan.
//!
//! Why a full scan and not a coarse-to-fine search of the full embedding
//! (a kNN *defined* in a reduced space is another matter: see
//! `projection.rs`): on the RouterBench artifact the 25 nearest stored prompts of a query sit
//! within ~0.3% of each other in cosine (RouterBench's prompts share long
//! templates), and the ranking among them lives in many dimensions. A
//! 64-direction PCA projection (computed from the stored rows) put the
//! true 25 nearest among its top 100 candidates only 60-70% of the time
//! (recall@25 0.59-0.71, even without quantisation) and needed ~500
//! candidates for 0.99, which costs as much as reading every row. The
//! scan below reads every row once, 64 bytes per instruction for 16
//! rows, and is exact (docs/PERFORMANCE.md, "Stacked decision").

use super::kernels::{self, Scan, BLOCK};

/// Reusable buffers of one search (one per thread: no allocation per
/// decision once warm).
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) q: Vec<i8>,
    /// The query in the reduced space, when there is one.
    pub(super) projected: Vec<f32>,
    quads: Vec<i32>,
    scores: Vec<i32>,
    cands: Vec<u32>,
    pub(super) exact: Vec<(i32, u32)>,
}

/// Every stored row in the scan's layout: blocks of [`BLOCK`] rows, each
/// block `groups` steps of 64 rows × 4 consecutive dimensions, every value
/// plus 128 as a byte (`vpdpbusd` multiplies unsigned by signed bytes).
/// The last block and the last step are padded with 128 (a zero).
#[derive(Clone)]
pub(super) struct BlockedRows {
    codes: Vec<u8>,
    groups: usize,
    rows: usize,
    dim: usize,
    /// Whether a stored value is -128 (a code of 0), which the AVX2 scan
    /// cannot take; our own quantisation never writes one (it clamps to
    /// ±127), but an artifact's rows are only checked to be i8.
    has_minimum: bool,
}

impl BlockedRows {
    pub(super) fn build(embeddings: &[i8], rows: usize, dim: usize) -> BlockedRows {
        let groups = dim.div_ceil(4);
        let blocks = rows.div_ceil(BLOCK);
        let mut codes = vec![128u8; blocks * groups * BLOCK * 4];
        for i in 0..rows {
            let (b, r) = (i / BLOCK, i % BLOCK);
            for (d, &v) in embeddings[i * dim..(i + 1) * dim].iter().enumerate() {
                let (g, t) = (d / 4, d % 4);
                codes[(b * groups + g) * BLOCK * 4 + r * 4 + t] = (v as i32 + 128) as u8;
            }
        }
        BlockedRows {
            has_minimum: embeddings[..rows * dim].contains(&i8::MIN),
            codes,
            groups,
            rows,
            dim,
        }
    }

    /// The exhaustive top `k` (highest i8 dot product with `s.q` first, the
    /// lower index winning a tie) in `s.exact[..k]`, in no set order. Each
    /// row scores Σ (r + 128) q = r·q + 128 Σ q: the exact dot product
    /// shifted by one constant, so the same order and the same ties.
    ///
    /// `scan` comes from [`Scan::detect`] (or is `Portable`); the AVX2 scan
    /// falls back to the portable one for rows holding a -128.
    pub(super) fn search(&self, k: usize, scan: Scan, s: &mut Scratch) {
        let scan = match scan {
            Scan::Avx2 if self.has_minimum => Scan::Portable,
            other => other,
        };
        debug_assert!(s.q.len() == self.dim && (1..=self.rows).contains(&k));
        s.quads.clear();
        let q = &s.q;
        s.quads.extend((0..self.groups).map(|g| {
            let b = |j: usize| q.get(g * 4 + j).map_or(0, |&x| x as u8);
            i32::from_le_bytes([b(0), b(1), b(2), b(3)])
        }));
        let blocks = self.rows.div_ceil(BLOCK);
        s.scores.resize(blocks * BLOCK, 0);
        kernels::block_scores(&self.codes, self.groups, &s.quads, scan, &mut s.scores);
        let threshold = threshold_for(&s.scores[..self.rows], k);
        kernels::at_least(&s.scores, self.rows, threshold, scan, &mut s.cands);
        s.exact.clear();
        s.exact
            .extend(s.cands.iter().map(|&i| (s.scores[i as usize], i)));
        s.exact
            .select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    }
}

/// A score threshold that at least `want` of `scores` reach and, unless
/// ties forbid, at most 3 × `want`. Guesses come from an evenly spaced
/// sample of ~256 scores (its highest values, kept sorted): first the one
/// whose rank in the sample matches `want` overall, then lower ones while
/// too few scores reach it; bisection only if a guess lets too many
/// through. Each try is one vectorised count (~2,000 compares); the
/// sample usually makes one or two tries enough (against ~9 with a
/// normal-quantile guess on RouterBench's clustered scores).
fn threshold_for(scores: &[i32], want: usize) -> i32 {
    let n = scores.len();
    if want >= n || n == 0 {
        return i32::MIN;
    }
    let stride = (n / SAMPLE).max(1);
    let taken = n.div_ceil(stride);
    // 0-based index in the sample's descending order of the score with
    // about `want` scores above it overall, one further for margin.
    let rank = (want * taken).div_ceil(n);
    let keep = (2 * rank + 4).min(SAMPLE_TOP);
    let mut top = [i32::MIN; SAMPLE_TOP];
    let mut len = 0;
    for &x in scores.iter().step_by(stride) {
        if len == keep && x <= top[keep - 1] {
            continue;
        }
        let mut p = len.min(keep - 1);
        while p > 0 && top[p - 1] < x {
            top[p] = top[p - 1];
            p -= 1;
        }
        top[p] = x;
        len = (len + 1).min(keep);
    }
    // count(lo) >= want and count(hi) < want, always.
    let (mut lo, mut hi) = (i32::MIN, i32::MAX);
    let mut at = rank.min(len - 1);
    let mut step = rank.max(1);
    let mut t = top[at];
    for _ in 0..64 {
        let c = kernels::count_at_least(scores, t);
        if c < want {
            hi = t;
        } else if c > 3 * want && hi as i64 - t as i64 > 1 {
            lo = t;
        } else {
            return t;
        }
        let bisect = (lo as i64 + (hi as i64 - lo as i64) / 2) as i32;
        t = if hi == t {
            // Too few reach t: lower sample values while nothing lower is
            // known to let too many through; all rows once they run out.
            match (lo == i32::MIN, at + 1 < len) {
                (true, true) => {
                    at = (at + step).min(len - 1);
                    step *= 2;
                    top[at]
                }
                (true, false) => return i32::MIN,
                (false, _) => bisect,
            }
        } else if hi == i32::MAX && at > 0 {
            // Too many: higher sample values while nothing higher is known.
            at = at.saturating_sub(step);
            step *= 2;
            top[at]
        } else {
            bisect
        };
        if hi as i64 - lo as i64 <= 1 {
            break;
        }
    }
    lo
}

/// Sample size for [`threshold_for`], and most of its values kept.
const SAMPLE: usize = 256;
const SAMPLE_TOP: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::SplitMix;

    #[test]
    fn thresholds_let_through_at_least_want_and_not_many_more() {
        let mut rng = SplitMix(11);
        for n in [1, 2, 30, 257, 2225, 9000] {
            for spread in [1.0f32, 50.0, 1e5] {
                // Skewed scores (a tight cluster on top), with ties when
                // the spread is small.
                let scores: Vec<i32> = (0..n)
                    .map(|_| (rng.next_f32().powi(8) * spread) as i32 - 7)
                    .collect();
                for want in [1, 25, 100, n] {
                    let t = threshold_for(&scores, want);
                    let c = scores.iter().filter(|&&x| x >= t).count();
                    assert!(c >= want.min(n), "n {n}, want {want}: {c}");
                    // More than 3 × want only when ties at t force it.
                    let above = scores.iter().filter(|&&x| x > t).count();
                    assert!(
                        c <= 3 * want || above < want,
                        "n {n}, want {want}: {c} (above {above})"
                    );
                }
            }
        }
    }

    #[test]
    fn every_scan_keeps_the_same_top_k() {
        let mut rng = SplitMix(3);
        let (rows, dim) = (301, 50);
        let mut emb: Vec<i8> = (0..rows * dim)
            .map(|_| ((rng.next_f32() * 255.0) as i32 - 127) as i8)
            .collect();
        // One artifact row with a -128 (never written by our own
        // quantisation): the AVX2 scan must then step aside.
        emb[7 * dim + 3] = i8::MIN;
        let blocked = BlockedRows::build(&emb, rows, dim);
        assert!(blocked.has_minimum);
        let clean: Vec<i8> = emb.iter().map(|&x| x.max(-127)).collect();
        let clean_blocked = BlockedRows::build(&clean, rows, dim);
        assert!(!clean_blocked.has_minimum);
        let top = |emb: &[i8], q: &[i8]| -> Vec<u32> {
            let mut reference = Vec::new();
            kernels::all_dots_portable(emb, dim, q, &mut reference);
            reference.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut want: Vec<u32> = reference[..17].iter().map(|r| r.1).collect();
            want.sort_unstable();
            want
        };
        for _ in 0..20 {
            let q: Vec<i8> = (0..dim)
                .map(|_| ((rng.next_f32() * 255.0) as i32 - 127) as i8)
                .collect();
            for (rows, emb) in [(&blocked, &emb), (&clean_blocked, &clean)] {
                let want = top(emb, &q);
                for scan in [Scan::Portable, Scan::detect()] {
                    let mut s = Scratch {
                        q: q.clone(),
                        ..Scratch::default()
                    };
                    rows.search(17, scan, &mut s);
                    let mut got: Vec<u32> = s.exact[..17].iter().map(|r| r.1).collect();
                    got.sort_unstable();
                    assert_eq!(got, want, "{scan:?}, a -128 stored: {}", rows.has_minimum);
                }
            }
        }
    }
}
