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
//!
//! The space the prompts are compared in is part of the model: the full
//! embedding, or the first d principal components of the stored prompts
//! (`projection.rs`: the artifact then carries the d × dim projection and
//! stores the rows projected; a query is projected, re-normalised and
//! quantised the same way). Which one is chosen by cross-validation with
//! the weight ([`crate::select`]); an artifact without a projection (every
//! one written before it existed) searches the full embedding.
//!
//! The search is exact in its space and reads every stored row: at load the
//! rows are copied into the layout of an AVX-512 VNNI scan (`index.rs`,
//! kernels in `kernels.rs` with portable equivalents), about 3 ns per 384-d
//! row where a row-by-row dot product took about 10, and proportionally
//! less in a reduced space (docs/PERFORMANCE.md, "Stacked decision", also
//! for why no approximate search of the full space).

mod eigen;
mod index;
mod kernels;
mod projection;

use std::cell::RefCell;
use std::sync::OnceLock;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cost::dot_f32;
use crate::train::{SplitMix, TrainingRow};
use index::{BlockedRows, Scratch};
use projection::Pca;
pub use projection::Projection;

/// Most prompts an artifact stores for the neighbour search: 8,192 × 384
/// bytes is 3 MiB of embeddings (4 MiB as base64, and 3 MiB more for the
/// scan's copy) and a search over all of them takes ~30 µs (the `decide`
/// bench).
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
    /// Embedding dimension (of the queries, before any projection).
    pub dim: usize,
    /// The reduced space the stored prompts and queries are compared in
    /// (`projection.rs`); absent: the full embedding, as in artifacts
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
    /// Mean score per model over the stored prompts (0.5 for a model with
    /// none), aligned with the success model's `models`; for inspection
    /// (estimates shrink toward the parametric P, not toward this).
    pub model_means: Vec<f32>,
    /// `rows` × [`Neighbours::space_dim`] unit-normalised (projected)
    /// embeddings × 127, row-major.
    #[serde(serialize_with = "to_base64_i8", deserialize_with = "from_base64_i8")]
    pub embeddings: Vec<i8>,
    /// `rows` × models scores × 254 (255: not observed), row-major.
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub scores: Vec<u8>,
    /// `embeddings` in the layout of the VNNI scan, derived on first use
    /// (or by [`Neighbours::prepare`] at load); never serialised.
    /// Changing `embeddings` after a search leaves it stale: build a new
    /// `Neighbours` instead.
    #[serde(skip)]
    search: SearchIndex,
}

/// How a search finds the k nearest stored prompts. Both return the same
/// rows (the exact top k); tests hold them equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Every stored row scored in the blocked layout (`index.rs`), with
    /// AVX-512 VNNI where the CPU has it (a portable loop otherwise).
    Blocked,
    /// Row by row, the reference: the search before the blocked layout.
    RowByRow,
}

/// The lazily built layout.
#[derive(Clone, Default)]
struct SearchIndex(OnceLock<BlockedRows>);

impl PartialEq for SearchIndex {
    /// Derived data: two `Neighbours` with the same fields are equal
    /// whether or not either has built its layout yet.
    fn eq(&self, _: &SearchIndex) -> bool {
        true
    }
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "built"
        } else {
            "not built"
        };
        write!(f, "blocked layout {state}")
    }
}

