//! The reduced space a kNN estimate may be defined in: the leading principal
//! components of the stored prompts' embeddings.
//!
//! The stored prompts are taken at unit length (the encoder's embeddings
//! already are); W holds their first d principal directions as rows and μ
//! is their mean. A stored prompt z is kept as its centred coordinates
//! b = W (z − μ) = W z − c, all rows quantised to i8 with one scale (not
//! each normalised: a row's length is part of the score); a query x is W x,
//! quantised like a full embedding (its own length does not change the
//! ranking). Rows are ranked by (W x) · b, which is x · z − x · μ with z
//! cut to its d leading components: the full space's cosine ranking,
//! restricted to the directions the stored prompts vary in. (A cosine between centred,
//! re-normalised projections was tried first: it ranks by another
//! similarity and cost 0.004-0.006 AIQ on RouterBench and AlpacaEval.)
//! The neighbours are exact in that space:
//! this is not an approximation of the full-space search but a different
//! kNN model, chosen (or not) by cross-validation like the other
//! hyper-parameters ([`crate::select`]). PCA reads no outcomes; inside the
//! selection it is still fitted on each fold's training part only, so a
//! held-out prompt never shapes the space it is searched in.
//!
//! The eigendecomposition is the symmetric Householder tridiagonalisation
//! and implicit QL iteration of EISPACK (tred2/tql2, as in JAMA): O(n³),
//! about 0.1 s for 384 dimensions, where a crate for one symmetric
//! eigenproblem would add a linear-algebra dependency to the router.

use std::sync::OnceLock;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A linear map from the embedding to the search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Dimension of the search space (d).
    pub dim: usize,
    /// d × input rows, row-major: the principal directions, leading first.
    #[serde(serialize_with = "to_base64_f32", deserialize_with = "from_base64_f32")]
    pub matrix: Vec<f32>,
    /// c = W μ: subtracted from a stored row's map, so rows are kept as
    /// their departure from the mean.
    pub offset: Vec<f32>,
    /// Variance of the stored rows along each direction (the eigenvalues),
    /// for inspection.
    pub variance: Vec<f32>,
    /// `matrix` transposed (input × d), derived on first use; never
    /// serialised.
    #[serde(skip)]
    transposed: Transposed,
}

/// The lazily built transpose: the projection accumulates x_i times a
/// contiguous column of W, sixteen outputs per instruction, where one dot
/// product per row would need a horizontal sum each.
#[derive(Clone, Default)]
struct Transposed(OnceLock<Vec<f32>>);

impl PartialEq for Transposed {
    /// Derived data: equal whether or not either side has built it.
    fn eq(&self, _: &Transposed) -> bool {
        true
    }
}

impl std::fmt::Debug for Transposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "built"
        } else {
            "not built"
        };
        write!(f, "transpose {state}")
    }
}

impl Projection {
    /// `input`-dimensional embeddings mapped to `dim` values.
    pub(crate) fn check(&self, input: usize) -> Result<(), String> {
        if self.dim == 0
            || self.matrix.len() != self.dim * input
            || self.offset.len() != self.dim
            || self.variance.len() != self.dim
        {
            return Err(format!(
                "neighbours.projection: {} matrix values, {} offsets and {} variances for dim {} \
                 over {input}-d embeddings (want dim × {input}, dim and dim)",
                self.matrix.len(),
                self.offset.len(),
                self.variance.len(),
                self.dim
            ));
        }
        if self
            .matrix
            .iter()
            .chain(&self.offset)
            .chain(&self.variance)
            .any(|x| !x.is_finite())
        {
            return Err("neighbours.projection: a value is not finite".into());
        }
        Ok(())
    }

    /// b = W x − c into `out` (`dim` values): a stored row's centred
    /// coordinates.
    pub(crate) fn apply_into(&self, x: &[f32], out: &mut Vec<f32>) {
        self.map_into(x, out);
        for (o, c) in out.iter_mut().zip(&self.offset) {
            *o -= c;
        }
    }

