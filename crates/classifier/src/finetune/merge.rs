//! Folding an adapter into a checkpoint for candle's `BertModel` (the CUDA
//! path). The native CPU encoder folds while it reads the weights
//! (`native::weights::BertWeights::load`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{ClassifierError, Result};
use crate::finetune::LoraAdapter;

/// Every tensor of `weights` in f32 on `device`, the adapted ones replaced
/// by `W + (alpha / r) B A`. Names keep any `bert.` / `roberta.` prefix;
/// the adapter's names never carry it.
pub fn merged_var_builder(
    weights: &Path,
    adapter: &LoraAdapter,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let corrupt = |reason: String| ClassifierError::Corrupt {
        path: weights.to_path_buf(),
        reason,
    };
    let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut merged: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    let mut folded = 0;
    for (name, t) in tensors {
        let bare = ["bert.", "roberta."]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(&name)
            .to_string();
        let t = t.to_dtype(DType::F32)?;
        let t = if adapter.delta(&bare).is_some() {
            let shape = t.shape().clone();
            let mut values: Vec<f32> = t.flatten_all()?.to_vec1()?;
            adapter.fold_into(&bare, &mut values).map_err(corrupt)?;
            folded += 1;
            Tensor::from_vec(values, shape, &Device::Cpu)?
        } else {
            t
        };
        merged.insert(name, t.to_device(device)?);
    }
    if folded != adapter.modules.len() {
        return Err(corrupt(format!(
            "the adapter has {} modules but only {folded} match tensors of this checkpoint",
            adapter.modules.len()
        )));
    }
    Ok(VarBuilder::from_tensors(merged, DType::F32, device))
}
