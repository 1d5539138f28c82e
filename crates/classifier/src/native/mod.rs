//! The native CPU encoder: a BERT / XLM-RoBERTa forward pass in plain Rust
//! with packed weights, reused buffers and an AVX2/FMA kernel.
//!
//! Why not candle on the CPU: at batch 1 candle allocates fresh tensors for
//! every op (page faults were ~15% of its time), runs attention as a
//! batched general matmul, and pads a batch to its longest prompt. Here each
//! batch is stacked as rows without padding (attention runs per prompt, so
//! no mask), every buffer comes from a pool of preallocated workspaces, and
//! the products are split over threads by column panels. Outputs match candle and
//! sentence-transformers within 1e-5 (tests/native_encoder.rs).

/// Calls `$kernel::<R>($tile)` with `R = $rows`, one of the listed row
/// counts (the last one is the fallback): the micro-kernels take their row
/// count as a const generic so their accumulators stay in registers.
macro_rules! by_rows {
    ($rows:expr, $kernel:ident($tile:expr); $($r:literal)+) => {
        by_rows!(@arms $rows, $kernel, $tile, [] $($r)+)
    };
    (@arms $rows:expr, $kernel:ident, $tile:expr, [$($done:tt)*] $last:literal) => {
        match $rows {
            $($done)*
            _ => $kernel::<$last>($tile),
        }
    };
    (@arms $rows:expr, $kernel:ident, $tile:expr, [$($done:tt)*] $r:literal $($rest:literal)+) => {
        by_rows!(@arms $rows, $kernel, $tile, [$($done)* $r => $kernel::<$r>($tile),] $($rest)+)
    };
}

mod bf16;
mod embedding;
pub(crate) mod gemm;
mod int8;
mod ops;
mod tensor_file;
pub(crate) mod weights;

use std::sync::Mutex;

use rayon::prelude::*;

use crate::device::Precision;
use crate::encoder::Encoder;
use crate::error::{ClassifierError, Result};
use crate::model_dir::{ModelDir, Pooling};
use crate::tokenize::PromptTokenizer;
pub use gemm::simd_name;
pub use int8::supported as int8_supported;

/// Most token rows in one pass. Bounds a workspace to about 34 MB for
/// MiniLM-L6 while keeping enough rows per product for the kernel to run
/// at full speed.
pub const BATCH_TOKENS: usize = 2048;
use gemm::{gemm, gemm_into, PackedB};
use weights::{Activation, BertConfig, BertWeights, Layer};

/// A BERT or XLM-RoBERTa sentence encoder computed natively on the CPU.
pub struct NativeBertEncoder {
    weights: BertWeights,
    tokenizer: PromptTokenizer,
    pooling: Pooling,
    pool: Mutex<Vec<Workspace>>,
    /// Number format of the dense products.
    precision: Precision,
}

impl NativeBertEncoder {
    /// Loads a verified model directory. Fails with the path and the reason
    /// when the config, tokenizer or weights cannot be used; with
    /// [`ClassifierError::UnsupportedArchitecture`] for a `model_type` other
    /// than `bert` and `xlm-roberta`, and [`ClassifierError::Unsupported`]
    /// for settings it does not run (the caller may fall back to candle).
    pub fn load(dir: &ModelDir) -> Result<NativeBertEncoder> {
        Self::load_with(dir, Precision::F32)
    }

