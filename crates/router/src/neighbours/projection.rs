//! The reduced space a kNN estimate may be defined in: the leading principal
//! components of the stored prompts' embeddings.
//!
//! A query x becomes y = W x − c (W the first d principal directions as
//! rows, c = W μ with μ the stored rows' mean), then is unit-normalised and
//! quantised like a full embedding. The neighbours are exact in that space:
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

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cost::dot_f32;

/// A linear map from the embedding to the search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Dimension of the search space (d).
    pub dim: usize,
    /// d × input rows, row-major: the principal directions, leading first.
    #[serde(serialize_with = "to_base64_f32", deserialize_with = "from_base64_f32")]
    pub matrix: Vec<f32>,
    /// c = W μ: subtracted after the map, so the space is centred on the
    /// stored rows' mean (cosine around the mean, not around the origin,
    /// where every embedding of one encoder points much the same way).
    pub offset: Vec<f32>,
    /// Variance of the stored rows along each direction (the eigenvalues),
    /// for inspection.
    pub variance: Vec<f32>,
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

    /// y = W x − c into `out` (`dim` values).
    pub(crate) fn apply_into(&self, x: &[f32], out: &mut Vec<f32>) {
        let input = x.len();
        out.clear();
        out.extend(
            self.matrix
                .chunks_exact(input)
                .zip(&self.offset)
                .map(|(row, c)| dot_f32(row, x) - c),
        );
    }

    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.dim);
        self.apply_into(x, &mut out);
        out
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
        for i in 0..input {
            for j in i..input {
                let v = cov[i][j] / n;
                cov[i][j] = v;
                cov[j][i] = v;
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
    for j in 0..n {
        d[j] = v[n - 1][j];
    }
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
