//! A BERT encoder written out layer by layer in candle, so training can run
//! the frozen lower layers once (forward only, cached) and the adapted top
//! layers forward and backward, with LoRA factors applied explicitly.
//!
//! This is the reference "unmerged" forward: the merged-at-load encoders
//! (native and candle's `BertModel`) must agree with it (tests/finetune.rs).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::error::{ClassifierError, Result};
use crate::finetune::lora::{LoraAdapter, LoraPair, TARGETS};
use crate::native::weights::BertConfig;

/// A frozen dense layer: weight (out x in) and bias.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

struct Norm {
    gamma: Tensor,
    beta: Tensor,
}

struct Layer {
    /// In [`TARGETS`] order: query, key, value, attention out, intermediate, output.
    dense: [Dense; 6],
    attention_norm: Norm,
    output_norm: Norm,
}

/// The trainable factors of one adapted module.
pub struct LoraVars {
    /// r x in.
    pub a: Var,
    /// out x r.
    pub b: Var,
}

/// Trainable factors keyed by module name, with the shared scale.
pub struct LoraSet {
    pub rank: usize,
    pub alpha: f32,
    pub modules: BTreeMap<String, LoraVars>,
}

impl LoraSet {
    /// Fresh factors for `targets` of `layers`: A uniform in +-1/sqrt(in)
    /// from `rng`, B zero (so training starts at the base model).
    pub fn init(
        bert: &FrozenBert,
        layers: &[usize],
        targets: &[&str],
        rank: usize,
        alpha: f32,
        rng: &mut impl rand::Rng,
    ) -> Result<LoraSet> {
        let mut modules = BTreeMap::new();
        for &l in layers {
            for t in targets {
                let i = TARGETS.iter().position(|x| x == t).ok_or_else(|| {
                    ClassifierError::InvalidInput(format!("no LoRA target `{t}`"))
                })?;
                let (out, inp) = bert.layers[l].dense[i].weight.dims2()?;
                let bound = (1.0 / inp as f32).sqrt();
                let a: Vec<f32> = (0..rank * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                modules.insert(
                    module_name(l, t),
                    LoraVars {
                        a: Var::from_tensor(&Tensor::from_vec(a, (rank, inp), &Device::Cpu)?)?,
                        b: Var::from_tensor(&Tensor::zeros(
                            (out, rank),
                            DType::F32,
                            &Device::Cpu,
                        )?)?,
                    },
                );
            }
        }
        Ok(LoraSet {
            rank,
            alpha,
            modules,
        })
    }

    /// Wraps a saved adapter's factors (for the explicit, unmerged forward).
    pub fn from_adapter(adapter: &LoraAdapter) -> Result<LoraSet> {
        let mut modules = BTreeMap::new();
        for (name, p) in &adapter.modules {
            modules.insert(
                name.clone(),
                LoraVars {
                    a: Var::from_tensor(&Tensor::from_vec(
                        p.a.clone(),
                        (adapter.rank, p.inputs),
                        &Device::Cpu,
                    )?)?,
                    b: Var::from_tensor(&Tensor::from_vec(
                        p.b.clone(),
                        (p.outputs, adapter.rank),
                        &Device::Cpu,
                    )?)?,
                },
            );
        }
        Ok(LoraSet {
            rank: adapter.rank,
            alpha: adapter.alpha,
            modules,
        })
    }

    pub fn vars(&self) -> Vec<Var> {
        self.modules
            .values()
            .flat_map(|m| [m.a.clone(), m.b.clone()])
            .collect()
    }

    /// The current factors as a plain adapter (what is saved and merged).
    pub fn to_adapter(&self) -> Result<LoraAdapter> {
        let mut modules = BTreeMap::new();
        for (name, v) in &self.modules {
            let (rank, inputs) = v.a.as_tensor().dims2()?;
            let (outputs, _) = v.b.as_tensor().dims2()?;
            debug_assert_eq!(rank, self.rank);
            modules.insert(
                name.clone(),
                LoraPair {
                    a: v.a.as_tensor().flatten_all()?.to_vec1()?,
                    b: v.b.as_tensor().flatten_all()?.to_vec1()?,
                    inputs,
                    outputs,
                },
            );
        }
        Ok(LoraAdapter {
            rank: self.rank,
            alpha: self.alpha,
            modules,
        })
    }
}

/// `encoder.layer.{l}.{target}`.
pub fn module_name(layer: usize, target: &str) -> String {
    format!("encoder.layer.{layer}.{target}")
}

/// A BERT or XLM-RoBERTa checkpoint as frozen candle tensors (CPU, f32).
pub struct FrozenBert {
    word: Tensor,
    /// The position table from the row the first token reads (row 0 for
    /// BERT, `pad_token_id + 1` for XLM-RoBERTa), so position `p` is row `p`.
    position: Tensor,
    token_type0: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    eps: f64,
    pub hidden: usize,
}

impl FrozenBert {
    /// Reads `model.safetensors` (with or without the `bert.` / `roberta.`
    /// prefix). `model_type` bert or xlm-roberta with exact GELU is
    /// accepted; any other architecture is refused, naming it.
    pub fn load(config_path: &Path, weights_path: &Path) -> Result<FrozenBert> {
        let config = BertConfig::read(config_path)?;
        let arch = config.architecture(config_path)?;
        if let Some(reason) = config.unsupported() {
            return Err(ClassifierError::Unsupported {
                path: config_path.to_path_buf(),
                reason,
            });
        }
        if config.hidden_act != "gelu" {
            return Err(ClassifierError::Unsupported {
                path: config_path.to_path_buf(),
                reason: format!(
                    "hidden_act `{}` for fine-tuning (only `gelu`)",
                    config.hidden_act
                ),
            });
        }
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load(weights_path, &Device::Cpu)
                .map_err(|e| ClassifierError::Corrupt {
                    path: weights_path.to_path_buf(),
                    reason: e.to_string(),
                })?
                .into_iter()
                .map(|(k, v)| {
                    let bare = k.strip_prefix(arch.weight_prefix()).unwrap_or(&k);
                    (bare.to_string(), v)
                })
                .collect();
        let get = |name: &str| -> Result<Tensor> {
            Ok(tensors
                .get(name)
                .ok_or_else(|| ClassifierError::Corrupt {
                    path: weights_path.to_path_buf(),
                    reason: format!("tensor `{name}` is missing"),
                })?
                .to_dtype(DType::F32)?)
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: get(&format!("{name}.weight")).or_else(|_| get(&format!("{name}.gamma")))?,
                beta: get(&format!("{name}.bias")).or_else(|_| get(&format!("{name}.beta")))?,
            })
        };
        let dense = |name: &str| -> Result<Dense> {
            Ok(Dense {
                weight: get(&format!("{name}.weight"))?,
                bias: get(&format!("{name}.bias"))?,
            })
        };
        let mut layers = Vec::new();
        for l in 0..config.num_hidden_layers {
            let d = |t: &str| dense(&module_name(l, t));
            layers.push(Layer {
                dense: [
                    d(TARGETS[0])?,
                    d(TARGETS[1])?,
                    d(TARGETS[2])?,
                    d(TARGETS[3])?,
                    d(TARGETS[4])?,
                    d(TARGETS[5])?,
                ],
                attention_norm: norm(&format!("encoder.layer.{l}.attention.output.LayerNorm"))?,
                output_norm: norm(&format!("encoder.layer.{l}.output.LayerNorm"))?,
            });
        }
        let position = get("embeddings.position_embeddings.weight")?;
        let offset = arch.position_offset(config.pad_token_id);
        let rows = position.dim(0)?;
        if offset >= rows {
            return Err(ClassifierError::Corrupt {
                path: weights_path.to_path_buf(),
                reason: format!("positions start at row {offset} of a {rows}-row table"),
            });
        }
        Ok(FrozenBert {
            word: get("embeddings.word_embeddings.weight")?,
            position: position.narrow(0, offset, rows - offset)?,
            token_type0: get("embeddings.token_type_embeddings.weight")?.get(0)?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps,
            hidden: config.hidden_size,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Embedding layer output for one padded batch of ids (b x t).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let words = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.hidden))?;
        let pos = self.position.narrow(0, 0, t)?.unsqueeze(0)?;
        let x = words
            .broadcast_add(&pos)?
            .broadcast_add(&self.token_type0)?;
        layer_norm(&x, &self.embedding_norm, self.eps)
    }

    /// Runs layer `l` on `h` (b x t x hidden). `mask_bias` is b x 1 x 1 x t
    /// (0 for real tokens, a large negative number for padding). `lora`
    /// adds the factors of any of this layer's modules it holds.
    pub fn layer(
        &self,
        l: usize,
        h: &Tensor,
        mask_bias: &Tensor,
        lora: Option<&LoraSet>,
    ) -> Result<Tensor> {
        let layer = &self.layers[l];
        let (b, t, hid) = h.dims3()?;
        let dh = hid / self.heads;
        let lin = |i: usize, x: &Tensor| -> Result<Tensor> {
            let d = &layer.dense[i];
            let mut y = x.broadcast_matmul(&d.weight.t()?)?.broadcast_add(&d.bias)?;
            if let Some(set) = lora {
                if let Some(v) = set.modules.get(&module_name(l, TARGETS[i])) {
                    let scale = (set.alpha / set.rank as f32) as f64;
                    let low = x.broadcast_matmul(&v.a.as_tensor().t()?)?;
                    let up = low.broadcast_matmul(&v.b.as_tensor().t()?)?;
                    y = (y + up.affine(scale, 0.0)?)?;
                }
            }
            Ok(y)
        };
        let split = |x: Tensor| -> Result<Tensor> {
            Ok(x.reshape((b, t, self.heads, dh))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(lin(0, h)?)?;
        let k = split(lin(1, h)?)?;
        let v = split(lin(2, h)?)?;
        let scores = (q.matmul(&k.t()?)? / (dh as f64).sqrt())?.broadcast_add(mask_bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, hid))?;
        let attn = layer_norm(&(lin(3, &ctx)? + h)?, &layer.attention_norm, self.eps)?;
        let inter = lin(4, &attn)?.gelu_erf()?;
        layer_norm(&(lin(5, &inter)? + &attn)?, &layer.output_norm, self.eps)
    }
}