    /// [`NativeBertEncoder::load`], with the dense products in `precision`
    /// where the CPU has the instructions for it (AVX-512 BF16 for bf16;
    /// AVX-512 VNNI, or else AVX2 and FMA, for int8), else in f32 with a
    /// warning. Attention, layer norms and activations stay f32.
    pub fn load_with(dir: &ModelDir, precision: Precision) -> Result<NativeBertEncoder> {
        let config = BertConfig::read(&dir.config_path())?;
        let arch = config.architecture(&dir.config_path())?;
        if let Some(reason) = config.unsupported() {
            return Err(ClassifierError::Unsupported {
                path: dir.config_path(),
                reason,
            });
        }
        let mut weights =
            BertWeights::load(&dir.weights_path(), &config, arch, dir.adapter.as_deref())?;
        let precision = if weights.use_precision(precision) {
            precision
        } else {
            tracing::warn!(
                "this CPU lacks the instructions for {precision}; the native encoder runs in f32"
            );
            Precision::F32
        };
        if precision == Precision::Int8 {
            tracing::debug!(
                kernel = int8::Kernel::detect().map_or("none", |k| k.name()),
                "int8 products"
            );
        }
        tracing::debug!(
            bytes = weights.word_embeddings.bytes(),
            vocab = weights.vocab,
            "word-embedding table"
        );
        let window = dir.window(weights.max_positions);
        Ok(NativeBertEncoder {
            weights,
            tokenizer: PromptTokenizer::load(dir, window)?,
            pooling: dir.pooling(),
            pool: Mutex::new(Vec::new()),
            precision,
        })
    }

    /// Embeds sequences of token ids (special tokens included), one
    /// normalised vector each, in order. Consecutive sequences are packed
    /// into passes of at most [`BATCH_TOKENS`] rows.
    pub fn embed_ids(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut ws = self.take_workspace();
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        let mut result = Ok(());
        while start < seqs.len() && result.is_ok() {
            let mut end = start + 1;
            let mut rows = seqs[start].len();
            while end < seqs.len() && rows + seqs[end].len() <= ws.rows {
                rows += seqs[end].len();
                end += 1;
            }
            result = self
                .forward(&seqs[start..end], &mut ws)
                .map(|v| out.extend(v));
            start = end;
        }
        self.pool.lock().expect("workspace pool").push(ws);
        result.map(|()| out)
    }

    fn take_workspace(&self) -> Workspace {
        let reused = self.pool.lock().expect("workspace pool").pop();
        reused.unwrap_or_else(|| Workspace::new(&self.weights, self.tokenizer.window()))
    }

    /// One pass over several prompts stacked as rows: the dense products
    /// see every token at once (so the weights stream through the cache
    /// once per pass, not once per prompt), attention stays per prompt.
    fn forward(&self, seqs: &[Vec<u32>], ws: &mut Workspace) -> Result<Vec<Vec<f32>>> {
        let w = &self.weights;
        let h = w.hidden;
        let limit = ws.window.min(w.max_positions);
        let mut spans = Vec::with_capacity(seqs.len());
        let mut m = 0;
        for ids in seqs {
            if ids.is_empty() || ids.len() > limit {
                return Err(ClassifierError::InvalidInput(format!(
                    "{} tokens; the encoder takes 1 to {limit}",
                    ids.len()
                )));
            }
            spans.push((m, ids.len()));
            m += ids.len();
        }
        assert!(m <= ws.rows, "embed_ids packs at most ws.rows rows");
        let hidden = &mut ws.hidden[..m * h];
        let positions = seqs.iter().flat_map(|ids| ids.iter().enumerate());
        for ((pos, &id), row) in positions.zip(hidden.chunks_exact_mut(h)) {
            let id = id as usize;
            if id >= w.vocab {
                return Err(ClassifierError::Tokenizer(format!(
                    "token id {id} is outside the vocabulary ({})",
                    w.vocab
                )));
            }
            let position = &w.position_embeddings[(w.position_offset + pos) * h..][..h];
            w.word_embeddings.row_plus(id, position, row);
            for (x, &c) in row.iter_mut().zip(&w.token_type0) {
                *x += c;
            }
        }
        let norm = &w.embedding_norm;
        ops::add_layer_norm(hidden, None, h, &norm.gamma, &norm.beta, w.eps);
        for layer in &w.layers {
            self.layer(layer, m, &spans, ws);
        }
        Ok(spans
            .iter()
            .map(|&(start, len)| {
                pool_and_normalise(&ws.hidden[start * h..(start + len) * h], h, self.pooling)
            })
            .collect())
    }

