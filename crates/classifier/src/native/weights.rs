//! A BERT or XLM-RoBERTa checkpoint (Hugging Face layout) read into packed
//! f32 weights for the native encoder.

use std::path::Path;

use serde::Deserialize;

use super::embedding::EmbeddingTable;
use super::gemm::PackedB;
use super::tensor_file::TensorFile;
use crate::device::Precision;
use crate::error::{ClassifierError, Result};
use crate::finetune::LoraAdapter;
use crate::model_dir::Architecture;

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
    #[serde(default)]
    pub pad_token_id: usize,
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
    /// Positions a prompt may use (the table's rows past the offset).
    pub max_positions: usize,
    /// Row of `position_embeddings` the first token reads: 0 for BERT,
    /// `pad_token_id + 1` for XLM-RoBERTa.
    pub position_offset: usize,
    pub eps: f32,
    pub activation: Activation,
    pub word_embeddings: EmbeddingTable,
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
            reason: format!("not a BERT or XLM-RoBERTa config: {e}"),
        })
    }

    /// The architecture, or the error naming a `model_type` nothing here
    /// runs.
    pub fn architecture(&self, path: &Path) -> Result<Architecture> {
        Architecture::from_model_type(self.model_type.as_deref()).ok_or_else(|| {
            ClassifierError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                model_type: self.model_type.clone().unwrap_or_default(),
            }
        })
    }

    /// Why the native encoder cannot run this model (of a supported
    /// architecture), if it cannot.
    pub fn unsupported(&self) -> Option<String> {
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
    /// `bert.` / `roberta.` prefix) and checks every shape against `config`.
    /// Tensors are read one at a time, so the load never holds the file.
    /// With an adapter, folds it into the weights it adapts
    /// (`W + (alpha / r) B A`) before they are packed.
    pub fn load(
        path: &Path,
        config: &BertConfig,
        arch: Architecture,
        adapter: Option<&LoraAdapter>,
    ) -> Result<BertWeights> {
        let file = TensorFile::open(path)?;
        let mut reader = Reader::new(&file, arch);
        reader.adapter = adapter;
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let word_shape = reader.shape("embeddings.word_embeddings.weight")?;
        if word_shape.len() != 2 || word_shape[1] != h {
            return Err(corrupt(
                path,
                format!("word embeddings have shape {word_shape:?}, expected [vocab, {h}]"),
            ));
        }
        let vocab = word_shape[0];
        let word_embeddings = EmbeddingTable::read(
            &file,
            &reader.full("embeddings.word_embeddings.weight"),
            vocab,
            h,
        )?;
        let offset = arch.position_offset(config.pad_token_id);
        if offset >= config.max_position_embeddings {
            return Err(corrupt(
                path,
                format!(
                    "positions start at row {offset} of a {}-row table",
                    config.max_position_embeddings
                ),
            ));
        }
        let positions = reader.matrix(
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings,
            h,
        )?;
        let types = reader.shape("embeddings.token_type_embeddings.weight")?;
        if types.len() != 2 || types[1] != h || types[0] == 0 {
            return Err(corrupt(
                path,
                "token type embeddings have the wrong width".into(),
            ));
        }
        let token_type0 = reader.rows("embeddings.token_type_embeddings.weight", 0, h)?;
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
            max_positions: config.max_position_embeddings - offset,
            position_offset: offset,
            eps: config.layer_norm_eps as f32,
            activation: config.activation().expect("checked by unsupported()"),
            vocab,
            word_embeddings,
            position_embeddings: positions,
            token_type0,
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
/// architecture's prefix (`bert.`, `roberta.`), converting to f32.
struct Reader<'a> {
    file: &'a TensorFile,
    prefix: &'static str,
    adapter: Option<&'a LoraAdapter>,
}

impl<'a> Reader<'a> {
    fn new(file: &'a TensorFile, arch: Architecture) -> Reader<'a> {
        let prefix = if file.info("embeddings.word_embeddings.weight").is_none()
            && file
                .info(&format!(
                    "{}embeddings.word_embeddings.weight",
                    arch.weight_prefix()
                ))
                .is_some()
        {
            arch.weight_prefix()
        } else {
            ""
        };
        Reader {
            file,
            prefix,
            adapter: None,
        }
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn missing(&self, full: &str) -> ClassifierError {
        corrupt(self.file.path(), format!("tensor `{full}` is missing"))
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let full = self.full(name);
        Ok(self
            .file
            .info(&full)
            .ok_or_else(|| self.missing(&full))?
            .shape
            .clone())
    }

    /// Values `start..start + len` of tensor `name` (the caller checked its
    /// shape).
    fn rows(&self, name: &str, start: usize, len: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; len];
        self.file.read_f32(&self.full(name), start, &mut out)?;
        Ok(out)
    }

    /// All values of tensor `name`, which must hold exactly `expect`.
    fn tensor(&self, name: &str, expect: usize) -> Result<Vec<f32>> {
        let full = self.full(name);
        let info = self.file.info(&full).ok_or_else(|| self.missing(&full))?;
        if info.values() != expect {
            return Err(corrupt(
                self.file.path(),
                format!(
                    "tensor `{full}` has shape {:?} ({} values), config.json implies {expect}",
                    info.shape,
                    info.values()
                ),
            ));
        }
        let mut values = self.rows(name, 0, expect)?;
        if let Some(adapter) = self.adapter {
            adapter
                .fold_into(name, &mut values)
                .map_err(|reason| corrupt(self.file.path(), reason))?;
        }
        Ok(values)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        self.tensor(name, rows * cols)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.tensor(name, len)
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
