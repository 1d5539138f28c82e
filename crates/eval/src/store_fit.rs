//! A success model fitted on the outcome store's logged traffic (`pointsman
//! train router --from-store`): each logged decision's embedding and task
//! scores joined to the outcomes reported for it, read through the store's
//! trait ([`OutcomeStore::export`]), so no prompt text and no SQL here.

use std::collections::BTreeSet;

use pointsman_classifier::training::Progress;
use pointsman_router::{fit_with_costs, RowCosts, SuccessModel, TrainConfig, TrainingRow};
use pointsman_store::{DecisionWithOutcomes, OutcomeStore};

use crate::error::EvalError;

/// What [`fit_logged`] fitted.
#[derive(Debug)]
pub struct LoggedFit {
    pub model: SuccessModel,
    /// Logged decisions it was fitted on (one training row each).
    pub rows: usize,
}

/// Fits a success model on the store's logged embeddings, predictions and
/// outcomes (no prompt text needed), with its cost model and target table
/// on each outcome's cost: the one the client reported with it, else the
/// cost the decision expected for that model. Decisions without outcomes
/// are skipped, and so are unclassified ones (a named model's: no
/// embedding); when several outcomes for one model are logged on one
/// decision the last counts. Only decisions logged with the most recent
/// encoder are used. Models are those with outcomes, tasks those the
/// classifier scored. What it skipped goes to `progress` as notes.
///
/// Errors: the store's ([`EvalError::Store`]), no classified decision with
/// an outcome ([`EvalError::Data`]), the fit's ([`EvalError::Router`]).
pub fn fit_logged(
    store: &dyn OutcomeStore,
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<LoggedFit, EvalError> {
    let mut logged = Vec::new();
    let mut unclassified = 0;
    store.export(&mut |d| {
        if d.outcomes.is_empty() {
            return Ok(());
        }
        if d.decision.is_unclassified() {
            unclassified += 1;
        } else {
            logged.push(d);
        }
        Ok(())
    })?;
    if unclassified > 0 {
        progress.note(&format!(
            "skipped {unclassified} decisions with outcomes but no embedding (named models, logged unclassified: docs/GATEWAY.md)"
        ));
    }
    if logged.is_empty() {
        return Err(EvalError::Data(
            "no classified decision has an outcome yet".into(),
        ));
    }
    let encoder_id = logged
        .last()
        .and_then(|d| d.decision.versions.get("encoder").cloned())
        .unwrap_or_default();
    let before = logged.len();
    logged.retain(|d| {
        d.decision
            .versions
            .get("encoder")
            .cloned()
            .unwrap_or_default()
            == encoder_id
    });
    if logged.len() < before {
        progress.note(&format!(
            "skipped {} decisions logged with another encoder",
            before - logged.len()
        ));
    }
    let models: Vec<String> = logged
        .iter()
        .flat_map(|d| d.outcomes.iter().map(|o| o.model.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tasks: Vec<String> = logged
        .iter()
        .flat_map(|d| d.decision.task_scores.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (rows, costs): (Vec<TrainingRow>, Vec<RowCosts>) = logged
        .iter()
        .map(|d| training_row(d, &models, &tasks))
        .unzip();
    let model = fit_with_costs(models, tasks, &rows, &costs, cfg, &encoder_id)?;
    Ok(LoggedFit {
        model,
        rows: rows.len(),
    })
}

/// One decision as a training row and its outcomes' costs, in the order
/// of `models` and `tasks` (every outcome's model is in `models`).
fn training_row(
    d: &DecisionWithOutcomes,
    models: &[String],
    tasks: &[String],
) -> (TrainingRow, RowCosts) {
    let mut outcomes: Vec<(usize, f32)> = Vec::new();
    let mut costs: RowCosts = Vec::new();
    for o in &d.outcomes {
        let m = models
            .iter()
            .position(|n| n == &o.model)
            .expect("models holds every outcome's model");
        outcomes.retain(|(i, _)| *i != m);
        outcomes.push((m, o.score as f32));
        // The cost the client reported with the outcome; else what the
        // decision expected the model to cost.
        let cost = o.cost_usd.or_else(|| {
            d.decision
                .candidates
                .iter()
                .find(|c| c.model == o.model)
                .map(|c| c.expected_cost_usd)
        });
        costs.retain(|(i, _)| *i != m);
        if let Some(c) = cost.filter(|c| c.is_finite() && *c >= 0.0) {
            costs.push((m, c));
        }
    }
    let row = TrainingRow {
        embedding: d.decision.embedding.clone(),
        task_scores: tasks
            .iter()
            .map(|t| d.decision.task_scores.get(t).copied().unwrap_or(0.0))
            .collect(),
        outcomes,
        head_outputs: Vec::new(),
    };
    (row, costs)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use pointsman_store::{LoggedCandidate, LoggedDecision, LoggedOutcome, SqliteStore};

    use super::*;

    /// Keeps the notes.
    #[derive(Default)]
    struct Notes(RefCell<Vec<String>>);

    impl Progress for Notes {
        fn begin(&self, _: &'static str, _: usize) {}
        fn update(&self, _: usize, _: usize) {}
        fn end(&self) {}
        fn note(&self, line: &str) {
            self.0.borrow_mut().push(line.to_string());
        }
    }

    fn decision(i: usize, encoder: &str, classified: bool) -> LoggedDecision {
        let embedding = if classified {
            (0..8)
                .map(|k| ((i * 7 + k * 3) % 11) as f32 / 11.0)
                .collect()
        } else {
            Vec::new()
        };
        LoggedDecision {
            id: format!("d{i}"),
            time_ms: i as i64,
            embedding,
            task: "code".into(),
            task_scores: BTreeMap::from([("code".into(), 0.75), ("math".into(), 0.25)]),
            difficulty: 0.5,
            model: "small".into(),
            candidates: vec![LoggedCandidate {
                model: "small".into(),
                p_success: 0.6,
                expected_cost_usd: 0.001,
            }],
            versions: BTreeMap::from([("encoder".into(), encoder.into())]),
            tenant: None,
            prompt: None,
            propensity: 1.0,
            explored: false,
            shadow: None,
        }
    }

    fn outcome(i: usize, model: &str, score: f64) -> LoggedOutcome {
        LoggedOutcome {
            decision_id: format!("d{i}"),
            model: model.into(),
            score,
            cost_usd: None,
            input_tokens: None,
            output_tokens: None,
            latency_ms: None,
            time_ms: i as i64,
        }
    }

    fn quick() -> TrainConfig {
        TrainConfig {
            epochs: 5,
            selection: None,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn fits_the_latest_encoders_classified_decisions_with_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        // d0: an older encoder; d1: a named model's (unclassified); d2: no
        // outcome; d3..d12: fitted.
        let logged = [
            decision(0, "enc-old", true),
            decision(1, "enc-new", false),
            decision(2, "enc-new", true),
        ]
        .into_iter()
        .chain((3..13).map(|i| decision(i, "enc-new", true)));
        for d in logged {
            store.append_decision(&d).unwrap();
        }
        store.append_outcome(&outcome(0, "old-only", 1.0)).unwrap();
        store.append_outcome(&outcome(1, "small", 1.0)).unwrap();
        for i in 3..13 {
            store
                .append_outcome(&outcome(i, "small", (i % 2) as f64))
                .unwrap();
            if i % 3 == 0 {
                store.append_outcome(&outcome(i, "large", 1.0)).unwrap();
            }
        }
        let notes = Notes::default();
        let fit = fit_logged(&store, &quick(), &notes).unwrap();
        assert_eq!(fit.rows, 10);
        assert_eq!(fit.model.models, ["large", "small"]);
        assert_eq!(fit.model.tasks, ["code", "math"]);
        assert_eq!(fit.model.encoder_id, "enc-new");
        assert_eq!(fit.model.outcome_counts, [4, 10]);
        assert_eq!(
            *notes.0.borrow(),
            [
                "skipped 1 decisions with outcomes but no embedding (named models, logged unclassified: docs/GATEWAY.md)",
                "skipped 1 decisions logged with another encoder",
            ]
        );
    }

    #[test]
    fn a_store_without_classified_outcomes_is_a_data_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.append_decision(&decision(0, "enc", true)).unwrap();
        store.append_decision(&decision(1, "enc", false)).unwrap();
        store.append_outcome(&outcome(1, "small", 1.0)).unwrap();
        let err = fit_logged(&store, &quick(), &Notes::default()).unwrap_err();
        assert!(
            matches!(&err, EvalError::Data(m) if m == "no classified decision has an outcome yet"),
            "{err}"
        );
    }
}
