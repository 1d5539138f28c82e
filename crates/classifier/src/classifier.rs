//! Encoder plus heads: prompts in, predictions out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::device::DeviceChoice;
use crate::encoder::{BertEncoder, Encoder};
use crate::error::{ClassifierError, Result};
use crate::features::surface_features;
use crate::heads::Heads;
use crate::model_dir::ModelDir;

/// What the classifier says about one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The most likely task label.
    pub task: String,
    /// P(task | prompt) per label, summing to 1; ordered by label name.
    pub task_scores: BTreeMap<String, f32>,
    /// Predicted difficulty in [0, 1], higher = harder.
    pub difficulty: f32,
}

/// A prediction plus the embedding it came from (what the store logs and
/// the success model reads).
#[derive(Debug, Clone)]
pub struct Embedded {
    pub embedding: Vec<f32>,
    pub prediction: Prediction,
}

/// Largest number of prompts sent to the encoder in one pass.
pub const DEFAULT_BATCH: usize = 32;

/// The encoder and the heads that read its output.
pub struct Classifier {
    encoder: Box<dyn Encoder>,
    heads: Heads,
}

impl Classifier {
    /// Loads the encoder from `model_dir` and the heads from `heads_path`,
    /// refusing heads trained for different encoder weights.
    pub fn load(model_dir: &Path, heads_path: &Path, device: DeviceChoice) -> Result<Classifier> {
        let dir = ModelDir::open(model_dir)?;
        let heads = Heads::load(heads_path)?;
        if heads.metadata.encoder.weights_sha256 != dir.weights_sha256 {
            return Err(ClassifierError::Incompatible {
                path: heads_path.to_path_buf(),
                reason: format!(
                    "trained on encoder weights sha256 {}, but {} has {}; train heads for this encoder with `switchyard train heads --model-dir {}`",
                    heads.metadata.encoder.weights_sha256,
                    dir.weights_path().display(),
                    dir.weights_sha256,
                    model_dir.display()
                ),
            });
        }
        let encoder = BertEncoder::load(&dir, device.resolve()?)?;
        Ok(Classifier::new(Box::new(encoder), heads))
    }

    /// Combines any encoder with heads (tests use this with a fake encoder).
    pub fn new(encoder: Box<dyn Encoder>, heads: Heads) -> Classifier {
        Classifier { encoder, heads }
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    pub fn heads(&self) -> &Heads {
        &self.heads
    }

    /// Reads the heads' outputs for one embedding of `text`.
    pub fn predict_from_embedding(&self, text: &str, embedding: &[f32]) -> Prediction {
        let input = head_input(embedding, text, self.heads.uses_features());
        let scores = self.heads.task.scores(&input);
        let labels = self.heads.task.labels.labels();
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        Prediction {
            task: labels[best].clone(),
            task_scores: labels.iter().cloned().zip(scores).collect(),
            difficulty: self.heads.difficulty.difficulty(&input),
        }
    }

    /// Embeds and predicts a batch, in input order. Prompts are grouped by
    /// length into encoder passes of at most `batch` so little is padded.
    /// An empty (or all-whitespace) prompt is an error.
    pub fn embed_and_predict(&self, texts: &[&str], batch: usize) -> Result<Vec<Embedded>> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(ClassifierError::InvalidInput(format!("prompt {i} is empty")));
        }
        let embeddings = embed_sorted(self.encoder.as_ref(), texts, batch.max(1))?;
        Ok(texts
            .iter()
            .zip(embeddings)
            .map(|(t, e)| Embedded { prediction: self.predict_from_embedding(t, &e), embedding: e })
            .collect())
    }

    /// Predictions only.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        Ok(self.embed_and_predict(texts, DEFAULT_BATCH)?.into_iter().map(|e| e.prediction).collect())
    }
}

/// The heads' input: the embedding, then the surface features if used.
pub fn head_input(embedding: &[f32], text: &str, with_features: bool) -> Vec<f32> {
    let mut v = embedding.to_vec();
    if with_features {
        v.extend(surface_features(text));
    }
    v
}

/// Embeds texts in length-sorted batches and returns them in input order.
pub fn embed_sorted(encoder: &dyn Encoder, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    for chunk in order.chunks(batch) {
        let group: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        for (&i, e) in chunk.iter().zip(encoder.embed(&group)?) {
            out[i] = e;
        }
    }
    Ok(out)
}