    /// W x into `out` (`dim` values): a query's side of the score.
    pub(crate) fn map_into(&self, x: &[f32], out: &mut Vec<f32>) {
        let input = x.len();
        let wt = self.transposed.0.get_or_init(|| {
            let mut t = vec![0f32; self.matrix.len()];
            for (j, row) in self.matrix.chunks_exact(input).enumerate() {
                for (i, &w) in row.iter().enumerate() {
                    t[i * self.dim + j] = w;
                }
            }
            t
        });
        out.clear();
        out.resize(self.dim, 0.0);
        project(wt, x, out);
    }

    /// b = W x − c for one embedding (its centred coordinates).
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.dim);
        self.apply_into(x, &mut out);
        out
    }
}

/// y = W x from W's transpose `wt` (x.len() × y.len()): four partial
/// sums, x_i going to sum i mod 4, each a fused multiply-add per output;
/// y = (s0 + s1) + (s2 + s3). Every build (AVX-512, AVX2 + FMA, portable)
/// runs these operations in this order, so all give the same bits. The
/// transpose is read once per query (98 KB at 64 × 384): about 0.5 µs,
/// half of it waiting on the L2 cache.
fn project(wt: &[f32], x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
        // SAFETY: `project_avx512` only requires AVX-512F and FMA, which
        // the CPU was just detected to support; it is otherwise safe code.
        return unsafe { project_avx512(wt, x, y) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: `project_avx2` only requires AVX2 and FMA, which the CPU
        // was just detected to support; it is otherwise safe code.
        return unsafe { project_avx2(wt, x, y) };
    }
    project_portable(wt, x, y)
}

/// [`project_portable`] compiled for AVX-512 (`mul_add` one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn project_avx512(wt: &[f32], x: &[f32], y: &mut [f32]) {
    project_portable(wt, x, y)
}

/// [`project_portable`] compiled for AVX2 with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn project_avx2(wt: &[f32], x: &[f32], y: &mut [f32]) {
    project_portable(wt, x, y)
}

/// The common dimensions with their sums in fixed-size arrays (registers),
/// any other through slices: the same operations either way.
#[inline(always)]
fn project_portable(wt: &[f32], x: &[f32], y: &mut [f32]) {
    match y.len() {
        16 => project_fixed::<16>(wt, x, y),
        32 => project_fixed::<32>(wt, x, y),
        64 => project_fixed::<64>(wt, x, y),
        128 => project_fixed::<128>(wt, x, y),
        d => {
            let mut s = vec![0f32; 4 * d];
            for (i, (&xi, col)) in x.iter().zip(wt.chunks_exact(d)).enumerate() {
                let part = &mut s[(i % 4) * d..(i % 4 + 1) * d];
                for (a, &w) in part.iter_mut().zip(col) {
                    *a = w.mul_add(xi, *a);
                }
            }
            for (j, o) in y.iter_mut().enumerate() {
                *o = (s[j] + s[d + j]) + (s[2 * d + j] + s[3 * d + j]);
            }
        }
    }
}

/// Four named sums, x taken four at a time: with D fixed the sums stay in
/// registers (D = 64: sixteen 16-lane registers) instead of a store and a
/// load around every multiply-add.
#[inline(always)]
fn project_fixed<const D: usize>(wt: &[f32], x: &[f32], y: &mut [f32]) {
    #[inline(always)]
    fn fma_into<const D: usize>(s: &mut [f32; D], col: &[f32], xi: f32) {
        for (a, &w) in s.iter_mut().zip(&col[..D]) {
            *a = w.mul_add(xi, *a);
        }
    }
    let mut s = [[0f32; D]; 4];
    let (xs, cols) = (x.chunks_exact(4), wt.chunks_exact(4 * D));
    let (x_tail, col_tail) = (xs.remainder(), cols.remainder());
    let [s0, s1, s2, s3] = &mut s;
    for (xq, cq) in xs.zip(cols) {
        fma_into(s0, &cq[..D], xq[0]);
        fma_into(s1, &cq[D..2 * D], xq[1]);
        fma_into(s2, &cq[2 * D..3 * D], xq[2]);
        fma_into(s3, &cq[3 * D..], xq[3]);
    }
    // The last x_i (fewer than four) go to sums 0, 1, 2 as i mod 4 says.
    for (r, (&xi, col)) in x_tail.iter().zip(col_tail.chunks_exact(D)).enumerate() {
        fma_into(&mut s[r], col, xi);
    }
    for (j, o) in y.iter_mut().enumerate() {
        *o = (s[0][j] + s[1][j]) + (s[2][j] + s[3][j]);
    }
}

