use super::*;
use crate::catalog::Catalog;
use crate::policy::{decide, Constraints, Policy};

fn catalog() -> Catalog {
    Catalog::from_toml_str(
        r#"
[[models]]
name = "cheap"
input_usd_per_mtok = 0.1
output_usd_per_mtok = 0.1
context_window = 4096
latency_ms = 300
[[models]]
name = "mid"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = 16000
latency_ms = 800
[[models]]
name = "big"
input_usd_per_mtok = 10.0
output_usd_per_mtok = 30.0
context_window = 128000
latency_ms = 3000
[[models]]
name = "huge"
input_usd_per_mtok = 30.0
output_usd_per_mtok = 60.0
context_window = 128000
latency_ms = 5000
"#,
    )
    .unwrap()
}

const P: [f64; 4] = [0.5, 0.85, 0.95, 0.97];
const COST: [f64; 4] = [0.0001, 0.001, 0.01, 0.03];

fn decision(constraints: &Constraints) -> Decision {
    decide(
        &catalog(),
        &P,
        &COST,
        Policy::Target { target: 0.8 },
        constraints,
    )
    .unwrap()
}

/// SplitMix64: a seeded stream of random bits for the draws.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn warm(_: &str) -> bool {
    false
}

#[test]
fn rate_zero_keeps_the_policys_choice_with_propensity_one() {
    let d = decision(&Constraints::default());
    let mut rng = SplitMix(1);
    for _ in 0..1000 {
        let mut x = d.clone();
        let e = apply(&mut x, 0.0, &warm, rng.next());
        assert_eq!(
            e,
            Explored {
                index: 0,
                propensity: 1.0,
                explored: false
            }
        );
        assert_eq!(x, d);
    }
    assert_eq!(distribution(&d, 0.0, &warm), vec![1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn the_distribution_is_greedy_mass_plus_p_weighted_exploration() {
    let d = decision(&Constraints::default());
    assert_eq!(d.model, "mid");
    let pi = distribution(&d, 0.1, &warm);
    assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let total: f64 = d.candidates.iter().map(|c| c.p_success).sum();
    for (i, c) in d.candidates.iter().enumerate() {
        let w = c.p_success / total;
        let greedy = if i == 0 { 0.9 } else { 0.0 };
        assert!((pi[i] - (greedy + 0.1 * w)).abs() < 1e-12, "{}", c.model);
    }
}

/// For a fixed state, the empirical choice frequencies over many draws
/// match the propensities `draw` reports, within 5 binomial standard
/// errors per model (a false alarm has odds of about 1 in 3 million per
/// model), and every reported propensity is the distribution's value for
/// the model drawn.
#[test]
fn empirical_frequencies_match_the_logged_propensities() {
    let d = decision(&Constraints::default());
    let cold = |m: &str| m == "huge";
    for (rate, cold) in [
        (0.05, &warm as &dyn Fn(&str) -> bool),
        (0.3, &warm as &dyn Fn(&str) -> bool),
        (0.2, &cold as &dyn Fn(&str) -> bool),
    ] {
        let pi = distribution(&d, rate, cold);
        let n = 200_000;
        let mut counts = vec![0usize; pi.len()];
        let mut explored = 0usize;
        let mut rng = SplitMix(42);
        for _ in 0..n {
            let e = draw(&d, rate, cold, unit(rng.next()));
            assert_eq!(e.propensity, pi[e.index]);
            assert!(e.propensity > 0.0 && e.propensity <= 1.0);
            counts[e.index] += 1;
            explored += e.explored as usize;
        }
        for (i, &c) in counts.iter().enumerate() {
            let f = c as f64 / n as f64;
            let se = (pi[i] * (1.0 - pi[i]) / n as f64).sqrt();
            assert!(
                (f - pi[i]).abs() <= 5.0 * se + 1e-12,
                "rate {rate}, {}: frequency {f} vs propensity {}",
                d.candidates[i].model,
                pi[i]
            );
        }
        let f = explored as f64 / n as f64;
        let se = (rate * (1.0 - rate) / n as f64).sqrt();
        assert!((f - rate).abs() <= 5.0 * se, "explored share {f} vs {rate}");
    }
}

#[test]
fn exploration_never_picks_a_model_the_constraints_exclude() {
    let constraints = Constraints {
        allowed: Some(vec!["cheap".into(), "mid".into(), "huge".into()]),
        max_cost_usd: Some(0.02),
        ..Default::default()
    };
    let d = decision(&constraints);
    // "big" is not allowed and "huge" costs too much.
    let eligible: Vec<&str> = d.candidates.iter().map(|c| c.model.as_str()).collect();
    assert_eq!(eligible.len(), 2, "{eligible:?}");
    let mut rng = SplitMix(7);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20_000 {
        let mut x = d.clone();
        let e = apply(&mut x, 0.5, &|_| true, rng.next());
        assert!(["cheap", "mid"].contains(&x.model.as_str()), "{}", x.model);
        assert!(e.propensity > 0.0 && e.propensity <= 1.0);
        seen.insert(x.model);
    }
    assert_eq!(seen.len(), 2, "both eligible models are explored");
}

#[test]
fn cold_models_get_their_guaranteed_share() {
    let d = decision(&Constraints::default());
    let cold = |m: &str| m == "cheap" || m == "huge";
    let pi = distribution(&d, 0.1, &cold);
    for (i, c) in d.candidates.iter().enumerate() {
        if cold(&c.model) {
            assert!(pi[i] >= 0.1 / 4.0, "{}: {}", c.model, pi[i]);
        }
    }
    // Without the floor "cheap" would get only its P share.
    let plain = distribution(&d, 0.1, &warm);
    let at = d
        .candidates
        .iter()
        .position(|c| c.model == "cheap")
        .unwrap();
    assert!(pi[at] > plain[at]);
    assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn an_explored_decision_is_reordered_and_says_why() {
    let d = decision(&Constraints::default());
    // u just under 1: the last exploring segment.
    let mut x = d.clone();
    let e = apply(&mut x, 0.1, &warm, u64::MAX);
    assert!(e.explored);
    assert_eq!(x.model, d.candidates[e.index].model);
    assert_eq!(x.candidates[0].model, x.model);
    assert_eq!(x.fallbacks.len(), d.candidates.len() - 1);
    assert!(!x.fallbacks.contains(&x.model));
    assert!(x.reason.starts_with("explored"), "{}", x.reason);
    let mut all: Vec<String> = x.candidates.iter().map(|c| c.model.clone()).collect();
    all.sort();
    let mut before: Vec<String> = d.candidates.iter().map(|c| c.model.clone()).collect();
    before.sort();
    assert_eq!(all, before);
}

#[test]
fn expected_change_is_the_distributions_mean_minus_the_greedy_choice() {
    let d = decision(&Constraints::default());
    assert_eq!(expected_change(&d, 0.0, &warm), (0.0, 0.0));
    let (dc, dq) = expected_change(&d, 0.05, &warm);
    let pi = distribution(&d, 0.05, &warm);
    let cost: f64 = pi
        .iter()
        .zip(&d.candidates)
        .map(|(p, c)| p * c.expected_cost_usd)
        .sum();
    assert!((dc - (cost - d.expected_cost_usd)).abs() < 1e-15);
    // "mid" is cheap for its P: exploring buys dearer models on average.
    assert!(dc > 0.0);
    assert!(dq.is_finite());
}

#[test]
fn rates_outside_zero_to_one_are_refused() {
    assert!(check_rate(0.0).is_ok());
    assert!(check_rate(0.05).is_ok());
    for bad in [1.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(check_rate(bad).is_err(), "{bad}");
    }
}
