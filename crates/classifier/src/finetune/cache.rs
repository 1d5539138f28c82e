//! The frozen lower layers' output, computed once per prompt: what makes
//! fine-tuning the top layers cheap enough for 2 CPU cores.

use std::io::{Read, Write};
use std::path::Path;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{ClassifierError, Result};
use crate::finetune::model::{mask_bias, pad_ids, pool, FrozenBert, LoraSet};

/// The frozen lower layers' output for each prompt (unpadded, tokens x
/// hidden, row-major), computed once.
pub struct LowerCache {
    /// Layers run before the cache (the first adapted layer's index).
    pub split: usize,
    pub rows: Vec<Vec<f32>>,
    pub lens: Vec<usize>,
    hidden: usize,
}

impl LowerCache {
    /// Runs the embeddings and layers `0..split` on every id sequence, in
    /// length-sorted batches. `progress` is called with the rows done.
    pub fn build(
        bert: &FrozenBert,
        ids: &[Vec<u32>],
        split: usize,
        progress: &dyn Fn(usize),
    ) -> Result<LowerCache> {
        if split > bert.num_layers() {
            return Err(ClassifierError::InvalidInput(format!(
                "cannot cache {split} of {} layers",
                bert.num_layers()
            )));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut rows = vec![Vec::new(); ids.len()];
        let mut done = 0;
        for chunk in order.chunks(32) {
            let group: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let (tids, mask) = pad_ids(&group)?;
            let bias = mask_bias(&mask)?;
            let mut h = bert.embed(&tids)?;
            for l in 0..split {
                h = bert.layer(l, &h, &bias, None)?;
            }
            for (j, &i) in chunk.iter().enumerate() {
                let n = ids[i].len();
                rows[i] = h.get(j)?.narrow(0, 0, n)?.flatten_all()?.to_vec1()?;
            }
            done += chunk.len();
            progress(done);
        }
        Ok(LowerCache {
            split,
            lens: ids.iter().map(Vec::len).collect(),
            rows,
            hidden: bert.hidden,
        })
    }

    /// A padded batch of cached rows: (hidden states b x t x hidden, mask b x t).
    fn batch(&self, idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let t = idx.iter().map(|&i| self.lens[i]).max().unwrap_or(0);
        let h = self.hidden;
        let mut flat = Vec::with_capacity(idx.len() * t * h);
        let mut mask = Vec::with_capacity(idx.len() * t);
        for &i in idx {
            let n = self.lens[i];
            flat.extend_from_slice(&self.rows[i]);
            flat.extend(std::iter::repeat_n(0.0f32, (t - n) * h));
            mask.extend(std::iter::repeat_n(1.0f32, n));
            mask.extend(std::iter::repeat_n(0.0f32, t - n));
        }
        Ok((
            Tensor::from_vec(flat, (idx.len(), t, h), &Device::Cpu)?,
            Tensor::from_vec(mask, (idx.len(), t), &Device::Cpu)?,
        ))
    }

    /// Sentence embeddings (b x hidden, unit length) of cached rows `idx`
    /// after the remaining layers, with `lora` applied explicitly.
    pub fn top_forward(
        &self,
        bert: &FrozenBert,
        idx: &[usize],
        lora: Option<&LoraSet>,
    ) -> Result<Tensor> {
        let (mut h, mask) = self.batch(idx)?;
        let bias = mask_bias(&mask)?;
        for l in self.split..bert.num_layers() {
            h = bert.layer(l, &h, &bias, lora)?;
        }
        pool(&h, &mask)
    }

    /// Embeddings of rows `idx` (forward only), in order.
    pub fn embed(
        &self,
        bert: &FrozenBert,
        idx: &[usize],
        lora: Option<&LoraSet>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..idx.len()).collect();
        order.sort_by_key(|&j| self.lens[idx[j]]);
        let mut out = vec![Vec::new(); idx.len()];
        for chunk in order.chunks(64) {
            let rows: Vec<usize> = chunk.iter().map(|&j| idx[j]).collect();
            let e = self.top_forward(bert, &rows, lora)?.to_vec2::<f32>()?;
            for (&j, v) in chunk.iter().zip(e) {
                out[j] = v;
            }
        }
        Ok(out)
    }