/// Principal components of a set of vectors: all of them, leading first,
/// so one fit serves every candidate dimension.
pub(crate) struct Pca {
    input: usize,
    mean: Vec<f64>,
    /// Eigenvectors as rows, by decreasing eigenvalue.
    directions: Vec<Vec<f64>>,
    variance: Vec<f64>,
}

impl Pca {
    /// Fits on `rows` (each `input` values; at least one row).
    #[allow(clippy::needless_range_loop)] // matrix indices read clearer
    pub(crate) fn fit(rows: &[&[f32]], input: usize) -> Pca {
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; input];
        for r in rows {
            for (m, &x) in mean.iter_mut().zip(r.iter()) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        // Covariance, upper triangle accumulated row by row (contiguous).
        let mut cov = vec![vec![0f64; input]; input];
        let mut c = vec![0f64; input];
        for r in rows {
            for (ci, (&x, m)) in c.iter_mut().zip(r.iter().zip(&mean)) {
                *ci = x as f64 - m;
            }
            for i in 0..input {
                let ci = c[i];
                for (a, &cj) in cov[i][i..].iter_mut().zip(&c[i..]) {
                    *a += ci * cj;
                }
            }
        }
        // Scale the upper triangle, then mirror it.
        for (i, row) in cov.iter_mut().enumerate() {
            row[i..].iter_mut().for_each(|v| *v /= n);
        }
        for i in 0..input {
            for j in 0..i {
                cov[i][j] = cov[j][i];
            }
        }
        let (values, vectors) = symmetric_eigen(cov);
        // Leading components first.
        let mut order: Vec<usize> = (0..input).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let directions = order
            .iter()
            .map(|&k| (0..input).map(|i| vectors[i][k]).collect())
            .collect();
        let variance = order.iter().map(|&k| values[k].max(0.0)).collect();
        Pca {
            input,
            mean,
            directions,
            variance,
        }
    }

    /// The first `dim` components as a [`Projection`].
    pub(crate) fn projection(&self, dim: usize) -> Projection {
        let dim = dim.min(self.input);
        let mut matrix = Vec::with_capacity(dim * self.input);
        let mut offset = Vec::with_capacity(dim);
        for v in &self.directions[..dim] {
            matrix.extend(v.iter().map(|&x| x as f32));
            offset.push(v.iter().zip(&self.mean).map(|(a, b)| a * b).sum::<f64>() as f32);
        }
        Projection {
            dim,
            matrix,
            offset,
            variance: self.variance[..dim].iter().map(|&v| v as f32).collect(),
            transposed: Transposed::default(),
        }
    }
}

/// Eigenvalues (in no set order) and eigenvectors (as the columns of the
/// second matrix, in the same order) of a symmetric matrix: Householder reduction to tridiagonal
/// form (tred2), then the implicit QL method (tql2).
pub(crate) fn symmetric_eigen(a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v = a;
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    if n == 0 {
        return (d, v);
    }
    tred2(&mut v, &mut d, &mut e);
    tql2(&mut v, &mut d, &mut e);
    (d, v)
}

