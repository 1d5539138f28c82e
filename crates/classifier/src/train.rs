//! Seeded training of head MLPs with candle (AdamW, full precision, CPU).
//!
//! Reproducible: weights are initialised and minibatches shuffled from one
//! seeded RNG, so the same data and settings give the same heads.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ClassifierError, Result};
use crate::heads::{Dense, Mlp};

/// Settings for one head.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Hidden layer width; 0 trains a linear head.
    pub hidden: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub seed: u64,
    /// Members of a seed ensemble: each trains from
    /// its own seed and the head's logits are their mean, stored as one
    /// wider MLP ([`mean_of_logits`]). 1 = a single head, member 0 always
    /// from `seed`, so 1 gives the heads trained before ensembles existed.
    #[serde(default = "one_member")]
    pub members: usize,
}

fn one_member() -> usize {
    1
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: 256,
            epochs: 40,
            learning_rate: 1e-3,
            weight_decay: 1e-2,
            batch_size: 64,
            seed: 17,
            members: 1,
        }
    }
}

struct Layers {
    vars: Vec<(Var, Var)>,
}

impl Layers {
    fn init(sizes: &[usize], rng: &mut StdRng) -> Result<Layers> {
        let mut vars = Vec::new();
        for w in sizes.windows(2) {
            let (inp, out) = (w[0], w[1]);
            let bound = (1.0 / inp as f64).sqrt() as f32;
            let weight: Vec<f32> = (0..inp * out)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let wt = Var::from_tensor(&Tensor::from_vec(weight, (out, inp), &Device::Cpu)?)?;
            let bt = Var::from_tensor(&Tensor::zeros(out, DType::F32, &Device::Cpu)?)?;
            vars.push((wt, bt));
        }
        Ok(Layers { vars })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in self.vars.iter().enumerate() {
            h = h
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
            if i + 1 < self.vars.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    fn all_vars(&self) -> Vec<Var> {
        self.vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    fn to_mlp(&self) -> Result<Mlp> {
        let mut layers = Vec::new();
        for (w, b) in &self.vars {
            let (outputs, inputs) = w.as_tensor().dims2()?;
            layers.push(Dense {
                weight: w.as_tensor().flatten_all()?.to_vec1()?,
                bias: b.as_tensor().to_vec1()?,
                inputs,
                outputs,
            });
        }
        Ok(Mlp { layers })
    }
}

fn sizes(inputs: usize, hidden: usize, outputs: usize) -> Vec<usize> {
    if hidden == 0 {
        vec![inputs, outputs]
    } else {
        vec![inputs, hidden, outputs]
    }
}

fn check(x: &[Vec<f32>], n: usize) -> Result<usize> {
    if x.is_empty() || x.len() != n {
        return Err(ClassifierError::InvalidInput(format!(
            "{} inputs for {n} targets",
            x.len()
        )));
    }
    let d = x[0].len();
    if x.iter().any(|r| r.len() != d) {
        return Err(ClassifierError::InvalidInput(
            "inputs have different widths".into(),
        ));
    }
    Ok(d)
}

/// Targets of a sigmoid output: each in [0, 1].
fn check_unit_targets(targets: &[f32]) -> Result<()> {
    if targets.iter().any(|t| !(0.0..=1.0).contains(t)) {
        return Err(ClassifierError::InvalidInput(
            "regression targets must lie in [0, 1]".into(),
        ));
    }
    Ok(())
}

/// The seeded RNG, freshly initialised layers (`d` inputs, `outputs`
/// outputs) and their AdamW optimiser: how every head's training starts.
fn start(d: usize, outputs: usize, cfg: &TrainConfig) -> Result<(StdRng, Layers, AdamW)> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let layers = Layers::init(&sizes(d, cfg.hidden, outputs), &mut rng)?;
    let opt = AdamW::new(
        layers.all_vars(),
        ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    Ok((rng, layers, opt))
}

/// A minibatch's per-example values as an (n, 1) tensor.
fn column<T: candle_core::WithDType>(values: Vec<T>) -> Result<Tensor> {
    let n = values.len();
    Ok(Tensor::from_vec(values, (n, 1), &Device::Cpu)?)
}

fn rows(x: &[Vec<f32>], idx: &[usize]) -> Result<Tensor> {
    let d = x[0].len();
    let flat: Vec<f32> = idx.iter().flat_map(|&i| x[i].iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (idx.len(), d), &Device::Cpu)?)
}

/// Trains a softmax classifier. `weights` scales each example's loss (use it
/// to balance classes or sources). Returns logits-producing layers: with
/// `cfg.members` > 1, one MLP whose logits are the mean of that many heads,
/// member i trained from seed `cfg.seed + i * MEMBER_SEED_STEP`.
pub fn train_classifier(
    x: &[Vec<f32>],
    labels: &[usize],
    weights: &[f32],
    classes: usize,
    cfg: &TrainConfig,
) -> Result<Mlp> {
    ensemble(cfg, |c| {
        train_one_classifier(x, labels, weights, classes, c)
    })
}

/// `train_one` once per member of `cfg.members` (member i from seed
/// `cfg.seed + i * MEMBER_SEED_STEP`), merged by [`mean_of_logits`]; one
/// member is `train_one(cfg)` itself.
pub fn ensemble(cfg: &TrainConfig, train_one: impl Fn(&TrainConfig) -> Result<Mlp>) -> Result<Mlp> {
    if cfg.members <= 1 {
        return train_one(cfg);
    }
    let members = (0..cfg.members as u64)
        .map(|i| {
            let seed = cfg.seed.wrapping_add(i * MEMBER_SEED_STEP);
            train_one(&TrainConfig {
                seed,
                ..cfg.clone()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    mean_of_logits(&members)
}

/// Seed distance between ensemble members: far from the +1 the difficulty
/// head's seed takes, so no member repeats another head's draws.
pub const MEMBER_SEED_STEP: u64 = 1_000;

/// One MLP whose outputs are the mean of `members`' outputs, exactly up to
/// float rounding: for one hidden layer the hidden units are stacked (a
/// member's units see only its own output weights, scaled by 1/N) and the
/// output biases averaged; linear members are averaged weight by weight.
/// So an ensemble loads, saves and runs as a plain head, N times wider.
pub fn mean_of_logits(members: &[Mlp]) -> Result<Mlp> {
    let first = members
        .first()
        .ok_or_else(|| ClassifierError::InvalidInput("an ensemble needs members".into()))?;
    let shape = |m: &Mlp| {
        m.layers
            .iter()
            .map(|l| (l.inputs, l.outputs))
            .collect::<Vec<_>>()
    };
    if members.iter().any(|m| shape(m) != shape(first)) {
        return Err(ClassifierError::InvalidInput(
            "ensemble members have different shapes".into(),
        ));
    }
    let n = members.len() as f32;
    let mean = |pick: &dyn Fn(&Mlp) -> &Vec<f32>| -> Vec<f32> {
        let mut acc = vec![0.0f32; pick(first).len()];
        for m in members {
            acc.iter_mut().zip(pick(m)).for_each(|(a, v)| *a += v / n);
        }
        acc
    };
    match first.layers.len() {
        1 => Ok(Mlp {
            layers: vec![Dense {
                weight: mean(&|m| &m.layers[0].weight),
                bias: mean(&|m| &m.layers[0].bias),
                ..first.layers[0].clone()
            }],
        }),
        2 => {
            let (h, out) = (first.layers[0].outputs, first.layers[1].outputs);
            let hidden = Dense {
                weight: members
                    .iter()
                    .flat_map(|m| m.layers[0].weight.clone())
                    .collect(),
                bias: members
                    .iter()
                    .flat_map(|m| m.layers[0].bias.clone())
                    .collect(),
                inputs: first.layers[0].inputs,
                outputs: h * members.len(),
            };
            let mut weight = Vec::with_capacity(out * h * members.len());
            for o in 0..out {
                for m in members {
                    weight.extend(m.layers[1].weight[o * h..(o + 1) * h].iter().map(|w| w / n));
                }
            }
            let output = Dense {
                weight,
                bias: mean(&|m| &m.layers[1].bias),
                inputs: h * members.len(),
                outputs: out,
            };
            Ok(Mlp {
                layers: vec![hidden, output],
            })
        }
        k => Err(ClassifierError::InvalidInput(format!(
            "cannot merge an ensemble of {k}-layer heads"
        ))),
    }
}

fn train_one_classifier(
    x: &[Vec<f32>],
    labels: &[usize],
    weights: &[f32],
    classes: usize,
    cfg: &TrainConfig,
) -> Result<Mlp> {
    let d = check(x, labels.len())?;
    if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(ClassifierError::InvalidInput(format!(
            "label index {bad} >= {classes} classes"
        )));
    }
    let (mut rng, layers, mut opt) = start(d, classes, cfg)?;
    let mut order: Vec<usize> = (0..x.len()).collect();
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let xb = rows(x, chunk)?;
            let yb = column(chunk.iter().map(|&i| labels[i] as u32).collect())?;
            let wb = column(chunk.iter().map(|&i| weights[i]).collect())?;
            let logp = candle_nn::ops::log_softmax(&layers.forward(&xb)?, D::Minus1)?;
            let picked = logp.gather(&yb, 1)?;
            let loss = (picked.mul(&wb)?.sum_all()?.neg()?
                / (wb.sum_all()?.to_scalar::<f32>()? as f64).max(1e-9))?;
            opt.backward_step(&loss)?;
        }
    }
    layers.to_mlp()
}

/// Trains a one-output regressor whose sigmoid fits targets in [0, 1]
/// (binary cross-entropy with soft targets).
pub fn train_regressor(
    x: &[Vec<f32>],
    targets: &[f32],
    weights: &[f32],
    cfg: &TrainConfig,
) -> Result<Mlp> {
    let d = check(x, targets.len())?;
    check_unit_targets(targets)?;
    let (mut rng, layers, mut opt) = start(d, 1, cfg)?;
    let mut order: Vec<usize> = (0..x.len()).collect();
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let xb = rows(x, chunk)?;
            let yb = column(chunk.iter().map(|&i| targets[i]).collect())?;
            let wb = column(chunk.iter().map(|&i| weights[i]).collect())?;
            let z = layers.forward(&xb)?;
            let per = soft_bce(&z, &yb)?;
            let loss =
                (per.mul(&wb)?.sum_all()? / (wb.sum_all()?.to_scalar::<f32>()? as f64).max(1e-9))?;
            opt.backward_step(&loss)?;
        }
    }
    layers.to_mlp()
}

/// Binary cross-entropy with logits `z` and soft targets `y`, per example,
/// in the stable form max(z, 0) − z·y + log(1 + exp(−|z|)).
fn soft_bce(z: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok((z.relu()? - z.mul(y)? + softplus_neg_abs(z)?)?)
}

/// log(1 + exp(−|z|)), the stable tail of softplus.
fn softplus_neg_abs(z: &Tensor) -> Result<Tensor> {
    Ok(z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)
}

/// Trains a one-output scorer on a soft-target cross-entropy (as
/// [`train_regressor`]) plus `pair_weight` times a pairwise logistic loss
/// that asks, for two examples of the same group whose targets differ by
/// more than `margin`, that the harder one score higher. Minibatches are
/// drawn from one group at a time, so every pair in a batch is a
/// within-group pair: the loss rewards ordering prompts inside a source,
/// not telling sources apart.
pub fn train_ranker(
    x: &[Vec<f32>],
    targets: &[f32],
    groups: &[usize],
    pair_weight: f64,
    margin: f32,
    cfg: &TrainConfig,
) -> Result<Mlp> {
    let d = check(x, targets.len())?;
    if groups.len() != targets.len() {
        return Err(ClassifierError::InvalidInput(format!(
            "{} groups for {} targets",
            groups.len(),
            targets.len()
        )));
    }
    check_unit_targets(targets)?;
    let (mut rng, layers, mut opt) = start(d, 1, cfg)?;
    let mut by_group: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &g) in groups.iter().enumerate() {
        by_group.entry(g).or_default().push(i);
    }
    for _ in 0..cfg.epochs {
        for chunk in within_group_batches(&mut by_group, cfg.batch_size, &mut rng) {
            let xb = rows(x, &chunk)?;
            let t: Vec<f32> = chunk.iter().map(|&i| targets[i]).collect();
            let z = layers.forward(&xb)?;
            let loss = ranking_loss(&z, &t, pair_weight, margin)?;
            opt.backward_step(&loss)?;
        }
    }
    layers.to_mlp()
}

