//! The encoder seam: prompts in, one normalised vector per prompt out.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use candle_transformers::models::xlm_roberta::{Config as XlmRobertaConfig, XLMRobertaModel};

use crate::error::{ClassifierError, Result};
use crate::model_dir::{Architecture, ModelDir, Pooling};
use crate::tokenize::PromptTokenizer;

/// Turns prompts into fixed-size embeddings. Implementations are pure
/// functions of their weights: the same text always gives the same vector.
pub trait Encoder: Send + Sync {
    /// Embedding width (384 for all-MiniLM-L6-v2).
    fn dim(&self) -> usize;
    /// Tokens per prompt after truncation, special tokens included.
    fn window(&self) -> usize;
    /// One L2-normalised vector per text, in input order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Token count of a text after truncation (what the encoder will see).
    fn token_count(&self, text: &str) -> Result<usize>;
    /// Number format of the dense products: "f32", or "bf16" for the
    /// native encoder's reduced-precision mode. Cached embeddings are kept
    /// apart per precision.
    fn precision(&self) -> &'static str {
        "f32"
    }
}

/// A BERT or XLM-RoBERTa sentence encoder run with candle: the CUDA path,
/// and the reference the native CPU encoder is tested against.
pub struct BertEncoder {
    model: CandleModel,
    tokenizer: PromptTokenizer,
    device: Device,
    dim: usize,
    pooling: Pooling,
    pad_id: u32,
}

/// candle's model for each architecture `config.json` may name.
enum CandleModel {
    Bert(BertModel),
    XlmRoberta(XLMRobertaModel),
}

/// The settings both architectures share, from their own config types.
struct Shape {
    hidden: usize,
    positions: usize,
    pad_id: u32,
}

impl BertEncoder {
    /// Loads a verified model directory onto `device`. Fails with the path and
    /// the reason when the config, tokenizer or weights cannot be used, and
    /// with [`ClassifierError::UnsupportedArchitecture`] for a `model_type`
    /// other than `bert` and `xlm-roberta` (never runs it as BERT).
    pub fn load(dir: &ModelDir, device: Device) -> Result<BertEncoder> {
        let arch = dir.architecture()?;
        let config_path = dir.config_path();
        let text = std::fs::read_to_string(&config_path).map_err(|source| ClassifierError::Io {
            path: config_path.clone(),
            source,
        })?;
        let not_config = |e: serde_json::Error| ClassifierError::Corrupt {
            path: config_path.clone(),
            reason: format!("not a {arch:?} config: {e}"),
        };
        let weights = dir.weights_path();
        let vb = match dir.adapter.as_deref() {
            Some(adapter) => {
                crate::finetune::merge::merged_var_builder(&weights, adapter, &device)?
            }
            None => {
                // SAFETY: a memory map is sound only while nobody changes
                // the file under it. Nothing in this process writes model
                // files, and Pointsman's tools never rewrite one in place:
                // scripts/fetch_model.py and convert_e5.py delete the
                // directory and copy a new one, which leaves a live map on
                // the old, unlinked file. Another program rewriting
                // model.safetensors in place while we run is the case this
                // cannot rule out (the sha256 check at open cannot cover
                // later writes); docs/RELIABILITY.md says so.
                unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
                    .map_err(|e| ClassifierError::Corrupt {
                        path: weights.clone(),
                        reason: e.to_string(),
                    })?
            }
        };
        let misfit = |e: candle_core::Error| ClassifierError::Corrupt {
            path: weights.clone(),
            reason: format!("weights do not fit config.json: {e}"),
        };
        let (model, shape) = match arch {
            Architecture::Bert => {
                let c: Config = serde_json::from_str(&text).map_err(not_config)?;
                let shape = Shape {
                    hidden: c.hidden_size,
                    positions: c.max_position_embeddings,
                    pad_id: c.pad_token_id as u32,
                };
                let model = BertModel::load(vb, &c).map_err(misfit)?;
                (CandleModel::Bert(model), shape)
            }
            Architecture::XlmRoberta => {
                let c: XlmRobertaConfig = serde_json::from_str(&text).map_err(not_config)?;
                let offset = arch.position_offset(c.pad_token_id as usize);
                let shape = Shape {
                    hidden: c.hidden_size,
                    positions: c.max_position_embeddings.saturating_sub(offset),
                    pad_id: c.pad_token_id,
                };
                let model = XLMRobertaModel::new(&c, vb).map_err(misfit)?;
                (CandleModel::XlmRoberta(model), shape)
            }
        };
        let tokenizer = PromptTokenizer::load(dir, dir.window(shape.positions))?;
        Ok(BertEncoder {
            model,
            tokenizer,
            device,
            dim: shape.hidden,
            pooling: dir.pooling(),
            pad_id: shape.pad_id,
        })
    }

    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.ids(text)
    }
}

impl Encoder for BertEncoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn window(&self) -> usize {
        self.tokenizer.window()
    }

    fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.token_ids(text)?.len())
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_>>()?;
        let len = ids.iter().map(Vec::len).max().unwrap_or(0);
        let batch = ids.len();
        let mut flat_ids = Vec::with_capacity(batch * len);
        let mut flat_mask = Vec::with_capacity(batch * len);
        for row in &ids {
            flat_ids.extend_from_slice(row);
            flat_ids.extend(std::iter::repeat_n(self.pad_id, len - row.len()));
            flat_mask.extend(std::iter::repeat_n(1u32, row.len()));
            flat_mask.extend(std::iter::repeat_n(0u32, len - row.len()));
        }
        let input_ids = Tensor::from_vec(flat_ids, (batch, len), &self.device)?;
        let mask = Tensor::from_vec(flat_mask, (batch, len), &self.device)?;
        let token_types = input_ids.zeros_like()?;
        // (b, len, dim); XLM-R derives position ids from the padding.
        let hidden = match &self.model {
            CandleModel::Bert(m) => m.forward(&input_ids, &token_types, Some(&mask))?,
            CandleModel::XlmRoberta(m) => {
                m.forward(&input_ids, &mask, &token_types, None, None, None)?
            }
        };
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, len, 1)
                let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (b, dim)
                let counts = m.sum(1)?; // (b, 1)
                summed.broadcast_div(&counts)?
            }
        };
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f32::MAX)?;
        let normed = pooled.broadcast_div(&norms)?;
        Ok(normed.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }
}