#[allow(clippy::needless_range_loop)] // the published algorithm's indices
fn tred2(v: &mut [Vec<f64>], d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    d.copy_from_slice(&v[n - 1][..n]);
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for k in 0..i {
            scale += d[k].abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[i - 1][j];
                v[i][j] = 0.0;
                v[j][i] = 0.0;
            }
        } else {
            for k in 0..i {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for j in 0..i {
                e[j] = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[j][i] = f;
                g = e[j] + v[j][j] * f;
                for k in j + 1..i {
                    g += v[k][j] * d[k];
                    e[k] += v[k][j] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[k][j] -= f * e[k] + g * d[k];
                }
                d[j] = v[i - 1][j];
                v[i][j] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[n - 1][i] = v[i][i];
        v[i][i] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[k][i + 1] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[k][i + 1] * v[k][j];
                }
                for k in 0..=i {
                    v[k][j] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[k][i + 1] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[n - 1][j];
        v[n - 1][j] = 0.0;
    }
    v[n - 1][n - 1] = 1.0;
    e[0] = 0.0;
}

#[allow(clippy::needless_range_loop)] // the published algorithm's indices
fn tql2(v: &mut [Vec<f64>], d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        // Find a small subdiagonal element (e[n - 1] = 0 ends the search).
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        // m == l: d[l] is already an eigenvalue; otherwise iterate.
        if m > l {
            for _ in 0..100 {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in &mut d[l + 2..n] {
                    *x -= h;
                }
                f += h;
                // Implicit QL transformation.
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for row in v.iter_mut() {
                        h = row[i + 1];
                        row[i + 1] = s * row[i] + c * h;
                        row[i] = c * row[i] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

fn to_base64_f32<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    s.serialize_str(&STANDARD.encode(bytes))
}

fn from_base64_f32<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = STANDARD
        .decode(text.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("base64: {e}")))?;
    if bytes.len() % 4 != 0 {
        return Err(serde::de::Error::custom(format!(
            "projection matrix: {} bytes is not a whole number of f32 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::SplitMix;

    #[test]
    #[allow(clippy::needless_range_loop)] // matrix indices read clearer
    fn eigenpairs_satisfy_a_v_equals_lambda_v() {
        let mut rng = SplitMix(5);
        for n in [1usize, 2, 3, 17, 64] {
            let mut a = vec![vec![0f64; n]; n];
            for i in 0..n {
                for j in 0..=i {
                    let x = rng.normal() as f64;
                    a[i][j] = x;
                    a[j][i] = x;
                }
            }
            let (values, vectors) = symmetric_eigen(a.clone());
            for k in 0..n {
                let col: Vec<f64> = (0..n).map(|i| vectors[i][k]).collect();
                let norm: f64 = col.iter().map(|x| x * x).sum::<f64>().sqrt();
                assert!((norm - 1.0).abs() < 1e-9, "n {n}: |v| {norm}");
                for i in 0..n {
                    let av: f64 = (0..n).map(|j| a[i][j] * col[j]).sum();
                    assert!((av - values[k] * col[i]).abs() < 1e-8, "n {n}, pair {k}");
                }
            }
        }
    }

    #[test]
    fn every_build_of_the_projection_gives_the_same_bits() {
        let mut rng = SplitMix(17);
        for (d, input) in [
            (16, 384),
            (32, 384),
            (64, 384),
            (128, 384),
            (24, 50),
            (3, 7),
        ] {
            let wt: Vec<f32> = (0..d * input).map(|_| rng.normal()).collect();
            let x: Vec<f32> = (0..input).map(|_| rng.normal()).collect();
            let mut want = vec![0f32; d];
            project_portable(&wt, &x, &mut want);
            let mut got = vec![0f32; d];
            project(&wt, &x, &mut got);
            assert_eq!(got, want, "{d} × {input}");
            // And what it computes: W x, to f32 rounding.
            for j in 0..d {
                let exact: f64 = (0..input)
                    .map(|i| wt[i * d + j] as f64 * x[i] as f64)
                    .sum::<f64>();
                assert!((want[j] as f64 - exact).abs() < 1e-3, "{d}: {j}");
            }
        }
    }

    #[test]
    fn pca_finds_the_direction_of_most_variance_and_centres_it() {
        // Points along (3, 4)/5 with a large spread, around (10, −2), plus
        // a little noise across.
        let mut rng = SplitMix(9);
        let rows: Vec<Vec<f32>> = (0..500)
            .map(|_| {
                let t = 5.0 * rng.normal();
                let u = 0.1 * rng.normal();
                vec![10.0 + 0.6 * t - 0.8 * u, -2.0 + 0.8 * t + 0.6 * u]
            })
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let p = Pca::fit(&refs, 2).projection(1);
        let w = &p.matrix;
        assert!((w[0].abs() - 0.6).abs() < 0.01 && (w[1].abs() - 0.8).abs() < 0.01);
        assert!(p.variance[0] > 20.0);
        // The rows' mean maps to 0.
        let mean: Vec<f32> = (0..2)
            .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() as f32 / 500.0)
            .collect();
        let y = p.apply(&mean);
        assert!(y[0].abs() < 1e-4, "{y:?}");
        assert!(p.check(2).is_ok());
        let mut bad = p.clone();
        bad.matrix.pop();
        assert!(bad.check(2).unwrap_err().contains("projection"));
    }
}