    /// What a saved cache must match to be reused: the base weights, the
    /// split, and every prompt's token ids (so the texts, the tokenizer
    /// and the window), in order.
    pub fn key(weights_sha256: &str, split: usize, ids: &[Vec<u32>]) -> String {
        let mut h = Sha256::new();
        h.update(weights_sha256.as_bytes());
        h.update((split as u64).to_le_bytes());
        for seq in ids {
            h.update((seq.len() as u64).to_le_bytes());
            for id in seq {
                h.update(id.to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }

    /// Writes the cache to `path` (through a temporary file, renamed):
    /// magic, the 64-byte hex `key`, split, hidden and row count (u64
    /// each), then per row its token count (u64) and tokens x hidden f32,
    /// all little-endian.
    pub fn save(&self, path: &Path, key: &str) -> Result<()> {
        let io = |source| ClassifierError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("partial");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        w.write_all(CACHE_MAGIC).map_err(io)?;
        w.write_all(key.as_bytes()).map_err(io)?;
        for v in [self.split, self.hidden, self.rows.len()] {
            w.write_all(&(v as u64).to_le_bytes()).map_err(io)?;
        }
        for (row, &n) in self.rows.iter().zip(&self.lens) {
            w.write_all(&(n as u64).to_le_bytes()).map_err(io)?;
            for x in row {
                w.write_all(&x.to_le_bytes()).map_err(io)?;
            }
        }
        w.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The cache saved at `path` if its key is `key`; `Ok(None)` when the
    /// file is missing or was saved for other prompts, weights or split;
    /// an error naming the path when it is not a cache file or is cut short.
    pub fn load(path: &Path, key: &str) -> Result<Option<LowerCache>> {
        let corrupt = |reason: String| ClassifierError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ClassifierError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut r = std::io::BufReader::new(file);
        let mut magic = vec![0u8; CACHE_MAGIC.len()];
        if r.read_exact(&mut magic).is_err() || magic != CACHE_MAGIC {
            return Err(corrupt("not a lower-layer cache file".into()));
        }
        let mut saved_key = vec![0u8; 64];
        r.read_exact(&mut saved_key)
            .map_err(|e| corrupt(format!("cut short: {e}")))?;
        if saved_key != key.as_bytes() {
            return Ok(None);
        }
        let mut u64s = |n: usize| -> Result<Vec<usize>> {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)
                    .map_err(|e| corrupt(format!("cut short: {e}")))?;
                out.push(u64::from_le_bytes(b) as usize);
            }
            Ok(out)
        };
        let h = u64s(3)?;
        let (split, hidden, count) = (h[0], h[1], h[2]);
        let (mut rows, mut lens) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for _ in 0..count {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)
                .map_err(|e| corrupt(format!("cut short: {e}")))?;
            let n = u64::from_le_bytes(b) as usize;
            let mut bytes = vec![0u8; n * hidden * 4];
            r.read_exact(&mut bytes)
                .map_err(|e| corrupt(format!("cut short: {e}")))?;
            rows.push(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            );
            lens.push(n);
        }
        Ok(Some(LowerCache {
            split,
            rows,
            lens,
            hidden,
        }))
    }
}

const CACHE_MAGIC: &[u8] = b"POINTSMAN-LOWER-CACHE-1\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cache_loads_back_only_under_its_key_and_a_cut_one_is_refused() {
        let cache = LowerCache {
            split: 3,
            rows: vec![vec![1.0, -2.5, 3.0, 4.0], vec![f32::MIN_POSITIVE, 6.0]],
            lens: vec![2, 1],
            hidden: 2,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lower.bin");
        let ids = vec![vec![1u32, 2], vec![3]];
        let key = LowerCache::key("abc", 3, &ids);
        assert_ne!(key, LowerCache::key("abc", 3, &[vec![1, 2], vec![4]]));
        assert_ne!(key, LowerCache::key("abc", 2, &ids));
        assert!(LowerCache::load(&path, &key).unwrap().is_none(), "missing");
        cache.save(&path, &key).unwrap();
        let back = LowerCache::load(&path, &key).unwrap().unwrap();
        assert_eq!(
            (back.split, back.hidden, &back.lens, &back.rows),
            (3, 2, &cache.lens, &cache.rows)
        );
        let other = LowerCache::key("abd", 3, &ids);
        assert!(LowerCache::load(&path, &other).unwrap().is_none());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = LowerCache::load(&path, &key).err().unwrap().to_string();
        assert!(
            err.contains("lower.bin") && err.contains("cut short"),
            "{err}"
        );
        std::fs::write(
            &path,
            b"not a cache at all, just some text that is long enough to read a header from it ok",
        )
        .unwrap();
        let err = LowerCache::load(&path, &key).err().unwrap().to_string();
        assert!(err.contains("not a lower-layer cache"), "{err}");
    }
}
