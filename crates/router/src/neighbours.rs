//! k-nearest-neighbour success estimates, the second half of the stacked
//! success model (see [`crate::select`]).
//!
//! For a prompt x the estimate of model m is the mean score of m over the
//! k stored prompts most cosine-similar to x, shrunk toward the
//! item-response model's own P(m, x) with `prior_count` pseudo-outcomes:
//!
//! ```text
//! P_knn(m, x) = (Σ_{i ∈ N_k(x), m seen on i} s_im + c · P_irt(m, x)) / (n_m(x) + c)
//! ```
//!
//! so a model few neighbours have outcomes for (one added with ten
//! outcomes) keeps the parametric estimate instead of its noisy mean.
//!
//! The stored prompts are kept compact: each embedding unit-normalised and
//! quantised to i8 (× 127), each score to a byte (× 254, 255 = no
//! outcome), both base64 in the artifact. Cosine similarity is then an i8
//! dot product, ranked exactly as the f32 one up to the quantisation (a
//! query is quantised the same way). At most [`MAX_ROWS`] prompts are
//! stored; a larger training set is subsampled (seeded).

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::train::{SplitMix, TrainingRow};

/// Most prompts an artifact stores for the neighbour search: 8,192 × 384
/// bytes is 3 MiB of embeddings (4 MiB as base64) and a search over all of
/// them stays in the tens of microseconds (see the `decide` bench).
pub const MAX_ROWS: usize = 8192;

/// Byte that marks "no outcome" in `scores`.
const MISSING: u8 = 255;

/// The stored prompts and outcomes of a stacked success model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbours {
    /// Neighbours per estimate.
    pub k: usize,
    /// Pseudo-outcomes of the model's mean in each estimate.
    pub prior_count: f32,
    /// Weight w of the estimate in P = (1 − w) · P_irt + w · P_knn.
    pub weight: f32,
    /// Stored prompts.
    pub rows: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Mean score per model over the stored prompts (0.5 for a model with
    /// none), aligned with the success model's `models`; for inspection
    /// (estimates shrink toward the parametric P, not toward this).
    pub model_means: Vec<f32>,
    /// `rows` × `dim` unit-normalised embeddings × 127, row-major.
    #[serde(serialize_with = "to_base64_i8", deserialize_with = "from_base64_i8")]
    pub embeddings: Vec<i8>,
    /// `rows` × models scores × 254 (255: not observed), row-major.
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub scores: Vec<u8>,
}

impl Neighbours {
    /// Stores `rows` (those with outcomes; at most [`MAX_ROWS`] of them,
    /// a seeded subsample beyond) for `n_models` models, with weight 0.
    pub fn build(
        rows: &[TrainingRow],
        n_models: usize,
        k: usize,
        prior_count: f32,
        seed: u64,
    ) -> Neighbours {
        let mut keep: Vec<usize> = (0..rows.len())
            .filter(|&i| !rows[i].outcomes.is_empty())
            .collect();
        if keep.len() > MAX_ROWS {
            let mut rng = SplitMix(seed ^ 0x4E16_4B0F);
            for i in (1..keep.len()).rev() {
                let j = ((rng.next_f32() as f64 * (i + 1) as f64) as usize).min(i);
                keep.swap(i, j);
            }
            keep.truncate(MAX_ROWS);
            keep.sort_unstable();
        }
        let dim = rows.first().map_or(0, |r| r.embedding.len());
        let mut embeddings = Vec::with_capacity(keep.len() * dim);
        let mut scores = vec![MISSING; keep.len() * n_models];
        let mut sum = vec![(0f64, 0usize); n_models];
        for (pos, &i) in keep.iter().enumerate() {
            embeddings.extend(quantise(&rows[i].embedding));
            // Out-of-range indices are the trainer's to refuse (fit_fixed).
            for &(m, y) in rows[i].outcomes.iter().filter(|o| o.0 < n_models) {
                let byte = (y.clamp(0.0, 1.0) * 254.0).round() as u8;
                scores[pos * n_models + m] = byte;
                sum[m].0 += byte as f64 / 254.0;
                sum[m].1 += 1;
            }
        }
        Neighbours {
            k: k.max(1),
            prior_count,
            weight: 0.0,
            rows: keep.len(),
            dim,
            model_means: sum
                .iter()
                .map(|&(s, c)| if c > 0 { (s / c as f64) as f32 } else { 0.5 })
                .collect(),
            embeddings,
            scores,
        }
    }