thread_local! {
    /// Per-thread search buffers: the search itself allocates nothing once
    /// warm (its result, the sums per model, is one small `Vec`).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
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
        Self::build_in_spaces(rows, n_models, k, prior_count, seed, &[0]).remove(0)
    }

    /// [`Neighbours::build`] once per search space in `dims`: 0 (or the
    /// embedding's dimension or more) the full embedding, d the first d
    /// principal components of the stored rows (one PCA for all of them).
    pub fn build_in_spaces(
        rows: &[TrainingRow],
        n_models: usize,
        k: usize,
        prior_count: f32,
        seed: u64,
        dims: &[usize],
    ) -> Vec<Neighbours> {
        let keep = Self::stored_rows(rows, seed);
        let dim = rows.first().map_or(0, |r| r.embedding.len());
        let reduced = |d: usize| d > 0 && d < dim;
        // A reduced space is fitted on the stored rows at unit length, where
        // the full space's cosine is a dot product (`projection.rs`).
        let unit: Vec<Vec<f32>> = if dims.iter().any(|&d| reduced(d)) {
            keep.iter()
                .map(|&i| unit_length(&rows[i].embedding))
                .collect()
        } else {
            Vec::new()
        };
        let pca = (!unit.is_empty()).then(|| {
            let stored: Vec<&[f32]> = unit.iter().map(Vec::as_slice).collect();
            Pca::fit(&stored, dim)
        });
        dims.iter()
            .map(|&d| {
                let projection = pca.as_ref().filter(|_| reduced(d)).map(|p| p.projection(d));
                Self::build_from(
                    rows,
                    &keep,
                    &unit,
                    n_models,
                    k,
                    prior_count,
                    dim,
                    projection,
                )
            })
            .collect()
    }

    /// The rows to store: those with outcomes, a seeded subsample of
    /// [`MAX_ROWS`] beyond.
    fn stored_rows(rows: &[TrainingRow], seed: u64) -> Vec<usize> {
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
        keep
    }

    /// The rows `keep` names stored in the full space, or, with a
    /// projection, `unit` (their embeddings at unit length) projected.
    #[allow(clippy::too_many_arguments)] // one private constructor's inputs
    fn build_from(
        rows: &[TrainingRow],
        keep: &[usize],
        unit: &[Vec<f32>],
        n_models: usize,
        k: usize,
        prior_count: f32,
        dim: usize,
        projection: Option<Projection>,
    ) -> Neighbours {
        let space = projection.as_ref().map_or(dim, |p| p.dim);
        let mut embeddings = Vec::with_capacity(keep.len() * space);
        if let Some(p) = &projection {
            // Centred coordinates, one scale for all rows (`projection.rs`).
            let centred: Vec<Vec<f32>> = unit.iter().map(|e| p.apply(e)).collect();
            let top = centred.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
            let s = if top > 0.0 { 127.0 / top } else { 0.0 };
            for b in &centred {
                embeddings.extend(b.iter().map(|x| (x * s).round().clamp(-127.0, 127.0) as i8));
            }
        } else {
            for &i in keep {
                embeddings.extend(quantise(&rows[i].embedding));
            }
        }
        let mut scores = vec![MISSING; keep.len() * n_models];
        let mut sum = vec![(0f64, 0usize); n_models];
        for (pos, &i) in keep.iter().enumerate() {
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
            projection,
            model_means: sum
                .iter()
                .map(|&(s, c)| if c > 0 { (s / c as f64) as f32 } else { 0.5 })
                .collect(),
            embeddings,
            scores,
            search: SearchIndex::default(),
        }
    }

    /// Builds the search index now rather than on the first search (the
    /// server calls it at load so no request pays for it).
    pub fn prepare(&self) {
        self.blocked();
    }

    /// Dimension of the space the neighbours are searched in: the
    /// projection's, or the embedding's without one.
    pub fn space_dim(&self) -> usize {
        self.projection.as_ref().map_or(self.dim, |p| p.dim)
    }

    fn blocked(&self) -> &BlockedRows {
        self.search
            .0
            .get_or_init(|| BlockedRows::build(&self.embeddings, self.rows, self.space_dim()))
    }

    /// Indices of the k stored prompts nearest to one embedding (highest
    /// i8 dot product first; the lower index wins a tie), found as `mode`
    /// says.
    pub fn nearest(&self, embedding: &[f32], mode: SearchMode) -> Vec<u32> {
        self.with_nearest(embedding, mode, |rows| rows.to_vec())
    }

    /// Calls `f` with the k nearest rows' indices (in no set order).
    fn with_nearest<T>(
        &self,
        embedding: &[f32],
        mode: SearchMode,
        f: impl FnOnce(&[u32]) -> T,
    ) -> T {
        assert_eq!(embedding.len(), self.dim, "embedding dimension");
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let s = &mut *guard;
            match &self.projection {
                Some(p) => {
                    p.map_into(embedding, &mut s.projected);
                    quantise_into(&s.projected, &mut s.q);
                }
                None => quantise_into(embedding, &mut s.q),
            }
            let space = self.space_dim();
            let k = self.k.min(self.rows);
            if k == 0 {
                return f(&[]);
            }
            match mode {
                // Zero-width embeddings: every similarity is 0, so the
                // lowest indices win the tie (as the reference's rule says).
                _ if space == 0 => {
                    s.exact.clear();
                    s.exact.extend((0..k as u32).map(|i| (0, i)));
                }
                SearchMode::Blocked => self.blocked().search(k, kernels::Scan::detect(), s),
                _ => {
                    kernels::all_dots(&self.embeddings, space, &s.q, &mut s.exact);
                    // Highest similarity first; the lower index wins a tie.
                    s.exact
                        .select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                }
            }
            let mut idx = [0u32; 64];
            if k <= idx.len() {
                for (d, &(_, i)) in idx.iter_mut().zip(&s.exact[..k]) {
                    *d = i;
                }
                f(&idx[..k])
            } else {
                let v: Vec<u32> = s.exact[..k].iter().map(|&(_, i)| i).collect();
                f(&v)
            }
        })
    }

    /// (sum of scores, count) per model (aligned with `model_means`) over
    /// the k stored prompts nearest to one embedding.
    pub fn neighbour_sums(&self, embedding: &[f32]) -> Vec<[f32; 2]> {
        self.neighbour_sums_by(embedding, SearchMode::Blocked)
    }

    /// [`Neighbours::neighbour_sums`] with the search chosen.
    pub fn neighbour_sums_by(&self, embedding: &[f32], mode: SearchMode) -> Vec<[f32; 2]> {
        let n = self.model_means.len();
        let mut sum = vec![[0f32; 2]; n];
        if self.rows == 0 {
            return sum;
        }
        // Whole bytes summed in integers: the same sums whatever order the
        // search returns the neighbours in.
        let mut bytes = [[0u32; 2]; 64];
        let mut wide;
        let acc: &mut [[u32; 2]] = if n <= bytes.len() {
            &mut bytes[..n]
        } else {
            wide = vec![[0u32; 2]; n];
            &mut wide
        };
        self.with_nearest(embedding, mode, |nearest| {
            for &i in nearest {
                let row = &self.scores[i as usize * n..(i as usize + 1) * n];
                for (a, &b) in acc.iter_mut().zip(row) {
                    if b != MISSING {
                        a[0] += b as u32;
                        a[1] += 1;
                    }
                }
            }
        });
        for (s, a) in sum.iter_mut().zip(acc.iter()) {
            *s = [a[0] as f32 / 254.0, a[1] as f32];
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
        if let Some(p) = &self.projection {
            p.check(dim)?;
        }
        if self.dim != dim
            || self.model_means.len() != n_models
            || self.embeddings.len() != self.rows * self.space_dim()
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

/// `e` scaled to unit length (a zero vector stays zero).
fn unit_length(e: &[f32]) -> Vec<f32> {
    let norm = dot_f32(e, e).sqrt();
    let s = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    e.iter().map(|x| x * s).collect()
}

/// Unit-normalised × 127, rounded (a zero vector stays zero).
fn quantise(e: &[f32]) -> Vec<i8> {
    let mut q = Vec::with_capacity(e.len());
    quantise_into(e, &mut q);
    q
}

/// [`quantise`] into a reused buffer.
fn quantise_into(e: &[f32], q: &mut Vec<i8>) {
    q.clear();
    q.resize(e.len(), 0);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: `quantise_avx512` only requires AVX-512F, which the CPU
        // was just detected to support; it is otherwise safe code.
        return unsafe { quantise_avx512(e, q) };
    }
    quantise_portable(e, q)
}

/// [`quantise_portable`] compiled for AVX-512: `round` becomes vector
/// instructions instead of a libm call per value (the same results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn quantise_avx512(e: &[f32], q: &mut [i8]) {
    quantise_portable(e, q)
}

/// The norm in eight running sums ([`dot_f32`]): one serial chain of 384
/// float adds was most of a query's quantisation time.
#[inline(always)]
fn quantise_portable(e: &[f32], q: &mut [i8]) {
    let norm = dot_f32(e, e).sqrt();
    let s = if norm > 0.0 { 127.0 / norm } else { 0.0 };
    for (d, x) in q.iter_mut().zip(e) {
        *d = (x * s).round().clamp(-127.0, 127.0) as i8;
    }
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
mod tests;
