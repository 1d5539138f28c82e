//! What `train encoder` measured, as data, and its Markdown rendering.

use std::collections::BTreeMap;

use serde_json::json;

use super::encoder_outcomes::{mean_min, DifficultyRow};
use super::metrics::Confusion;

/// The held-out measurements of one `train encoder` run.
pub struct EncoderReport {
    /// The source-grouped folds (absent with fewer than 2 folds).
    pub folds: Option<FoldsReport>,
    /// Each evaluation-only source under the final frozen and fine-tuned
    /// heads (empty: none given, or a held-out-only run).
    pub eval_sources: BTreeMap<String, (Confusion, Confusion)>,
}

/// The source-grouped folds: frozen against fine-tuned, per candidate
/// epoch count.
pub struct FoldsReport {
    pub folds: usize,
    /// Epoch counts scored (ascending; one when none was to be chosen).
    pub candidates: Vec<usize>,
    /// Pooled held-out predictions per candidate: `[frozen, fine_tuned]`.
    pub confusions: [Vec<Confusion>; 2],
    /// Index into `candidates` of the best frozen and fine-tuned count.
    pub chosen: (usize, usize),
    /// Per held-out source: prompts, right answers frozen and fine-tuned
    /// (at the chosen counts).
    pub per_source: BTreeMap<String, (usize, usize, usize)>,
    /// Each training source's fold.
    pub fold_of: BTreeMap<String, usize>,
    /// Difficulty on held-out outcome sources (runs with outcomes).
    pub difficulty: Option<OutcomeFoldsReport>,
}

/// Difficulty on the held-out outcome sources of each fold.
pub struct OutcomeFoldsReport {
    pub rows: BTreeMap<String, DifficultyRow>,
    pub loss_weight: f64,
    pub success_weight: f64,
}

impl EncoderReport {
    /// The Markdown report: epoch choice, held-out folds, difficulty on
    /// held-out outcome sources, evaluation-only sources.
    pub fn markdown(&self) -> String {
        let mut report = String::new();
        if let Some(f) = &self.folds {
            report += &f.markdown();
        }
        if !self.eval_sources.is_empty() {
            report += "\n### Evaluation-only sources (never trained on, never used to choose settings), final adapter and linear head\n\n| source | n | frozen | fine-tuned | fine-tuned macro recall |\n|---|---|---|---|---|\n";
            for (s, (a, b)) in &self.eval_sources {
                report += &format!(
                    "| {s} | {} | {:.3} | {:.3} | {:.3} |\n",
                    a.total(),
                    a.accuracy(),
                    b.accuracy(),
                    b.macro_recall()
                );
            }
            for (s, (_, b)) in &self.eval_sources {
                report += &format!("\nConfusion matrix, {s}, fine-tuned:\n\n{}\n", b.markdown());
            }
        }
        report
    }

    /// The adapter metadata's `metrics`, in the report's order.
    pub fn metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut metrics = serde_json::Map::new();
        if let Some(f) = &self.folds {
            f.metrics(&mut metrics);
        }
        if !self.eval_sources.is_empty() {
            metrics.insert(
                "task_eval_sources".into(),
                json!(self
                    .eval_sources
                    .iter()
                    .map(|(s, (a, b))| (
                        s.clone(),
                        json!({"frozen": a.to_json(), "fine_tuned": b.to_json()})
                    ))
                    .collect::<serde_json::Map<_, _>>()),
            );
        }
        metrics
    }
}

impl FoldsReport {
    fn markdown(&self) -> String {
        let mut report = String::new();
        let (conf, candidates) = (&self.confusions, &self.candidates);
        let (bf, bt) = self.chosen;
        if candidates.len() > 1 {
            report += &format!(
                "### Epochs chosen on the held-out source folds\n\n\
                 Each fold trains once for {} epochs and scores a snapshot after each candidate count.\n\n\
                 | epochs | frozen accuracy | frozen macro recall | fine-tuned accuracy | fine-tuned macro recall |\n|---|---|---|---|---|\n",
                candidates.last().expect("non-empty")
            );
            for (c, e) in candidates.iter().enumerate() {
                report += &format!(
                    "| {e} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                    conf[0][c].accuracy(),
                    conf[0][c].macro_recall(),
                    conf[1][c].accuracy(),
                    conf[1][c].macro_recall()
                );
            }
            report += &format!(
                "\nChosen: frozen {} epochs, fine-tuned {} epochs (the tables below are at these).\n\n",
                candidates[bf], candidates[bt]
            );
        }
        let (frozen, tuned) = (&conf[0][bf], &conf[1][bt]);
        report += &format!(
            "### Held-out sources, {} source-grouped folds: frozen vs fine-tuned\n\n\
             Both rows use the same folds and the same linear head trained jointly (frozen: head only). \
             Frozen: accuracy {:.3}, macro recall {:.3}. Fine-tuned: accuracy {:.3}, macro recall {:.3}. n = {}.\n\n\
             | held-out source | fold | n | frozen | fine-tuned |\n|---|---|---|---|---|\n",
            self.folds,
            frozen.accuracy(),
            frozen.macro_recall(),
            tuned.accuracy(),
            tuned.macro_recall(),
            frozen.total()
        );
        for (s, (n, a, b)) in &self.per_source {
            report += &format!(
                "| {s} | {} | {n} | {:.3} | {:.3} |\n",
                self.fold_of[s.as_str()],
                *a as f64 / *n as f64,
                *b as f64 / *n as f64
            );
        }
        report += &format!(
            "\nConfusion matrix, frozen:\n\n{}\nConfusion matrix, fine-tuned:\n\n{}\n",
            frozen.markdown(),
            tuned.markdown()
        );
        if let Some(d) = &self.difficulty {
            report +=
                &outcome_folds_markdown(&d.rows, bt, d.loss_weight, d.success_weight, self.folds);
        }
        report
    }

