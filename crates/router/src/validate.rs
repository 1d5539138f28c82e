//! Every number in a router artifact must be finite and of a sane size:
//! one NaN or infinity makes every P(success) NaN, and a NaN decision picks
//! the first catalog model and poisons the outcome store.

use crate::error::RouterError;
use crate::success::SuccessModel;

/// Largest magnitude accepted for any parameter. Fitted artifacts stay far
/// below it (standardised features, logit-scale abilities); beyond it the
/// f32 sums in a prediction can overflow to infinity.
pub const MAX_PARAMETER: f32 = 1e6;

/// Refuses non-finite or extreme parameters, and a non-positive
/// `feature_scale` (it divides), naming the field and index.
pub fn check_numbers(m: &SuccessModel) -> Result<(), RouterError> {
    let scalar = |field: &str, v: f32| -> Result<(), RouterError> {
        if v.is_finite() && v.abs() <= MAX_PARAMETER {
            Ok(())
        } else {
            Err(RouterError::Artifact(format!(
                "{field} is {v}: every parameter must be finite and within ±{MAX_PARAMETER:e}"
            )))
        }
    };
    let vector = |field: &str, v: &[f32]| -> Result<(), RouterError> {
        v.iter()
            .enumerate()
            .try_for_each(|(i, &x)| scalar(&format!("{field}[{i}]"), x))
    };
    let matrix = |field: &str, m: &[Vec<f32>]| -> Result<(), RouterError> {
        m.iter()
            .enumerate()
            .try_for_each(|(i, row)| vector(&format!("{field}[{i}]"), row))
    };
    vector("feature_mean", &m.feature_mean)?;
    vector("feature_scale", &m.feature_scale)?;
    if let Some(i) = m.feature_scale.iter().position(|&s| s <= 0.0) {
        return Err(RouterError::Artifact(format!(
            "feature_scale[{i}] is {}: scales must be > 0",
            m.feature_scale[i]
        )));
    }
    scalar("difficulty_bias", m.difficulty_bias)?;
    vector("difficulty_weights", &m.difficulty_weights)?;
    matrix("traits", &m.traits)?;
    matrix("ability", &m.ability)?;
    vector("log_discrimination", &m.log_discrimination)?;
    // a = exp(log a) must itself be finite and non-zero.
    if let Some(i) = m
        .log_discrimination
        .iter()
        .position(|&x| !(-80.0..=80.0).contains(&x))
    {
        return Err(RouterError::Artifact(format!(
            "log_discrimination[{i}] is {}: must be within ±80",
            m.log_discrimination[i]
        )));
    }
    matrix("loadings", &m.loadings)?;
    vector("prior_ability", &m.prior_ability)?;
    for (i, [alpha, beta]) in m.calibration.iter().enumerate() {
        scalar(&format!("calibration[{i}][0]"), *alpha)?;
        scalar(&format!("calibration[{i}][1]"), *beta)?;
    }
    Ok(())
}

/// Refuses a prediction that is not a probability (a router must never
/// emit NaN, whatever the embedding).
pub fn check_probabilities(names: &[&str], p: &[f64]) -> Result<(), RouterError> {
    match p.iter().position(|x| !(0.0..=1.0).contains(x)) {
        None => Ok(()),
        Some(i) => Err(RouterError::Artifact(format!(
            "P(success) of `{}` is {}, not a probability; refusing to decide",
            names.get(i).copied().unwrap_or("?"),
            p[i]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> SuccessModel {
        SuccessModel {
            version: crate::ARTIFACT_VERSION,
            encoder_id: String::new(),
            models: vec!["a".into()],
            tasks: vec!["t".into()],
            dim: 2,
            rank: 0,
            feature_mean: vec![0.0, 0.0],
            feature_scale: vec![1.0, 1.0],
            difficulty_bias: 0.0,
            difficulty_weights: vec![0.1, 0.2],
            traits: vec![],
            ability: vec![vec![1.0]],
            log_discrimination: vec![0.0],
            loadings: vec![vec![]],
            prior_ability: vec![1.0],
            outcome_counts: vec![3],
            calibration: vec![],
            selection: None,
            neighbours: None,
            cost: None,
            target_table: None,
            head_features: None,
        }
    }

    #[test]
    fn a_sane_artifact_passes_and_its_predictions_are_probabilities() {
        let m = model();
        check_numbers(&m).unwrap();
        let p = m.predict(&["a", "unseen"], &[0.3, -0.2], &[1.0]);
        check_probabilities(&["a", "unseen"], &p).unwrap();
    }

    #[test]
    fn non_finite_extreme_or_zero_scale_parameters_are_refused_by_name() {
        #[allow(clippy::type_complexity)]
        let cases: Vec<(fn(&mut SuccessModel), &str)> = vec![
            (|m| m.ability[0][0] = f32::NAN, "ability[0][0] is NaN"),
            (
                |m| m.difficulty_weights[1] = f32::INFINITY,
                "difficulty_weights[1] is inf",
            ),
            (|m| m.difficulty_bias = -1e30, "difficulty_bias"),
            (|m| m.feature_scale[0] = 0.0, "feature_scale[0] is 0"),
            (
                |m| m.log_discrimination[0] = 200.0,
                "log_discrimination[0] is 200",
            ),
            (
                |m| m.calibration = vec![[f32::NAN, 0.0]],
                "calibration[0][0]",
            ),
        ];
        for (break_it, want) in cases {
            let mut m = model();
            break_it(&mut m);
            let e = check_numbers(&m).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
            // And the JSON loader refuses it too (NaN cannot be written as
            // JSON, so the loader is given the largest literal instead).
            let json = m.to_json().replace("null", "1e39");
            assert!(SuccessModel::from_json(&json).is_err(), "{want}");
        }
    }

    #[test]
    fn nan_predictions_are_refused() {
        let e = check_probabilities(&["a", "b"], &[0.5, f64::NAN]).unwrap_err();
        assert!(e.to_string().contains("`b` is NaN"), "{e}");
    }
}
