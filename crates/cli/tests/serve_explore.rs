//! Exploration and off-policy evaluation against the real `pointsman serve`
//! in a simulated world: the test owns a true P(success) per (prompt,
//! model), built from RouterBench's per-model outcomes, routes prompts
//! through `serve --explore` with the shipped catalog and artifact,
//! reports outcomes drawn from the truth with ReportOutcome, and estimates
//! a *different* policy from the logs alone; the candidate's true value
//! must lie in the 95% interval, and the coverage over seeds is printed.

mod serve_support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pointsman_eval::ope::{self, LoggedRow, OpeConfig};
use pointsman_records::Record;
use pointsman_router::{Policy, SuccessModel};
use pointsman_server::pb;
use pointsman_store::OutcomeStore;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serve_support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Prompts per RouterBench file, and how often each is routed.
const PER_FILE: usize = 100;
/// The simulation's settings.
struct Sim {
    /// `serve --explore`.
    rate: f64,
    /// How often each prompt is routed.
    repeats: usize,
    /// Seeds whose outcomes go through ReportOutcome.
    e2e_seeds: u64,
    /// Further seeds of outcome draws scored in-process.
    more_seeds: u64,
    /// Keep the store here (the docs' worked example).
    keep: Option<PathBuf>,
}
/// The candidate: the shipped artifact under a slightly lower target than
/// the catalog's 0.9; it picks another model on about 40% of these
/// prompts. (At 0.7 it differs on 98% of them, and ε spread over 11
/// models leaves too few matching rows: the estimate is refused.)
const CANDIDATE: Policy = Policy::Target { target: 0.88 };

/// One prompt of the world with its true P(success) per model.
struct Prompt {
    text: String,
    truth: BTreeMap<String, f64>,
}

/// Every 3rd-to-10th RouterBench row (evenly spread) of three benchmarks
/// with outcomes for all 11 models. The truth smooths each observed 0/1
/// score toward the model's mean on the benchmark:
/// P = 0.1 + 0.8 · (0.6 · score + 0.4 · mean), so nothing is certain.
fn world() -> Vec<Prompt> {
    let mut out = Vec::new();
    for file in [
        "routerbench_mbpp",
        "routerbench_arc_challenge",
        "routerbench_winograde",
    ] {
        let path = repo().join(format!("training-data/outcomes/{file}.jsonl"));
        let records: Vec<Record> = pointsman_eval::read_records(&path).unwrap();
        let complete: Vec<&Record> = records.iter().filter(|r| r.outcomes.len() == 11).collect();
        let step = (complete.len() / PER_FILE).max(1);
        let picked: Vec<&Record> = complete
            .iter()
            .step_by(step)
            .take(PER_FILE)
            .copied()
            .collect();
        let mut mean: BTreeMap<String, f64> = BTreeMap::new();
        for r in &complete {
            for (m, o) in &r.outcomes {
                *mean.entry(m.clone()).or_default() += o.score / complete.len() as f64;
            }
        }
        for r in picked {
            let truth = r
                .outcomes
                .iter()
                .map(|(m, o)| (m.clone(), 0.1 + 0.8 * (0.6 * o.score + 0.4 * mean[m])))
                .collect();
            out.push(Prompt {
                text: r.prompt.clone(),
                truth,
            });
        }
    }
    out
}

