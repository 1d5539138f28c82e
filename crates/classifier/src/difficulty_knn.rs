//! The non-parametric part of difficulty: a prompt's difficulty read off
//! its nearest training prompts (cosine over the encoder embedding), the
//! mean of their difficulty targets.
//!
//! Why beside the head: the head has to learn one smooth function from a
//! few thousand prompts of a dozen benchmarks; a prompt that closely
//! resembles training prompts (the same kind of problem, the same
//! language) can take their measured difficulty directly.

use serde::{Deserialize, Serialize};

use crate::heads::dot;
use crate::native::gemm::{gemm, PackedB};

/// The blend's settings, kept in the heads' metadata.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnBlend {
    /// Neighbours averaged.
    pub k: usize,
    /// Difficulty = (1 − weight) · head + weight · mean target of the k nearest.
    pub weight: f32,
}

/// The training prompts the kNN part reads: their unit embeddings and
/// difficulty targets (the head's targets).
#[derive(Debug, Clone)]
pub struct NeighbourBank {
    pub dim: usize,
    /// Row-major, `targets.len()` × `dim`, each row of unit length.
    pub unit: Vec<f32>,
    pub targets: Vec<f32>,
    pub blend: KnnBlend,
    /// `unit` packed for the encoder's matrix kernel: one product gives
    /// every similarity (several times faster than row-by-row dots).
    packed: PackedB,
}

