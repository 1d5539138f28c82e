//! The older opt-in validation (`eval --l2-grid`, `--calibrate`): one
//! seeded held-out share of the training rows picks the ridge and fits a
//! per-model Platt scaling. The default path is [`crate::select`], which
//! cross-validates over every training row.

use crate::error::RouterError;
use crate::success::{sigmoid, SuccessModel};
use crate::train::{fit_fixed, SplitMix, TrainConfig, TrainingRow};

/// How [`fit_validated`] picks the ridge and calibrates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Validation {
    /// Ridge values (`l2_prompt`) to try; the one with the lowest held-out
    /// cross-entropy is used for the final fit.
    pub l2_grid: Vec<f32>,
    /// Share of the rows held out for the choice, in (0, 1).
    pub holdout: f64,
    /// Also fit a per-model Platt calibration on the held-out predictions.
    pub calibrate: bool,
}

/// The result of [`fit_validated`].
#[derive(Debug, Clone)]
pub struct Validated {
    /// Refitted on every row with the chosen ridge (and calibrated if asked).
    pub model: SuccessModel,
    /// The chosen `l2_prompt`.
    pub l2_prompt: f32,
    /// Mean held-out cross-entropy per ridge tried, in grid order.
    pub holdout_loss: Vec<(f32, f64)>,
}

/// Fits on a seeded `holdout` share of `rows` held out, once per ridge in
/// the grid, keeps the ridge with the lowest held-out cross-entropy, and
/// refits on all rows with it. With `calibrate`, each model's P is then
/// mapped through σ(α · logit(P) + β), (α, β) fitted on that model's
/// held-out outcomes under a unit Gaussian prior around (1, 0) (so a model
/// with few held-out outcomes stays near the identity). Uses only `rows`:
/// no test data is involved. Falls back to a plain [`fit`] (with `cfg`'s
/// ridge) when either part of the split would be empty.
pub fn fit_validated(
    models: Vec<String>,
    tasks: Vec<String>,
    rows: &[TrainingRow],
    cfg: &TrainConfig,
    validation: &Validation,
    encoder_id: &str,
) -> Result<Validated, RouterError> {
    let mut rng = SplitMix(cfg.seed ^ 0x005E_ED0F_C0DE);
    let held: Vec<bool> = rows
        .iter()
        .map(|_| (rng.next_f32() as f64) < validation.holdout)
        .collect();
    let (fit_rows, held_rows): (Vec<TrainingRow>, Vec<TrainingRow>) = {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (r, &h) in rows.iter().zip(&held) {
            if h {
                b.push(r.clone())
            } else {
                a.push(r.clone())
            }
        }
        (a, b)
    };
    let has_outcomes = |rs: &[TrainingRow]| rs.iter().any(|r| !r.outcomes.is_empty());
    let grid: Vec<f32> = if validation.l2_grid.is_empty() {
        vec![cfg.l2_prompt]
    } else {
        validation.l2_grid.clone()
    };
    if !has_outcomes(&fit_rows) || !has_outcomes(&held_rows) {
        let model = fit_fixed(models, tasks, rows, cfg, encoder_id)?;
        return Ok(Validated {
            model,
            l2_prompt: cfg.l2_prompt,
            holdout_loss: Vec::new(),
        });
    }
    let names: Vec<&str> = models.iter().map(String::as_str).collect();
    // (held-out loss, ridge, held-out (P, score) pairs per model)
    type Best = (f64, f32, Vec<Vec<(f64, f32)>>);
    let mut best: Option<Best> = None;
    let mut losses = Vec::new();
    for &l2 in &grid {
        let c = TrainConfig {
            l2_prompt: l2,
            ..cfg.clone()
        };
        let m = fit_fixed(models.clone(), tasks.clone(), &fit_rows, &c, encoder_id)?;
        // Held-out (P, score) pairs per model.
        let mut pairs = vec![Vec::new(); models.len()];
        let (mut loss, mut count) = (0f64, 0usize);
        for r in &held_rows {
            let p = m.predict(&names, &r.embedding, &r.task_scores);
            for &(mi, y) in &r.outcomes {
                let q = p[mi].clamp(1e-6, 1.0 - 1e-6);
                loss -= y as f64 * q.ln() + (1.0 - y as f64) * (1.0 - q).ln();
                count += 1;
                pairs[mi].push((p[mi], y));
            }
        }
        let loss = loss / count.max(1) as f64;
        losses.push((l2, loss));
        if best.as_ref().is_none_or(|b| loss < b.0) {
            best = Some((loss, l2, pairs));
        }
    }
    let (_, l2, pairs) = best.expect("grid is not empty");
    let c = TrainConfig {
        l2_prompt: l2,
        ..cfg.clone()
    };
    let mut model = fit_fixed(models, tasks, rows, &c, encoder_id)?;
    if validation.calibrate {
        model.calibration = pairs.iter().map(|p| fit_platt(p)).collect();
    }
    Ok(Validated {
        model,
        l2_prompt: l2,
        holdout_loss: losses,
    })
}

/// (α, β) minimising the cross-entropy of σ(α · logit(p) + β) against the
/// scores, plus ½((α − 1)² + β²): Newton's method on the 2-d problem.
pub fn fit_platt(pairs: &[(f64, f32)]) -> [f32; 2] {
    let (mut a, mut b) = (1f64, 0f64);
    for _ in 0..50 {
        // Gradient and Hessian of the penalised loss.
        let (mut ga, mut gb) = (a - 1.0, b);
        let (mut haa, mut hab, mut hbb) = (1.0, 0.0, 1.0);
        for &(p, y) in pairs {
            let p = p.clamp(1e-6, 1.0 - 1e-6);
            let l = (p / (1.0 - p)).ln();
            let q = sigmoid(a * l + b);
            let r = q - y as f64;
            let w = q * (1.0 - q);
            ga += r * l;
            gb += r;
            haa += w * l * l;
            hab += w * l;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-9 {
            break;
        }
    }
    [a as f32, b as f32]
}