fn start(explore: f64, keep: Option<PathBuf>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = keep.unwrap_or_else(|| dir.path().join("store.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    let catalog = repo().join("models/catalogs/routerbench.toml");
    let router = repo().join("models/router/routerbench-e5.json");
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--router",
        router.to_str().unwrap(),
        "--explore",
        &explore.to_string(),
        // A batch's first pass encodes 100 prompts: allow for a busy machine.
        "--request-timeout",
        "600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Server::spawn(dir, args, store, router, catalog)
}

fn exported(store: &Path) -> Vec<Record> {
    let s = pointsman_store::SqliteStore::open(store).unwrap();
    let mut out = Vec::new();
    s.export(&mut |d| {
        out.push(d.to_record());
        Ok(())
    })
    .unwrap();
    out
}

/// Bernoulli draws of the logged model's true P for every decision.
fn draws(decisions: &[(String, usize, String)], world: &[Prompt], seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    decisions
        .iter()
        .map(|(_, p, m)| (rng.random::<f64>() < world[*p].truth[m]) as u8 as f64)
        .collect()
}

/// At ε = 0.2, 3,000 decisions: the DR interval must cover the
/// candidate's true value on at least 85% of the end-to-end seeds and the
/// in-process replays of the logging together.
#[test]
fn off_policy_estimates_of_another_policy_cover_its_true_value() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (covered, seeds) = simulate(Sim {
        rate: 0.2,
        repeats: 10,
        e2e_seeds: 2,
        // 100 independent replays: at the ~0.92 coverage measured over 200
        // (docs/EVALUATION.md, "Coverage in simulated worlds") the 85% bar
        // fails by chance about once in 250 runs; an estimator covering 80%
        // passes it about once in 9. POINTSMAN_OPE_REPLAYS=N for more.
        more_seeds: std::env::var("POINTSMAN_OPE_REPLAYS").map_or(100, |v| {
            v.parse()
                .expect("POINTSMAN_OPE_REPLAYS: a number of replays")
        }),
        keep: None,
    });
    assert!(
        covered as f64 >= 0.85 * seeds as f64,
        "covered {covered} of {seeds}"
    );
}

/// docs/EVALUATION.md's worked example: ε = 0.05, 6,000 decisions; keeps
/// the store at target/explore-example/store.db for the CLI commands.
#[test]
#[ignore = "the worked example of docs/EVALUATION.md (about 3 minutes)"]
fn worked_example_at_five_percent() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = repo().join("target/explore-example");
    std::fs::create_dir_all(&dir).unwrap();
    simulate(Sim {
        rate: 0.05,
        repeats: 20,
        e2e_seeds: 1,
        more_seeds: 40,
        keep: Some(dir.join("store.db")),
    });
}

/// The logging distribution of `serve --explore rate` over one decision's
/// candidates, no model cold (the shipped artifact was fitted on outcomes
/// of all 11): π(m) = (1 − ε) · [m = greedy] + ε · P_m / Σ P, each P
/// floored at 1e-3 (crates/router/src/explore.rs).
fn logging_distribution(greedy: usize, p: &[f64], rate: f64) -> Vec<f64> {
    let p: Vec<f64> = p.iter().map(|x| x.clamp(0.0, 1.0).max(1e-3)).collect();
    let total: f64 = p.iter().sum();
    p.iter()
        .enumerate()
        .map(|(i, x)| rate * x / total + if i == greedy { 1.0 - rate } else { 0.0 })
        .collect()
}

