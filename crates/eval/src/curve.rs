//! Learning curves: how a router's AIQ (APGR for two models) grows with the
//! number of logged outcomes it was trained on.
//!
//! Each split's training rows are subsampled to each size (a seeded draw
//! without replacement, one per seed); the routers are fitted on the
//! subsample and scored on the split's full test rows, tallies pooled over
//! splits as in cross-validation, and the metric averaged over seeds. The
//! zero router (hull of the single models on the test rows) does not depend
//! on training, so it is the line a router must clear to pay.

use std::fmt;
use std::str::FromStr;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use crate::error::EvalError;
use crate::harness::{evaluate, EvalConfig, EvalSet, RouterResult};
use crate::report::summarise;

/// One training-set size on the curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurveSize {
    /// At most this many training rows per split.
    Rows(usize),
    /// Every training row of the split.
    All,
}

impl FromStr for CurveSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(CurveSize::All);
        }
        match s.parse::<usize>() {
            Ok(n) if n >= 2 => Ok(CurveSize::Rows(n)),
            _ => Err(format!(
                "learning-curve size `{s}`: expected a number of rows >= 2 or `all`"
            )),
        }
    }
}

impl fmt::Display for CurveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurveSize::Rows(n) => write!(f, "{n}"),
            CurveSize::All => f.write_str("all"),
        }
    }
}

/// What to draw: the sizes, and how many seeded subsamples per size.
#[derive(Debug, Clone)]
pub struct CurveConfig {
    pub sizes: Vec<CurveSize>,
    /// Subsamples per size (a size that keeps every row is fitted once).
    pub seeds: usize,
}

/// A router's metric at one size: one value per seed.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRouter {
    pub name: String,
    /// AIQ (or APGR) per seed; None where the metric is undefined.
    pub values: Vec<Option<f64>>,
    /// ECE of P(success) per seed, for routers that predict it.
    pub ece: Vec<Option<f64>>,
}

impl CurveRouter {
    /// Mean over the seeds where the metric is defined.
    pub fn mean(&self) -> Option<f64> {
        mean(&self.values)
    }

    /// (min, max) over seeds.
    pub fn range(&self) -> Option<(f64, f64)> {
        let v: Vec<f64> = self.values.iter().flatten().copied().collect();
        (!v.is_empty()).then(|| {
            v.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                })
        })
    }

    pub fn mean_ece(&self) -> Option<f64> {
        mean(&self.ece)
    }
}

fn mean(v: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = v.iter().flatten().copied().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// All routers at one size.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub size: CurveSize,
    /// Training rows per split actually used, averaged over splits.
    pub train_rows: f64,
    pub routers: Vec<CurveRouter>,
}

impl CurvePoint {
    pub fn router(&self, name: &str) -> Option<&CurveRouter> {
        self.routers.iter().find(|r| r.name == name)
    }
}

/// The whole curve.
#[derive(Debug, Clone, PartialEq)]
pub struct LearningCurve {
    /// "AIQ", or "APGR" for two-model catalogs.
    pub metric: &'static str,
    pub models: Vec<String>,
    /// Test rows pooled over splits (the same at every size).
    pub test_rows: usize,
    pub splits: usize,
    pub seeds: usize,
    pub points: Vec<CurvePoint>,
}

