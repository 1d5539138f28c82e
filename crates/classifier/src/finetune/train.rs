//! Seeded LoRA fine-tuning of the top encoder layers jointly with a linear
//! task head and, where records carry outcomes, a linear difficulty head
//! on the same pooled embedding (multi-task: [`DifficultyTask`]).
//!
//! Why it is cheap enough for 2 CPU cores: only the top `layers` of the
//! encoder are adapted, so the frozen lower layers run once per prompt
//! (forward only) and their output is cached ([`LowerCache`]); each epoch
//! then runs just the top layers forward and backward, on prompts cut to
//! `window` tokens (head and tail, like inference).
//!
//! Reproducible: LoRA factors are initialised and batches ordered from one
//! seeded RNG, and every reduction runs in a fixed order, so the same data
//! and settings give bit-identical adapters (tests/finetune.rs).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{ClassifierError, Result};
pub use crate::finetune::cache::LowerCache;
use crate::finetune::lora::{LoraAdapter, TARGETS};
use crate::finetune::model::{FrozenBert, LoraSet};
use crate::finetune::multitask::DifficultySide;
pub use crate::finetune::multitask::DifficultyTask;

/// Settings for one fine-tuning run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FinetuneConfig {
    /// Adapt the top this many encoder layers (0 = frozen encoder, head only).
    pub layers: usize,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    pub alpha: f32,
    /// Which dense layers of each adapted layer ([`TARGETS`] names).
    pub targets: Vec<String>,
    pub epochs: usize,
    /// AdamW learning rate of the LoRA factors.
    pub learning_rate: f64,
    /// AdamW learning rate of the linear task head.
    pub head_learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Tokens per prompt while training (head and tail kept).
    pub window: usize,
    /// The head reads `head_scale` x the unit-length embedding (a cosine
    /// classifier with a fixed temperature).
    pub head_scale: f32,
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            layers: 2,
            rank: 8,
            alpha: 16.0,
            targets: TARGETS.iter().map(|s| s.to_string()).collect(),
            epochs: 3,
            learning_rate: 1e-3,
            head_learning_rate: 1e-2,
            weight_decay: 1e-2,
            batch_size: 32,
            window: 128,
            head_scale: 20.0,
            seed: 17,
        }
    }
}

/// A fine-tuned adapter (None for a frozen run) and the linear task head
/// trained with it.
pub struct Finetuned {
    pub adapter: Option<LoraAdapter>,
    lora: Option<LoraSet>,
    /// classes x hidden, row-major.
    pub head_weight: Vec<f32>,
    pub head_bias: Vec<f32>,
    pub head_scale: f32,
    /// Mean weighted training loss of each epoch (the task loss alone).
    pub epoch_losses: Vec<f32>,
    /// The linear difficulty head trained beside the task head (hidden
    /// weights, bias; it reads `head_scale` x the unit embedding), when the
    /// run was multi-task.
    pub difficulty_head: Option<(Vec<f32>, f32)>,
    /// Mean difficulty loss of each epoch (empty for a task-only run).
    pub difficulty_losses: Vec<f32>,
}

impl Finetuned {
    /// The trained factors in training form (for the explicit forward).
    pub fn lora(&self) -> Option<&LoraSet> {
        self.lora.as_ref()
    }

    /// The jointly trained difficulty head's output (in (0, 1), higher =
    /// harder) for each embedding; `None` for a task-only run.
    pub fn predict_difficulty(&self, embeddings: &[Vec<f32>]) -> Option<Vec<f32>> {
        let (w, b) = self.difficulty_head.as_ref()?;
        Some(
            embeddings
                .iter()
                .map(|e| {
                    let z = b + self.head_scale * w.iter().zip(e).map(|(a, x)| a * x).sum::<f32>();
                    1.0 / (1.0 + (-z).exp())
                })
                .collect(),
        )
    }

    /// Predicted class of each embedding.
    pub fn predict(&self, embeddings: &[Vec<f32>]) -> Vec<usize> {
        let d = embeddings.first().map_or(0, Vec::len);
        embeddings
            .iter()
            .map(|e| {
                let mut best = (0, f32::NEG_INFINITY);
                for (c, b) in self.head_bias.iter().enumerate() {
                    let w = &self.head_weight[c * d..(c + 1) * d];
                    let z = b + self.head_scale * w.iter().zip(e).map(|(a, x)| a * x).sum::<f32>();
                    if z > best.1 {
                        best = (c, z);
                    }
                }
                best.0
            })
            .collect()
    }
}

/// Trains LoRA factors on the top layers (those after `cache.split`)
/// jointly with a linear task head, on cached rows `train` with labels and
/// per-example loss weights. With `cfg.layers == 0` only the head trains.
// The data (model, cache, rows, labels, weights, classes), the settings and
// a progress callback: each a different thing, none worth a struct.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    bert: &FrozenBert,
    cache: &LowerCache,
    train: &[usize],
    labels: &[usize],
    weights: &[f32],
    classes: usize,
    cfg: &FinetuneConfig,
    progress: &dyn Fn(usize, usize, f32),
) -> Result<Finetuned> {
    let mut last = finetune_snapshots(
        bert,
        cache,
        train,
        labels,
        weights,
        classes,
        cfg,
        &[cfg.epochs],
        progress,
    )?;
    last.pop()
        .ok_or_else(|| ClassifierError::InvalidInput("0 epochs: nothing trained".into()))
}

