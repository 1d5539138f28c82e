//! An encoder model directory in Hugging Face layout (BERT or XLM-RoBERTa),
//! verified by sha256.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ClassifierError, Result};

/// The command that fetches the default model; named in every error.
pub const FETCH_COMMAND: &str = "scripts/fetch-model";

/// Pins for a model directory: `models/<name>.manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelManifest {
    pub name: String,
    /// sha256 (hex) per file name.
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub fetch: Option<String>,
}

/// A verified model directory: `config.json`, `tokenizer.json`,
/// `model.safetensors`, and optionally sentence-transformers' pooling files.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub path: PathBuf,
    /// sha256 of `model.safetensors`; heads record it to refuse other encoders.
    /// With an adapter, the sha256 of `<base sha256>+lora:<adapter sha256>`:
    /// the identity of the merged weights the encoder actually runs.
    pub weights_sha256: String,
    /// A LoRA adapter folded into the weights at load ([`ModelDir::with_adapter`]).
    pub adapter: Option<std::sync::Arc<crate::finetune::LoraAdapter>>,
}

pub(crate) const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

impl ModelDir {
    /// Opens `path`, checking the three required files exist. When a manifest
    /// `<path>.manifest.json` sits beside the directory, every pinned file is
    /// checked against its sha256 and a mismatch fails with both digests.
    pub fn open(path: &Path) -> Result<ModelDir> {
        let manifest_path = PathBuf::from(format!("{}.manifest.json", path.display()));
        let manifest = if manifest_path.is_file() {
            let text =
                std::fs::read_to_string(&manifest_path).map_err(|source| ClassifierError::Io {
                    path: manifest_path.clone(),
                    source,
                })?;
            Some(serde_json::from_str::<ModelManifest>(&text).map_err(|e| {
                ClassifierError::Corrupt {
                    path: manifest_path.clone(),
                    reason: e.to_string(),
                }
            })?)
        } else {
            None
        };
        Self::open_with(path, manifest.as_ref())
    }

    /// Opens `path` and verifies it against `manifest` when given.
    pub fn open_with(path: &Path, manifest: Option<&ModelManifest>) -> Result<ModelDir> {
        let fetch = manifest
            .and_then(|m| m.fetch.clone())
            .unwrap_or_else(|| FETCH_COMMAND.to_string());
        for name in REQUIRED {
            let file = path.join(name);
            if !file.is_file() {
                return Err(ClassifierError::MissingFile {
                    path: file,
                    reason: "file not found".into(),
                    fetch: fetch.clone(),
                });
            }
        }
        let mut weights_sha256 = None;
        if let Some(m) = manifest {
            for (name, expected) in &m.files {
                let file = path.join(name);
                if !file.is_file() {
                    return Err(ClassifierError::MissingFile {
                        path: file,
                        reason: "file not found".into(),
                        fetch,
                    });
                }
                let actual = sha256_file(&file)?;
                if &actual != expected {
                    return Err(ClassifierError::Checksum {
                        path: file,
                        expected: expected.clone(),
                        actual,
                        fetch,
                    });
                }
                if name == "model.safetensors" {
                    weights_sha256 = Some(actual);
                }
            }
        }
        let weights_sha256 = match weights_sha256 {
            Some(s) => s,
            None => sha256_file(&path.join("model.safetensors"))?,
        };
        Ok(ModelDir {
            path: path.to_path_buf(),
            weights_sha256,
            adapter: None,
        })
    }

    /// [`ModelDir::open`], then [`ModelDir::with_adapter`] when an adapter
    /// is given: the encoder every command that reads prompts loads.
    pub fn open_with_adapter(path: &Path, adapter: Option<&Path>) -> Result<ModelDir> {
        let dir = Self::open(path)?;
        match adapter {
            Some(a) => dir.with_adapter(a),
            None => Ok(dir),
        }
    }

