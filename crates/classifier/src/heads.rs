//! The task and difficulty heads: small MLPs over [embedding ; surface
//! features], stored as safetensors plus a JSON metadata file.
//!
//! Inference is plain Rust (a few thousand multiply-adds per prompt, no
//! tensor library needed); training is in [`crate::train`] with candle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cues::{operation_cues, CUE_NAMES};
use crate::difficulty_knn::{KnnBlend, NeighbourBank};
use crate::error::{ClassifierError, Result};
use crate::features::FEATURE_NAMES;
use crate::language::{LanguageDirections, LanguageDirectionsInfo};
use crate::taxonomy::Taxonomy;

/// A dense layer: `out = W x + b`, `W` row-major `(out, in)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
}

impl Dense {
    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for o in 0..self.outputs {
            let row = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            out.push(dot(row, x) + self.bias[o]);
        }
    }
}

/// Dot product in 16 independent partial sums. A plain `.sum()` is one
/// serial chain of float adds (the compiler may not reorder them), which
/// made the heads cost a third of a short prompt's int8 encoder pass; lanes
/// let it vectorise.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Dense layers with ReLU between them (none after the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}

impl Mlp {
    pub fn inputs(&self) -> usize {
        self.layers[0].inputs
    }
    pub fn outputs(&self) -> usize {
        self.layers.last().map(|l| l.outputs).unwrap_or(0)
    }

    /// Raw outputs (logits) for one input vector.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut cur = x.to_vec();
        let mut next = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.forward(&cur, &mut next);
            if i + 1 < self.layers.len() {
                next.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur
    }

    fn to_tensors(&self, prefix: &str, out: &mut HashMap<String, Tensor>) -> Result<()> {
        for (i, l) in self.layers.iter().enumerate() {
            out.insert(
                format!("{prefix}.{i}.weight"),
                Tensor::from_vec(l.weight.clone(), (l.outputs, l.inputs), &Device::Cpu)?,
            );
            out.insert(
                format!("{prefix}.{i}.bias"),
                Tensor::from_vec(l.bias.clone(), l.outputs, &Device::Cpu)?,
            );
        }
        Ok(())
    }

    fn from_tensors(prefix: &str, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<Mlp> {
        let corrupt = |reason: String| ClassifierError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut layers = Vec::new();
        while let Some(w) = tensors.get(&format!("{prefix}.{}.weight", layers.len())) {
            let i = layers.len();
            let b = tensors
                .get(&format!("{prefix}.{i}.bias"))
                .ok_or_else(|| corrupt(format!("`{prefix}.{i}.bias` missing")))?;
            let (outputs, inputs) = w
                .dims2()
                .map_err(|e| corrupt(format!("`{prefix}.{i}.weight`: {e}")))?;
            if b.dims() != [outputs] {
                return Err(corrupt(format!(
                    "`{prefix}.{i}.bias` has shape {:?}, expected [{outputs}]",
                    b.dims()
                )));
            }
            if let Some(prev) = layers.last().map(|l: &Dense| l.outputs) {
                if prev != inputs {
                    return Err(corrupt(format!(
                        "`{prefix}.{i}.weight` takes {inputs} inputs, previous layer gives {prev}"
                    )));
                }
            }
            let weight = w
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bias = b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
            if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
                return Err(corrupt(format!(
                    "`{prefix}.{i}` holds NaN or infinite values"
                )));
            }
            layers.push(Dense {
                weight,
                bias,
                inputs,
                outputs,
            });
        }
        if layers.is_empty() {
            return Err(corrupt(format!("no `{prefix}.0.weight` tensor")));
        }
        Ok(Mlp { layers })
    }
}

/// Which encoder the heads were trained on; checked at load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderInfo {
    pub name: String,
    /// sha256 of the encoder's `model.safetensors`.
    pub weights_sha256: String,
    pub window: usize,
    pub truncation: String,
}

