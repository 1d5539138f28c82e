//! The task head's leave-one-source-out: each training source held out in
//! turn and predicted by a head trained on all the others.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::heads::softmax;
use crate::taxonomy::Taxonomy;
use crate::train::{train_classifier, TrainConfig};

use super::metrics::Confusion;
use super::progress::Progress;
use super::records::Example;

/// Per held-out source: (prompts, accuracy).
pub type PerSource = BTreeMap<String, (usize, f64)>;

/// Every held-out prediction, pooled and per source.
pub struct TaskCv {
    pub confusion: Confusion,
    pub per_source: PerSource,
}

/// The index of the largest value (the first on ties; 0 when empty).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// Leave-one-source-out over `train`'s sources; `x` holds each example's
/// head input, `labels` and `weights` its label and loss weight.
pub fn task_cv(
    train: &[Example],
    x: &[Vec<f32>],
    labels: &[usize],
    weights: &[f32],
    taxonomy: &Taxonomy,
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<TaskCv> {
    let sources: BTreeSet<&str> = train.iter().map(|e| e.source.as_str()).collect();
    let mut conf = Confusion::new(taxonomy.labels());
    let mut per_source = BTreeMap::new();
    let total = sources.len();
    progress.begin("leave-one-source-out (task)", total);
    for (done, s) in sources.into_iter().enumerate() {
        let (tr, te): (Vec<usize>, Vec<usize>) =
            (0..train.len()).partition(|&i| train[i].source != s);
        let pick = |idx: &[usize]| idx.iter().map(|&i| x[i].clone()).collect::<Vec<_>>();
        let mlp = train_classifier(
            &pick(&tr),
            &tr.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
            &tr.iter().map(|&i| weights[i]).collect::<Vec<_>>(),
            taxonomy.len(),
            cfg,
        )?;
        let mut right = 0;
        for &i in &te {
            let p = argmax(&softmax(&mlp.forward(&x[i])));
            conf.add(labels[i], p);
            right += usize::from(p == labels[i]);
        }
        per_source.insert(
            s.to_string(),
            (te.len(), right as f64 / te.len().max(1) as f64),
        );
        progress.update(done + 1, total);
    }
    progress.end();
    Ok(TaskCv {
        confusion: conf,
        per_source,
    })
}

impl TaskCv {
    /// The report section.
    pub fn markdown(&self) -> String {
        let conf = &self.confusion;
        let mut out = format!(
            "### Task type, leave-one-source-out over the {} training sources\n\nEach source was held out in turn; heads trained on all the others predicted it. Accuracy {:.3}, macro recall {:.3}, n = {}.\n\n| held-out source | n | accuracy |\n|---|---|---|\n",
            self.per_source.len(), conf.accuracy(), conf.macro_recall(), conf.total()
        );
        for (s, (n, acc)) in &self.per_source {
            out += &format!("| {s} | {n} | {acc:.3} |\n");
        }
        out += &format!(
            "\nConfusion matrix (all held-out predictions):\n\n{}\n",
            conf.markdown()
        );
        out
    }

    /// The metadata's `task_leave_one_source_out`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"overall": self.confusion.to_json(), "per_source": self.per_source})
    }
}
