//! A BERT-family checkpoint (Hugging Face layout) read into packed f32
//! weights for the native encoder.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use super::gemm::PackedB;
use crate::device::Precision;
use crate::error::{ClassifierError, Result};
use crate::finetune::LoraAdapter;

/// The parts of `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_eps() -> f64 {
    1e-12
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (`gelu`).
    GeluErf,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// A Linear layer: packed weight plus bias.
pub struct Linear {
    pub weight: PackedB,
    pub bias: Vec<f32>,
}

pub struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// One transformer layer; query, key and value are fused into one product.
pub struct Layer {
    pub qkv: Linear,
    pub attention_out: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
}

pub struct BertWeights {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub eps: f32,
    pub activation: Activation,
    pub word_embeddings: Vec<f32>,
    pub vocab: usize,
    pub position_embeddings: Vec<f32>,
    /// Row 0 of the token-type table: every prompt is one segment.
    pub token_type0: Vec<f32>,
    pub embedding_norm: LayerNorm,
    pub layers: Vec<Layer>,
}

impl BertConfig {
    pub fn read(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ClassifierError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ClassifierError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not a BERT config: {e}"),
        })
    }

    /// Why the native encoder cannot run this model, if it cannot.
    pub fn unsupported(&self) -> Option<String> {
        if let Some(t) = self.model_type.as_deref() {
            if t != "bert" {
                return Some(format!("model_type `{t}` (the native encoder runs `bert`)"));
            }
        }
        if let Some(p) = self.position_embedding_type.as_deref() {
            if p != "absolute" {
                return Some(format!("position_embedding_type `{p}`"));
            }
        }
        if self.activation().is_none() {
            return Some(format!("hidden_act `{}`", self.hidden_act));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some("hidden_size is not a multiple of num_attention_heads".into());
        }
        None
    }

    fn activation(&self) -> Option<Activation> {
        match self.hidden_act.as_str() {
            "gelu" => Some(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

impl BertWeights {
    /// Switches every layer's dense products to `precision`; false
    /// (nothing changed) where the CPU lacks the instructions for it.
    pub fn use_precision(&mut self, precision: Precision) -> bool {
        let supported = match precision {
            Precision::F32 => return true,
            Precision::Bf16 => super::bf16::supported(),
            Precision::Int8 => super::int8::supported(),
        };
        if !supported {
            return false;
        }
        for l in &mut self.layers {
            for linear in [
                &mut l.qkv,
                &mut l.attention_out,
                &mut l.intermediate,
                &mut l.output,
            ] {
                match precision {
                    Precision::Bf16 => linear.weight.use_bf16(),
                    _ => linear.weight.use_int8(),
                };
            }
        }
        true
    }

    /// Reads `model.safetensors` (f32, f16 or bf16; with or without the
    /// `bert.` prefix) and checks every shape against `config`.
    /// With an adapter, folds it into the weights it adapts
    /// (`W + (alpha / r) B A`) before they are packed.
    pub fn load(
        path: &Path,
        config: &BertConfig,
        adapter: Option<&LoraAdapter>,
    ) -> Result<BertWeights> {
        let bytes = std::fs::read(path).map_err(|source| ClassifierError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
        let mut reader = Reader::new(path, &file);
        reader.adapter = adapter;
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let word = reader.tensor("embeddings.word_embeddings.weight", None)?;
        if word.1.len() != 2 || word.1[1] != h {
            return Err(corrupt(
                path,
                format!(
                    "word embeddings have shape {:?}, expected [vocab, {h}]",
                    word.1
                ),
            ));
        }
        let positions = reader.matrix(
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings,
            h,
        )?;
        let token_types = reader.tensor("embeddings.token_type_embeddings.weight", None)?;
        if token_types.1.len() != 2 || token_types.1[1] != h {
            return Err(corrupt(
                path,
                "token type embeddings have the wrong width".into(),
            ));
        }
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let q = reader.matrix(&format!("{p}attention.self.query.weight"), h, h)?;
            let k = reader.matrix(&format!("{p}attention.self.key.weight"), h, h)?;
            let v = reader.matrix(&format!("{p}attention.self.value.weight"), h, h)?;
            let qkv_w: Vec<f32> = [q, k, v].concat();
            let qkv_b: Vec<f32> = [
                reader.vector(&format!("{p}attention.self.query.bias"), h)?,
                reader.vector(&format!("{p}attention.self.key.bias"), h)?,
                reader.vector(&format!("{p}attention.self.value.bias"), h)?,
            ]
            .concat();
            layers.push(Layer {
                qkv: Linear {
                    weight: PackedB::from_rows(&qkv_w, 3 * h, h),
                    bias: qkv_b,
                },
                attention_out: reader.linear(&format!("{p}attention.output.dense"), h, h)?,
                attention_norm: reader.layer_norm(&format!("{p}attention.output.LayerNorm"), h)?,
                intermediate: reader.linear(&format!("{p}intermediate.dense"), i, h)?,
                output: reader.linear(&format!("{p}output.dense"), h, i)?,
                output_norm: reader.layer_norm(&format!("{p}output.LayerNorm"), h)?,
            });
        }
        Ok(BertWeights {
            hidden: h,
            heads: config.num_attention_heads,
            intermediate: i,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
            activation: config.activation().expect("checked by unsupported()"),
            vocab: word.1[0],
            word_embeddings: word.0,
            position_embeddings: positions,
            token_type0: token_types.0[..h].to_vec(),
            embedding_norm: reader.layer_norm("embeddings.LayerNorm", h)?,
            layers,
        })
    }
}

fn corrupt(path: &Path, reason: String) -> ClassifierError {
    ClassifierError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Looks tensors up by their Hugging Face names, with or without the
/// `bert.` prefix, converting to f32.
struct Reader<'a> {
    path: PathBuf,
    file: &'a SafeTensors<'a>,
    prefix: &'static str,
    adapter: Option<&'a LoraAdapter>,
}

impl<'a> Reader<'a> {
    fn new(path: &Path, file: &'a SafeTensors<'a>) -> Reader<'a> {
        let prefix = if file.tensor("embeddings.word_embeddings.weight").is_err()
            && file
                .tensor("bert.embeddings.word_embeddings.weight")
                .is_ok()
        {
            "bert."
        } else {
            ""
        };
        Reader {
            path: path.to_path_buf(),
            file,
            prefix,
            adapter: None,
        }
    }

    /// The tensor's values and shape; `expect` checks the element count.
    fn tensor(&self, name: &str, expect: Option<usize>) -> Result<(Vec<f32>, Vec<usize>)> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .file
            .tensor(&full)
            .map_err(|_| corrupt(&self.path, format!("tensor `{full}` is missing")))?;
        let data = view.data();
        let mut values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(corrupt(
                    &self.path,
                    format!("tensor `{full}` has dtype {other:?}; expected f32, f16 or bf16"),
                ))
            }
        };
        if let Some(adapter) = self.adapter {
            adapter
                .fold_into(name, &mut values)
                .map_err(|reason| corrupt(&self.path, reason))?;
        }
        if let Some(n) = expect {
            if values.len() != n {
                return Err(corrupt(
                    &self.path,
                    format!(
                        "tensor `{full}` has shape {:?} ({} values), config.json implies {n}",
                        view.shape(),
                        values.len()
                    ),
                ));
            }
        }
        Ok((values, view.shape().to_vec()))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        Ok(self.tensor(name, Some(rows * cols))?.0)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.tensor(name, Some(len))?.0)
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let w = self.matrix(&format!("{name}.weight"), out, inp)?;
        Ok(Linear {
            weight: PackedB::from_rows(&w, out, inp),
            bias: self.vector(&format!("{name}.bias"), out)?,
        })
    }

    /// Newer checkpoints say weight/bias, older ones gamma/beta.
    fn layer_norm(&self, name: &str, dim: usize) -> Result<LayerNorm> {
        let pick = |new: &str, old: &str| {
            self.vector(&format!("{name}.{new}"), dim)
                .or_else(|_| self.vector(&format!("{name}.{old}"), dim))
        };
        Ok(LayerNorm {
            gamma: pick("weight", "gamma")?,
            beta: pick("bias", "beta")?,
        })
    }
}
