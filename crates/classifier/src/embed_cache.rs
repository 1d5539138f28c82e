//! An on-disk cache of prompt embeddings for training runs, so re-training
//! the heads (or evaluating) does not re-run the encoder on unchanged data.
//!
//! One file per encoder (weights sha256 and window in the name); entries are
//! appended as `[sha256(prompt): 32 bytes][dim x f32 little-endian]`. A
//! truncated tail (an interrupted run) is ignored on load.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::encoder::Encoder;
use crate::error::{ClassifierError, Result};

/// Embeddings of past prompts, keyed by the prompt's sha256.
pub struct EmbedCache {
    path: PathBuf,
    dim: usize,
    entries: HashMap<[u8; 32], Vec<f32>>,
}

fn key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl EmbedCache {
    /// Opens (or starts) the cache for one encoder. `encoder_id` must change
    /// whenever the embeddings would (weights, window): see [`encoder_id`].
    pub fn open(dir: &Path, encoder_id: &str, encoder: &dyn Encoder) -> Result<EmbedCache> {
        let dim = encoder.dim();
        let io = |source| ClassifierError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // bf16 embeddings differ from f32 ones by ~1e-3: never mix them.
        let path = match encoder.precision() {
            "f32" => dir.join(format!("{encoder_id}.emb")),
            other => dir.join(format!("{encoder_id}-{other}.emb")),
        };
        let mut entries = HashMap::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(io)?;
            let rec = 32 + 4 * dim;
            for chunk in bytes.chunks_exact(rec) {
                let k: [u8; 32] = chunk[..32].try_into().expect("32 bytes");
                let v = chunk[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                entries.insert(k, v);
            }
        }
        Ok(EmbedCache { path, dim, entries })
    }

    /// Number of cached embeddings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Embeddings for `texts` in order, running the encoder only on misses.
    pub fn embed_all(
        &mut self,
        encoder: &dyn Encoder,
        texts: &[&str],
        batch: usize,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in texts {
            let k = key(t);
            if !self.entries.contains_key(&k) && seen.insert(k) {
                missing.push(t);
            }
        }
        let total = missing.len();
        let mut done = 0;
        progress(done, total);
        missing.sort_by_key(|t| t.len());
        let path = self.path.clone();
        let io = |source| ClassifierError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        for group in missing.chunks(batch * 4) {
            let embs = crate::classifier::embed_sorted(encoder, group, batch)?;
            let mut buf = Vec::with_capacity(group.len() * (32 + 4 * self.dim));
            for (t, e) in group.iter().zip(embs) {
                let k = key(t);
                buf.extend_from_slice(&k);
                e.iter()
                    .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
                self.entries.insert(k, e);
            }
            file.write_all(&buf).map_err(io)?;
            done += group.len();
            progress(done, total);
        }
        Ok(texts
            .iter()
            .map(|t| self.entries[&key(t)].clone())
            .collect())
    }
}

/// The cache key of an encoder: its weights' sha256 prefix and its window.
pub fn encoder_id(encoder: &dyn Encoder, weights_sha256: &str) -> String {
    format!(
        "{}-w{}",
        &weights_sha256[..16.min(weights_sha256.len())],
        encoder.window()
    )
}

/// Head and tail view embeddings per text (None for short texts), through
/// the cache. See [`crate::classifier::instruction_views`].
pub type ViewEmbeddings = Vec<Option<(Vec<f32>, Vec<f32>)>>;

impl EmbedCache {
    /// Embeds the instruction views of every long text in `texts`.
    pub fn embed_views(
        &mut self,
        encoder: &dyn Encoder,
        texts: &[&str],
        batch: usize,
        progress: &dyn Fn(usize, usize),
    ) -> Result<ViewEmbeddings> {
        let long: Vec<(usize, &str, &str)> = texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| crate::classifier::instruction_views(t).map(|(h, l)| (i, h, l)))
            .collect();
        let view_texts: Vec<&str> = long.iter().flat_map(|(_, h, l)| [*h, *l]).collect();
        let mut embs = self
            .embed_all(encoder, &view_texts, batch, progress)?
            .into_iter();
        let mut out = vec![None; texts.len()];
        for (i, _, _) in long {
            out[i] = Some((
                embs.next().expect("head view"),
                embs.next().expect("tail view"),
            ));
        }
        Ok(out)
    }
}
