//! The outcome half of multi-task fine-tuning: a linear difficulty head
//! (and optionally per-model success) on the pooled embedding, trained
//! beside the task head with the difficulty head's own loss.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::{ClassifierError, Result};
use crate::finetune::cache::LowerCache;
use crate::finetune::model::{FrozenBert, LoraSet};
use crate::finetune::train::FinetuneConfig;
use crate::train::{ranking_loss, within_group_batches, DIFFICULTY_PAIR_MARGIN};

/// The outcome half of multi-task fine-tuning: cached rows with a
/// difficulty target, learned beside the task loss from the same pooled
/// embedding by a linear difficulty head, with the difficulty head's own
/// loss ([`ranking_loss`]: soft-target cross-entropy plus the within-source
/// pairwise term, on minibatches of one source each).
#[derive(Debug, Clone)]
pub struct DifficultyTask {
    /// Rows of the [`LowerCache`] that carry outcomes.
    pub rows: Vec<usize>,
    /// Each row's target in [0, 1] (higher = harder).
    pub targets: Vec<f32>,
    /// Each row's source, numbered: every minibatch holds one source.
    pub groups: Vec<usize>,
    /// Weight of the difficulty loss added to the task loss.
    pub loss_weight: f64,
    /// Weight of the pairwise term inside the difficulty loss.
    pub pair_weight: f64,
    /// Per-model success beside difficulty: each row's outcomes as
    /// (the model's IRT ability a_m, held fixed; its score in [0, 1]). A
    /// second linear output b(x) is fitted so that σ(a_m − b(x)) matches
    /// the scores (cross-entropy with soft targets). Empty = not used.
    pub success: Vec<Vec<(f32, f32)>>,
    /// Weight of the success loss (0 = not used).
    pub success_weight: f64,
    /// AdamW learning rate of the difficulty (and success) head. Lower
    /// than the task head's: it reads `head_scale` x the unit embedding,
    /// so at the task head's 1e-2 one step moves its logit by several
    /// units and the loss never settles (measured: above a constant
    /// prediction's, 2026-11-30).
    pub head_learning_rate: f64,
}

impl DifficultyTask {
    pub(crate) fn check(&self, cache_rows: usize) -> Result<()> {
        let n = self.rows.len();
        if n == 0 || self.targets.len() != n || self.groups.len() != n {
            return Err(ClassifierError::InvalidInput(format!(
                "difficulty task: {n} rows, {} targets, {} groups (need as many of each, at least one)",
                self.targets.len(),
                self.groups.len()
            )));
        }
        if let Some(r) = self.rows.iter().find(|&&r| r >= cache_rows) {
            return Err(ClassifierError::InvalidInput(format!(
                "difficulty task: row {r} is not in the cache of {cache_rows}"
            )));
        }
        if self.targets.iter().any(|t| !(0.0..=1.0).contains(t)) {
            return Err(ClassifierError::InvalidInput(
                "difficulty task: targets must lie in [0, 1]".into(),
            ));
        }
        if self.success_weight > 0.0 && self.success.len() != n {
            return Err(ClassifierError::InvalidInput(format!(
                "difficulty task: {} rows of outcomes for {n} rows",
                self.success.len()
            )));
        }
        if self
            .success
            .iter()
            .flatten()
            .any(|(a, s)| !a.is_finite() || !(0.0..=1.0).contains(s))
        {
            return Err(ClassifierError::InvalidInput(
                "difficulty task: abilities must be finite and scores in [0, 1]".into(),
            ));
        }
        for (what, w) in [
            ("loss weight", self.loss_weight),
            ("pair weight", self.pair_weight),
            ("success weight", self.success_weight),
            ("head learning rate", self.head_learning_rate),
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(ClassifierError::InvalidInput(format!(
                    "difficulty task: {what} {w} must be finite and >= 0"
                )));
            }
        }
        Ok(())
    }
}

/// The difficulty side of a multi-task run: its head, optimiser and an
/// endless queue of within-source minibatches drawn from its own seeded
/// RNG (so the task side's draws, and with them a task-only run, are
/// unchanged by it).
pub(crate) struct DifficultySide<'a> {
    task: &'a DifficultyTask,
    weight: Var,
    bias: Var,
    /// The success part's b(x) (used only when its weight is > 0).
    success_weight: Var,
    success_bias: Var,
    pub(crate) opt: AdamW,
    rng: StdRng,
    by_group: BTreeMap<usize, Vec<usize>>,
    queue: Vec<Vec<usize>>,
}