impl NeighbourBank {
    /// Checks shapes and values; `Err` says what is wrong.
    pub fn new(
        dim: usize,
        unit: Vec<f32>,
        targets: Vec<f32>,
        blend: KnnBlend,
    ) -> std::result::Result<Self, String> {
        if dim == 0 || targets.is_empty() || unit.len() != dim * targets.len() {
            return Err(format!(
                "{} embedding values for {} targets of dimension {dim}",
                unit.len(),
                targets.len()
            ));
        }
        if blend.k == 0 || !(0.0..=1.0).contains(&blend.weight) {
            return Err(format!(
                "k {} and weight {} (need k ≥ 1, weight in [0, 1])",
                blend.k, blend.weight
            ));
        }
        if let Some(i) = unit.iter().chain(&targets).position(|v| !v.is_finite()) {
            return Err(format!("value {i} is not finite"));
        }
        if let Some(t) = targets.iter().find(|t| !(0.0..=1.0).contains(*t)) {
            return Err(format!("target {t} outside [0, 1]"));
        }
        let packed = PackedB::from_rows(&unit, targets.len(), dim);
        Ok(NeighbourBank {
            dim,
            unit,
            targets,
            blend,
            packed,
        })
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Mean target of the `blend.k` rows most similar to `embedding`.
    pub fn mean_target(&self, embedding: &[f32]) -> f32 {
        let mut q = unit(&embedding[..self.dim.min(embedding.len())]);
        q.resize(self.dim, 0.0);
        let mut dots = vec![0.0f32; self.len()];
        gemm(
            1,
            &q,
            self.dim,
            &self.packed,
            None,
            &mut dots,
            self.len(),
            false,
        );
        let mut sims: Vec<(f32, usize)> = dots.into_iter().zip(0..).collect();
        let k = self.blend.k.min(sims.len());
        if k < sims.len() {
            sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        }
        sims[..k].iter().map(|&(_, i)| self.targets[i]).sum::<f32>() / k as f32
    }

    /// The blend of a head's difficulty with the neighbours'.
    pub fn blend(&self, head: f32, embedding: &[f32]) -> f32 {
        let w = self.blend.weight;
        (1.0 - w) * head + w * self.mean_target(embedding)
    }
}

/// `v` scaled to unit length (a zero vector stays zero).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// For every row, its `m` most similar rows (cosine of unit vectors) among
/// the rows of *other* groups, most similar first. Rows of the same group
/// (source) are never neighbours: every use of these lists holds the row's
/// own source out. O(n² d); about 10 s for 10,000 rows of 384 on one core.
pub fn cross_group_neighbours(
    unit: &[Vec<f32>],
    groups: &[usize],
    m: usize,
) -> Vec<Vec<(u32, f32)>> {
    assert_eq!(unit.len(), groups.len());
    let n = unit.len();
    let mut sims: Vec<(u32, f32)> = Vec::with_capacity(n);
    (0..n)
        .map(|i| {
            sims.clear();
            sims.extend(
                (0..n)
                    .filter(|&j| groups[j] != groups[i])
                    .map(|j| (j as u32, dot(&unit[i], &unit[j]))),
            );
            let keep = m.min(sims.len());
            if keep < sims.len() && keep > 0 {
                sims.select_nth_unstable_by(keep - 1, |a, b| b.1.total_cmp(&a.1));
            }
            sims.truncate(keep);
            sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            sims.clone()
        })
        .collect()
}

/// Mean target of the first k entries of `neighbours` that `allowed`
/// admits, for every k in `ks` (ascending); `fallback` where none is
/// admitted. With fewer admitted than k, the mean of those there are.
pub fn prefix_means(
    neighbours: &[(u32, f32)],
    allowed: impl Fn(usize) -> bool,
    target: impl Fn(usize) -> f32,
    ks: &[usize],
    fallback: f32,
) -> Vec<f32> {
    let kmax = ks.iter().copied().max().unwrap_or(0);
    let mut sums = Vec::with_capacity(kmax);
    let mut sum = 0.0f32;
    for &(j, _) in neighbours {
        if sums.len() == kmax {
            break;
        }
        if allowed(j as usize) {
            sum += target(j as usize);
            sums.push(sum);
        }
    }
    ks.iter()
        .map(|&k| match sums.len().min(k) {
            0 => fallback,
            n => sums[n - 1] / n as f32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
        assert!((dot(&unit(&a), &unit(&a)) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn neighbours_skip_the_own_group_and_come_most_similar_first() {
        let rows = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]];
        let unit: Vec<Vec<f32>> = rows.iter().map(|r| unit(r)).collect();
        let groups = [0, 0, 1, 2];
        let nb = cross_group_neighbours(&unit, &groups, 2);
        // Row 0: row 1 shares its group; row 3 (45°) before row 2 (90°).
        assert_eq!(nb[0].iter().map(|p| p.0).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(nb[2].len(), 2);
        assert_eq!(nb[2][0].0, 3);
    }

    #[test]
    fn the_bank_averages_the_k_nearest_and_blends() {
        let rows = [[1.0f32, 0.0], [0.0, 1.0], [0.8, 0.6]];
        let unit_rows: Vec<f32> = rows.iter().flat_map(|r| unit(r)).collect();
        let blend = KnnBlend { k: 2, weight: 0.5 };
        let bank = NeighbourBank::new(2, unit_rows.clone(), vec![0.9, 0.1, 0.7], blend).unwrap();
        // Nearest to (1, 0.1): rows 0 and 2.
        assert!((bank.mean_target(&[1.0, 0.1]) - 0.8).abs() < 1e-6);
        assert!((bank.blend(0.2, &[1.0, 0.1]) - 0.5).abs() < 1e-6);
        assert!(NeighbourBank::new(2, unit_rows.clone(), vec![0.9, 0.1], blend).is_err());
        assert!(NeighbourBank::new(2, unit_rows.clone(), vec![0.9, 0.1, 1.5], blend).is_err());
        let bad = KnnBlend { k: 0, weight: 0.5 };
        assert!(NeighbourBank::new(2, unit_rows, vec![0.9, 0.1, 0.7], bad).is_err());
    }

    #[test]
    fn prefix_means_admit_only_allowed_rows() {
        let nb = [(0u32, 0.9), (1, 0.8), (2, 0.7), (3, 0.6)];
        let t = [1.0f32, 0.0, 0.5, 0.25];
        let m = prefix_means(&nb, |j| j != 1, |j| t[j], &[1, 2, 10], 0.4);
        assert_eq!(m, vec![1.0, 0.75, (1.0 + 0.5 + 0.25) / 3.0]);
        assert_eq!(prefix_means(&nb, |_| false, |j| t[j], &[3], 0.4), vec![0.4]);
    }
}