    fn metrics(&self, metrics: &mut serde_json::Map<String, serde_json::Value>) {
        let (conf, candidates) = (&self.confusions, &self.candidates);
        let (bf, bt) = self.chosen;
        if candidates.len() > 1 {
            metrics.insert(
                "epoch_selection".into(),
                json!({"candidates": candidates,
                       "frozen_accuracy": conf[0].iter().map(Confusion::accuracy).collect::<Vec<_>>(),
                       "fine_tuned_accuracy": conf[1].iter().map(Confusion::accuracy).collect::<Vec<_>>(),
                       "chosen_frozen": candidates[bf], "chosen_fine_tuned": candidates[bt]}),
            );
        }
        if let Some(d) = &self.difficulty {
            metrics.insert(
                "difficulty_outcome_folds".into(),
                json!({"folds": self.folds, "loss_weight": d.loss_weight,
                       "success_loss_weight": d.success_weight,
                       "candidate": candidates[bt], "per_source": d.rows}),
            );
        }
        metrics.insert(
            "task_source_folds".into(),
            json!({"folds": self.folds, "frozen": conf[0][bf].to_json(), "fine_tuned": conf[1][bt].to_json(),
                   "fold_of_source": self.fold_of}),
        );
    }
}

/// The report section: per held-out outcome source, the frozen head, the
/// head on the adapter's embedding and the adapter's joint head, at the
/// chosen candidate `c`.
fn outcome_folds_markdown(
    rows: &BTreeMap<String, DifficultyRow>,
    c: usize,
    loss_weight: f64,
    success_weight: f64,
    folds: usize,
) -> String {
    let joint = rows.values().all(|r| r.joint_head.is_some());
    let mut out = format!(
        "\n### Difficulty on held-out outcome sources ({folds} source groups, difficulty loss weight {loss_weight}{})\n\n\
         Spearman, within each held-out source, between predicted difficulty and the source's failure rate \
         (1 - mean score of its models). Each fold holds out one group of outcome sources (and the task fold \
         of the same number), refits the joint IRT model without them and drops every training prompt they \
         also hold. `frozen` is the difficulty head (as `train heads` fits it: target `irt-rank`, pairwise, \
         64 x 10) on the frozen embedding; `adapted` the same head on the fold's adapter's embedding; \
         `joint` the adapter's own linear difficulty head.\n\n\
         | held-out source | fold | n | frozen | adapted |{}\n|---|---|---|---|---|{}\n",
        if success_weight > 0.0 {
            format!(", success loss weight {success_weight}")
        } else {
            String::new()
        },
        if joint { " joint |" } else { "" },
        if joint { "---|" } else { "" }
    );
    for (s, r) in rows {
        out += &format!(
            "| {s} | {} | {} | {:.3} | {:.3} |",
            r.fold, r.n, r.frozen_head, r.adapted_head[c]
        );
        if let Some(j) = r.joint_head.as_ref().filter(|_| joint) {
            out += &format!(" {:.3} |", j[c]);
        }
        out += "\n";
    }
    let (fm, fl) = mean_min(rows.values().map(|r| r.frozen_head));
    let (am, al) = mean_min(rows.values().map(|r| r.adapted_head[c]));
    out += &format!("| **mean** | | | **{fm:.3}** | **{am:.3}** |");
    if joint {
        let (jm, _) = mean_min(
            rows.values()
                .map(|r| r.joint_head.as_ref().expect("all")[c]),
        );
        out += &format!(" **{jm:.3}** |");
    }
    out += &format!("\n| lowest | | | {fl:.3} | {al:.3} |");
    if joint {
        let (_, jl) = mean_min(
            rows.values()
                .map(|r| r.joint_head.as_ref().expect("all")[c]),
        );
        out += &format!(" {jl:.3} |");
    }
    out += "\n";
    out
}
