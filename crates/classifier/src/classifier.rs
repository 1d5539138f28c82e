//! Encoder plus heads: prompts in, predictions out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::device::{DeviceChoice, Engine};
use crate::encoder::{BertEncoder, Encoder};
use crate::error::{ClassifierError, Result};
use crate::features::surface_features;
use crate::heads::Heads;
use crate::model_dir::ModelDir;
use crate::native::NativeBertEncoder;

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

/// Characters in each instruction view.
pub const VIEW_CHARS: usize = 200;
/// Names of the views heads may read, in input order.
pub const VIEW_NAMES: [&str; 2] = ["head_200_chars", "tail_200_chars"];

/// The instruction views of a long prompt: its first and last
/// [`VIEW_CHARS`] characters, or None when the prompt is short enough that
/// the views would be the prompt itself. Why: mean pooling over a long
/// pasted document drowns the few words that say what to do with it
/// ("Summarize:", "List the names in..."), and those sit at the start or the
/// end. Embedding the two ends on their own keeps them audible.
pub fn instruction_views(text: &str) -> Option<(&str, &str)> {
    let n = text.chars().count();
    if n <= 2 * VIEW_CHARS {
        return None;
    }
    let head_end = text.char_indices().nth(VIEW_CHARS).map(|(i, _)| i)?;
    let tail_start = text.char_indices().nth(n - VIEW_CHARS).map(|(i, _)| i)?;
    Some((&text[..head_end], &text[tail_start..]))
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
        Self::load_with(model_dir, heads_path, device, Engine::default())
    }

    /// [`Classifier::load`] with the CPU engine chosen.
    pub fn load_with(
        model_dir: &Path,
        heads_path: &Path,
        device: DeviceChoice,
        engine: Engine,
    ) -> Result<Classifier> {
        Self::from_dir(ModelDir::open(model_dir)?, heads_path, device, engine)
    }

    /// [`Classifier::load_with`] for an opened model directory (with its
    /// adapter, if any).
    pub fn from_dir(
        dir: ModelDir,
        heads_path: &Path,
        device: DeviceChoice,
        engine: Engine,
    ) -> Result<Classifier> {
        let model_dir = dir.path.clone();
        let heads = Heads::load(heads_path)?;
        if heads.metadata.encoder.weights_sha256 != dir.weights_sha256 {
            return Err(ClassifierError::Incompatible {
                path: heads_path.to_path_buf(),
                reason: format!(
                    "trained on encoder weights sha256 {}, but {} has {}; train heads for this encoder with `pointsman train heads --model-dir {}`",
                    heads.metadata.encoder.weights_sha256,
                    dir.weights_path().display(),
                    dir.weights_sha256,
                    model_dir.display()
                ),
            });
        }
        Ok(Classifier::new(load_encoder(&dir, device, engine)?, heads))
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

    /// Reads the heads' outputs for the embeddings of `text` (the full
    /// prompt, plus the instruction views when the heads use them and the
    /// prompt is long; short prompts reuse the full embedding).
    pub fn predict_from_embedding(
        &self,
        text: &str,
        embedding: &[f32],
        views: Option<(&[f32], &[f32])>,
    ) -> Prediction {
        let views = self
            .heads
            .uses_views()
            .then(|| views.unwrap_or((embedding, embedding)));
        let input = head_input(embedding, views, text, self.heads.uses_features());
        let scores = self.heads.task.scores(&input, text);
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
            return Err(ClassifierError::InvalidInput(format!(
                "prompt {i} is empty"
            )));
        }
        let embeddings = embed_sorted(self.encoder.as_ref(), texts, batch.max(1))?;
        let mut views: Vec<Option<(Vec<f32>, Vec<f32>)>> = vec![None; texts.len()];
        if self.heads.uses_views() {
            let long: Vec<(usize, &str, &str)> = texts
                .iter()
                .enumerate()
                .filter_map(|(i, t)| instruction_views(t).map(|(h, l)| (i, h, l)))
                .collect();
            let view_texts: Vec<&str> = long.iter().flat_map(|(_, h, l)| [*h, *l]).collect();
            let mut embs =
                embed_sorted(self.encoder.as_ref(), &view_texts, batch.max(1))?.into_iter();
            for (i, _, _) in long {
                views[i] = Some((
                    embs.next().expect("head view"),
                    embs.next().expect("tail view"),
                ));
            }
        }
        Ok(texts
            .iter()
            .zip(embeddings)
            .zip(views)
            .map(|((t, e), v)| {
                let v = v.as_ref().map(|(h, l)| (h.as_slice(), l.as_slice()));
                Embedded {
                    prediction: self.predict_from_embedding(t, &e, v),
                    embedding: e,
                }
            })
            .collect())
    }

    /// Predictions only.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        Ok(self
            .embed_and_predict(texts, DEFAULT_BATCH)?
            .into_iter()
            .map(|e| e.prediction)
            .collect())
    }
}

/// The encoder for `dir`: native on the CPU unless `engine` says candle or
/// the model is an architecture the native encoder does not run; candle on
/// CUDA.
pub fn load_encoder(
    dir: &ModelDir,
    device: DeviceChoice,
    engine: Engine,
) -> Result<Box<dyn Encoder>> {
    let device = device.resolve()?;
    if let (true, Engine::Native(precision)) = (device.is_cpu(), engine) {
        match NativeBertEncoder::load_with(dir, precision) {
            Ok(native) => {
                tracing::debug!(simd = crate::native::simd_name(), "native CPU encoder");
                return Ok(Box::new(native));
            }
            Err(ClassifierError::Unsupported { path, reason }) => tracing::warn!(
                "{}: the native encoder does not support {reason}; using candle",
                path.display()
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(Box::new(BertEncoder::load(dir, device)?))
}

/// The heads' input: the embedding, the view embeddings if used, then the
/// surface features if used.
pub fn head_input(
    embedding: &[f32],
    views: Option<(&[f32], &[f32])>,
    text: &str,
    with_features: bool,
) -> Vec<f32> {
    let mut v = embedding.to_vec();
    if let Some((head, tail)) = views {
        v.extend_from_slice(head);
        v.extend_from_slice(tail);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_only_for_long_prompts_and_on_char_boundaries() {
        assert!(instruction_views("short prompt").is_none());
        assert!(instruction_views(&"a".repeat(2 * VIEW_CHARS)).is_none());
        let text = format!("Summarize: {}{}", "é".repeat(1000), " Thanks!");
        let (head, tail) = instruction_views(&text).unwrap();
        assert!(head.starts_with("Summarize:") && head.chars().count() == VIEW_CHARS);
        assert!(tail.ends_with("Thanks!") && tail.chars().count() == VIEW_CHARS);
    }

    #[test]
    fn head_input_layout() {
        let e = [1.0, 2.0];
        let x = head_input(&e, Some((&[3.0, 4.0], &[5.0, 6.0])), "hi", true);
        assert_eq!(&x[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(x.len(), 6 + crate::features::FEATURE_NAMES.len());
        assert_eq!(head_input(&e, None, "hi", false), vec![1.0, 2.0]);
    }
}