/// Everything about the heads that is not weights. Written as
/// `<name>.json` beside `<name>.safetensors`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadsMetadata {
    pub format_version: u32,
    /// Unique per training run: date plus a hash of data and settings.
    pub version: String,
    pub encoder: EncoderInfo,
    /// Surface feature names appended to the embedding, in order.
    pub features: Vec<String>,
    /// Surface features (of `features`) the task head reads as 0: it was
    /// trained without them; the difficulty head still reads them. Absent
    /// in heads whose task head reads every feature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_features_off: Vec<String>,
    /// Operation cues ([`crate::cues::CUE_NAMES`]) appended to the task
    /// head's input after the features; the difficulty head does not read
    /// them. Absent in heads whose task head reads none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_cues: Vec<String>,
    /// Extra embeddings after the full-prompt one, in order (see
    /// [`crate::classifier::instruction_views`]); empty for heads that read
    /// the full-prompt embedding only.
    #[serde(default)]
    pub views: Vec<String>,
    pub task_labels: Taxonomy,
    /// What the difficulty head was fitted to, in words.
    pub difficulty_target: String,
    /// The kNN part blended with the difficulty head (its bank is the
    /// `difficulty_knn.*` tensors); absent in heads without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty_knn: Option<KnnBlend>,
    /// Language directions removed from the task head's input (the
    /// `task.language_directions` tensor; [`crate::language`]); absent in
    /// heads without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_directions: Option<LanguageDirectionsInfo>,
    /// Training settings and data hashes.
    pub training: serde_json::Value,
    /// Held-out metrics measured when the heads were trained.
    pub metrics: serde_json::Value,
}

/// P(task | prompt) over a taxonomy.
#[derive(Debug, Clone)]
pub struct TaskHead {
    pub mlp: Mlp,
    pub labels: Taxonomy,
    /// Removed from each embedding block of the input before the MLP.
    pub language: Option<LanguageDirections>,
    /// Input positions (surface features) set to 0 before the MLP.
    pub features_off: Vec<usize>,
    /// Whether the operation cues of the prompt's text follow the input.
    pub cues: bool,
}

impl TaskHead {
    /// Softmax scores, one per label, summing to 1. `input` is the heads'
    /// shared input ([`crate::classifier::head_input`]); `text`, the
    /// prompt, gives the operation cues when the head reads them.
    pub fn scores(&self, input: &[f32], text: &str) -> Vec<f32> {
        if self.language.is_none() && self.features_off.is_empty() && !self.cues {
            return softmax(&self.mlp.forward(input));
        }
        let mut input = input.to_vec();
        if let Some(dirs) = &self.language {
            dirs.remove_from(&mut input);
        }
        zero_features(&mut input, &self.features_off);
        if self.cues {
            input.extend(operation_cues(text));
        }
        softmax(&self.mlp.forward(&input))
    }
}

/// Input positions of the surface features `names`, looked up in
/// `features`, which fill the last `features.len()` of `inputs` values.
/// `Err` carries the first name that is not among them.
pub(crate) fn feature_positions<S: AsRef<str>>(
    names: &[String],
    features: &[S],
    inputs: usize,
) -> std::result::Result<Vec<usize>, String> {
    let first = inputs - features.len();
    names
        .iter()
        .map(|name| {
            features
                .iter()
                .position(|f| f.as_ref() == name)
                .map(|i| first + i)
                .ok_or_else(|| name.clone())
        })
        .collect()
}

/// Sets the given input positions (surface features a task head does
/// without) to 0; the same step in training and at inference.
pub(crate) fn zero_features(input: &mut [f32], positions: &[usize]) {
    positions.iter().for_each(|&i| input[i] = 0.0);
}

/// Tensor name of the task head's language directions.
const LANGUAGE_DIRECTIONS: &str = "task.language_directions";