/// Routes, reports and estimates (see the module docs); returns the seeds
/// whose DR interval covered the truth, and the seeds.
fn simulate(sim: Sim) -> (usize, usize) {
    let world = world();
    assert_eq!(world.len(), 3 * PER_FILE);
    let started = std::time::Instant::now();
    let server = start(sim.rate, sim.keep.clone());
    let rt = runtime(2);
    // (decision id, prompt index, logged model), in routing order.
    let decisions: Vec<(String, usize, String)> = rt.block_on(async {
        let mut c = server.client().await;
        let mut out = Vec::new();
        for _ in 0..sim.repeats {
            for chunk in (0..world.len()).collect::<Vec<_>>().chunks(100) {
                let rs = c
                    .route_batch(pb::RouteBatchRequest {
                        requests: chunk
                            .iter()
                            .map(|&i| route_request(&world[i].text))
                            .collect(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                for (&i, item) in chunk.iter().zip(rs.items) {
                    let Some(pb::route_batch_item::Result::Response(r)) = item.result else {
                        panic!("{item:?}")
                    };
                    assert!(r.propensity > 0.0 && r.propensity <= 1.0, "{r:?}");
                    assert_eq!(r.explored, r.reason.starts_with("explored"), "{r:?}");
                    out.push((r.decision_id, i, r.model));
                }
            }
        }
        out
    });
    let n = decisions.len();
    eprintln!(
        "routed {n} decisions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The logged propensities: in (0, 1], and the explored share is ε
    // within 5 binomial standard errors.
    let logged = exported(&server.store);
    assert_eq!(logged.len(), n);
    let explored = logged
        .iter()
        .filter(|r| r.extra["explored"] == serde_json::json!(true))
        .count();
    let se = (sim.rate * (1.0 - sim.rate) / n as f64).sqrt();
    let share = explored as f64 / n as f64;
    assert!(
        (share - sim.rate).abs() < 5.0 * se,
        "explored {explored} of {n}"
    );
    for r in &logged {
        let p = r.extra["propensity"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{p}");
    }

    let candidate =
        SuccessModel::from_json(&std::fs::read_to_string(&server.router).unwrap()).unwrap();
    let cfg = OpeConfig {
        policy: CANDIDATE,
        bootstrap: 500,
        ..OpeConfig::default()
    };
    let index: HashMap<&str, usize> = decisions
        .iter()
        .enumerate()
        .map(|(k, d)| (d.0.as_str(), k))
        .collect();
    // The candidate's true value on the logged prompts.
    let truth_of = |rows: &[LoggedRow], choices: &[String]| -> f64 {
        rows.iter()
            .zip(choices)
            .map(|(r, m)| world[decisions[index[r.id.as_str()]].1].truth[m])
            .sum::<f64>()
            / rows.len() as f64
    };

    // End to end: outcomes reported through ReportOutcome for a few seeds
    // (a later report for the same model replaces the earlier one).
    let e2e_seeds = sim.e2e_seeds;
    let mut covered = 0;
    let mut lines = Vec::new();
    for seed in 0..e2e_seeds {
        let scores = draws(&decisions, &world, seed);
        rt.block_on(async {
            let mut c = server.client().await;
            for ((id, _, model), score) in decisions.iter().zip(&scores) {
                c.report_outcome(pb::ReportOutcomeRequest {
                    decision_id: id.clone(),
                    model: model.clone(),
                    score: *score,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        });
        eprintln!(
            "seed {seed} reported at {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let rows = ope::logged_rows(&exported(&server.store)).unwrap();
        assert_eq!(rows.rows.len(), n);
        let report = ope::evaluate(&candidate, &rows.rows, &cfg).unwrap();
        let truth = truth_of(&rows.rows, &report.choices);
        let ok = report.quality.dr.contains(truth);
        covered += ok as usize;
        lines.push(format!(
            "seed {seed} (ReportOutcome): true {truth:.4}, DR {:.4} [{:.4}, {:.4}], SNIPS {:.4} [{:.4}, {:.4}], live {:.4}, ESS {:.1}, agree {}/{}",
            report.quality.dr.value,
            report.quality.dr.lo,
            report.quality.dr.hi,
            report.quality.snips.value,
            report.quality.snips.lo,
            report.quality.snips.hi,
            report.quality.live.value,
            report.ess,
            report.agree,
            report.rows
        ));
        if seed == 0 {
            // The policies must differ for this to test anything.
            assert!(
                report.rows - report.agree > n / 10,
                "the candidate differs on only {} of {n} rows",
                report.rows - report.agree
            );
        }
    }

    // For the worked example: the true value of each policy the docs
    // estimate with the CLI from the kept store (outcomes of the last seed).
    if sim.keep.is_some() {
        let rows = ope::logged_rows(&exported(&server.store)).unwrap().rows;
        for policy in [
            Policy::Target { target: 0.9 },
            Policy::Target { target: 0.88 },
            Policy::Target { target: 0.85 },
            Policy::WillingnessToPay {
                lambda_per_usd: 100.0,
            },
        ] {
            let choices: Vec<String> = rows
                .iter()
                .map(|r| {
                    let (i, _) = ope::candidate_choice(&candidate, policy, r).unwrap();
                    r.candidates[i].model.clone()
                })
                .collect();
            eprintln!(
                "true mean quality of {policy:?} on the logged prompts: {:.4}",
                truth_of(&rows, &choices)
            );
        }
    }

    // The CLI reads the same store and prints the same estimate.
    let out = pointsman(&[
        "eval",
        "--from-store",
        server.store.to_str().unwrap(),
        "--candidate",
        server.router.to_str().unwrap(),
        "--policy",
        "target:0.88",
        "--bootstrap",
        "500",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = ope::logged_rows(&exported(&server.store)).unwrap().rows;
    let last = ope::evaluate(&candidate, &rows, &cfg).unwrap();
    assert!(
        (json["quality"]["dr"]["value"].as_f64().unwrap() - last.quality.dr.value).abs() < 1e-9
    );
    assert_eq!(json["rows"], n);

    // More seeds scored in-process, each an independent replay of the
    // logging: the logging policy's action is drawn again for every logged
    // prompt from the distribution `serve --explore` uses (the greedy model
    // of the shipped artifact at the catalog's target 0.9, plus ε spread by
    // P(success); crates/router/src/explore.rs), then its outcome from the
    // truth. Re-drawing the outcomes alone would score 40 seeds on one set
    // of exploration draws: their intervals would share that draw's error,
    // and their coverage says little about the estimator's.
    let base = rows;
    let logging = Policy::Target { target: 0.9 };
    let replay: Vec<(usize, Vec<f64>)> = base
        .iter()
        .map(|r| {
            let (greedy, p) = ope::candidate_choice(&candidate, logging, r).unwrap();
            let pi = logging_distribution(greedy, &p, sim.rate);
            // The replay must be the logging itself: its probability of the
            // logged model is the propensity serve logged.
            assert!(
                (pi[r.chosen] - r.propensity).abs() < 1e-6 * r.propensity.max(1e-3),
                "decision {}: replayed π {:.6} against the logged propensity {:.6}",
                r.id,
                pi[r.chosen],
                r.propensity
            );
            (greedy, pi)
        })
        .collect();
    let more = sim.more_seeds;
    let mut covered_more = 0;
    for seed in 100..100 + more {
        let mut rng = StdRng::seed_from_u64(seed);
        let rows: Vec<LoggedRow> = base
            .iter()
            .zip(&replay)
            .map(|(r, (_, pi))| {
                let u: f64 = rng.random();
                let mut edge = 0.0;
                let chosen = pi
                    .iter()
                    .position(|&q| {
                        edge += q;
                        u < edge
                    })
                    .unwrap_or(pi.len() - 1);
                let model = &r.candidates[chosen].model;
                let truth = world[decisions[index[r.id.as_str()]].1].truth[model];
                LoggedRow {
                    chosen,
                    propensity: pi[chosen],
                    score: (rng.random::<f64>() < truth) as u8 as f64,
                    cost_usd: r.candidates[chosen].expected_cost_usd,
                    ..r.clone()
                }
            })
            .collect();
        let report = ope::evaluate(
            &candidate,
            &rows,
            &OpeConfig {
                seed,
                ..cfg.clone()
            },
        )
        .unwrap();
        covered_more += report.quality.dr.contains(truth_of(&rows, &report.choices)) as usize;
    }
    eprintln!("done at {:.1} s", started.elapsed().as_secs_f64());
    for l in &lines {
        eprintln!("{l}");
    }
    eprintln!(
        "DR 95% interval coverage: {covered}/{e2e_seeds} seeds end to end (ReportOutcome), {covered_more}/{more} replays of the logging in-process; {n} decisions at --explore {}",
        sim.rate
    );
    (covered + covered_more, e2e_seeds as usize + more as usize)
}

/// With exploration off every logged propensity is 1.0 and nothing is
/// marked explored; the answer says so too.
#[test]
fn without_exploration_every_propensity_is_one() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = Server::start(Options::default());
    let rt = runtime(2);
    rt.block_on(async {
        let mut c = server.client().await;
        for p in PROMPTS {
            let r = c.route(route_request(p)).await.unwrap().into_inner();
            assert_eq!((r.propensity, r.explored), (1.0, false));
        }
    });
    let all = export_all(&server.store);
    assert_eq!(all.len(), PROMPTS.len());
    for r in all {
        assert_eq!(r["propensity"], 1.0);
        assert_eq!(r["explored"], false);
    }
}
