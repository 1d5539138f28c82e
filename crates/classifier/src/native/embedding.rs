//! The word-embedding table, kept compact when it is large.
//!
//! A 30k-token vocabulary (MiniLM, 47 MB in f32) stays f32. A 250k-token one
//! (multilingual-e5-small, 384 MB in f32) is stored as int8 with one f32
//! scale per block of 32 values (100 MB): only one row per token is ever
//! read, so the lookup costs nothing measurable, and `serve` stays small.
//! The scale is max|x| / 120, not / 127: a block quantised to 4-bit Q4_0
//! (16 levels k·d, k in -8..7, max |x| = 8|d|) then lands exactly on
//! integers (15k), so the reconstructed e5 table loses nothing.

use super::tensor_file::TensorFile;
use crate::error::Result;

/// Tables larger than this in f32 are kept as int8 blocks.
pub const COMPACT_ABOVE_BYTES: usize = 64 << 20;

/// Values per int8 block (one scale each).
const BLOCK: usize = 32;

/// Integer magnitude of a block's largest value.
const LEVELS: f32 = 120.0;

/// Rows read per chunk while converting, so the f32 table is never whole in
/// memory (4 MB of f32 at 384 wide).
const CHUNK_ROWS: usize = 2730;

pub enum EmbeddingTable {
    F32 {
        values: Vec<f32>,
        dim: usize,
    },
    Int8 {
        values: Vec<i8>,
        scales: Vec<f32>,
        dim: usize,
    },
}

impl EmbeddingTable {
    /// Reads tensor `name` (`rows x dim`) from `file`, compact when its f32
    /// size passes [`COMPACT_ABOVE_BYTES`] and `dim` is a multiple of 32.
    pub fn read(file: &TensorFile, name: &str, rows: usize, dim: usize) -> Result<EmbeddingTable> {
        if rows * dim * 4 <= COMPACT_ABOVE_BYTES || !dim.is_multiple_of(BLOCK) {
            let mut values = vec![0.0; rows * dim];
            file.read_f32(name, 0, &mut values)?;
            return Ok(EmbeddingTable::F32 { values, dim });
        }
        let mut values = vec![0i8; rows * dim];
        let mut scales = vec![0.0f32; rows * dim / BLOCK];
        let mut chunk = vec![0.0f32; CHUNK_ROWS * dim];
        for first in (0..rows).step_by(CHUNK_ROWS) {
            let n = CHUNK_ROWS.min(rows - first) * dim;
            file.read_f32(name, first * dim, &mut chunk[..n])?;
            let at = first * dim;
            quantise(
                &chunk[..n],
                &mut values[at..at + n],
                &mut scales[at / BLOCK..(at + n) / BLOCK],
            );
        }
        Ok(EmbeddingTable::Int8 {
            values,
            scales,
            dim,
        })
    }

    /// Builds a compact table from f32 values.
    #[cfg(test)]
    pub fn int8_from_f32(src: &[f32], dim: usize) -> EmbeddingTable {
        assert!(dim.is_multiple_of(BLOCK) && src.len().is_multiple_of(dim));
        let mut values = vec![0i8; src.len()];
        let mut scales = vec![0.0; src.len() / BLOCK];
        quantise(src, &mut values, &mut scales);
        EmbeddingTable::Int8 {
            values,
            scales,
            dim,
        }
    }

    /// Bytes held (logged at load; docs/PERFORMANCE.md).
    pub fn bytes(&self) -> usize {
        match self {
            EmbeddingTable::F32 { values, .. } => values.len() * 4,
            EmbeddingTable::Int8 { values, scales, .. } => values.len() + scales.len() * 4,
        }
    }

    /// `out[j] = row(id)[j] + add[j]`.
    pub fn row_plus(&self, id: usize, add: &[f32], out: &mut [f32]) {
        match self {
            EmbeddingTable::F32 { values, dim } => {
                let row = &values[id * dim..][..*dim];
                for ((o, &a), &b) in out.iter_mut().zip(row).zip(add) {
                    *o = a + b;
                }
            }
            EmbeddingTable::Int8 {
                values,
                scales,
                dim,
            } => {
                let row = &values[id * dim..][..*dim];
                let row_scales = &scales[id * dim / BLOCK..][..dim / BLOCK];
                for (((o, q), b), &s) in out
                    .chunks_exact_mut(BLOCK)
                    .zip(row.chunks_exact(BLOCK))
                    .zip(add.chunks_exact(BLOCK))
                    .zip(row_scales)
                {
                    for ((o, &q), &b) in o.iter_mut().zip(q).zip(b) {
                        *o = q as f32 * s + b;
                    }
                }
            }
        }
    }
}

fn quantise(src: &[f32], values: &mut [i8], scales: &mut [f32]) {
    for ((x, q), s) in src
        .chunks_exact(BLOCK)
        .zip(values.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *s = max / LEVELS;
        let inv = if max > 0.0 { LEVELS / max } else { 0.0 };
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (v * inv).round().clamp(-LEVELS, LEVELS) as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &EmbeddingTable, id: usize, dim: usize) -> Vec<f32> {
        let mut out = vec![0.0; dim];
        t.row_plus(id, &vec![0.0; dim], &mut out);
        out
    }

    #[test]
    fn q4_blocks_are_kept_exactly() {
        // Two rows of 64 values on a Q4_0 grid: (k - 8) * d per block, with
        // the block's largest magnitude at k = 0 as Q4_0 quantisation puts it.
        let dim = 64;
        let mut src = Vec::new();
        for (b, d) in [0.013f32, -0.002, 0.5, 1e-4].into_iter().enumerate() {
            for j in 0..BLOCK {
                let k = if j == 0 { 0 } else { ((j * 7 + b) % 16) as i32 };
                src.push((k - 8) as f32 * d);
            }
        }
        let t = EmbeddingTable::int8_from_f32(&src, dim);
        for id in 0..2 {
            let got = row(&t, id, dim);
            for (g, &w) in got.iter().zip(&src[id * dim..]) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-6), "{g} vs {w}");
            }
        }
    }

    #[test]
    fn any_row_is_within_half_a_level() {
        let dim = 32;
        let src: Vec<f32> = (0..dim)
            .map(|i| ((i * 37 % 11) as f32 - 5.3) * 0.01)
            .collect();
        let t = EmbeddingTable::int8_from_f32(&src, dim);
        let max = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let got = row(&t, 0, dim);
        let worst = got
            .iter()
            .zip(&src)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= max / LEVELS / 2.0 + 1e-7, "worst {worst}");
        assert!(worst > 0.0, "not on a grid, so not exact");
        assert_eq!(t.bytes(), 32 + 4);
    }
}
