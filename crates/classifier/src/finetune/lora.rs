//! LoRA adapters for the encoder's dense layers, and folding them into the
//! base weights at load time.
//!
//! An adapted linear layer computes `x W^T + b + (alpha / r) (x A^T) B^T`
//! with the base `W` (out x in) frozen, `A` (r x in) and `B` (out x r)
//! trained. Folded, that is `W' = W + (alpha / r) B A`: the same shape as
//! `W`, so the merged encoder costs nothing extra and every native path
//! (f32, bf16, int8) packs `W'` exactly as it would `W`.
//!
//! File format: one safetensors file holding `<module>.lora_a` and
//! `<module>.lora_b` (f32) per adapted module, where `<module>` is the Hugging
//! Face name without the weight suffix (`encoder.layer.5.attention.self.query`),
//! plus a JSON file beside it (`<name>.json`, [`AdapterMetadata`]): rank,
//! alpha, the base weights' sha256 the adapter was trained on, the adapter
//! file's own sha256, and how it was trained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ClassifierError, Result};
use crate::model_dir::sha256_file;

/// Format version of the adapter files; bumped on incompatible changes.
pub const ADAPTER_FORMAT_VERSION: u32 = 1;

/// The dense layers of a BERT layer an adapter may target, as the suffix of
/// the Hugging Face module name after `encoder.layer.N.`.
pub const TARGETS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// One adapted module's two low-rank factors, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// r x in.
    pub a: Vec<f32>,
    /// out x r.
    pub b: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
}

/// What the JSON beside an adapter says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdapterMetadata {
    pub format_version: u32,
    pub rank: usize,
    pub alpha: f32,
    /// sha256 of the base `model.safetensors`; the adapter refuses other bases.
    pub base_weights_sha256: String,
    /// sha256 of the adapter's safetensors file (filled in by `save`).
    #[serde(default)]
    pub adapter_sha256: String,
    /// Training data hashes, settings, held-out metrics: free-form.
    #[serde(default)]
    pub training: serde_json::Value,
}

/// A set of LoRA factors keyed by module name.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    pub rank: usize,
    pub alpha: f32,
    pub modules: BTreeMap<String, LoraPair>,
}

impl LoraAdapter {
    /// The scale `alpha / r` applied to `B A`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// `(alpha / r) B A` (out x in, row-major) for the weight tensor named
    /// `weight_name` (`<module>.weight`), or None when that module is not
    /// adapted.
    pub fn delta(&self, weight_name: &str) -> Option<Vec<f32>> {
        let module = weight_name.strip_suffix(".weight")?;
        let pair = self.modules.get(module)?;
        let (r, inp, out) = (self.rank, pair.inputs, pair.outputs);
        let s = self.scale();
        let mut d = vec![0.0f32; out * inp];
        for o in 0..out {
            let row = &mut d[o * inp..(o + 1) * inp];
            for k in 0..r {
                let bk = pair.b[o * r + k] * s;
                if bk == 0.0 {
                    continue;
                }
                for (x, a) in row.iter_mut().zip(&pair.a[k * inp..(k + 1) * inp]) {
                    *x += bk * a;
                }
            }
        }
        Some(d)
    }

    /// Adds this adapter's delta to `values`, the f32 contents of tensor
    /// `name` (shape checked). A no-op for tensors the adapter does not touch.
    pub fn fold_into(&self, name: &str, values: &mut [f32]) -> std::result::Result<(), String> {
        if let Some(d) = self.delta(name) {
            if d.len() != values.len() {
                return Err(format!(
                    "adapter for `{name}` has {} values, the base tensor {}",
                    d.len(),
                    values.len()
                ));
            }
            for (v, x) in values.iter_mut().zip(d) {
                *v += x;
            }
        }
        Ok(())
    }

