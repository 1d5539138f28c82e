//! Runs the real `pointsman` binary: `route`, `eval` and catalog errors.
//! Uses the real encoder, the shipped heads and records cut from
//! training-data/outcomes (crates/eval/tests/data).

use std::process::Output;

mod serve_support;
use serve_support::pointsman;

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const DATA: &str = "crates/eval/tests/data";

#[test]
fn route_prints_a_decision_with_candidates_and_fallbacks() {
    let v = stdout_json(&pointsman(&[
        "route",
        "Write a python function to reverse a linked list.",
        "--target",
        "0.7",
    ]));
    let model = v["model"].as_str().unwrap();
    let candidates = v["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 11, "{v}");
    assert_eq!(candidates[0]["model"], model);
    let fallbacks: Vec<&str> = v["fallbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(fallbacks.len(), 10);
    assert!(!fallbacks.contains(&model));
    for c in candidates {
        let p = c["p_success"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert!(c["expected_cost_usd"].as_f64().unwrap() > 0.0);
    }
    // All 11 catalog models are candidates: the router's difficulty is
    // 1 − their mean P.
    let mean_p = candidates
        .iter()
        .map(|c| c["p_success"].as_f64().unwrap())
        .sum::<f64>()
        / 11.0;
    let typical = v["typical_failure"].as_f64().unwrap();
    assert!(
        (typical - (1.0 - mean_p)).abs() < 1e-9,
        "{typical} {mean_p}"
    );
    // The shipped artifact has a target table: target 0.7 is the λ rule
    // at the λ its table gives, named in the decision, and the chosen
    // model maximises P - λ x cost over the candidates.
    assert_eq!(v["policy"]["kind"], "target_at_lambda", "{v}");
    assert_eq!(v["policy"]["target"], 0.7);
    let lambda = v["policy"]["lambda_per_usd"].as_f64().unwrap();
    assert!(lambda > 0.0, "{v}");
    let utility = |c: &serde_json::Value| {
        c["p_success"].as_f64().unwrap() - lambda * c["expected_cost_usd"].as_f64().unwrap()
    };
    let u0 = utility(&candidates[0]);
    assert!(candidates.iter().all(|c| utility(c) <= u0 + 1e-12), "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("the price of target 0.7"), "{reason}");
    // A higher target never gets a larger λ (pays at least as much per
    // success), and the cost it is willing to pay grows.
    let v99 = stdout_json(&pointsman(&[
        "route",
        "Write a python function to reverse a linked list.",
        "--target",
        "0.99",
    ]));
    assert!(v99["policy"]["lambda_per_usd"].as_f64().unwrap() <= lambda);
    assert!(v99["expected_cost_usd"].as_f64().unwrap() >= v["expected_cost_usd"].as_f64().unwrap());
}

#[test]
fn route_honours_constraints() {
    let v = stdout_json(&pointsman(&[
        "route",
        "What is the capital of Australia?",
        "--target",
        "0.99",
        "--allow",
        "mistralai/mistral-7b-chat",
        "--allow",
        "gpt-3.5-turbo-1106",
    ]));
    let model = v["model"].as_str().unwrap();
    assert!(
        model == "mistralai/mistral-7b-chat" || model == "gpt-3.5-turbo-1106",
        "{v}"
    );
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(v["excluded"].as_array().unwrap().len(), 9);
    // A cost cap nothing meets is an error, not a silent choice.
    let out = pointsman(&[
        "route",
        "What is the capital of Australia?",
        "--max-cost",
        "0.0000000001",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model satisfies"));
}

#[test]
fn eval_json_has_every_router_and_metric() {
    let train = format!("{DATA}/routerbench_train.jsonl");
    let test = format!("{DATA}/routerbench_test.jsonl");
    let v = stdout_json(&pointsman(&[
        "eval", "--train", &train, "--test", &test, "--json", "--epochs", "100",
    ]));
    assert_eq!(v["rows"], 20);
    let routers = v["routers"].as_object().unwrap();
    for name in [
        "pointsman",
        "pointsman_wtp",
        "knn",
        "random",
        "cheapest",
        "best_single",
        "oracle",
        "zero",
    ] {
        let r = &routers[name];
        assert!(!r["points"].as_array().unwrap().is_empty(), "{name}");
        let aiq = r["aiq"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&aiq), "{name} aiq {aiq}");
        // 11 models: the two-model metrics do not apply.
        assert!(
            r["apgr"].is_null() && r["cpt50"].is_null() && r["cpt80"].is_null(),
            "{name}"
        );
    }
    assert_eq!(
        routers["pointsman"]["points"].as_array().unwrap().len(),
        101
    );
    assert!(routers["pointsman"]["ece"].as_f64().unwrap() >= 0.0);
    assert!(routers["oracle"]["ece"].is_null());
    // The oracle is at least as good as any single model on every row.
    let oracle_q = routers["oracle"]["points"][0][1].as_f64().unwrap();
    let best_q = routers["zero"]["max_quality"].as_f64().unwrap();
    assert!(
        oracle_q >= best_q,
        "oracle {oracle_q} < best single {best_q}"
    );
}

#[test]
fn eval_two_model_cross_validation_reports_apgr_and_cpt() {
    let data = format!("{DATA}/routellm_gsm8k.jsonl");
    // No cost_usd in these rows: priced from the catalog.
    let out = pointsman(&[
        "eval", "--data", &data, "--folds", "2", "--json", "--epochs", "100",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--catalog"));
    let v = stdout_json(&pointsman(&[
        "eval",
        "--data",
        &data,
        "--folds",
        "2",
        "--json",
        "--epochs",
        "100",
        "--catalog",
        "models/catalogs/routellm.toml",
    ]));
    assert_eq!(v["rows"], 40);
    let sy = &v["routers"]["pointsman"];
    let apgr = sy["apgr"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&apgr));
    let (c50, c80) = (sy["cpt50"].as_f64().unwrap(), sy["cpt80"].as_f64().unwrap());
    assert!(c50 <= c80, "{c50} {c80}");
    // The random router interpolates between the two models: APGR near 0.5.
    let random = v["routers"]["random"]["apgr"].as_f64().unwrap();
    assert!((0.25..=0.75).contains(&random), "random apgr {random}");
}

#[test]
fn eval_chooses_the_ridge_on_training_rows_only() {
    let data = format!("{DATA}/routellm_gsm8k.jsonl");
    let out = pointsman(&[
        "eval",
        "--data",
        &data,
        "--folds",
        "2",
        "--json",
        "--epochs",
        "60",
        "--catalog",
        "models/catalogs/routellm.toml",
        "--l2-grid",
        "0.3,10",
        "--calibrate",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let v = stdout_json(&out);
    // One choice per fold, each from the grid.
    let chosen: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("ridge chosen on held-out training rows: "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(chosen.len(), 2, "{err}");
    assert!(chosen.iter().all(|c| *c == "0.3" || *c == "10"), "{err}");
    let ece = v["routers"]["pointsman"]["ece"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ece));
}

#[test]
fn eval_head_features_are_tried_only_when_asked() {
    let train = format!("{DATA}/routerbench_train.jsonl");
    let test = format!("{DATA}/routerbench_test.jsonl");
    let args = [
        "eval",
        "--train",
        &train,
        "--test",
        &test,
        "--json",
        "--epochs",
        "60",
        "--no-task-head",
    ];
    let selection = |extra: &[&str]| {
        let out = pointsman(&[&args[..], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        stdout_json(&out);
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix("selection: "))
            .unwrap_or_else(|| panic!("no selection line: {err}"))
            .to_string();
        (line, err)
    };
    // Default: the embedding alone, no candidate reads the heads.
    let (plain, _) = selection(&[]);
    assert!(!plain.contains("prompt on "), "{plain}");
    // --head-features task: the embedding, or the task head's 11
    // probabilities alone (the real shipped heads), each at every ridge
    // and kNN weight.
    let (both, _) = selection(&["--head-features", "task"]);
    let candidates: Vec<&str> = both.split(", ").filter(|c| c.contains("l2=")).collect();
    let on_heads = candidates
        .iter()
        .filter(|c| c.starts_with("prompt on heads "))
        .count();
    assert!(on_heads > 0 && 2 * on_heads == candidates.len(), "{both}");
    // The heads' outputs alone: every per-prompt candidate reads them,
    // the warning about the difficulty head is not printed.
    let (heads, err) = selection(&["--head-features", "task", "--prompt-inputs", "heads"]);
    let prompt: Vec<&str> = heads.split(", ").filter(|c| c.contains("l2=")).collect();
    assert!(!prompt.is_empty(), "{heads}");
    assert!(
        prompt.iter().all(|c| c.starts_with("prompt on heads ")),
        "{heads}"
    );
    assert!(!err.contains("carries the test rows"), "{err}");
    // The difficulty head's score is an explicit, warned experiment.
    let (_, err) = selection(&["--head-features", "task,difficulty"]);
    assert!(err.contains("fair on AlpacaEval only"), "{err}");
    // The surface features (from the text; no head): the embedding, or the
    // embedding followed by them, each at every ridge and kNN weight.
    let (surface, _) = selection(&["--head-features", "surface"]);
    let candidates: Vec<&str> = surface.split(", ").filter(|c| c.contains("l2=")).collect();
    let with_surface = candidates
        .iter()
        .filter(|c| c.starts_with("prompt on embedding+heads "))
        .count();
    assert!(
        with_surface > 0 && 2 * with_surface == candidates.len(),
        "{surface}"
    );
    // Retraining from a store has no prompt text to compute them from.
    let out = pointsman(&[
        "train",
        "router",
        "--from-store",
        "unused.db",
        "--head-features",
        "surface",
        "--out",
        "unused.json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--head-features"), "{err}");
}

#[test]
fn eval_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let train = format!("{DATA}/routerbench_train.jsonl");
    let test = format!("{DATA}/routerbench_test.jsonl");
    let out = pointsman(&[
        "eval",
        "--train",
        &train,
        "--test",
        &test,
        "--epochs",
        "50",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pointsman"));
    let svg = std::fs::read_to_string(dir.path().join("cost_quality.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    assert!(std::fs::read_to_string(dir.path().join("report.md"))
        .unwrap()
        .contains("| pointsman |"));
    let reliability = std::fs::read_to_string(dir.path().join("reliability.svg")).unwrap();
    assert!(reliability.starts_with("<svg") && reliability.contains("pointsman (ECE"));
}

#[test]
fn eval_draws_a_learning_curve() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("{DATA}/routellm_gsm8k.jsonl");
    let args = |sizes: &'static str| {
        vec![
            "eval".to_string(),
            "--data".into(),
            data.clone(),
            "--folds".into(),
            "2".into(),
            "--epochs".into(),
            "40".into(),
            "--catalog".into(),
            "models/catalogs/routellm.toml".into(),
            "--learning-curve".into(),
            sizes.into(),
        ]
    };
    let bad = args("0,all");
    let out = pointsman(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("learning-curve size `0`"));

    let mut good = args("8,all");
    good.extend([
        "--curve-seeds".into(),
        "2".into(),
        "--json".into(),
        "--report".into(),
        dir.path().to_str().unwrap().into(),
    ]);
    let v = stdout_json(&pointsman(
        &good.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // Two models: APGR; 40 rows in 2 folds, 20 training rows per fold.
    assert_eq!(v["metric"], "APGR");
    assert_eq!(v["test_rows"], 40);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points[0]["size"], "8");
    assert_eq!(points[0]["train_rows"], 8.0);
    assert_eq!(points[1]["train_rows"], 20.0);
    assert_eq!(
        points[0]["routers"]["pointsman"]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let svg = std::fs::read_to_string(dir.path().join("learning_curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("zero router"));
}

#[test]
fn bad_catalog_errors_name_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "default_target = 0.8\n\n[[models]]\nname = \"a\"\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = -2.0\ncontext_window = 4096\n",
    )
    .unwrap();
    let out = pointsman(&["route", "hello there", "--catalog", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 6") && err.contains("output_usd_per_mtok"),
        "{err}"
    );
    std::fs::write(&path, "[[models]]\nname = \"a\"\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\ncontext_window = \"big\"\n").unwrap();
    let err = String::from_utf8_lossy(
        &pointsman(&["route", "hello there", "--catalog", path.to_str().unwrap()]).stderr,
    )
    .to_string();
    assert!(
        err.contains("line 5") && err.contains("context_window"),
        "{err}"
    );
}

/// `train router` (100 epochs, no task head) on the 30 RouterBench sample
/// rows with `extra` flags, into `out`; the artifact as JSON.
fn train_router_on_sample(out: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let outcomes = format!("{DATA}/routerbench_train.jsonl");
    let mut args = vec![
        "train",
        "router",
        "--outcomes",
        &outcomes,
        "--no-task-head",
        "--epochs",
        "100",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = pointsman(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn train_router_tries_the_knn_spaces_given() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("router.json");
    let v = train_router_on_sample(&out, &["--knn-dims", "8"]);
    let candidates: Vec<&str> = v["selection"]["cv_loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["candidate"].as_str().unwrap())
        .collect();
    // Every kNN candidate in the 8-d space, none in the full embedding.
    let knn: Vec<&&str> = candidates.iter().filter(|c| c.contains("knn=")).collect();
    assert!(
        !knn.is_empty() && knn.iter().all(|c| c.ends_with(" d=8")),
        "{candidates:?}"
    );
    match v.get("neighbours") {
        Some(nb) => {
            assert_eq!(nb["projection"]["dim"], 8);
            assert_eq!(v["selection"]["knn_dim"], 8);
        }
        None => assert_eq!(v["selection"]["knn_dim"], 0),
    }
}

#[test]
fn a_router_with_a_corrupt_knn_projection_fails_at_load_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-projection.json");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/router/routerbench-e5.json"),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // An 8-d space whose direction matrix is missing (0 of 8 × 384 values).
    let zeros = vec![0.0f32; 8];
    v["neighbours"]["projection"] = serde_json::json!({
        "dim": 8, "matrix": "", "offset": zeros, "variance": zeros
    });
    std::fs::write(&path, v.to_string()).unwrap();
    let out = pointsman(&["route", "hello there", "--router", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-projection.json")
            && err.contains("neighbours.projection")
            && err.contains("0 matrix values"),
        "{err}"
    );
}

#[test]
fn eval_writes_each_held_out_rows_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("predictions.jsonl");
    let data = format!("{DATA}/routellm_gsm8k.jsonl");
    let v = stdout_json(&pointsman(&[
        "eval",
        "--data",
        &data,
        "--folds",
        "2",
        "--json",
        "--epochs",
        "100",
        "--catalog",
        "models/catalogs/routellm.toml",
        "--predictions",
        file.to_str().unwrap(),
    ]));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One line per held-out row, each row once (out of fold).
    assert_eq!(lines.len() as u64, v["rows"].as_u64().unwrap());
    let ids: std::collections::HashSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), lines.len());
    // The observed scores are the file's own, row by row.
    let records: std::collections::HashMap<String, serde_json::Value> =
        std::fs::read_to_string(serve_support::repo().join(&data))
            .unwrap()
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                (r["id"].as_str().unwrap().to_string(), r)
            })
            .collect();
    for l in &lines {
        let models = l["p"].as_object().unwrap();
        assert_eq!(models.len(), 2);
        for (m, p) in models {
            let p = p.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{p}");
            assert!(l["expected_cost_usd"][m].as_f64().unwrap() > 0.0);
            let want = &records[l["id"].as_str().unwrap()]["outcomes"][m]["score"];
            assert_eq!(l["score"][m].as_f64(), want.as_f64(), "{m}");
        }
    }
    // Not with a learning curve (which fits many routers per row).
    let out = pointsman(&[
        "eval",
        "--data",
        &data,
        "--folds",
        "2",
        "--learning-curve",
        "10",
        "--predictions",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--learning-curve"));
    // Nor with an off-policy estimate, which has no evaluation rows.
    let out = pointsman(&[
        "eval",
        "--from-export",
        "no-such-export.jsonl",
        "--candidate",
        "models/router/routerbench-e5.json",
        "--predictions",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--predictions") && err.contains("off-policy"),
        "{err}"
    );
}

#[test]
fn train_router_route_models_records_them_and_a_different_catalog_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("router.json");
    let v = train_router_on_sample(
        &out,
        &["--route-models", "gpt-4-1106-preview,gpt-3.5-turbo-1106"],
    );
    assert_eq!(
        v["target_table"]["models"],
        serde_json::json!(["gpt-4-1106-preview", "gpt-3.5-turbo-1106"])
    );
    // Every model's outcomes were fitted, not only the routed two.
    assert_eq!(v["models"].as_array().unwrap().len(), 11);
    // The 11-model catalog: routed, with a warning naming what differs.
    let run = pointsman(&["route", "hello there", "--router", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains("target table") && err.contains("claude-v2"),
        "{err}"
    );
    // A catalog of the two routed models: no warning.
    let catalog = dir.path().join("two.toml");
    std::fs::write(
        &catalog,
        "[[models]]\nname = \"gpt-4-1106-preview\"\ninput_usd_per_mtok = 10.0\noutput_usd_per_mtok = 30.0\ncontext_window = 128000\n\n\
         [[models]]\nname = \"gpt-3.5-turbo-1106\"\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\ncontext_window = 16000\n",
    )
    .unwrap();
    let run = pointsman(&[
        "route",
        "hello there",
        "--router",
        out.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{err}");
    assert!(!err.contains("target table"), "{err}");
}
