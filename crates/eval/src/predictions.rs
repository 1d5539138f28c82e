//! What the trained router predicted for each held-out row, beside what
//! happened (`eval --predictions FILE`).
//!
//! The summary tables say how a router did over a whole set; tuning it on
//! your own data also needs the rows: which prompts it thought hard, where
//! its P(success) was far from the outcome, what it expected each model
//! to cost. One JSON object per line, models in the set's order:
//!
//! ```text
//! {"id": "...", "p": {"model": P, ...}, "expected_cost_usd": {...},
//!  "score": {...}, "cost_usd": {...}}
//! ```
//!
//! `p` is the calibrated P(success) the policies read and
//! `expected_cost_usd` the per-prompt cost estimate they weigh it against
//! (each model's mean training cost times the artifact's per-prompt cost
//! factor); `score` and `cost_usd` are the row's observed outcomes.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::EvalError;
use crate::harness::{Observed, RouterResult};

/// One held-out row: the trained router's estimates and the outcomes,
/// each aligned with the set's models.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPrediction {
    pub id: String,
    pub p: Vec<f64>,
    pub expected_cost_usd: Vec<f64>,
    pub score: Vec<f64>,
    pub cost_usd: Vec<f64>,
}

impl RowPrediction {
    pub(crate) fn new(id: &str, p: &[f64], cost: &[f64], observed: &[Observed]) -> RowPrediction {
        RowPrediction {
            id: id.to_string(),
            p: p.to_vec(),
            expected_cost_usd: cost.to_vec(),
            score: observed.iter().map(|o| o.score).collect(),
            cost_usd: observed.iter().map(|o| o.cost_usd).collect(),
        }
    }

    /// The row as one JSON object, values keyed by model name.
    pub fn to_json(&self, models: &[String]) -> Value {
        let by_model = |v: &[f64]| -> Value {
            Value::Object(
                models
                    .iter()
                    .zip(v)
                    .map(|(m, x)| (m.clone(), json!(x)))
                    .collect::<Map<_, _>>(),
            )
        };
        json!({
            "id": self.id,
            "p": by_model(&self.p),
            "expected_cost_usd": by_model(&self.expected_cost_usd),
            "score": by_model(&self.score),
            "cost_usd": by_model(&self.cost_usd),
        })
    }
}

/// An evaluation's results and the rows behind them.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Every router's tallies (see [`crate::evaluate`]).
    pub results: Vec<RouterResult>,
    /// Test rows used (those with every model's outcome).
    pub rows: usize,
    /// The trained router's estimates for each of those rows.
    pub predictions: Vec<RowPrediction>,
}

/// `predictions` as JSON lines at `path` (created or replaced).
pub fn write_predictions(
    path: &Path,
    models: &[String],
    predictions: &[RowPrediction],
) -> Result<(), EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for p in predictions {
        writeln!(out, "{}", p.to_json(models)).map_err(io)?;
    }
    out.flush().map_err(io)
}
