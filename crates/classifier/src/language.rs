//! Language directions: where in the embedding a prompt moves when it is
//! translated, so the task head can read the embedding without them.
//!
//! Why: multilingual-e5 maps a prompt and its translation close together,
//! but not onto each other; the difference has a large part shared by every
//! prompt of one language (a "language offset"). The task head trains on
//! mostly English prompts, so a Chinese prompt arrives displaced along a
//! direction the head never saw vary, and lands in the wrong class (BELLE,
//! a Chinese evaluation-only set, was 0.46). Projecting out the mean offset
//! of each language (estimated from translation pairs: a translated prompt
//! minus its English original) removes that displacement and keeps
//! everything orthogonal to it: the known fix for cross-lingual transfer
//! with multilingual sentence encoders (language-agnostic subspaces).
//! docs/EVALUATION.md, "Language directions", has the measurements.
//!
//! Only the task head reads the projected embedding; the difficulty head,
//! the router and the stored embedding see the encoder's output unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A residual shorter than this (relative to the offset it came from) adds
/// no new direction: that language's offset is already in the span.
const INDEPENDENT: f32 = 1e-3;

/// Orthonormal directions of one embedding space, removed from each
/// embedding block of the task head's input.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageDirections {
    dim: usize,
    /// `rank × dim`, each row unit length and orthogonal to the others.
    rows: Vec<f32>,
}

/// What the heads' metadata says of their directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageDirectionsInfo {
    /// Translation pairs each direction came from, by language.
    pub pairs_by_language: BTreeMap<String, usize>,
    /// Number of directions (one per language unless one fell in the span
    /// of the others).
    pub rank: usize,
}

impl LanguageDirections {
    /// Directions from `rows` (`rank × dim`, as stored); the reason when
    /// they are not orthonormal (a corrupt or hand-edited file).
    pub fn from_rows(rows: Vec<f32>, dim: usize) -> Result<LanguageDirections, String> {
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(format!(
                "{} values are not whole rows of dimension {dim}",
                rows.len()
            ));
        }
        let d = LanguageDirections { dim, rows };
        for i in 0..d.rank() {
            for j in 0..=i {
                let dot = dotf(d.row(i), d.row(j));
                let want = if i == j { 1.0 } else { 0.0 };
                if (dot - want).abs() > 1e-3 {
                    return Err(format!(
                        "rows {j} and {i} have dot product {dot:.4}, not {want} (not orthonormal)"
                    ));
                }
            }
        }
        Ok(d)
    }

    /// The span of each language's mean offset (translated minus original)
    /// over `pairs` (language, translated embedding, original embedding).
    /// Languages with fewer than `min_pairs` pairs are left out. `None` when
    /// no language has enough pairs.
    pub fn from_pairs(
        pairs: &[(&str, &[f32], &[f32])],
        min_pairs: usize,
    ) -> Option<(LanguageDirections, LanguageDirectionsInfo)> {
        let dim = pairs.first()?.1.len();
        let mut sums: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
        for &(lang, translated, original) in pairs {
            let (sum, n) = sums.entry(lang).or_insert_with(|| (vec![0.0; dim], 0));
            for ((s, t), o) in sum.iter_mut().zip(translated).zip(original) {
                *s += (*t - *o) as f64;
            }
            *n += 1;
        }
        let mut rows: Vec<f32> = Vec::new();
        let mut by_language = BTreeMap::new();
        for (lang, (sum, n)) in sums {
            if n < min_pairs.max(1) {
                continue;
            }
            by_language.insert(lang.to_string(), n);
            let mut v: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
            let norm0 = dotf(&v, &v).sqrt();
            // Gram-Schmidt, twice for numerical orthogonality.
            for _ in 0..2 {
                for r in rows.chunks_exact(dim) {
                    let c = dotf(&v, r);
                    v.iter_mut().zip(r).for_each(|(x, y)| *x -= c * y);
                }
            }
            let norm = dotf(&v, &v).sqrt();
            if norm0 > 0.0 && norm > INDEPENDENT * norm0 {
                rows.extend(v.iter().map(|x| x / norm));
            }
        }
        if rows.is_empty() {
            return None;
        }
        let rank = rows.len() / dim;
        Some((
            LanguageDirections { dim, rows },
            LanguageDirectionsInfo {
                pairs_by_language: by_language,
                rank,
            },
        ))
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn rank(&self) -> usize {
        self.rows.len() / self.dim
    }

    /// The directions, `rank × dim`, row after row.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// Removes the directions from each whole embedding block of a head
    /// input (the full prompt, then the views); the surface features after
    /// them, fewer than one block (checked when heads load), are left alone.
    pub fn remove_from(&self, input: &mut [f32]) {
        for block in input.chunks_exact_mut(self.dim) {
            for r in self.rows.chunks_exact(self.dim) {
                let c = dotf(block, r);
                block.iter_mut().zip(r).for_each(|(x, y)| *x -= c * y);
            }
        }
    }
}