/// The rows of `set` a seeded draw without replacement keeps: `n` of them
/// (all if `n` is at least the set's size), in their original order.
pub fn subsample(set: &EvalSet, size: CurveSize, seed: u64) -> EvalSet {
    let n = match size {
        CurveSize::Rows(n) if n < set.rows.len() => n,
        _ => return set.clone(),
    };
    let mut order: Vec<usize> = (0..set.rows.len()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    // Partial Fisher-Yates: the first n slots are a uniform draw.
    let len = order.len();
    for i in 0..n {
        order.swap(i, rng.random_range(i..len));
    }
    let mut keep = order[..n].to_vec();
    keep.sort_unstable();
    EvalSet {
        rows: keep.into_iter().map(|i| set.rows[i].clone()).collect(),
        models: set.models.clone(),
        tasks: set.tasks.clone(),
        encoder_id: set.encoder_id.clone(),
        head_features: set.head_features.clone(),
    }
}

/// Fits and scores every router at every size of `curve` on each
/// (train, test) split, and averages the pooled metric over seeds.
pub fn learning_curve(
    splits: &[(EvalSet, EvalSet)],
    curve: &CurveConfig,
    cfg: &EvalConfig,
) -> Result<LearningCurve, EvalError> {
    let first = splits
        .first()
        .ok_or_else(|| EvalError::Data("learning curve: no train/test split".into()))?;
    if curve.sizes.is_empty() || curve.seeds == 0 {
        return Err(EvalError::Data(
            "learning curve: give at least one size and one seed".into(),
        ));
    }
    let models = first.0.models.clone();
    let metric = if models.len() == 2 { "APGR" } else { "AIQ" };
    let mut points = Vec::new();
    let mut test_rows = 0;
    for &size in &curve.sizes {
        let keeps_all = splits.iter().all(|(train, _)| match size {
            CurveSize::Rows(n) => n >= train.rows.len(),
            CurveSize::All => true,
        });
        let seeds = if keeps_all { 1 } else { curve.seeds };
        let mut routers: Vec<CurveRouter> = Vec::new();
        let mut train_rows = 0.0;
        for s in 0..seeds {
            let mut pooled: Option<Vec<RouterResult>> = None;
            let mut used = 0;
            train_rows = 0.0;
            for (f, (train, test)) in splits.iter().enumerate() {
                // Distinct draws per seed and split, reproducible from cfg.seed.
                let draw_seed = cfg.seed ^ (0x5EED_0000 + 1000 * s as u64 + f as u64);
                let sub = subsample(train, size, draw_seed);
                train_rows += sub.rows.len() as f64 / splits.len() as f64;
                let (res, n) = evaluate(&sub, test, cfg)?;
                used += n;
                match &mut pooled {
                    None => pooled = Some(res),
                    Some(p) => p.iter_mut().zip(&res).for_each(|(a, b)| a.merge(b)),
                }
            }
            test_rows = used;
            let summary = summarise(&pooled.expect("at least one split"), &models, used);
            for r in &summary.routers {
                let value = if metric == "APGR" { r.apgr } else { r.aiq };
                match routers.iter_mut().find(|x| x.name == r.name) {
                    Some(x) => {
                        x.values.push(value);
                        x.ece.push(r.ece);
                    }
                    None => routers.push(CurveRouter {
                        name: r.name.clone(),
                        values: vec![value],
                        ece: vec![r.ece],
                    }),
                }
            }
        }
        points.push(CurvePoint {
            size,
            train_rows,
            routers,
        });
    }
    Ok(LearningCurve {
        metric,
        models,
        test_rows,
        splits: splits.len(),
        seeds: curve.seeds,
        points,
    })
}

/// Routers shown on the curve: the learned ones and the references, not
/// the single-point baselines whose value does not depend on training.
pub(crate) fn shown(name: &str) -> bool {
    !matches!(
        name,
        "random" | "cheapest" | "best_single" | "oracle" | "pointsman_wtp_knn_cost"
    )
}

impl LearningCurve {
    /// The router names in the order of the first point.
    pub fn router_names(&self) -> Vec<String> {
        self.points
            .first()
            .map(|p| p.routers.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The smallest size from which `router`'s mean metric is at least
    /// the zero router's at that size and every larger one (None: never).
    pub fn pays_from(&self, router: &str) -> Option<CurveSize> {
        let mut from = None;
        for p in &self.points {
            let (r, z) = (
                p.router(router).and_then(CurveRouter::mean),
                p.router("zero").and_then(CurveRouter::mean),
            );
            match (r, z) {
                (Some(r), Some(z)) if r >= z => {
                    from.get_or_insert(p.size);
                }
                _ => from = None,
            }
        }
        from
    }

    /// `{"metric", "models", "test_rows", "splits", "seeds", "points": [{"size",
    /// "train_rows", "routers": {name: {"mean", "values", "ece"}}}], "pays_from"}`.
    pub fn to_json(&self) -> Value {
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|p| {
                let routers: serde_json::Map<String, Value> = p
                    .routers
                    .iter()
                    .map(|r| {
                        (
                            r.name.clone(),
                            json!({"mean": r.mean(), "values": r.values, "ece": r.mean_ece()}),
                        )
                    })
                    .collect();
                json!({"size": p.size.to_string(), "train_rows": p.train_rows, "routers": routers})
            })
            .collect();
        let pays: serde_json::Map<String, Value> = self
            .router_names()
            .into_iter()
            .filter(|n| n != "zero" && shown(n))
            .map(|n| {
                let v = self.pays_from(&n).map(|s| s.to_string());
                (n, json!(v))
            })
            .collect();
        json!({
            "metric": self.metric, "models": self.models, "test_rows": self.test_rows,
            "splits": self.splits, "seeds": self.seeds, "points": points, "pays_from": pays,
        })
    }

    /// The routers the table and the markdown show.
    fn shown_router_names(&self) -> Vec<String> {
        self.router_names()
            .into_iter()
            .filter(|n| shown(n))
            .collect()
    }

    /// A text table: one line per size, one column per router (mean over seeds).
    pub fn table(&self) -> String {
        let names = self.shown_router_names();
        let mut s = format!(
            "learning curve: {} (mean of {} seeds), {} test rows over {} split(s)\n{:>6} {:>9}",
            self.metric, self.seeds, self.test_rows, self.splits, "size", "train"
        );
        for n in &names {
            s += &format!(" {:>14}", n);
        }
        s += &format!(" {:>10}\n", "ECE");
        for p in &self.points {
            s += &format!("{:>6} {:>9.0}", p.size.to_string(), p.train_rows);
            for n in &names {
                let v = p.router(n).and_then(CurveRouter::mean);
                s += &format!(" {:>14}", v.map_or("-".into(), |v| format!("{v:.4}")));
            }
            let ece = p.router("pointsman").and_then(CurveRouter::mean_ece);
            s += &format!(" {:>10}\n", ece.map_or("-".into(), |v| format!("{v:.4}")));
        }
        s
    }

    /// Markdown: the chart, the table (mean and seed range) and where each
    /// router starts to pay.
    pub fn markdown(&self) -> String {
        let names = self.shown_router_names();
        let mut s = format!(
            "# Learning curve\n\n{} of each router against the number of training rows \
             (per split; mean of {} seeded subsamples, range in brackets; a size that keeps \
             every row is fitted once). {} test rows pooled over {} split(s); models: {}.\n\n\
             ![learning curve](learning_curve.svg)\n\n| size | training rows |",
            self.metric,
            self.seeds,
            self.test_rows,
            self.splits,
            self.models.join(", ")
        );
        for n in &names {
            s += &format!(" {n} |");
        }
        s += " ECE (pointsman) |\n|---|---|";
        s += &"---|".repeat(names.len() + 1);
        s += "\n";
        for p in &self.points {
            s += &format!("| {} | {:.0} |", p.size, p.train_rows);
            for n in &names {
                let r = p.router(n);
                let cell = match (
                    r.and_then(CurveRouter::mean),
                    r.and_then(CurveRouter::range),
                ) {
                    (Some(m), Some((lo, hi))) if hi - lo > 5e-5 => {
                        format!("{m:.4} [{lo:.4}, {hi:.4}]")
                    }
                    (Some(m), _) => format!("{m:.4}"),
                    _ => "–".into(),
                };
                s += &format!(" {cell} |");
            }
            let ece = p.router("pointsman").and_then(CurveRouter::mean_ece);
            s += &format!(" {} |\n", ece.map_or("–".into(), |v| format!("{v:.4}")));
        }
        s += "\nAt or above the zero router from this size on (every larger size included):\n\n";
        for n in names.iter().filter(|n| *n != "zero") {
            s += &format!(
                "- {n}: {}\n",
                self.pays_from(n)
                    .map_or("never".to_string(), |x| format!("{x} rows"))
            );
        }
        s
    }

    /// Writes `learning_curve.md`, `learning_curve.json` and `learning_curve.svg` into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), EvalError> {
        let io = |source| EvalError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join("learning_curve.md"), self.markdown()).map_err(io)?;
        std::fs::write(
            dir.join("learning_curve.json"),
            serde_json::to_string_pretty(&self.to_json()).expect("json"),
        )
        .map_err(io)?;
        crate::charts::learning_curve_svg(self, &dir.join("learning_curve.svg"))
            .map_err(|e| EvalError::Data(format!("learning-curve chart: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("all".parse::<CurveSize>(), Ok(CurveSize::All));
        assert_eq!(" 50".parse::<CurveSize>(), Ok(CurveSize::Rows(50)));
        assert!("0".parse::<CurveSize>().is_err());
        assert!("fifty".parse::<CurveSize>().is_err());
    }
}
