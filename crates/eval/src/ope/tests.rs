//! Off-policy evaluation on a simulated world whose true success
//! probabilities are known, logged through the router's own exploration.

use super::*;
use pointsman_router::explore;
use pointsman_router::{fit_fixed, Candidate, Decision, TrainConfig, TrainingRow};

const COST: [f64; 3] = [0.001, 0.01, 0.05];
const NAMES: [&str; 3] = ["cheap", "mid", "big"];

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The world's P(success) of model `m` on embedding `x`.
fn truth(x: &[f32], m: usize) -> f64 {
    let (a, b) = [(-0.5, 1.5), (0.5, 1.0), (1.5, 0.5)][m];
    sigmoid(a + b * x[0] as f64 - 0.3 * x[1] as f64)
}

fn prompt(rng: &mut StdRng) -> Vec<f32> {
    (0..4).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn artifact(seed: u64) -> SuccessModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows: Vec<TrainingRow> = (0..600)
        .map(|_| {
            let x = prompt(&mut rng);
            let outcomes = (0..3)
                .map(|m| (m, (rng.random::<f64>() < truth(&x, m)) as u8 as f32))
                .collect();
            TrainingRow {
                embedding: x,
                task_scores: vec![1.0],
                outcomes,
                head_outputs: Vec::new(),
            }
        })
        .collect();
    fit_fixed(
        NAMES.iter().map(|s| s.to_string()).collect(),
        vec!["t".into()],
        &rows,
        &TrainConfig::default(),
        "test",
    )
    .unwrap()
}

/// Logs `n` decisions of `model` under `logging` at exploration `rate`,
/// with outcomes drawn from the truth; returns the rows and the prompts.
fn log(model: &SuccessModel, logging: Policy, rate: f64, n: usize, seed: u64) -> Vec<LoggedRow> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let x = prompt(&mut rng);
            let p = model.predict(&NAMES, &x, &[1.0]);
            let g = choose(&p, &COST, &[true; 3], logging).unwrap();
            let mut order = vec![g];
            order.extend((0..3).filter(|&m| m != g));
            let decision = Decision {
                model: NAMES[g].into(),
                p_success: p[g],
                expected_cost_usd: COST[g],
                fallbacks: vec![],
                candidates: order
                    .iter()
                    .map(|&m| Candidate {
                        model: NAMES[m].into(),
                        p_success: p[m],
                        expected_cost_usd: COST[m],
                    })
                    .collect(),
                excluded: vec![],
                reason: String::new(),
                policy: logging,
            };
            let e = explore::draw(&decision, rate, &|_| false, rng.random());
            let m = order[e.index];
            LoggedRow {
                id: format!("d{i}"),
                embedding: x.clone(),
                task_scores: BTreeMap::from([("t".into(), 1.0)]),
                candidates: order
                    .iter()
                    .map(|&m| LoggedChoice {
                        model: NAMES[m].into(),
                        expected_cost_usd: COST[m],
                    })
                    .collect(),
                chosen: e.index,
                propensity: e.propensity,
                score: (rng.random::<f64>() < truth(&x, m)) as u8 as f64,
                cost_usd: COST[m],
            }
        })
        .collect()
}

/// The candidate's true mean quality on the logged prompts.
fn true_value(report: &OpeReport, rows: &[LoggedRow]) -> f64 {
    rows.iter()
        .zip(&report.choices)
        .map(|(r, c)| truth(&r.embedding, NAMES.iter().position(|n| n == c).unwrap()))
        .sum::<f64>()
        / rows.len() as f64
}

/// Over 40 seeds of the logging (exploration draws and outcomes), the
/// DR interval of a different policy contains its true value on at least
/// 34 (85%); a nominal 95% interval misses on about 2 of 40.
#[test]
fn the_dr_interval_covers_a_candidates_true_value() {
    let model = artifact(1);
    let logging = Policy::Target { target: 0.9 };
    let candidate = Policy::Target { target: 0.7 };
    let cfg = OpeConfig {
        policy: candidate,
        bootstrap: 300,
        ..OpeConfig::default()
    };
    let seeds = 40;
    let (mut dr, mut snips) = (0, 0);
    let mut disagree = 0;
    for seed in 0..seeds {
        let rows = log(&model, logging, 0.1, 1500, 100 + seed);
        let report = evaluate(&model, &rows, &cfg).unwrap();
        let v = true_value(&report, &rows);
        dr += report.quality.dr.contains(v) as usize;
        snips += report.quality.snips.contains(v) as usize;
        disagree += report.rows - report.agree;
        // The cost has no noise here: DR's direct part is exact.
        let cost: f64 = report
            .choices
            .iter()
            .map(|c| COST[NAMES.iter().position(|n| n == c).unwrap()])
            .sum::<f64>()
            / rows.len() as f64;
        assert!((report.cost_usd.dr.value - cost).abs() < 1e-12);
    }
    eprintln!("coverage over {seeds} seeds: DR {dr}, SNIPS {snips}");
    assert!(disagree > seeds as usize * 100, "the policies differ");
    assert!(dr >= 34, "DR covered {dr} of {seeds}");
}

