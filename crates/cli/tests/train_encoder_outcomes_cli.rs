//! Runs the real `pointsman train encoder --outcomes` (real MiniLM weights)
//! on a tiny data set: the run is multi-task, reports difficulty on
//! held-out outcome sources, records the outcome files' hashes and the
//! loss weights, is reproducible from its seed, takes the optional
//! per-model success part, and with a difficulty weight of 0 writes
//! exactly the task-only adapter.

use std::path::Path;

mod serve_support;
use serve_support::pointsman;

fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Task records of three sources and outcome records of three more, where
/// longer arithmetic is failed by more of the three models.
fn data(root: &Path) -> (String, String) {
    let (tasks, outcomes) = (root.join("tasks"), root.join("outcomes"));
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::create_dir_all(&outcomes).unwrap();
    for (s, source) in ["a", "b", "c"].iter().enumerate() {
        let rows: Vec<_> = (0..6)
            .map(|i| {
                let (task, prompt) = if i % 2 == 0 {
                    ("code", format!("Write a Python function {s}{i} that sorts a list."))
                } else {
                    ("math", format!("What is {i} times {} plus {s}?", i + 3))
                };
                serde_json::json!({"id": format!("{source}{i}"), "source": source, "prompt": prompt, "task": task})
            })
            .collect();
        write_jsonl(&tasks.join(format!("{source}.jsonl")), &rows);
    }
    for (s, source) in ["x", "y", "z"].iter().enumerate() {
        let rows: Vec<_> = (0..8)
            .map(|i| {
                let terms: Vec<String> = (0..=i).map(|k| format!("{}", 7 * k + s + 1)).collect();
                let prompt = format!("Compute {} exactly.", terms.join(" * "));
                let outcomes: serde_json::Map<String, serde_json::Value> = (0..3)
                    .map(|m| {
                        let score = if i < 2 + 2 * m { 1.0 } else { 0.0 };
                        (format!("model-{m}"), serde_json::json!({"score": score}))
                    })
                    .collect();
                serde_json::json!({"id": format!("{source}{i}"), "source": source, "prompt": prompt, "outcomes": outcomes})
            })
            .collect();
        write_jsonl(&outcomes.join(format!("{source}.jsonl")), &rows);
    }
    (
        tasks.to_str().unwrap().to_string(),
        outcomes.to_str().unwrap().to_string(),
    )
}

fn train(root: &Path, name: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let tasks = root.join("tasks");
    let out = root.join(format!("{name}.safetensors"));
    let report = root.join(format!("{name}.md"));
    let no_eval = root.join("none");
    let mut args = vec![
        "train",
        "encoder",
        "--model-dir",
        "models/all-MiniLM-L6-v2",
        "--tasks",
        tasks.to_str().unwrap(),
        "--eval",
        no_eval.to_str().unwrap(),
        "--layers",
        "1",
        "--window",
        "16",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--folds",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = pointsman(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (out, std::fs::read_to_string(&report).unwrap())
}

#[test]
fn outcomes_make_the_run_multi_task_and_weight_zero_is_the_task_only_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, outcomes) = data(dir.path());
    let (task_only, task_only_report) = train(dir.path(), "task-only", &[]);
    assert!(!task_only_report.contains("Difficulty on held-out outcome sources"));

    let multi = [
        "--outcomes",
        outcomes.as_str(),
        "--difficulty-loss-weight",
        "2",
    ];
    let (a, report) = train(dir.path(), "multi-a", &multi);
    assert!(
        report.contains("### Difficulty on held-out outcome sources (3 source groups, difficulty loss weight 2)"),
        "{report}"
    );
    for source in ["x", "y", "z"] {
        assert!(report.contains(&format!("\n| {source} | ")), "{report}");
    }
    assert!(report.contains("| joint |"), "{report}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.with_extension("json")).unwrap()).unwrap();
    let training = &meta["training"];
    let files = training["outcome_files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in files {
        // "name.jsonl:sha256"
        let (name, hash) = f.as_str().unwrap().split_once(':').unwrap();
        assert_eq!(hash, sha256(&Path::new(&outcomes).join(name)), "{f}");
    }
    let loss = &training["difficulty_loss"];
    assert_eq!(loss["weight"], 2.0);
    assert_eq!(loss["pair_weight"], 1.0);
    assert_eq!(loss["target"], "irt-rank");
    assert_eq!(loss["epoch_losses"].as_array().unwrap().len(), 2);
    assert_eq!(training["outcome_examples"], 24);
    let per_source = &training["metrics"]["difficulty_outcome_folds"]["per_source"];
    assert_eq!(per_source.as_object().unwrap().len(), 3);

    // Seeded: the same run writes the same adapter bytes; the outcome loss changed them.
    let (b, _) = train(dir.path(), "multi-b", &multi);
    assert_eq!(sha256(&a), sha256(&b));
    assert_ne!(sha256(&a), sha256(&task_only));

    // The per-model success part: recorded, and it changes the adapter.
    let (c, success_report) = train(
        dir.path(),
        "success",
        &[
            "--outcomes",
            outcomes.as_str(),
            "--difficulty-loss-weight",
            "2",
            "--success-loss-weight",
            "1",
        ],
    );
    assert!(
        success_report.contains("difficulty loss weight 2, success loss weight 1)"),
        "{success_report}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["training"]["difficulty_loss"]["success_weight"], 1.0);
    assert_ne!(sha256(&c), sha256(&a));

    // Weight 0: difficulty is still measured, the adapter is the task-only one.
    let (zero, zero_report) = train(
        dir.path(),
        "zero",
        &[
            "--outcomes",
            outcomes.as_str(),
            "--difficulty-loss-weight",
            "0",
        ],
    );
    assert_eq!(sha256(&zero), sha256(&task_only));
    assert!(zero_report.contains("Difficulty on held-out outcome sources"));
    assert!(!zero_report.contains("| joint |"));

    // A negative weight is refused with the flag's name.
    let run = pointsman(&[
        "train",
        "encoder",
        "--outcomes",
        outcomes.as_str(),
        "--difficulty-loss-weight=-1",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--difficulty-loss-weight"));
}