    /// One transformer layer, in place on `ws.hidden[..m * hidden]`.
    fn layer(&self, layer: &Layer, m: usize, spans: &[(usize, usize)], ws: &mut Workspace) {
        let parallel = true; // products split over threads by column panels
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
        attention(qkv, spans, h, w.heads, context, &mut ws.heads);
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

/// Self-attention within each prompt (rows `start..start + len`; no
/// padding, so no mask): for each head, `softmax(Q Kᵀ / √d) V`, written into
/// that head's columns of `context`. Heads run in parallel.
fn attention(
    qkv: &[f32],
    spans: &[(usize, usize)],
    h: usize,
    heads: usize,
    context: &mut [f32],
    scratch: &mut [HeadScratch],
) {
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let out = SharedOut(context.as_mut_ptr(), context.len());
    let one = |head: usize, s: &mut HeadScratch| {
        for &(start, m) in spans {
            let rows = &qkv[start * 3 * h..];
            s.keys.pack_rows(&rows[h + head * d..], 3 * h, m, d);
            let scores = &mut s.scores[..m * m];
            gemm(m, &rows[head * d..], 3 * h, &s.keys, None, scores, m, false);
            ops::softmax_rows(scores, m, m, m, scale);
            s.values.pack_cols(&rows[2 * h + head * d..], 3 * h, m, d);
            let (c, c_len) = out.suffix(start * h + head * d);
            // SAFETY: gemm_into's contract. `out` is `context`, an
            // exclusive borrow of initialised values held for this whole
            // call, and `suffix` checked that the offset is inside it, so
            // `c` is valid for the `c_len` values that follow. With
            // ldc = h and b.n() = d, this head writes only columns
            // head*d..head*d+d of its rows, disjoint from every other
            // head's, and no head reads `context`.
            unsafe { gemm_into(m, scores, m, &s.values, None, c, c_len, h, false) };
        }
    };
    scratch[..heads]
        .par_iter_mut()
        .enumerate()
        .for_each(|(hd, s)| one(hd, s));
}

/// `context`'s address and length, shared by the heads of `attention`.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32, usize);
// SAFETY: a `SharedOut` is only an address and a length; moving it to
// another thread does nothing by itself. The writes through it are in
// `attention`, where each head writes its own columns.
unsafe impl Send for SharedOut {}
// SAFETY: as for `Send`: `&SharedOut` only copies the address out.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The address of value `offset` and how many values follow it (a
    /// method, so closures capture the whole Sync wrapper rather than the
    /// raw pointer field). Safe: it checks the offset and only computes
    /// an address (`wrapping_add`); using it is the caller's unsafe part.
    fn suffix(&self, offset: usize) -> (*mut f32, usize) {
        assert!(offset <= self.1, "offset {offset} past {} values", self.1);
        (self.0.wrapping_add(offset), self.1 - offset)
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
    /// Rows (tokens over all prompts of a pass) the buffers hold.
    rows: usize,
    /// Longest prompt, in tokens.
    window: usize,
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
        let rows = BATCH_TOKENS.max(n);
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
            rows,
            window: n,
            hidden: vec![0.0; rows * w.hidden],
            qkv: vec![0.0; rows * 3 * w.hidden],
            context: vec![0.0; rows * w.hidden],
            attended: vec![0.0; rows * w.hidden],
            intermediate: vec![0.0; rows * w.intermediate],
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

    fn precision(&self) -> &'static str {
        self.precision.name()
    }

    /// All prompts of a call go through [`NativeBertEncoder::embed_ids`]:
    /// stacked without padding, products split over the threads.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenizer.ids(t))
            .collect::<Result<_>>()?;
        self.embed_ids(&ids)
    }
}