/// The language directions, when the metadata names them: the tensor must
/// be there, hold orthonormal rows of the embedding's dimension, and leave
/// fewer surface features than one embedding block.
fn load_language(
    tensors: &HashMap<String, Tensor>,
    metadata: &HeadsMetadata,
    path: &Path,
) -> Result<Option<LanguageDirections>> {
    let corrupt = |reason: String| ClassifierError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let Some(info) = &metadata.language_directions else {
        return if tensors.contains_key(LANGUAGE_DIRECTIONS) {
            Err(corrupt(format!(
                "`{LANGUAGE_DIRECTIONS}` present but the metadata names no language_directions"
            )))
        } else {
            Ok(None)
        };
    };
    let t = tensors.get(LANGUAGE_DIRECTIONS).ok_or_else(|| {
        corrupt(format!(
            "`{LANGUAGE_DIRECTIONS}` missing (metadata names language_directions)"
        ))
    })?;
    let (rank, dim) = t
        .dims2()
        .map_err(|e| corrupt(format!("`{LANGUAGE_DIRECTIONS}`: {e}")))?;
    let expected = metadata_dim(metadata);
    if dim != expected || rank != info.rank || metadata.features.len() >= dim {
        return Err(corrupt(format!(
            "`{LANGUAGE_DIRECTIONS}` is {rank} × {dim}; the metadata says rank {}, \
             embedding dimension {expected}, {} surface features",
            info.rank,
            metadata.features.len()
        )));
    }
    let rows = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    LanguageDirections::from_rows(rows, dim)
        .map(Some)
        .map_err(|e| corrupt(format!("`{LANGUAGE_DIRECTIONS}`: {e}")))
}

/// Difficulty in [0, 1]: predicted share of models that fail the prompt.
/// The head's estimate, blended with the nearest training prompts' when
/// the heads carry a neighbour bank.
#[derive(Debug, Clone)]
pub struct DifficultyHead {
    pub mlp: Mlp,
    pub neighbours: Option<NeighbourBank>,
}

impl DifficultyHead {
    /// `input` is the heads' input; its first `dim` values are the
    /// embedding the neighbour bank compares.
    pub fn difficulty(&self, input: &[f32]) -> f32 {
        let head = sigmoid(self.mlp.forward(input)[0]);
        match &self.neighbours {
            Some(bank) => bank.blend(head, input),
            None => head,
        }
    }
}

/// Tensor names of the neighbour bank.
const KNN_EMBEDDINGS: &str = "difficulty_knn.embeddings";
const KNN_TARGETS: &str = "difficulty_knn.targets";

/// The neighbour bank, when the metadata names a blend: both tensors must
/// be there, agree in length, and hold the embedding's dimension.
fn load_bank(
    tensors: &HashMap<String, Tensor>,
    metadata: &HeadsMetadata,
    path: &Path,
) -> Result<Option<NeighbourBank>> {
    let corrupt = |reason: String| ClassifierError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let Some(blend) = metadata.difficulty_knn else {
        return if tensors.contains_key(KNN_EMBEDDINGS) {
            Err(corrupt(format!(
                "`{KNN_EMBEDDINGS}` present but the metadata names no difficulty_knn blend"
            )))
        } else {
            Ok(None)
        };
    };
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| corrupt(format!("`{name}` missing (metadata names a kNN blend)")))
    };
    let (n, dim) = get(KNN_EMBEDDINGS)?
        .dims2()
        .map_err(|e| corrupt(format!("`{KNN_EMBEDDINGS}`: {e}")))?;
    let unit = get(KNN_EMBEDDINGS)?
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let targets = get(KNN_TARGETS)?
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let expected = metadata.training["embedding_dim"].as_u64();
    if expected.is_some_and(|d| d as usize != dim) {
        return Err(corrupt(format!(
            "`{KNN_EMBEDDINGS}` has dimension {dim}, the embedding {}",
            expected.unwrap_or(0)
        )));
    }
    if targets.len() != n {
        return Err(corrupt(format!(
            "`{KNN_TARGETS}` has {} values for {n} embeddings",
            targets.len()
        )));
    }
    NeighbourBank::new(dim, unit, targets, blend)
        .map(Some)
        .map_err(|e| corrupt(format!("difficulty kNN bank: {e}")))
}

/// Both heads and their metadata.
#[derive(Debug, Clone)]
pub struct Heads {
    pub task: TaskHead,
    pub difficulty: DifficultyHead,
    pub metadata: HeadsMetadata,
}

pub const FORMAT_VERSION: u32 = 1;

impl Heads {
    /// The metadata path for a weights path (`x.safetensors` -> `x.json`).
    pub fn metadata_path(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }

    /// Loads `weights` and its metadata; checks shapes, labels and features.
    pub fn load(weights: &Path) -> Result<Heads> {
        let meta_path = Self::metadata_path(weights);
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| ClassifierError::MissingFile {
                path: meta_path.clone(),
                reason: e.to_string(),
                fetch: "pointsman train heads".into(),
            })?;
        let metadata: HeadsMetadata =
            serde_json::from_str(&text).map_err(|e| ClassifierError::Corrupt {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        if metadata.format_version != FORMAT_VERSION {
            return Err(ClassifierError::Corrupt {
                path: meta_path,
                reason: format!(
                    "format_version {} (this build reads {FORMAT_VERSION})",
                    metadata.format_version
                ),
            });
        }
        if !weights.is_file() {
            return Err(ClassifierError::MissingFile {
                path: weights.to_path_buf(),
                reason: "file not found".into(),
                fetch: "pointsman train heads".into(),
            });
        }
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu).map_err(|e| {
            ClassifierError::Corrupt {
                path: weights.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        let task = Mlp::from_tensors("task", &tensors, weights)?;
        let difficulty = Mlp::from_tensors("difficulty", &tensors, weights)?;
        let inputs = metadata_inputs(&metadata);
        let corrupt = |reason: String| ClassifierError::Corrupt {
            path: weights.to_path_buf(),
            reason,
        };
        if !metadata.task_cues.is_empty() && metadata.task_cues != CUE_NAMES {
            return Err(ClassifierError::Incompatible {
                path: weights.to_path_buf(),
                reason: format!(
                    "task head trained with cues {:?}, this build computes {CUE_NAMES:?}",
                    metadata.task_cues
                ),
            });
        }
        let task_inputs = inputs + metadata.task_cues.len();
        if task.inputs() != task_inputs || difficulty.inputs() != inputs {
            return Err(corrupt(format!(
                "heads take {} and {} inputs, metadata says {task_inputs} and {inputs}",
                task.inputs(),
                difficulty.inputs()
            )));
        }
        let features_off =
            feature_positions(&metadata.task_features_off, &metadata.features, inputs).map_err(
                |name| ClassifierError::Corrupt {
                    path: meta_path.clone(),
                    reason: format!(
                        "task_features_off names {name:?}, not one of the features {:?}",
                        metadata.features
                    ),
                },
            )?;
        if task.outputs() != metadata.task_labels.len() {
            return Err(corrupt(format!(
                "task head has {} outputs for {} labels",
                task.outputs(),
                metadata.task_labels.len()
            )));
        }
        if difficulty.outputs() != 1 {
            return Err(corrupt(format!(
                "difficulty head has {} outputs, expected 1",
                difficulty.outputs()
            )));
        }
        if !metadata.views.is_empty() && metadata.views != crate::classifier::VIEW_NAMES {
            return Err(ClassifierError::Incompatible {
                path: weights.to_path_buf(),
                reason: format!(
                    "trained with views {:?}, this build computes {:?}",
                    metadata.views,
                    crate::classifier::VIEW_NAMES
                ),
            });
        }
        let known: Vec<&str> = FEATURE_NAMES.to_vec();
        if metadata
            .features
            .iter()
            .map(String::as_str)
            .ne(known.iter().copied())
            && !metadata.features.is_empty()
        {
            return Err(ClassifierError::Incompatible {
                path: weights.to_path_buf(),
                reason: format!(
                    "trained with features {:?}, this build computes {known:?}",
                    metadata.features
                ),
            });
        }
        let neighbours = load_bank(&tensors, &metadata, weights)?;
        let language = load_language(&tensors, &metadata, weights)?;
        Ok(Heads {
            task: TaskHead {
                mlp: task,
                labels: metadata.task_labels.clone(),
                language,
                features_off,
                cues: !metadata.task_cues.is_empty(),
            },
            difficulty: DifficultyHead {
                mlp: difficulty,
                neighbours,
            },
            metadata,
        })
    }

    /// Writes weights to `weights` and metadata beside it.
    pub fn save(&self, weights: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        self.task.mlp.to_tensors("task", &mut tensors)?;
        self.difficulty.mlp.to_tensors("difficulty", &mut tensors)?;
        if let Some(bank) = &self.difficulty.neighbours {
            // f16 halves the bank; cosine ranks barely move at 3 decimal digits.
            let unit: Vec<half::f16> = bank.unit.iter().map(|&v| half::f16::from_f32(v)).collect();
            tensors.insert(
                KNN_EMBEDDINGS.into(),
                Tensor::from_vec(unit, (bank.len(), bank.dim), &Device::Cpu)?,
            );
            tensors.insert(
                KNN_TARGETS.into(),
                Tensor::from_vec(bank.targets.clone(), bank.len(), &Device::Cpu)?,
            );
        }
        if let Some(dirs) = &self.task.language {
            tensors.insert(
                LANGUAGE_DIRECTIONS.into(),
                Tensor::from_vec(
                    dirs.rows().to_vec(),
                    (dirs.rank(), dirs.dim()),
                    &Device::Cpu,
                )?,
            );
        }
        if let Some(dir) = weights.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ClassifierError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        candle_core::safetensors::save(&tensors, weights)?;
        let meta_path = Self::metadata_path(weights);
        let text = serde_json::to_string_pretty(&self.metadata).expect("metadata serialises");
        std::fs::write(&meta_path, text + "\n").map_err(|source| ClassifierError::Io {
            path: meta_path,
            source,
        })
    }

    /// Whether the heads take surface features after the embedding.
    pub fn uses_features(&self) -> bool {
        !self.metadata.features.is_empty()
    }

    /// Whether the heads read the instruction views beside the full embedding.
    pub fn uses_views(&self) -> bool {
        !self.metadata.views.is_empty()
    }
}

fn metadata_inputs(m: &HeadsMetadata) -> usize {
    metadata_dim(m) * (1 + m.views.len()) + m.features.len()
}

fn metadata_dim(m: &HeadsMetadata) -> usize {
    m.training
        .get("embedding_dim")
        .and_then(|v| v.as_u64())
        .unwrap_or(384) as usize
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny_heads(inputs: usize) -> Heads {
        let dense = |i: usize, o: usize, seed: f32| Dense {
            weight: (0..i * o)
                .map(|k| ((k as f32 * 0.37 + seed).sin()) * 0.1)
                .collect(),
            bias: (0..o).map(|k| k as f32 * 0.01).collect(),
            inputs: i,
            outputs: o,
        };
        let labels = Taxonomy::new(vec!["a".into(), "b".into(), "c".into()]).unwrap();
        Heads {
            task: TaskHead {
                mlp: Mlp {
                    layers: vec![dense(inputs, 4, 0.0), dense(4, 3, 1.0)],
                },
                labels: labels.clone(),
                language: None,
                features_off: vec![],
                cues: false,
            },
            difficulty: DifficultyHead {
                mlp: Mlp {
                    layers: vec![dense(inputs, 1, 2.0)],
                },
                neighbours: None,
            },
            metadata: HeadsMetadata {
                format_version: FORMAT_VERSION,
                version: "test".into(),
                encoder: EncoderInfo {
                    name: "x".into(),
                    weights_sha256: "00".into(),
                    window: 8,
                    truncation: "head_and_tail".into(),
                },
                features: vec![],
                task_features_off: vec![],
                task_cues: vec![],
                views: vec![],
                task_labels: labels,
                difficulty_target: "test".into(),
                difficulty_knn: None,
                language_directions: None,
                training: serde_json::json!({"embedding_dim": inputs}),
                metrics: serde_json::json!({}),
            },
        }
    }

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let s = softmax(&[1.0, 3.0, 2.0]);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[1] > s[2] && s[2] > s[0]);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn save_then_load_gives_the_same_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        let heads = tiny_heads(5);
        heads.save(&path).unwrap();
        let back = Heads::load(&path).unwrap();
        let x = [0.1, -0.2, 0.3, 0.0, 1.0];
        assert_eq!(back.task.scores(&x, ""), heads.task.scores(&x, ""));
        assert_eq!(
            back.difficulty.difficulty(&x),
            heads.difficulty.difficulty(&x)
        );
        assert_eq!(back.task.labels.labels(), ["a", "b", "c"]);
    }

    #[test]
    fn a_knn_blend_survives_save_and_load_and_moves_difficulty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        let mut heads = tiny_heads(5);
        let rows: Vec<f32> = [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]
            .iter()
            .flat_map(|r| crate::difficulty_knn::unit(r))
            .collect();
        let blend = KnnBlend { k: 1, weight: 0.5 };
        heads.metadata.difficulty_knn = Some(blend);
        heads.difficulty.neighbours =
            Some(NeighbourBank::new(5, rows, vec![0.0, 1.0], blend).unwrap());
        heads.save(&path).unwrap();
        let back = Heads::load(&path).unwrap();
        let (near_easy, near_hard) = ([1.0, 0.1, 0.0, 0.0, 0.0], [0.1, 1.0, 0.0, 0.0, 0.0]);
        for x in [near_easy, near_hard] {
            let want = heads.difficulty.difficulty(&x);
            assert!((back.difficulty.difficulty(&x) - want).abs() < 1e-6);
        }
        // The neighbour's target moves the blend by half of its distance.
        let head_only = sigmoid(heads.difficulty.mlp.forward(&near_hard)[0]);
        let got = back.difficulty.difficulty(&near_hard);
        assert!((got - (0.5 * head_only + 0.5)).abs() < 1e-6, "{got}");
    }

