//! Classification and ranking metrics for held-out evaluation of the heads
//! and the adapter.

/// Row = true label, column = predicted label.
pub struct Confusion {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    pub fn new(labels: &[String]) -> Confusion {
        Confusion {
            labels: labels.to_vec(),
            counts: vec![vec![0; labels.len()]; labels.len()],
        }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let right: usize = (0..self.labels.len()).map(|i| self.counts[i][i]).sum();
        right as f64 / self.total().max(1) as f64
    }

    /// Recall per label; None where the label never occurs.
    pub fn recall(&self) -> Vec<Option<f64>> {
        (0..self.labels.len())
            .map(|i| {
                let n: usize = self.counts[i].iter().sum();
                (n > 0).then(|| self.counts[i][i] as f64 / n as f64)
            })
            .collect()
    }

    /// Mean recall over labels that occur (balanced accuracy).
    pub fn macro_recall(&self) -> f64 {
        let r: Vec<f64> = self.recall().into_iter().flatten().collect();
        r.iter().sum::<f64>() / r.len().max(1) as f64
    }

    pub fn markdown(&self) -> String {
        let short: Vec<String> = self
            .labels
            .iter()
            .map(|l| l.chars().take(6).collect())
            .collect();
        let mut s = format!(
            "| true \\ predicted | {} | n | recall |\n",
            short.join(" | ")
        );
        s += &format!("|---|{}---|---|\n", "---|".repeat(self.labels.len()));
        for (i, row) in self.counts.iter().enumerate() {
            let n: usize = row.iter().sum();
            if n == 0 {
                continue;
            }
            let cells: Vec<String> = row
                .iter()
                .map(|c| {
                    if *c == 0 {
                        String::new()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            s += &format!(
                "| {} | {} | {n} | {:.2} |\n",
                self.labels[i],
                cells.join(" | "),
                row[i] as f64 / n as f64
            );
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.total(),
            "accuracy": self.accuracy(),
            "macro_recall": self.macro_recall(),
            "recall": self.labels.iter().zip(self.recall()).map(|(l, r)| (l.clone(), serde_json::json!(r))).collect::<serde_json::Map<_, _>>(),
            "labels": self.labels,
            "confusion": self.counts,
        })
    }
}

/// Average ranks (ties share the mean rank), 1-based.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = mean;
        }
        i = j + 1;
    }
    r
}

pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va.sqrt() * vb.sqrt())
}

/// Spearman rank correlation with average ranks for ties.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_by_hand() {
        // Monotone but non-linear: rank correlation 1.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 100.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ties: a = [1,2,2,3] ranks [1,2.5,2.5,4]; b = [1,3,2,4]; Pearson of ranks = 0.9486833
        assert!(
            (spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]) - 0.948_683_3).abs() < 1e-6
        );
    }

    #[test]
    fn confusion_accuracy_and_recall_by_hand() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut c = Confusion::new(&labels);
        for (t, p) in [(0, 0), (0, 1), (1, 1), (1, 1), (0, 0)] {
            c.add(t, p);
        }
        assert!((c.accuracy() - 0.8).abs() < 1e-12);
        assert_eq!(c.recall(), vec![Some(2.0 / 3.0), Some(1.0), None]);
        assert!((c.macro_recall() - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert!(c.markdown().contains("| a | 2 | 1 |  | 3 | 0.67 |"));
    }
}
