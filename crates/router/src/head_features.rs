//! The classifier heads' outputs as inputs of the success model's prompt
//! term (issue 11 item 1: "a low-dimensional model on the heads' outputs").
//!
//! The prompt term of [`crate::success`] (difficulty b(x) and traits z(x))
//! reads a vector x̂. By default x̂ is the standardised embedding. A
//! [`PromptInput`] other than `Embedding` makes it read the heads' outputs
//! too (the task head's class probabilities, optionally the difficulty
//! head's score), standardised over the training rows and multiplied by
//! `weight`, either after the embedding or instead of it:
//!
//! ```text
//! x̂ = [ (e − μ_e) / σ_e ,  weight · (h − μ_h) / σ_h ]   (embedding+heads)
//! x̂ =                      weight · (h − μ_h) / σ_h     (heads)
//! ```
//!
//! `weight` = √(dim / features) gives the heads' block the same total
//! prior variance under the ridge as the embedding's block, so the ridge
//! grid of the selection means the same thing for both. The router only
//! receives numbers (named `task:<label>` and `difficulty`); which head
//! computed them is the caller's business. An artifact that reads head
//! features records their names and refuses to decide without them.

use serde::{Deserialize, Serialize};

use crate::error::RouterError;

/// What the success model's prompt term reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptInput {
    /// The standardised embedding alone (every artifact before head
    /// features, and the default).
    #[default]
    Embedding,
    /// The embedding followed by the scaled head features.
    EmbeddingAndHeads,
    /// The scaled head features alone.
    Heads,
}

impl PromptInput {
    /// Whether the prompt term reads head features.
    pub fn uses_heads(self) -> bool {
        self != PromptInput::Embedding
    }

    /// The name used in candidate names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PromptInput::Embedding => "embedding",
            PromptInput::EmbeddingAndHeads => "embedding+heads",
            PromptInput::Heads => "heads",
        }
    }

    fn is_embedding(&self) -> bool {
        *self == PromptInput::Embedding
    }

    /// For `skip_serializing_if`: artifacts without head features keep
    /// their layout.
    pub(crate) fn is_default(p: &PromptInput) -> bool {
        p.is_embedding()
    }
}

impl std::str::FromStr for PromptInput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embedding" => Ok(PromptInput::Embedding),
            "embedding+heads" => Ok(PromptInput::EmbeddingAndHeads),
            "heads" => Ok(PromptInput::Heads),
            _ => Err(format!(
                "unknown prompt input `{s}` (embedding, embedding+heads or heads)"
            )),
        }
    }
}

/// The name of the task head's probability for `label`.
pub fn task_feature(label: &str) -> String {
    format!("task:{label}")
}

/// The name of the difficulty head's score.
pub const DIFFICULTY_FEATURE: &str = "difficulty";

/// The prefix of the prompt's surface features (`surface:log_chars`, ...):
/// numbers the caller computes from the prompt's text alone (in `serve`,
/// `pointsman_classifier::features`), needing no head.
pub const SURFACE_PREFIX: &str = "surface:";

/// The name of the surface feature `name` (`surface:<name>`).
pub fn surface_feature(name: &str) -> String {
    format!("{SURFACE_PREFIX}{name}")
}

/// The head features an artifact's prompt term reads (the artifact's
/// `head_features` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadFeatures {
    /// The features in the order a decision passes them: `task:<label>`
    /// (the task head's probability of the label) and `difficulty`.
    pub names: Vec<String>,
    /// Whether the prompt term reads the embedding too (its `dim` weights
    /// come first in `difficulty_weights` and each row of `traits`).
    pub with_embedding: bool,
    /// Mean of each feature over the training rows.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature over the training rows (never 0).
    pub scale: Vec<f32>,
    /// Multiplier of the standardised features (see the module docs).
    pub weight: f32,
}

impl HeadFeatures {
    /// Standardisation of the features `names` over `outputs` (one vector
    /// per training row, `names.len()` values each).
    pub fn fit(
        names: &[String],
        outputs: &[&[f32]],
        with_embedding: bool,
        dim: usize,
    ) -> Result<HeadFeatures, RouterError> {
        let f = names.len();
        if f == 0 {
            return Err(RouterError::Training(
                "the prompt input reads head features but none are named".into(),
            ));
        }
        if let Some(i) = outputs.iter().position(|o| o.len() != f) {
            return Err(RouterError::Training(format!(
                "row {i}: {} head outputs, expected {f} ({})",
                outputs[i].len(),
                names.join(", ")
            )));
        }
        let rows = outputs.len().max(1) as f32;
        let mut mean = vec![0f32; f];
        for o in outputs {
            mean.iter_mut().zip(*o).for_each(|(m, v)| *m += v / rows);
        }
        let mut scale = vec![0f32; f];
        for o in outputs {
            scale
                .iter_mut()
                .zip(o.iter().zip(&mean))
                .for_each(|(s, (v, m))| *s += (v - m).powi(2) / rows);
        }
        scale.iter_mut().for_each(|s| *s = s.sqrt().max(1e-6));
        Ok(HeadFeatures {
            names: names.to_vec(),
            with_embedding,
            mean,
            scale,
            weight: (dim.max(1) as f32 / f as f32).sqrt(),
        })
    }

    /// Length of the prompt term's input over `dim`-d embeddings.
    pub fn width(&self, dim: usize) -> usize {
        self.names.len() + if self.with_embedding { dim } else { 0 }
    }