    #[test]
    fn language_directions_survive_save_and_load_and_reach_only_the_task_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        let mut heads = tiny_heads(5);
        let dirs = LanguageDirections::from_rows(vec![0.0, 0.0, 0.0, 0.6, 0.8], 5).unwrap();
        heads.task.language = Some(dirs.clone());
        heads.metadata.language_directions = Some(LanguageDirectionsInfo {
            pairs_by_language: [("zh".to_string(), 40)].into(),
            rank: 1,
        });
        heads.save(&path).unwrap();
        let back = Heads::load(&path).unwrap();
        assert_eq!(back.task.language, Some(dirs));
        // Moving the input along the direction changes nothing the task
        // head sees; the difficulty head still reads it.
        let x = [0.1, -0.2, 0.3, 0.0, 1.0];
        let moved = [0.1, -0.2, 0.3, 0.6, 1.8];
        assert_eq!(back.task.scores(&x, ""), heads.task.scores(&x, ""));
        let (a, b) = (back.task.scores(&x, ""), back.task.scores(&moved, ""));
        assert!(
            a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6),
            "{a:?} {b:?}"
        );
        assert_ne!(
            back.difficulty.difficulty(&x),
            back.difficulty.difficulty(&moved)
        );
        // Metadata without the tensor, or the tensor without metadata.
        let mut h = tiny_heads(5);
        h.metadata.language_directions = heads.metadata.language_directions.clone();
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("`task.language_directions` missing"), "{err}");
        let mut h = tiny_heads(5);
        h.task.language = heads.task.language.clone();
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("names no language_directions"), "{err}");
    }

    /// Heads over a 4-d embedding and this build's surface features, the
    /// task head reading the non-Latin share as 0.
    fn heads_with_a_feature_off() -> Heads {
        let mut h = tiny_heads(4 + FEATURE_NAMES.len());
        h.metadata.features = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
        h.metadata.training = serde_json::json!({"embedding_dim": 4});
        h.metadata.task_features_off = vec!["non_latin_share".into()];
        h
    }

    #[test]
    fn a_feature_off_reaches_the_difficulty_head_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        heads_with_a_feature_off().save(&path).unwrap();
        let back = Heads::load(&path).unwrap();
        let off = 4 + FEATURE_NAMES
            .iter()
            .position(|f| *f == "non_latin_share")
            .unwrap();
        assert_eq!(back.task.features_off, vec![off]);
        let x: Vec<f32> = (0..4 + FEATURE_NAMES.len())
            .map(|i| i as f32 * 0.1)
            .collect();
        let mut moved = x.clone();
        moved[off] = 1.0;
        let mut zeroed = x.clone();
        zeroed[off] = 0.0;
        // The task head sees the feature as 0 whatever its value; the
        // difficulty head reads it.
        assert_eq!(back.task.scores(&x, ""), back.task.scores(&moved, ""));
        assert_eq!(
            back.task.scores(&x, ""),
            tiny_heads(4 + FEATURE_NAMES.len()).task.scores(&zeroed, "")
        );
        assert_ne!(
            back.task.scores(&x, ""),
            tiny_heads(4 + FEATURE_NAMES.len()).task.scores(&x, "")
        );
        assert_ne!(
            back.difficulty.difficulty(&x),
            back.difficulty.difficulty(&moved)
        );
        // Heads that read every feature say nothing new in their metadata.
        let json = std::fs::read_to_string(Heads::metadata_path(&path)).unwrap();
        assert!(json.contains("task_features_off"), "{json}");
        tiny_heads(5).save(&path).unwrap();
        let json = std::fs::read_to_string(Heads::metadata_path(&path)).unwrap();
        assert!(!json.contains("task_features_off"), "{json}");
        // A name that is not one of the heads' features fails at load.
        let mut h = heads_with_a_feature_off();
        h.metadata.task_features_off = vec!["colour".into()];
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("task_features_off names \"colour\"") && err.contains("heads.json"),
            "{err}"
        );
    }

    /// Tiny heads whose task head also reads the operation cues.
    fn heads_with_cues(inputs: usize) -> Heads {
        let mut h = tiny_heads(inputs);
        let cued = tiny_heads(inputs + CUE_NAMES.len());
        h.task.mlp = cued.task.mlp;
        h.task.cues = true;
        h.metadata.task_cues = CUE_NAMES.iter().map(|c| c.to_string()).collect();
        h
    }

    #[test]
    fn operation_cues_survive_save_and_load_and_reach_only_the_task_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        heads_with_cues(5).save(&path).unwrap();
        let loaded = Heads::load(&path).unwrap();
        assert!(loaded.task.cues);
        let input = [0.3, -0.2, 0.5, 0.1, -0.4];
        let plain = loaded.task.scores(&input, "What is the capital of Peru?");
        let asked = loaded
            .task
            .scores(&input, "Summarize this article and translate it.");
        assert_ne!(plain, asked, "the cues must move the task head");
        assert!((asked.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // The difficulty head reads the shared input only.
        assert_eq!(
            loaded.difficulty.difficulty(&input),
            tiny_heads(5).difficulty.difficulty(&input)
        );

        // Cues this build does not compute, or a task head without room
        // for them, are refused at load with the path.
        let mut h = heads_with_cues(5);
        h.metadata.task_cues[0] = "cue_dance".into();
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("heads.safetensors") && err.contains("cue_dance"),
            "{err}"
        );
        let mut h = tiny_heads(5);
        h.metadata.task_cues = CUE_NAMES.iter().map(|c| c.to_string()).collect();
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("metadata says 13 and 5"), "{err}");
    }

    #[test]
    fn corrupt_or_mismatched_heads_fail_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        tiny_heads(5).save(&path).unwrap();
        std::fs::write(&path, b"not safetensors").unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("heads.safetensors"), "{err}");

        let mut h = tiny_heads(5);
        h.metadata.task_labels = Taxonomy::new(vec!["a".into(), "b".into()]).unwrap();
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("3 outputs for 2 labels"), "{err}");

        // A difficulty head that would put NaN through the sigmoid, or
        // that gives more than one output, is refused at load.
        let mut h = tiny_heads(5);
        h.difficulty.mlp.layers[0].weight[3] = f32::NAN;
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("heads.safetensors") && err.contains("`difficulty.0` holds NaN"),
            "{err}"
        );
        let mut h = tiny_heads(5);
        h.difficulty.mlp.layers[0] = Dense {
            weight: vec![0.0; 10],
            bias: vec![0.0; 2],
            inputs: 5,
            outputs: 2,
        };
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("difficulty head has 2 outputs"), "{err}");

        // A kNN blend without its bank, or a bank of the wrong dimension.
        let mut h = tiny_heads(5);
        h.metadata.difficulty_knn = Some(KnnBlend { k: 2, weight: 0.5 });
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("`difficulty_knn.embeddings` missing"), "{err}");
        let blend = KnnBlend { k: 2, weight: 0.5 };
        h.difficulty.neighbours =
            Some(NeighbourBank::new(4, vec![0.5; 12], vec![0.1, 0.5, 0.9], blend).unwrap());
        h.save(&path).unwrap();
        let err = Heads::load(&path).unwrap_err().to_string();
        assert!(err.contains("dimension 4, the embedding 5"), "{err}");

        let missing = dir.path().join("none.safetensors");
        assert!(Heads::load(&missing)
            .unwrap_err()
            .to_string()
            .contains("none.json"));
    }
}