impl<'a> DifficultySide<'a> {
    pub(crate) fn new(
        task: &'a DifficultyTask,
        hidden: usize,
        cfg: &FinetuneConfig,
    ) -> Result<Self> {
        let weight = Var::from_tensor(&Tensor::zeros((1, hidden), DType::F32, &Device::Cpu)?)?;
        let bias = Var::from_tensor(&Tensor::zeros(1, DType::F32, &Device::Cpu)?)?;
        let success_weight =
            Var::from_tensor(&Tensor::zeros((1, hidden), DType::F32, &Device::Cpu)?)?;
        let success_bias = Var::from_tensor(&Tensor::zeros(1, DType::F32, &Device::Cpu)?)?;
        let mut vars = vec![weight.clone(), bias.clone()];
        if task.success_weight > 0.0 {
            vars.extend([success_weight.clone(), success_bias.clone()]);
        }
        let opt = AdamW::new(
            vars,
            ParamsAdamW {
                lr: task.head_learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut by_group: BTreeMap<usize, Vec<usize>> = Default::default();
        for (k, &g) in task.groups.iter().enumerate() {
            by_group.entry(g).or_default().push(k);
        }
        Ok(DifficultySide {
            task,
            weight,
            bias,
            success_weight,
            success_bias,
            opt,
            rng: StdRng::seed_from_u64(cfg.seed ^ DIFFICULTY_STREAM),
            by_group,
            queue: Vec::new(),
        })
    }

    /// The next minibatch (positions into the task's rows); a fresh
    /// shuffled pass over every row starts when the last one is used up.
    fn next_batch(&mut self, batch_size: usize) -> Vec<usize> {
        if self.queue.is_empty() {
            self.queue = within_group_batches(&mut self.by_group, batch_size, &mut self.rng);
            self.queue.reverse();
        }
        self.queue.pop().expect("at least one row")
    }

    /// The weighted difficulty loss of the next minibatch, through the
    /// top layers with `lora`, and its unweighted value.
    pub(crate) fn loss(
        &mut self,
        bert: &FrozenBert,
        cache: &LowerCache,
        lora: Option<&LoraSet>,
        cfg: &FinetuneConfig,
    ) -> Result<(Tensor, f32)> {
        let batch = self.next_batch(cfg.batch_size);
        let rows: Vec<usize> = batch.iter().map(|&k| self.task.rows[k]).collect();
        let targets: Vec<f32> = batch.iter().map(|&k| self.task.targets[k]).collect();
        let emb = cache.top_forward(bert, &rows, lora)?;
        let z = (emb.matmul(&self.weight.as_tensor().t()?)? * cfg.head_scale as f64)?
            .broadcast_add(self.bias.as_tensor())?;
        let loss = ranking_loss(&z, &targets, self.task.pair_weight, DIFFICULTY_PAIR_MARGIN)?;
        let value = loss.to_scalar::<f32>()?;
        let mut weighted = loss.affine(self.task.loss_weight, 0.0)?;
        if self.task.success_weight > 0.0 {
            // σ(a_m − b(x)) against every outcome of the batch's rows.
            let (mut at, mut ability, mut score) = (Vec::new(), Vec::new(), Vec::new());
            for (p, &k) in batch.iter().enumerate() {
                for &(a, sc) in &self.task.success[k] {
                    at.push(p as u32);
                    ability.push(a);
                    score.push(sc);
                }
            }
            if !at.is_empty() {
                let m = at.len();
                let b = (emb.matmul(&self.success_weight.as_tensor().t()?)?
                    * cfg.head_scale as f64)?
                    .broadcast_add(self.success_bias.as_tensor())?;
                let at = Tensor::from_vec(at, m, &Device::Cpu)?;
                let a = Tensor::from_vec(ability, (m, 1), &Device::Cpu)?;
                let logits = (a - b.index_select(&at, 0)?)?;
                // The mean soft-target cross-entropy (no pairwise term).
                let success = ranking_loss(&logits, &score, 0.0, DIFFICULTY_PAIR_MARGIN)?;
                weighted = (weighted + success.affine(self.task.success_weight, 0.0)?)?;
            }
        }
        Ok((weighted, value))
    }

    pub(crate) fn head(&self) -> Result<(Vec<f32>, f32)> {
        Ok((
            self.weight.as_tensor().flatten_all()?.to_vec1()?,
            self.bias.as_tensor().to_vec1::<f32>()?[0],
        ))
    }
}

/// Seeds the difficulty side's RNG apart from the task side's.
const DIFFICULTY_STREAM: u64 = 0x6469_6666_6963_756c;