/// LayerNorm over the last dimension from differentiable primitives.
fn layer_norm(x: &Tensor, n: &Norm, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(&n.gamma)?.broadcast_add(&n.beta)?)
}

/// b x 1 x 1 x t additive attention mask from a b x t 0/1 f32 mask.
pub fn mask_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, t) = mask.dims2()?;
    Ok(((mask - 1.0)? * 1e4)?.reshape((b, 1, 1, t))?)
}

/// Mean over real tokens, then L2-normalised: the sentence embedding
/// (b x hidden). `mask` is b x t, f32 0/1.
pub fn pool(h: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(2)?;
    let summed = h.broadcast_mul(&m)?.sum(1)?;
    let pooled = summed.broadcast_div(&m.sum(1)?)?;
    let norm = pooled
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f32::MAX)?;
    Ok(pooled.broadcast_div(&norm)?)
}

/// Pads token-id rows to one batch: (ids b x t u32, mask b x t f32).
pub fn pad_ids(rows: &[&[u32]]) -> Result<(Tensor, Tensor)> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * t);
    let mut mask = Vec::with_capacity(rows.len() * t);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(0u32, t - r.len()));
        mask.extend(std::iter::repeat_n(1.0f32, r.len()));
        mask.extend(std::iter::repeat_n(0.0f32, t - r.len()));
    }
    Ok((
        Tensor::from_vec(ids, (rows.len(), t), &Device::Cpu)?,
        Tensor::from_vec(mask, (rows.len(), t), &Device::Cpu)?,
    ))
}
