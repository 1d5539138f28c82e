//! The server's exploration settings (`serve --explore`,
//! `--explore-min-outcomes`) and the per-model outcome counts the
//! cold-start share reads. The draw itself is pure and lives in the router
//! crate (`pointsman_router::explore`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pointsman_router::SuccessModel;

/// How decisions explore. The default explores nothing.
#[derive(Debug, Clone, Default)]
pub struct Exploration {
    /// Share of decisions drawn away from the policy's choice, in [0, 1).
    pub rate: f64,
    /// Cold start: a model with fewer outcomes than this gets a guaranteed
    /// share of the exploring draws (0 = off). A model's outcomes are the
    /// ones the loaded router artifact was fitted on (its
    /// `outcome_counts`) plus those reported to this process since it
    /// started (ReportOutcome, /v1/feedback); a restart forgets the latter
    /// until the next `train router --from-store`.
    pub min_outcomes: u64,
    /// Outcomes reported since start, per model.
    pub reported: Arc<ReportedOutcomes>,
}

/// Outcomes reported to this process, per model name.
#[derive(Debug, Default)]
pub struct ReportedOutcomes(Mutex<HashMap<String, u64>>);

impl ReportedOutcomes {
    /// Counts one reported outcome for `model`.
    pub fn add(&self, model: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(model.to_string()).or_insert(0) += 1;
    }

    /// Outcomes reported for `model` since start.
    pub fn get(&self, model: &str) -> u64 {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(model).copied().unwrap_or(0)
    }
}

impl Exploration {
    /// Whether `model` is cold under `success`'s training counts and the
    /// outcomes reported since start (always false with the floor off).
    pub fn is_cold(&self, success: &SuccessModel, model: &str) -> bool {
        if self.min_outcomes == 0 {
            return false;
        }
        let fitted = success
            .model_index(model)
            .and_then(|i| success.outcome_counts.get(i))
            .copied()
            .unwrap_or(0) as u64;
        fitted + self.reported.get(model) < self.min_outcomes
    }
}
