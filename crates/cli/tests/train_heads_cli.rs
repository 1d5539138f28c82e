//! Runs the real `pointsman train heads` (real encoder) on a small data set
//! and checks the difficulty head's joint-IRT target, its strict
//! leave-one-source-out, and that the written heads load and classify.

use std::path::Path;

mod serve_support;
use serve_support::pointsman;

fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn outcome(id: String, source: &str, prompt: String, scores: &[(&str, f64)]) -> serde_json::Value {
    let outcomes: serde_json::Map<String, serde_json::Value> = scores
        .iter()
        .map(|(m, s)| (m.to_string(), serde_json::json!({"score": s})))
        .collect();
    serde_json::json!({"id": id, "source": source, "prompt": prompt, "outcomes": outcomes})
}

#[test]
fn difficulty_head_trains_on_the_joint_irt_target_and_holds_out_shared_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let (tasks, outcomes) = (dir.path().join("tasks"), dir.path().join("outcomes"));
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::create_dir_all(&outcomes).unwrap();
    let task_rows: Vec<_> = (0..12)
        .map(|i| {
            let (task, prompt) = if i % 2 == 0 {
                ("code", format!("Write a Python function number {i} that sorts a list."))
            } else {
                ("math", format!("What is {i} times {} plus seven?", i + 3))
            };
            serde_json::json!({"id": format!("t{i}"), "source": "tiny", "prompt": prompt, "task": task})
        })
        .collect();
    write_jsonl(&tasks.join("tiny.jsonl"), &task_rows);
    // Source "strong" (two strong models), source "weak" (two weak ones and
    // Mixtral under RouteLLM's name); one question in both, in two formats.
    let mut strong = Vec::new();
    let mut weak = Vec::new();
    for i in 0..16 {
        let hard = f64::from(i >= 8);
        strong.push(outcome(
            format!("s{i}"),
            "strong",
            format!("Explain step {i} of the proof that the prime numbers never run out."),
            &[("gpt-4-1106-preview", 1.0 - hard), ("claude-v2", 1.0)],
        ));
        weak.push(outcome(
            format!("w{i}"),
            "weak",
            format!("Question:How many apples are left in basket number {i}?\nAnswer:"),
            &[
                ("mistralai/Mistral-7B-v0.1", 1.0 - hard),
                ("HuggingFaceH4/zephyr-7b-beta", 0.0),
            ],
        ));
    }
    strong.push(outcome(
        "s-shared".into(),
        "strong",
        "Which gas do plants absorb from the air?\nA) oxygen\nB) carbon dioxide".into(),
        &[
            ("gpt-4-1106-preview", 1.0),
            ("mistralai/mixtral-8x7b-chat", 1.0),
        ],
    ));
    weak.push(outcome(
        "w-shared".into(),
        "weak",
        "Question:Which gas do plants absorb from the air?\nAnswer:".into(),
        &[
            ("mistralai/Mistral-7B-v0.1", 0.0),
            ("mistralai/Mixtral-8x7B-Instruct-v0.1", 1.0),
        ],
    ));
    write_jsonl(&outcomes.join("strong.jsonl"), &strong);
    write_jsonl(&outcomes.join("weak.jsonl"), &weak);

    let heads = dir.path().join("heads.safetensors");
    let report = dir.path().join("report.md");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "train".to_string(),
        "heads".into(),
        "--tasks".into(),
        path(&tasks),
        "--eval".into(),
        path(&dir.path().join("no-eval")),
        "--outcomes".into(),
        path(&outcomes),
        "--cache-dir".into(),
        path(&dir.path().join("cache")),
        "--out".into(),
        path(&heads),
        "--report".into(),
        path(&report),
        "--no-task-cv".into(),
        "--epochs".into(),
        "2".into(),
        "--difficulty-epochs".into(),
        "2".into(),
        "--hidden".into(),
        "8".into(),
        "--difficulty-hidden".into(),
        "8".into(),
        // The blend is opt-in (default weight 0); the grid of the docs.
        "--difficulty-knn-weight".into(),
        "0,0.25,0.5".into(),
    ];
    let out = pointsman(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("heads.json")).unwrap())
            .unwrap();
    assert!(
        meta["difficulty_target"]
            .as_str()
            .unwrap()
            .contains("percentile of joint-IRT"),
        "{}",
        meta["difficulty_target"]
    );
    let joint = &meta["metrics"]["difficulty_joint_irt"];
    assert_eq!(joint["rows"], 34, "{joint}");
    assert_eq!(
        joint["items"], 33,
        "the shared question is one item: {joint}"
    );
    assert_eq!(joint["items_shared_across_sources"], 1, "{joint}");
    // 5 models: Mixtral's two names fold into one.
    assert_eq!(joint["models"].as_array().unwrap().len(), 5, "{joint}");
    let cv = &meta["metrics"]["difficulty_leave_one_source_out"]["per_source"];
    for s in ["strong", "weak"] {
        assert_eq!(cv[s]["n"], 17, "{cv}");
        // The held-out source's copy of the shared question is not trained on.
        assert_eq!(cv[s]["dropped_shared"], 1, "{cv}");
        let rho = cv[s]["spearman"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&rho), "{cv}");
    }
    // The kNN blend's grid is recorded; what inner CV chose, if anything,
    // is the metadata's `difficulty_knn` (and the bank then travels in the
    // heads file: the classify below loads it).
    let settings = &meta["training"]["settings"];
    assert_eq!(
        settings["difficulty_knn_weight"],
        serde_json::json!([0.0, 0.25, 0.5]),
        "{settings}"
    );
    if let Some(blend) = meta.get("difficulty_knn") {
        let w = blend["weight"].as_f64().unwrap();
        assert!(w > 0.0 && w <= 0.5, "{blend}");
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("| strong | 17 | 1 |"), "{text}");

    let out = pointsman(&[
        "classify",
        "--heads",
        &path(&heads),
        "How many apples are left?",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = v["difficulty"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&d), "{v}");
}
