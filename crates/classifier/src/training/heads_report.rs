//! What `train heads` measured, as data, and its Markdown rendering.

use std::collections::BTreeMap;

use serde_json::json;

use super::difficulty_cv::DifficultyCv;
use super::metrics::Confusion;
use super::task_cv::TaskCv;

/// The held-out measurements of one `train heads` run (each part present
/// when it ran).
pub struct HeadsReport {
    /// The task head's leave-one-source-out.
    pub task_cv: Option<TaskCv>,
    /// The final task head on each evaluation-only source (empty: none given).
    pub eval_sources: BTreeMap<String, Confusion>,
    /// The difficulty head's leave-one-source-out.
    pub difficulty_cv: Option<DifficultyCv>,
}

impl HeadsReport {
    /// The Markdown report: task leave-one-source-out, evaluation-only
    /// sources, difficulty leave-one-source-out.
    pub fn markdown(&self) -> String {
        let mut report = String::new();
        if let Some(cv) = &self.task_cv {
            report += &cv.markdown();
        }
        if !self.eval_sources.is_empty() {
            report += "### Task type, evaluation-only sources (never trained on), final heads\n\n| source | n | accuracy | macro recall |\n|---|---|---|---|\n";
            for (s, c) in &self.eval_sources {
                report += &format!(
                    "| {s} | {} | {:.3} | {:.3} |\n",
                    c.total(),
                    c.accuracy(),
                    c.macro_recall()
                );
            }
            for (s, c) in &self.eval_sources {
                report += &format!("\nConfusion matrix, {s}:\n\n{}\n", c.markdown());
            }
        }
        if let Some(cv) = &self.difficulty_cv {
            report += &cv.markdown();
        }
        report
    }

    /// The heads metadata's `metrics`, in the report's order.
    pub fn metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut metrics = serde_json::Map::new();
        if let Some(cv) = &self.task_cv {
            metrics.insert("task_leave_one_source_out".into(), cv.to_json());
        }
        if !self.eval_sources.is_empty() {
            metrics.insert(
                "task_eval_sources".into(),
                json!(self
                    .eval_sources
                    .iter()
                    .map(|(s, c)| (s.clone(), c.to_json()))
                    .collect::<serde_json::Map<_, _>>()),
            );
        }
        if let Some(cv) = &self.difficulty_cv {
            metrics.insert("difficulty_leave_one_source_out".into(), json!(cv));
        }
        metrics
    }
}
