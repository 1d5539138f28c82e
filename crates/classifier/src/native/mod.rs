//! The native CPU encoder: a BERT forward pass in plain Rust with packed
//! weights, reused buffers and an AVX2/FMA kernel.
//!
//! Why not candle on the CPU: at batch 1 candle allocates fresh tensors for
//! every op (page faults were ~15% of its time), runs attention as a
//! batched general matmul, and pads a batch to its longest prompt. Here each
//! prompt runs on its own (no padding, no mask), every buffer comes from a
//! pool of workspaces sized for the window, and a batch is spread over
//! threads one prompt per task. Outputs match candle and
//! sentence-transformers within 1e-5 (tests/native_encoder.rs).

mod gemm;
mod ops;
mod weights;

use std::sync::Mutex;

use rayon::prelude::*;

use crate::encoder::Encoder;
use crate::error::{ClassifierError, Result};
use crate::model_dir::{ModelDir, Pooling};
use crate::tokenize::PromptTokenizer;
pub use gemm::simd_name;
use gemm::{gemm, gemm_into, PackedB};
use weights::{Activation, BertConfig, BertWeights, Layer};

/// A BERT-family sentence encoder computed natively on the CPU.
pub struct NativeBertEncoder {
    weights: BertWeights,
    tokenizer: PromptTokenizer,
    pooling: Pooling,
    pool: Mutex<Vec<Workspace>>,
}

