//! A `.safetensors` file read tensor by tensor with positioned reads.
//!
//! Why not `safetensors::SafeTensors`: it needs the whole file in memory (or
//! mapped, and then every page read counts in the resident set). For
//! multilingual-e5-small the f32 embedding table alone is 384 MB; reading
//! it in bounded chunks keeps the load's peak memory near the size of what
//! is kept (docs/PERFORMANCE.md, RSS). The format is small: an 8-byte
//! little-endian header length, a JSON header (name -> dtype, shape, data
//! offsets), then the data.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ClassifierError, Result};

/// Largest header accepted (the safetensors crate's limit).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Debug, Clone, Deserialize)]
pub struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data_offsets: (u64, u64),
}

impl TensorInfo {
    /// Bytes per value: f32, f16 and bf16 only.
    pub fn value_bytes(&self) -> Option<usize> {
        match self.dtype.as_str() {
            "F32" => Some(4),
            "F16" | "BF16" => Some(2),
            _ => None,
        }
    }

    pub fn values(&self) -> usize {
        self.shape.iter().product()
    }
}

pub struct TensorFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    tensors: HashMap<String, TensorInfo>,
}

impl TensorFile {
    /// Opens `path` and reads its header; checks every tensor's byte range
    /// lies in the file and matches its shape and dtype.
    pub fn open(path: &Path) -> Result<TensorFile> {
        let corrupt = |reason: String| ClassifierError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let io = |source| ClassifierError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut n = [0u8; 8];
        file.read_exact_at(&mut n, 0)
            .map_err(|_| corrupt("not a safetensors file (shorter than 8 bytes)".into()))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || 8 + n > len {
            return Err(corrupt(format!(
                "safetensors header of {n} bytes does not fit the file ({len} bytes)"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact_at(&mut header, 8).map_err(io)?;
        let mut raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| corrupt(format!("safetensors header is not valid JSON: {e}")))?;
        raw.remove("__metadata__");
        let data_start = 8 + n;
        let mut tensors = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            let info: TensorInfo = serde_json::from_value(value)
                .map_err(|e| corrupt(format!("tensor `{name}` in the header: {e}")))?;
            let (a, b) = info.data_offsets;
            let fits = a <= b && data_start + b <= len;
            let sized = info
                .value_bytes()
                .is_none_or(|w| (b - a) as usize == info.values() * w);
            if !fits || !sized {
                return Err(corrupt(format!(
                    "tensor `{name}` ({} {:?}) has data offsets {a}..{b}, which do not fit its shape or the file",
                    info.dtype, info.shape
                )));
            }
            tensors.insert(name, info);
        }
        Ok(TensorFile {
            path: path.to_path_buf(),
            file,
            data_start,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Values `start..start + out.len()` of tensor `name` as f32 (from f32,
    /// f16 or bf16). The caller checked the range against the shape.
    pub fn read_f32(&self, name: &str, start: usize, out: &mut [f32]) -> Result<()> {
        let info = self.info(name).ok_or_else(|| ClassifierError::Corrupt {
            path: self.path.clone(),
            reason: format!("tensor `{name}` is missing"),
        })?;
        let width = info.value_bytes().ok_or_else(|| ClassifierError::Corrupt {
            path: self.path.clone(),
            reason: format!(
                "tensor `{name}` has dtype {}; expected F32, F16 or BF16",
                info.dtype
            ),
        })?;
        assert!(start + out.len() <= info.values(), "read past `{name}`");
        let mut bytes = vec![0u8; out.len() * width];
        let at = self.data_start + info.data_offsets.0 + (start * width) as u64;
        self.file
            .read_exact_at(&mut bytes, at)
            .map_err(|source| ClassifierError::Io {
                path: self.path.clone(),
                source,
            })?;
        match info.dtype.as_str() {
            "F32" => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            "F16" => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            _ => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
        Ok(())
    }
}