fn dotf(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(base: &[f32], dir: &[f32], by: f32) -> Vec<f32> {
        base.iter().zip(dir).map(|(b, d)| b + by * d).collect()
    }

    #[test]
    fn a_shared_offset_is_removed_and_the_rest_kept() {
        // Two "languages", each moving every prompt by its own offset (plus
        // a small per-prompt wobble); after removal a translated prompt
        // and its original agree, and a direction orthogonal to both
        // offsets is untouched.
        let dim = 6;
        let zh = [0.0, 0.0, 0.0, 0.0, 0.6, 0.0];
        let de = [0.0, 0.0, 0.0, 0.0, 0.2, 0.5];
        let originals: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                (0..dim)
                    .map(|d| ((i * 7 + d * 3) % 11) as f32 / 11.0)
                    .collect()
            })
            .collect();
        let mut translated = Vec::new();
        for (i, o) in originals.iter().enumerate() {
            let wobble = if i % 2 == 0 { 0.01 } else { -0.01 };
            translated.push(("zh", offset(&offset(o, &zh, 1.0), &[1.0; 6], wobble)));
            translated.push(("de", offset(o, &de, 1.0)));
        }
        let pairs: Vec<(&str, &[f32], &[f32])> = translated
            .iter()
            .enumerate()
            .map(|(k, (l, t))| (*l, t.as_slice(), originals[k / 2].as_slice()))
            .collect();
        let (dirs, counts) = LanguageDirections::from_pairs(&pairs, 5).unwrap();
        assert_eq!(dirs.rank(), 2);
        assert_eq!(counts.pairs_by_language["zh"], 20);
        assert_eq!(counts.rank, 2);
        let mut t = translated[0].1.clone();
        let mut o = originals[0].clone();
        dirs.remove_from(&mut t);
        dirs.remove_from(&mut o);
        let gap: f32 = t.iter().zip(&o).map(|(a, b)| (a - b).abs()).sum();
        assert!(gap < 0.1, "translated and original still {gap} apart");
        // Dimensions 0..4 are orthogonal to both offsets: unchanged.
        let mut probe = vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0];
        dirs.remove_from(&mut probe);
        for (got, want) in probe.iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert!((got - want).abs() < 1e-4, "{probe:?}");
        }
        // Stored rows load back; a non-orthonormal matrix does not.
        assert_eq!(
            LanguageDirections::from_rows(dirs.rows().to_vec(), dim).unwrap(),
            dirs
        );
        assert!(LanguageDirections::from_rows(vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0], 3).is_err());
    }

    #[test]
    fn only_embedding_blocks_are_projected_and_thin_languages_are_skipped() {
        let dim = 2;
        let pairs_data: Vec<(Vec<f32>, Vec<f32>)> = (0..3)
            .map(|i| (vec![i as f32, 1.0], vec![i as f32, 0.0]))
            .collect();
        let pairs: Vec<(&str, &[f32], &[f32])> = pairs_data
            .iter()
            .map(|(t, o)| ("fr", t.as_slice(), o.as_slice()))
            .collect();
        assert!(LanguageDirections::from_pairs(&pairs, 4).is_none());
        let (dirs, _) = LanguageDirections::from_pairs(&pairs, 3).unwrap();
        // Input: two embedding blocks, then one surface feature.
        let mut input = vec![1.0, 5.0, 2.0, 7.0, 9.0];
        dirs.remove_from(&mut input);
        assert_eq!(input, vec![1.0, 0.0, 2.0, 0.0, 9.0]);
        assert_eq!(dim, dirs.dim());
    }
}