impl NativeBertEncoder {
    /// Loads a verified model directory. Fails with the path and the reason
    /// when the config, tokenizer or weights cannot be used, and with
    /// [`ClassifierError::Unsupported`] for architectures it does not run
    /// (the caller may fall back to candle).
    pub fn load(dir: &ModelDir) -> Result<NativeBertEncoder> {
        let config = BertConfig::read(&dir.config_path())?;
        if let Some(reason) = config.unsupported() {
            return Err(ClassifierError::Unsupported {
                path: dir.config_path(),
                reason,
            });
        }
        let weights = BertWeights::load(&dir.weights_path(), &config)?;
        let window = dir.window(config.max_position_embeddings);
        Ok(NativeBertEncoder {
            weights,
            tokenizer: PromptTokenizer::load(dir, window)?,
            pooling: dir.pooling(),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Embeds token ids (special tokens included) into one normalised vector.
    pub fn embed_ids(&self, ids: &[u32], parallel: bool) -> Result<Vec<f32>> {
        let mut ws = self.take_workspace();
        let out = self.forward(ids, &mut ws, parallel);
        self.pool.lock().expect("workspace pool").push(ws);
        out
    }

    fn take_workspace(&self) -> Workspace {
        let reused = self.pool.lock().expect("workspace pool").pop();
        reused.unwrap_or_else(|| Workspace::new(&self.weights, self.tokenizer.window()))
    }

    fn forward(&self, ids: &[u32], ws: &mut Workspace, parallel: bool) -> Result<Vec<f32>> {
        let w = &self.weights;
        let (m, h) = (ids.len(), w.hidden);
        if m == 0 || m > w.max_positions || m > ws.capacity {
            return Err(ClassifierError::InvalidInput(format!(
                "{m} tokens; the encoder takes 1 to {}",
                ws.capacity.min(w.max_positions)
            )));
        }
        let hidden = &mut ws.hidden[..m * h];
        for (pos, (&id, row)) in ids.iter().zip(hidden.chunks_exact_mut(h)).enumerate() {
            let id = id as usize;
            if id >= w.vocab {
                return Err(ClassifierError::Tokenizer(format!(
                    "token id {id} is outside the vocabulary ({})",
                    w.vocab
                )));
            }
            let word = &w.word_embeddings[id * h..][..h];
            let position = &w.position_embeddings[pos * h..][..h];
            for (((x, &a), &b), &c) in row.iter_mut().zip(word).zip(position).zip(&w.token_type0) {
                *x = a + b + c;
            }
        }
        let norm = &w.embedding_norm;
        ops::add_layer_norm(hidden, None, h, &norm.gamma, &norm.beta, w.eps);
        for layer in &w.layers {
            self.layer(layer, m, ws, parallel);
        }
        Ok(pool_and_normalise(&ws.hidden[..m * h], h, self.pooling))
    }

    /// One transformer layer, in place on `ws.hidden[..m * hidden]`.
    fn layer(&self, layer: &Layer, m: usize, ws: &mut Workspace, parallel: bool) {
        let w = &self.weights;
        let (h, i) = (w.hidden, w.intermediate);
        let hidden = &mut ws.hidden[..m * h];
        let qkv = &mut ws.qkv[..m * 3 * h];
        gemm(
            m,
            hidden,
            h,
            &layer.qkv.weight,
            Some(&layer.qkv.bias),
            qkv,
            3 * h,
            parallel,
        );
        let context = &mut ws.context[..m * h];
        attention(qkv, m, h, w.heads, context, &mut ws.heads, parallel);
        let attended = &mut ws.attended[..m * h];
        let out = &layer.attention_out;
        gemm(
            m,
            context,
            h,
            &out.weight,
            Some(&out.bias),
            attended,
            h,
            parallel,
        );
        let norm = &layer.attention_norm;
        ops::add_layer_norm(attended, Some(hidden), h, &norm.gamma, &norm.beta, w.eps);
        let inter = &mut ws.intermediate[..m * i];
        let up = &layer.intermediate;
        gemm(
            m,
            attended,
            h,
            &up.weight,
            Some(&up.bias),
            inter,
            i,
            parallel,
        );
        match w.activation {
            Activation::GeluErf => ops::gelu_erf(inter),
            Activation::GeluTanh => ops::gelu_tanh(inter),
            Activation::Relu => inter.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
        let down = &layer.output;
        gemm(
            m,
            inter,
            i,
            &down.weight,
            Some(&down.bias),
            hidden,
            h,
            parallel,
        );
        let norm = &layer.output_norm;
        ops::add_layer_norm(hidden, Some(attended), h, &norm.gamma, &norm.beta, w.eps);
    }
}

/// Self-attention over one prompt (no padding, so no mask): for each head,
/// `softmax(Q Kᵀ / √d) V`, written into that head's columns of `context`.
fn attention(
    qkv: &[f32],
    m: usize,
    h: usize,
    heads: usize,
    context: &mut [f32],
    scratch: &mut [HeadScratch],
    parallel: bool,
) {
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let out = SharedOut(context.as_mut_ptr(), context.len());
    let one = |head: usize, s: &mut HeadScratch| {
        let q = &qkv[head * d..];
        s.keys.pack_rows(&qkv[h + head * d..], 3 * h, m, d);
        let scores = &mut s.scores[..m * m];
        gemm(m, q, 3 * h, &s.keys, None, scores, m, false);
        ops::softmax_rows(scores, m, m, m, scale);
        s.values.pack_cols(&qkv[2 * h + head * d..], 3 * h, m, d);
        // SAFETY: `out` is `context`, borrowed exclusively by this call;
        // head `head` writes only columns head*d..head*d+d of each row,
        // disjoint from every other head's, and nothing reads them meanwhile.
        unsafe {
            let at = head * d;
            gemm_into(
                m,
                scores,
                m,
                &s.values,
                None,
                out.at(at),
                out.1 - at,
                h,
                false,
            );
        }
    };
    let scratch = &mut scratch[..heads];
    if parallel {
        scratch
            .par_iter_mut()
            .enumerate()
            .for_each(|(hd, s)| one(hd, s));
    } else {
        scratch
            .iter_mut()
            .enumerate()
            .for_each(|(hd, s)| one(hd, s));
    }
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32, usize);
// SAFETY: see `attention`: heads write disjoint columns.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Pointer to value `offset` (a method, so closures capture the whole
    /// Sync wrapper rather than the raw pointer field).
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

fn pool_and_normalise(hidden: &[f32], h: usize, pooling: Pooling) -> Vec<f32> {
    let rows = hidden.len() / h;
    let mut v: Vec<f64> = vec![0.0; h];
    match pooling {
        Pooling::Cls => v
            .iter_mut()
            .zip(&hidden[..h])
            .for_each(|(a, &x)| *a = x as f64),
        Pooling::Mean => {
            for row in hidden.chunks_exact(h) {
                v.iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
            }
            v.iter_mut().for_each(|a| *a /= rows as f64);
        }
    }
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
    v.into_iter().map(|a| (a / norm) as f32).collect()
}

/// Every buffer one forward pass needs, sized for the window so a pass
/// allocates nothing.
struct Workspace {
    capacity: usize,
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    intermediate: Vec<f32>,
    heads: Vec<HeadScratch>,
}

struct HeadScratch {
    scores: Vec<f32>,
    keys: PackedB,
    values: PackedB,
}

impl Workspace {
    fn new(w: &BertWeights, window: usize) -> Workspace {
        let n = window.min(w.max_positions);
        let d = w.hidden / w.heads;
        let mut heads = Vec::with_capacity(w.heads);
        for _ in 0..w.heads {
            let mut s = HeadScratch {
                scores: vec![0.0; n * n],
                keys: PackedB::default(),
                values: PackedB::default(),
            };
            // Touch the packed buffers at full size once, so later passes
            // never grow them.
            s.keys.pack_rows(&vec![0.0; n * d], d, n, d);
            s.values.pack_cols(&vec![0.0; n * d], d, n, d);
            heads.push(s);
        }
        Workspace {
            capacity: n,
            hidden: vec![0.0; n * w.hidden],
            qkv: vec![0.0; n * 3 * w.hidden],
            context: vec![0.0; n * w.hidden],
            attended: vec![0.0; n * w.hidden],
            intermediate: vec![0.0; n * w.intermediate],
            heads,
        }
    }
}

impl Encoder for NativeBertEncoder {
    fn dim(&self) -> usize {
        self.weights.hidden
    }

    fn window(&self) -> usize {
        self.tokenizer.window()
    }

    fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer.ids(text)?.len())
    }

    /// One prompt: its products are split over the threads. Several: one
    /// prompt per task, each computed on one thread (no padding).
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match texts {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.embed_ids(&self.tokenizer.ids(one)?, true)?]),
            many => many
                .par_iter()
                .map(|t| self.embed_ids(&self.tokenizer.ids(t)?, false))
                .collect(),
        }
    }
}