    /// This directory with the LoRA adapter at `adapter` merged into its
    /// weights at load. Refuses an adapter trained on other base weights.
    pub fn with_adapter(mut self, adapter: &Path) -> Result<ModelDir> {
        let (lora, meta) = crate::finetune::LoraAdapter::load(adapter)?;
        if meta.base_weights_sha256 != self.weights_sha256 {
            return Err(ClassifierError::Incompatible {
                path: adapter.to_path_buf(),
                reason: format!(
                    "the adapter was trained on encoder weights sha256 {}, but {} has {}",
                    meta.base_weights_sha256,
                    self.weights_path().display(),
                    self.weights_sha256
                ),
            });
        }
        self.weights_sha256 = hex::encode(Sha256::digest(format!(
            "{}+lora:{}",
            self.weights_sha256, meta.adapter_sha256
        )));
        self.adapter = Some(std::sync::Arc::new(lora));
        Ok(self)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }
    pub fn tokenizer_path(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }
    pub fn weights_path(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    /// The sequence window: sentence-transformers' `max_seq_length` when
    /// present (what the model was trained with), else the position limit.
    pub fn window(&self, max_position_embeddings: usize) -> usize {
        let st = self.path.join("sentence_bert_config.json");
        std::fs::read_to_string(st)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("max_seq_length").and_then(|x| x.as_u64()))
            .map(|n| (n as usize).min(max_position_embeddings))
            .unwrap_or(max_position_embeddings)
    }

    /// The architecture `config.json` names in `model_type`; anything but
    /// BERT and XLM-RoBERTa is refused here, naming the `model_type`, so no
    /// engine runs a model it would compute wrongly.
    pub fn architecture(&self) -> Result<Architecture> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(|source| ClassifierError::Io {
            path: path.clone(),
            source,
        })?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClassifierError::Corrupt {
                path: path.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let model_type = config.get("model_type").and_then(|v| v.as_str());
        Architecture::from_model_type(model_type).ok_or_else(|| {
            ClassifierError::UnsupportedArchitecture {
                path,
                model_type: model_type.unwrap_or_default().to_string(),
            }
        })
    }

    /// The text put before every prompt: sentence-transformers' default
    /// prompt (`config_sentence_transformers.json`: `prompts` and
    /// `default_prompt_name`), e.g. e5's "query: ". Empty when there is none.
    pub fn prompt(&self) -> String {
        let st = self.path.join("config_sentence_transformers.json");
        std::fs::read_to_string(st)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                let name = v.get("default_prompt_name")?.as_str()?.to_string();
                Some(v.get("prompts")?.get(&name)?.as_str()?.to_string())
            })
            .unwrap_or_default()
    }

    /// Pooling from `1_Pooling/config.json`: CLS when that is what it says,
    /// mean otherwise (sentence-transformers' default).
    pub fn pooling(&self) -> Pooling {
        let cfg = self.path.join("1_Pooling/config.json");
        let cls = std::fs::read_to_string(cfg)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("pooling_mode_cls_token").and_then(|x| x.as_bool()))
            .unwrap_or(false);
        if cls {
            Pooling::Cls
        } else {
            Pooling::Mean
        }
    }
}

/// The encoder architectures Pointsman runs, from `config.json`'s
/// `model_type`. They share one transformer; they differ in where position
/// ids start, the token types, and the weight-name prefix of checkpoints
/// saved with a task head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `bert` (or no `model_type`, as in older BERT checkpoints): positions
    /// from 0, `bert.` prefix.
    Bert,
    /// `xlm-roberta`: positions from `pad_token_id + 1` (the padding row is
    /// never read), a single token type, `roberta.` prefix.
    XlmRoberta,
}

impl Architecture {
    /// None for a `model_type` Pointsman cannot run.
    pub fn from_model_type(model_type: Option<&str>) -> Option<Architecture> {
        match model_type {
            None | Some("bert") => Some(Architecture::Bert),
            Some("xlm-roberta") => Some(Architecture::XlmRoberta),
            Some(_) => None,
        }
    }

    /// Row of the position table that the first token reads.
    pub fn position_offset(self, pad_token_id: usize) -> usize {
        match self {
            Architecture::Bert => 0,
            Architecture::XlmRoberta => pad_token_id + 1,
        }
    }

    /// Prefix of the encoder's weights in a checkpoint saved with a head.
    pub fn weight_prefix(self) -> &'static str {
        match self {
            Architecture::Bert => "bert.",
            Architecture::XlmRoberta => "roberta.",
        }
    }
}

/// How token vectors become one prompt vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| ClassifierError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