    /// (sum of scores, count) per model (aligned with `model_means`) over
    /// the k stored prompts nearest to one embedding.
    pub fn neighbour_sums(&self, embedding: &[f32]) -> Vec<[f32; 2]> {
        let n = self.model_means.len();
        let mut sum = vec![[0f32; 2]; n];
        if self.rows == 0 {
            return sum;
        }
        let q = quantise(embedding);
        let mut sims = similarities(&self.embeddings, self.dim, &q);
        let k = self.k.min(sims.len());
        // Highest similarity first; the lower index wins a tie.
        sims.select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &sims[..k] {
            let row = &self.scores[i as usize * n..(i as usize + 1) * n];
            for (s, &b) in sum.iter_mut().zip(row) {
                if b != MISSING {
                    s[0] += b as f32 / 254.0;
                    s[1] += 1.0;
                }
            }
        }
        sum
    }

    /// P_knn from one model's neighbour (sum, count) and the parametric P
    /// it shrinks toward.
    pub fn estimate(&self, sums: [f32; 2], p_irt: f64) -> f64 {
        let c = self.prior_count as f64;
        (sums[0] as f64 + c * p_irt) / (sums[1] as f64 + c).max(1e-12)
    }

    /// Shapes consistent with `n_models` and `dim`; weight and means in
    /// range (every score byte is valid: 0..=254 a score, 255 none).
    pub(crate) fn check(&self, n_models: usize, dim: usize) -> Result<(), String> {
        if self.dim != dim
            || self.model_means.len() != n_models
            || self.embeddings.len() != self.rows * dim
            || self.scores.len() != self.rows * n_models
            || self.k == 0
        {
            return Err("neighbours: shapes do not match rows/dim/models".into());
        }
        if !(0.0..=1.0).contains(&self.weight)
            || !self.prior_count.is_finite()
            || self.prior_count < 0.0
            || self.model_means.iter().any(|m| !(0.0..=1.0).contains(m))
        {
            return Err(
                "neighbours: weight and model_means must be in [0, 1], prior_count >= 0".into(),
            );
        }
        Ok(())
    }
}

/// Unit-normalised × 127, rounded (a zero vector stays zero).
fn quantise(e: &[f32]) -> Vec<i8> {
    let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    let s = if norm > 0.0 { 127.0 / norm } else { 0.0 };
    e.iter()
        .map(|x| (x * s).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// (dot product with `q`, row index) for every `dim`-wide row of `rows`.
fn similarities(rows: &[i8], dim: usize, q: &[i8]) -> Vec<(i32, u32)> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512bw") {
        // SAFETY: `similarities_avx512` only requires AVX-512F/BW, which the
        // CPU was just detected to support; it is otherwise safe code.
        return unsafe { similarities_avx512(rows, dim, q) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: `similarities_avx2` only requires AVX2, which the CPU was
        // just detected to support; it is otherwise safe code.
        return unsafe { similarities_avx2(rows, dim, q) };
    }
    similarities_portable(rows, dim, q)
}

/// [`similarities_portable`] compiled for AVX2: the same code, vectorised
/// into 256-bit lanes (about 15 ns per 384-d row against 140 ns for the
/// baseline x86-64 build, measured on this machine's Xeon).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn similarities_avx2(rows: &[i8], dim: usize, q: &[i8]) -> Vec<(i32, u32)> {
    similarities_portable(rows, dim, q)
}

/// The same for AVX-512 (about 8 ns per 384-d row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn similarities_avx512(rows: &[i8], dim: usize, q: &[i8]) -> Vec<(i32, u32)> {
    similarities_portable(rows, dim, q)
}

/// Plain loops, not iterator adapters: `collect` or `fold` would run in a
/// generic function compiled without the caller's target features.
#[inline(always)]
fn similarities_portable(rows: &[i8], dim: usize, q: &[i8]) -> Vec<(i32, u32)> {
    let mut out = Vec::with_capacity(rows.len() / dim.max(1));
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        out.push((dot_i8(row, q), i as u32));
    }
    out
}

/// i8 dot product in i32 (384 × 127² fits easily): sixteen lanes of i16
/// products (127² fits i16) widened into i32, a shape the compiler
/// vectorises.
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            acc[l] += (x[l] as i16 * y[l] as i16) as i32;
        }
    }
    acc.iter().sum::<i32>() + tail
}

fn to_base64<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(v))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("base64: {e}")))
}

fn to_base64_i8<S: Serializer>(v: &[i8], s: S) -> Result<S::Ok, S::Error> {
    let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
    to_base64(&bytes, s)
}

fn from_base64_i8<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i8>, D::Error> {
    Ok(from_base64(d)?.into_iter().map(|b| b as i8).collect())
}

#[cfg(test)]
mod tests {
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
}
