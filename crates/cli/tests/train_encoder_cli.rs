//! Runs the real `pointsman train encoder` (real MiniLM weights) on a tiny
//! data set: `--select-epochs` scores every candidate on the held-out
//! source folds, reports the choice and writes an adapter trained for it;
//! a bad candidate list is refused before any work.

use std::path::Path;

mod serve_support;
use serve_support::pointsman;

fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn select_epochs_chooses_on_the_source_folds_and_trains_the_choice() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
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
    let out = dir.path().join("lora.safetensors");
    let report = dir.path().join("report.md");
    let no_eval = dir.path().join("none");
    let args = [
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
        "--folds",
        "3",
        "--select-epochs",
        "2,1",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let run = pointsman(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("### Epochs chosen on the held-out source folds"));
    assert!(
        text.contains("\n| 1 | ") && text.contains("\n| 2 | "),
        "{text}"
    );
    // "Chosen: frozen F epochs, fine-tuned T epochs (the tables below …)."
    let line = text
        .lines()
        .find(|l| l.starts_with("Chosen: "))
        .expect("a `Chosen:` line");
    let chosen: usize = line
        .split("fine-tuned ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(chosen == 1 || chosen == 2, "{line}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    let training = &meta["training"];
    assert_eq!(training["settings"]["epochs"], chosen);
    assert_eq!(training["epoch_losses"].as_array().unwrap().len(), chosen);
    assert_eq!(
        training["metrics"]["epoch_selection"]["chosen_fine_tuned"],
        chosen
    );

    // Epoch 0, or selection without folds, is refused with the flag's name.
    for bad in [["--select-epochs", "0,1"], ["--folds", "0"]] {
        let mut a: Vec<&str> = args.to_vec();
        let i = a.iter().position(|x| *x == bad[0]).unwrap();
        a[i + 1] = bad[1];
        let run = pointsman(&a);
        assert!(!run.status.success());
        assert!(String::from_utf8_lossy(&run.stderr).contains("--select-epochs"));
    }
}