#[test]
fn logs_without_exploration_cannot_support_another_policy() {
    let model = artifact(2);
    let rows = log(&model, Policy::Target { target: 0.9 }, 0.0, 300, 5);
    assert!(rows.iter().all(|r| r.propensity == 1.0));
    let cfg = OpeConfig {
        policy: Policy::Target { target: 0.5 },
        ..OpeConfig::default()
    };
    let e = evaluate(&model, &rows, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("--explore"), "{e}");
    // The logging policy itself is fine: it agrees everywhere.
    let same = OpeConfig {
        policy: Policy::Target { target: 0.9 },
        ..OpeConfig::default()
    };
    let r = evaluate(&model, &rows, &same).unwrap();
    assert_eq!(r.agree, rows.len());
    assert!((r.quality.ips.value - r.quality.live.value).abs() < 1e-12);
}

#[test]
fn too_few_rows_or_too_small_an_ess_is_refused() {
    let model = artifact(3);
    let rows = log(&model, Policy::Target { target: 0.9 }, 0.1, 20, 6);
    let e = evaluate(&model, &rows, &OpeConfig::default()).unwrap_err();
    assert!(e.to_string().contains("fewer than the 50"), "{e}");
    // A willingness to pay so high that the candidate always buys "big",
    // which a 1% exploration rarely logs: the ESS is tiny.
    let rows = log(&model, Policy::Target { target: 0.5 }, 0.01, 300, 7);
    let cfg = OpeConfig {
        policy: Policy::WillingnessToPay {
            lambda_per_usd: 0.0,
        },
        ..OpeConfig::default()
    };
    match evaluate(&model, &rows, &cfg) {
        Err(e) => assert!(e.to_string().contains("effective sample size"), "{e}"),
        Ok(r) => assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("effective sample size")),
            "ESS {}",
            r.ess
        ),
    }
}

#[test]
fn exported_records_become_logged_rows() {
    let line = r#"{"id":"d1","prompt":"[prompt not stored]","outcomes":{"mid":{"score":1.0,"cost_usd":0.02}},
        "chosen_model":"mid","propensity":0.05,"explored":true,"embedding":[0.5,1.0],
        "task_scores":{"t":1.0},
        "candidates":[{"model":"mid","p_success":0.8,"expected_cost_usd":0.01},{"model":"big","p_success":0.9,"expected_cost_usd":0.05}]}"#;
    let no_outcome = r#"{"id":"d2","prompt":"x","chosen_model":"mid","embedding":[0.5,1.0],"task_scores":{},"candidates":[]}"#;
    let old = r#"{"id":"d3","prompt":"x","outcomes":{"big":{"score":0.0}},"chosen_model":"big","embedding":[0.5,1.0],"task_scores":{},
        "candidates":[{"model":"big","p_success":0.9,"expected_cost_usd":0.05}]}"#;
    let records: Vec<Record> = [line, no_outcome, old]
        .iter()
        .map(|l| serde_json::from_str(&l.replace('\n', "")).unwrap())
        .collect();
    let got = logged_rows(&records).unwrap();
    assert_eq!(got.without_outcome, 1);
    assert_eq!(got.rows.len(), 2);
    let r = &got.rows[0];
    assert_eq!(
        (r.chosen, r.propensity, r.score, r.cost_usd),
        (0, 0.05, 1.0, 0.02)
    );
    // No propensity: a row from before exploration; no cost: the expected one.
    assert_eq!((got.rows[1].propensity, got.rows[1].cost_usd), (1.0, 0.05));
    let mut bad = records[0].clone();
    bad.extra.remove("embedding");
    let e = logged_rows(&[bad]).unwrap_err();
    assert!(
        e.to_string().contains("d1") && e.to_string().contains("embedding"),
        "{e}"
    );
}

#[test]
fn policies_parse_and_bad_ones_name_the_problem() {
    assert_eq!(
        parse_policy("target:0.8"),
        Ok(Policy::Target { target: 0.8 })
    );
    assert_eq!(
        parse_policy("lambda:50"),
        Ok(Policy::WillingnessToPay {
            lambda_per_usd: 50.0
        })
    );
    for bad in ["target", "target:2", "lambda:-1", "tau:0.5", "target:x"] {
        assert!(parse_policy(bad).is_err(), "{bad}");
    }
}
