//! The frozen lower layers' output, computed once per prompt: what makes
//! fine-tuning the top layers cheap enough for 2 CPU cores.

use candle_core::{Device, Tensor};

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
}