    /// The prompt term's input: the standardised embedding `x` (when
    /// read), then the scaled standardised `outputs`.
    pub fn input(&self, x: Vec<f32>, outputs: &[f32]) -> Vec<f32> {
        let mut v = if self.with_embedding { x } else { Vec::new() };
        v.extend(
            outputs
                .iter()
                .zip(self.mean.iter().zip(&self.scale))
                .map(|(h, (m, s))| self.weight * (h - m) / s),
        );
        v
    }

    /// Refuses a decision input whose head outputs do not match `names`.
    pub fn check_outputs(&self, outputs: &[f32]) -> Result<(), RouterError> {
        if outputs.len() != self.names.len() {
            return Err(RouterError::MissingFeatures(format!(
                "the router artifact reads {} head features (head_features.names: {}) but the decision input has {}; pass the classifier's task_scores{}",
                self.names.len(),
                self.names.join(", "),
                outputs.len(),
                if self.names.iter().any(|n| n == DIFFICULTY_FEATURE) {
                    " and difficulty"
                } else {
                    ""
                }
            )));
        }
        if let Some(i) = outputs.iter().position(|v| !v.is_finite()) {
            return Err(RouterError::MissingFeatures(format!(
                "head feature `{}` is {}",
                self.names[i], outputs[i]
            )));
        }
        Ok(())
    }

    /// Whether any feature is a surface feature (the caller must then pass
    /// them to [`HeadFeatures::outputs_from`]).
    pub fn reads_surface(&self) -> bool {
        self.names.iter().any(|n| n.starts_with(SURFACE_PREFIX))
    }

    /// The head outputs in `names` order from a classification: the task
    /// head's scores by label, the difficulty head's score and the prompt's
    /// surface features by name (without the prefix). A feature the
    /// classification lacks is an error naming it.
    pub fn outputs_from<'a>(
        &self,
        task_scores: impl IntoIterator<Item = (&'a str, f32)> + Clone,
        difficulty: Option<f32>,
        surface: &[(&str, f32)],
    ) -> Result<Vec<f32>, RouterError> {
        self.names
            .iter()
            .map(|name| {
                if let Some(feature) = name.strip_prefix(SURFACE_PREFIX) {
                    return surface
                        .iter()
                        .find(|(k, _)| *k == feature)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            RouterError::MissingFeatures(format!(
                                "the router artifact reads the prompt's surface feature `{name}` but none was computed for this decision (the prompt's text is needed)"
                            ))
                        });
                }
                if name == DIFFICULTY_FEATURE {
                    return difficulty.ok_or_else(|| {
                        RouterError::MissingFeatures(
                            "the router artifact reads the difficulty head's score (head feature `difficulty`) but the classification has none".into(),
                        )
                    });
                }
                let label = name.strip_prefix("task:").unwrap_or(name);
                task_scores
                    .clone()
                    .into_iter()
                    .find(|(k, _)| *k == label)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        RouterError::MissingFeatures(format!(
                            "the router artifact reads head feature `{name}` but the classification's task_scores have no `{label}` (are the heads the ones the router was trained with?)"
                        ))
                    })
            })
            .collect()
    }

    /// Shape and number checks at load.
    pub(crate) fn check(&self) -> Result<(), String> {
        let f = self.names.len();
        if f == 0 || self.mean.len() != f || self.scale.len() != f {
            return Err(format!(
                "head_features: {} names, {} means, {} scales",
                f,
                self.mean.len(),
                self.scale.len()
            ));
        }
        let finite = self.mean.iter().all(|v| v.is_finite())
            && self.scale.iter().all(|v| v.is_finite() && *v > 0.0)
            && self.weight.is_finite()
            && self.weight > 0.0;
        if !finite {
            return Err(
                "head_features: a mean, scale or weight is not a finite (positive) number".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> HeadFeatures {
        let names = vec![task_feature("code"), task_feature("math")];
        let outputs: Vec<Vec<f32>> = vec![vec![0.9, 0.1], vec![0.1, 0.9], vec![0.5, 0.5]];
        let refs: Vec<&[f32]> = outputs.iter().map(Vec::as_slice).collect();
        HeadFeatures::fit(&names, &refs, true, 8).unwrap()
    }

    #[test]
    fn input_appends_scaled_standardised_outputs() {
        let h = features();
        assert_eq!(h.weight, 2.0);
        assert_eq!(h.width(3), 5);
        let v = h.input(vec![1.0, 2.0, 3.0], &[0.5, 0.5]);
        assert_eq!(v, [1.0, 2.0, 3.0, 0.0, 0.0]);
        let alone = HeadFeatures {
            with_embedding: false,
            ..h.clone()
        };
        let v = alone.input(vec![1.0, 2.0, 3.0], &[0.9, 0.1]);
        assert_eq!(v.len(), 2);
        assert!(v[0] > 2.0 && v[1] < -2.0, "{v:?}");
    }

    #[test]
    fn outputs_come_by_name_and_missing_ones_are_named() {
        let h = features();
        let scores = [("math", 0.7f32), ("code", 0.2)];
        assert_eq!(
            h.outputs_from(scores.iter().copied(), None, &[]).unwrap(),
            [0.2, 0.7]
        );
        let err = h
            .outputs_from([("code", 1.0f32)].iter().copied(), None, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("task:math"), "{err}");
        let err = h.check_outputs(&[]).unwrap_err().to_string();
        assert!(
            err.contains("head_features.names: task:code, task:math"),
            "{err}"
        );
    }
}