/// One epoch's minibatches of at most `batch_size` (at least 2) members of
/// one group each: every group's members shuffled and cut, then the
/// batches of all groups shuffled together. Every pair inside a batch is
/// thus a within-group pair (the ranking loss's premise).
pub fn within_group_batches(
    by_group: &mut std::collections::BTreeMap<usize, Vec<usize>>,
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    for members in by_group.values_mut() {
        members.shuffle(rng);
        batches.extend(members.chunks(batch_size.max(2)).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// The difficulty loss of one within-group minibatch: the mean soft-target
/// cross-entropy of logits `z` (n x 1) against `targets` in [0, 1], plus
/// `pair_weight` times a pairwise logistic loss that asks, for every pair
/// whose targets differ by more than `margin`, that the harder one score
/// higher. Shared by the difficulty head ([`train_ranker`]) and the
/// encoder's multi-task fine-tuning, so both optimise the same thing.
pub fn ranking_loss(z: &Tensor, targets: &[f32], pair_weight: f64, margin: f32) -> Result<Tensor> {
    let n = targets.len();
    let yb = column(targets.to_vec())?;
    let mut loss = soft_bce(z, &yb)?.mean_all()?;
    // mask[i][j] = 1 where example i is harder than j by more than the margin.
    let mask: Vec<f32> = (0..n * n)
        .map(|k| f32::from(targets[k / n] - targets[k % n] > margin))
        .collect();
    let pairs: f32 = mask.iter().sum();
    if pair_weight > 0.0 && pairs > 0.0 {
        let mask = Tensor::from_vec(mask, (n, n), &Device::Cpu)?;
        // diff[i][j] = z_i − z_j; loss softplus(−diff) on the masked pairs.
        let diff = z.broadcast_sub(&z.t()?)?;
        let neg = diff.neg()?;
        let pair_loss = (neg.relu()? + softplus_neg_abs(&neg)?)?
            .mul(&mask)?
            .sum_all()?
            .affine(pair_weight / pairs as f64, 0.0)?;
        loss = (loss + pair_loss)?;
    }
    Ok(loss)
}

/// Pairs of difficulty targets closer than this are ties to the pairwise
/// loss (the difficulty head's and the multi-task encoder's).
pub const DIFFICULTY_PAIR_MARGIN: f32 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::{sigmoid, softmax};

    fn blobs() -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(1);
        let centers = [[1.0f32, 0.0], [0.0, 1.0], [-1.0, -1.0]];
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..300 {
            let c = i % 3;
            x.push(vec![
                centers[c][0] + rng.random_range(-0.3..0.3),
                centers[c][1] + rng.random_range(-0.3..0.3),
            ]);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn classifier_learns_separable_blobs_and_is_reproducible() {
        let (x, y) = blobs();
        let w = vec![1.0; x.len()];
        let cfg = TrainConfig {
            hidden: 8,
            epochs: 30,
            learning_rate: 1e-2,
            ..Default::default()
        };
        let mlp = train_classifier(&x, &y, &w, 3, &cfg).unwrap();
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(xi, &yi)| {
                let s = softmax(&mlp.forward(xi));
                s.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
                    == yi
            })
            .count();
        assert!(correct >= 290, "only {correct}/300 right");
        let again = train_classifier(&x, &y, &w, 3, &cfg).unwrap();
        assert_eq!(mlp, again, "same seed must give the same weights");
        let other = train_classifier(&x, &y, &w, 3, &TrainConfig { seed: 99, ..cfg }).unwrap();
        assert_ne!(mlp, other);
    }

    #[test]
    fn an_ensemble_is_one_head_whose_logits_are_its_members_mean() {
        let (x, y) = blobs();
        let w = vec![1.0; x.len()];
        for hidden in [0, 8] {
            let cfg = TrainConfig {
                hidden,
                epochs: 5,
                learning_rate: 1e-2,
                ..Default::default()
            };
            let single = train_classifier(&x, &y, &w, 3, &cfg).unwrap();
            let one = train_classifier(
                &x,
                &y,
                &w,
                3,
                &TrainConfig {
                    members: 1,
                    ..cfg.clone()
                },
            );
            assert_eq!(single, one.unwrap(), "one member is the plain head");
            let members: Vec<Mlp> = (0..3u64)
                .map(|i| {
                    let seed = cfg.seed + i * MEMBER_SEED_STEP;
                    train_classifier(
                        &x,
                        &y,
                        &w,
                        3,
                        &TrainConfig {
                            seed,
                            ..cfg.clone()
                        },
                    )
                    .unwrap()
                })
                .collect();
            let three = TrainConfig {
                members: 3,
                ..cfg.clone()
            };
            let ensemble = train_classifier(&x, &y, &w, 3, &three).unwrap();
            assert_eq!(ensemble, train_classifier(&x, &y, &w, 3, &three).unwrap());
            assert_eq!(ensemble.inputs(), 2);
            assert_eq!(ensemble.outputs(), 3);
            assert_ne!(ensemble, single);
            for xi in x.iter().step_by(7) {
                let got = ensemble.forward(xi);
                for (c, g) in got.iter().enumerate() {
                    let want = members.iter().map(|m| m.forward(xi)[c]).sum::<f32>() / 3.0;
                    assert!((g - want).abs() < 1e-5, "hidden {hidden}: {g} vs {want}");
                }
            }
        }
        let deep = Mlp {
            layers: vec![
                Dense {
                    weight: vec![1.0],
                    bias: vec![0.0],
                    inputs: 1,
                    outputs: 1
                };
                3
            ],
        };
        assert!(mean_of_logits(&[deep.clone(), deep]).is_err());
        assert!(mean_of_logits(&[]).is_err());
    }

    #[test]
    fn regressor_fits_soft_targets() {
        let x: Vec<Vec<f32>> = (0..200).map(|i| vec![i as f32 / 200.0]).collect();
        let t: Vec<f32> = x.iter().map(|v| 0.2 + 0.6 * v[0]).collect();
        let w = vec![1.0; x.len()];
        let cfg = TrainConfig {
            hidden: 0,
            epochs: 300,
            learning_rate: 5e-2,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mlp = train_regressor(&x, &t, &w, &cfg).unwrap();
        for (xi, ti) in x.iter().zip(&t).step_by(20) {
            let p = sigmoid(mlp.forward(xi)[0]);
            assert!((p - ti).abs() < 0.05, "{p} vs {ti}");
        }
    }

    #[test]
    fn bad_training_input_is_an_error() {
        let cfg = TrainConfig::default();
        assert!(train_classifier(&[], &[], &[], 2, &cfg).is_err());
        assert!(train_classifier(&[vec![0.0]], &[5], &[1.0], 2, &cfg).is_err());
        assert!(train_regressor(&[vec![0.0]], &[1.5], &[1.0], &cfg).is_err());
    }

    #[test]
    fn ranker_orders_within_groups_where_pooled_regression_reverses() {
        // Two groups; within each the target rises with x, but group 1's
        // targets are all higher and its x lower, so pooled, x points the
        // wrong way: plain regression orders each group backwards, the
        // within-group pairwise term must order it right.
        let (mut x, mut t, mut g) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..100 {
            let u = i as f32 / 100.0;
            x.push(vec![u]);
            t.push(0.1 + 0.3 * u);
            g.push(0);
            x.push(vec![u - 2.0]);
            t.push(0.6 + 0.3 * u);
            g.push(1);
        }
        let cfg = TrainConfig {
            hidden: 0,
            epochs: 60,
            learning_rate: 5e-2,
            weight_decay: 0.0,
            batch_size: 32,
            ..Default::default()
        };
        let ordered = |mlp: &Mlp| {
            (0..2).all(|grp| {
                let s: Vec<f32> = (0..x.len())
                    .filter(|&i| g[i] == grp)
                    .map(|i| mlp.forward(&x[i])[0])
                    .collect();
                s.windows(2).all(|w| w[1] > w[0])
            })
        };
        let plain = train_ranker(&x, &t, &g, 0.0, 0.01, &cfg).unwrap();
        assert!(
            !ordered(&plain),
            "pooled regression should reverse the groups"
        );
        let ranked = train_ranker(&x, &t, &g, 5.0, 0.01, &cfg).unwrap();
        assert!(ordered(&ranked), "the pairwise term must order each group");
        assert!(train_ranker(&x, &t, &g[1..], 1.0, 0.0, &cfg).is_err());
    }
}