    /// Writes the factors to `path` and the metadata (with the file's sha256
    /// filled in) to the `.json` beside it. Returns the metadata written.
    pub fn save(&self, path: &Path, metadata: &AdapterMetadata) -> Result<AdapterMetadata> {
        let mut tensors: std::collections::HashMap<String, Tensor> = Default::default();
        for (name, p) in &self.modules {
            tensors.insert(
                format!("{name}.lora_a"),
                Tensor::from_vec(p.a.clone(), (self.rank, p.inputs), &Device::Cpu)?,
            );
            tensors.insert(
                format!("{name}.lora_b"),
                Tensor::from_vec(p.b.clone(), (p.outputs, self.rank), &Device::Cpu)?,
            );
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ClassifierError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        candle_core::safetensors::save(&tensors, path)?;
        let mut meta = metadata.clone();
        meta.format_version = ADAPTER_FORMAT_VERSION;
        meta.rank = self.rank;
        meta.alpha = self.alpha;
        meta.adapter_sha256 = sha256_file(path)?;
        let json_path = metadata_path(path);
        let text = serde_json::to_string_pretty(&meta).expect("metadata serialises");
        std::fs::write(&json_path, text + "\n").map_err(|source| ClassifierError::Io {
            path: json_path,
            source,
        })?;
        Ok(meta)
    }

    /// Reads an adapter and its metadata, checking the file's sha256 against
    /// the metadata and every factor's shape against the rank.
    pub fn load(path: &Path) -> Result<(LoraAdapter, AdapterMetadata)> {
        let json_path = metadata_path(path);
        let corrupt = |p: &Path, reason: String| ClassifierError::Corrupt {
            path: p.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(&json_path).map_err(|source| ClassifierError::Io {
            path: json_path.clone(),
            source,
        })?;
        let meta: AdapterMetadata = serde_json::from_str(&text)
            .map_err(|e| corrupt(&json_path, format!("not adapter metadata: {e}")))?;
        if meta.format_version != ADAPTER_FORMAT_VERSION {
            return Err(corrupt(
                &json_path,
                format!(
                    "adapter format {} (this build reads {ADAPTER_FORMAT_VERSION})",
                    meta.format_version
                ),
            ));
        }
        if meta.rank == 0 || !meta.alpha.is_finite() {
            return Err(corrupt(
                &json_path,
                "rank must be > 0 and alpha finite".into(),
            ));
        }
        let actual = sha256_file(path)?;
        if actual != meta.adapter_sha256 {
            return Err(ClassifierError::Checksum {
                path: path.to_path_buf(),
                expected: meta.adapter_sha256.clone(),
                actual,
                fetch: "pointsman train encoder".into(),
            });
        }
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| corrupt(path, e.to_string()))?;
        let mut modules = BTreeMap::new();
        for (name, a) in &tensors {
            let Some(module) = name.strip_suffix(".lora_a") else {
                if !name.ends_with(".lora_b") {
                    return Err(corrupt(path, format!("unexpected tensor `{name}`")));
                }
                continue;
            };
            let b = tensors
                .get(&format!("{module}.lora_b"))
                .ok_or_else(|| corrupt(path, format!("`{module}.lora_b` is missing")))?;
            let (ra, inputs) = a.dims2().map_err(|e| corrupt(path, e.to_string()))?;
            let (outputs, rb) = b.dims2().map_err(|e| corrupt(path, e.to_string()))?;
            if ra != meta.rank || rb != meta.rank {
                return Err(corrupt(
                    path,
                    format!(
                        "`{module}` has rank {ra}/{rb}, the metadata says {}",
                        meta.rank
                    ),
                ));
            }
            let to_vec = |t: &Tensor| -> Result<Vec<f32>> {
                Ok(t.to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1()?)
            };
            modules.insert(
                module.to_string(),
                LoraPair {
                    a: to_vec(a)?,
                    b: to_vec(b)?,
                    inputs,
                    outputs,
                },
            );
        }
        if modules.is_empty() {
            return Err(corrupt(path, "no adapted modules".into()));
        }
        Ok((
            LoraAdapter {
                rank: meta.rank,
                alpha: meta.alpha,
                modules,
            },
            meta,
        ))
    }
}

/// `x.safetensors` -> `x.json`.
pub fn metadata_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LoraAdapter {
        let mut modules = BTreeMap::new();
        modules.insert(
            "encoder.layer.0.output.dense".to_string(),
            LoraPair {
                a: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], // 2 x 3
                b: vec![1.0, 0.0, 0.0, 1.0],           // 2 x 2
                inputs: 3,
                outputs: 2,
            },
        );
        LoraAdapter {
            rank: 2,
            alpha: 4.0,
            modules,
        }
    }

    #[test]
    fn delta_is_scaled_b_times_a() {
        let d = tiny().delta("encoder.layer.0.output.dense.weight").unwrap();
        // B = I, scale 2: 2 * A
        assert_eq!(d, vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert!(tiny()
            .delta("encoder.layer.1.output.dense.weight")
            .is_none());
        let mut w = vec![1.0; 5];
        assert!(tiny()
            .fold_into("encoder.layer.0.output.dense.weight", &mut w)
            .is_err());
    }

    #[test]
    fn save_load_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let meta = AdapterMetadata {
            format_version: 0,
            rank: 0,
            alpha: 0.0,
            base_weights_sha256: "base".into(),
            adapter_sha256: String::new(),
            training: serde_json::json!({"seed": 1}),
        };
        let written = tiny().save(&path, &meta).unwrap();
        let (back, m) = LoraAdapter::load(&path).unwrap();
        assert_eq!(back, tiny());
        assert_eq!(m, written);
        assert_eq!(m.rank, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = LoraAdapter::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("sha256") && err.contains("a.safetensors"),
            "{err}"
        );
    }
}