/// [`finetune`] for `cfg.epochs` epochs, returning a copy of the adapter
/// and head after each epoch count in `snapshot_after` (ascending, each in
/// 1..=epochs). One run thus scores several epoch counts: the RNG draws of
/// epoch `e` do not depend on how many epochs follow, so the snapshot after
/// `e` epochs is bit for bit what a run of `e` epochs returns.
#[allow(clippy::too_many_arguments)]
pub fn finetune_snapshots(
    bert: &FrozenBert,
    cache: &LowerCache,
    train: &[usize],
    labels: &[usize],
    weights: &[f32],
    classes: usize,
    cfg: &FinetuneConfig,
    snapshot_after: &[usize],
    progress: &dyn Fn(usize, usize, f32),
) -> Result<Vec<Finetuned>> {
    finetune_multitask_snapshots(
        bert,
        cache,
        train,
        labels,
        weights,
        classes,
        cfg,
        None,
        snapshot_after,
        progress,
    )
}

/// [`finetune_snapshots`], multi-task when `difficulty` is given: each
/// task minibatch is paired with one difficulty minibatch (one source's
/// rows), and one step descends task loss + `loss_weight` x difficulty
/// loss, so the adapter is shaped by both. The difficulty queue runs on
/// across epochs (an epoch is one pass over the task rows). Without
/// `difficulty` it is exactly the task-only run.
#[allow(clippy::too_many_arguments)]
pub fn finetune_multitask_snapshots(
    bert: &FrozenBert,
    cache: &LowerCache,
    train: &[usize],
    labels: &[usize],
    weights: &[f32],
    classes: usize,
    cfg: &FinetuneConfig,
    difficulty: Option<&DifficultyTask>,
    snapshot_after: &[usize],
    progress: &dyn Fn(usize, usize, f32),
) -> Result<Vec<Finetuned>> {
    if let Some(d) = difficulty {
        d.check(cache.lens.len())?;
    }
    if snapshot_after.is_empty()
        || snapshot_after.windows(2).any(|w| w[0] >= w[1])
        || snapshot_after[0] == 0
        || *snapshot_after.last().expect("non-empty") > cfg.epochs
    {
        return Err(ClassifierError::InvalidInput(format!(
            "snapshots after epochs {snapshot_after:?} of {}: need an ascending list within 1..={}",
            cfg.epochs, cfg.epochs
        )));
    }
    if train.is_empty() || labels.len() != train.len() || weights.len() != train.len() {
        return Err(ClassifierError::InvalidInput(format!(
            "{} examples, {} labels, {} weights",
            train.len(),
            labels.len(),
            weights.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(ClassifierError::InvalidInput(format!(
            "label index {bad} >= {classes} classes"
        )));
    }
    let n_layers = bert.num_layers();
    if cfg.layers > 0 && cache.split != n_layers - cfg.layers.min(n_layers) {
        return Err(ClassifierError::InvalidInput(format!(
            "the cache stops after layer {}, but adapting the top {} of {n_layers} layers needs it to stop after {}",
            cache.split,
            cfg.layers,
            n_layers - cfg.layers.min(n_layers)
        )));
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let targets: Vec<&str> = cfg.targets.iter().map(String::as_str).collect();
    let adapted: Vec<usize> = (n_layers - cfg.layers.min(n_layers)..n_layers).collect();
    let lora = if cfg.layers > 0 && cfg.rank > 0 {
        Some(LoraSet::init(
            bert, &adapted, &targets, cfg.rank, cfg.alpha, &mut rng,
        )?)
    } else {
        None
    };
    let hidden = bert.hidden;
    let head_w = Var::from_tensor(&Tensor::zeros((classes, hidden), DType::F32, &Device::Cpu)?)?;
    let head_b = Var::from_tensor(&Tensor::zeros(classes, DType::F32, &Device::Cpu)?)?;
    let mut head_opt = AdamW::new(
        vec![head_w.clone(), head_b.clone()],
        ParamsAdamW {
            lr: cfg.head_learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut lora_opt = match &lora {
        Some(set) => Some(AdamW::new(
            set.vars(),
            ParamsAdamW {
                lr: cfg.learning_rate,
                weight_decay: cfg.weight_decay,
                ..Default::default()
            },
        )?),
        None => None,
    };
    let mut side = difficulty
        .map(|d| DifficultySide::new(d, hidden, cfg))
        .transpose()?;
    // A frozen run embeds once; an adapted one re-runs the top layers.
    let fixed: Option<Vec<Vec<f32>>> = match lora {
        None => Some(cache.embed(bert, train, None)?),
        Some(_) => None,
    };
    // Batches of similar length (little padding), visited in a seeded order.
    let mut by_len: Vec<usize> = (0..train.len()).collect();
    by_len.sort_by_key(|&j| (cache.lens[train[j]], j));
    let batches: Vec<Vec<usize>> = by_len
        .chunks(cfg.batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let mut epoch_losses = Vec::new();
    let mut difficulty_losses = Vec::new();
    let mut snapshots = Vec::with_capacity(snapshot_after.len());
    for epoch in 0..cfg.epochs {
        let mut visit: Vec<usize> = (0..batches.len()).collect();
        visit.shuffle(&mut rng);
        let (mut total, mut weight_sum, mut diff_total) = (0.0f64, 0.0f64, 0.0f64);
        for (done, &bi) in visit.iter().enumerate() {
            let batch = &batches[bi];
            let emb = match &fixed {
                Some(f) => {
                    let flat: Vec<f32> = batch.iter().flat_map(|&j| f[j].iter().copied()).collect();
                    Tensor::from_vec(flat, (batch.len(), hidden), &Device::Cpu)?
                }
                None => {
                    let rows: Vec<usize> = batch.iter().map(|&j| train[j]).collect();
                    cache.top_forward(bert, &rows, lora.as_ref())?
                }
            };
            let logits = (emb.matmul(&head_w.as_tensor().t()?)? * cfg.head_scale as f64)?
                .broadcast_add(head_b.as_tensor())?;
            let y = Tensor::from_vec(
                batch.iter().map(|&j| labels[j] as u32).collect::<Vec<_>>(),
                (batch.len(), 1),
                &Device::Cpu,
            )?;
            let w: Vec<f32> = batch.iter().map(|&j| weights[j]).collect();
            let wsum: f32 = w.iter().sum();
            let wt = Tensor::from_vec(w, (batch.len(), 1), &Device::Cpu)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let loss = (logp.gather(&y, 1)?.mul(&wt)?.sum_all()?.neg()? / (wsum as f64).max(1e-9))?;
            let grads = match side.as_mut() {
                None => loss.backward()?,
                Some(side) => {
                    let (weighted, value) = side.loss(bert, cache, lora.as_ref(), cfg)?;
                    diff_total += value as f64;
                    let grads = (&loss + weighted)?.backward()?;
                    side.opt.step(&grads)?;
                    grads
                }
            };
            head_opt.step(&grads)?;
            if let Some(opt) = lora_opt.as_mut() {
                opt.step(&grads)?;
            }
            let l = loss.to_scalar::<f32>()?;
            total += l as f64 * wsum as f64;
            weight_sum += wsum as f64;
            progress(epoch, done + 1, l);
        }
        epoch_losses.push((total / weight_sum.max(1e-9)) as f32);
        if side.is_some() {
            difficulty_losses.push((diff_total / visit.len().max(1) as f64) as f32);
        }
        if snapshot_after.contains(&(epoch + 1)) {
            let adapter = lora.as_ref().map(LoraSet::to_adapter).transpose()?;
            snapshots.push(Finetuned {
                lora: adapter.as_ref().map(LoraSet::from_adapter).transpose()?,
                adapter,
                head_weight: head_w.as_tensor().flatten_all()?.to_vec1()?,
                head_bias: head_b.as_tensor().to_vec1()?,
                head_scale: cfg.head_scale,
                epoch_losses: epoch_losses.clone(),
                difficulty_head: side.as_ref().map(DifficultySide::head).transpose()?,
                difficulty_losses: difficulty_losses.clone(),
            });
        }
        if snapshots.len() == snapshot_after.len() {
            break;
        }
    }
    Ok(snapshots)
}

/// Assigns each of `sources` (sorted, distinct) to one of `k` folds so the
/// folds hold similar numbers of examples: largest source first, each to
/// the currently smallest fold. `sizes[i]` is source i's example count.
pub fn source_folds(sizes: &[usize], k: usize) -> Vec<usize> {
    let k = k.max(1);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
    let mut load = vec![0usize; k];
    let mut fold = vec![0; sizes.len()];
    for i in order {
        let f = (0..k).min_by_key(|&f| (load[f], f)).expect("k >= 1");
        fold[i] = f;
        load[f] += sizes[i];
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_balance_sizes_and_cover_every_source() {
        let f = source_folds(&[100, 10, 50, 50, 40], 2);
        let mut load = [0; 2];
        for (i, s) in [100, 10, 50, 50, 40].iter().enumerate() {
            load[f[i]] += s;
        }
        assert_eq!(load.iter().sum::<usize>(), 250);
        // Largest first, each to the lighter fold (ties to the lower index).
        assert_eq!(f, vec![0, 1, 1, 1, 0]);
        assert_eq!(load, [140, 110]);
        assert!(source_folds(&[5, 5, 5], 5).iter().all(|&x| x < 5));
    }
}
