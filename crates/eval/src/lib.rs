//! Offline routing evaluation: the success model and the baselines
//! (random, cheapest, best single, oracle, knn) on the same held-out rows,
//! measured by AIQ, APGR, CPT and calibration error (with a reliability
//! diagram), and learning curves of those metrics against training rows.
//!
//! Reads the record format of DESIGN.md; any file with `outcomes` works.
//! Also fits the success model on the outcome store's logged traffic
//! ([`store_fit`]).

pub mod charts;
pub mod curve;
pub mod error;
pub mod explore_cost;
pub mod harness;
pub mod load;
pub mod metrics;
pub mod ope;
pub mod predictions;
pub mod report;
pub mod store_fit;

pub use curve::{learning_curve, subsample, CurveConfig, CurveSize, LearningCurve};
pub use error::EvalError;
pub use explore_cost::{exploration_cost, exploration_cost_over_splits, ExplorationCost};
pub use harness::{
    cross_validate, cross_validate_rows, evaluate, evaluate_rows, fit_set, fold_splits, EvalConfig,
    EvalRow, EvalSet, Observed, RouterResult,
};
pub use load::{
    build_sets, load_sets, read_records, HeadOutputs, LoadOptions, Pricing, PromptReader,
};
pub use predictions::{write_predictions, Evaluated, RowPrediction};
pub use report::{summarise, RouterSummary, Summary};
pub use store_fit::{fit_logged, LoggedFit};
