//! Runs the real `pointsman` binary with the real encoder and the shipped heads.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pointsman(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check_prediction(v: &serde_json::Value) {
    let scores = v["task_scores"].as_object().unwrap();
    assert_eq!(scores.len(), 11, "{v}");
    let sum: f64 = scores.values().map(|s| s.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "scores sum to {sum}");
    let best = scores
        .iter()
        .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
        .unwrap()
        .0;
    assert_eq!(v["task"].as_str().unwrap(), best);
    let d = v["difficulty"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&d));
}

#[test]
fn classifies_one_prompt_as_one_json_object() {
    let out = pointsman(
        &[
            "classify",
            "Write a Python function that returns the n-th Fibonacci number.",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    check_prediction(&lines[0]);
    assert_eq!(lines[0]["task"], "code");
}

#[test]
fn classifies_a_file_in_order_and_reports_bad_lines_with_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"id\": \"t1\", \"prompt\": \"Translate into German: Where is the train station?\"}\n",
            "{\"id\": \"broken\", \"prompt\": \n",
            "{\"id\": \"m1\", \"prompt\": \"Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?\"}\n",
            "{\"id\": \"e1\", \"prompt\": \"\"}\n",
            "{\"id\": \"s1\", \"prompt\": \"Summarize this dialogue: Amanda: I baked cookies. Do you want some? Jerry: Sure! Amanda: I'll bring you some tomorrow.\"}\n",
        ),
    )
    .unwrap();
    let out = pointsman(&["classify", "--input", path.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "malformed lines must fail the run at the end"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2:"), "{stderr}");
    assert!(
        stderr.contains("line 4:") && stderr.contains("prompt"),
        "{stderr}"
    );
    let lines = json_lines(&out);
    let ids: Vec<&str> = lines.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t1", "m1", "s1"]);
    lines.iter().for_each(check_prediction);
    assert_eq!(lines[0]["task"], "translation");
    assert_eq!(lines[1]["task"], "math");
    assert_eq!(lines[2]["task"], "summarization");
}

#[test]
fn reads_stdin_with_dash() {
    let out = pointsman(
        &["classify", "--input", "-"],
        Some("{\"id\": \"a\", \"prompt\": \"Write a short poem about autumn leaves.\"}\n{\"id\": \"b\", \"prompt\": \"hello there, how are you today?\"}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["task"], "creative_writing");
    assert_eq!(lines[1]["id"], "b");
}

#[test]
fn missing_model_fails_at_startup_naming_path_and_fetch_command() {
    let out = pointsman(
        &["classify", "--model-dir", "/nonexistent/model", "hi"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/model/config.json") && stderr.contains("scripts/fetch-model"),
        "{stderr}"
    );
}

#[test]
fn corrupt_heads_fail_at_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("h.safetensors");
    std::fs::copy(
        repo().join("models/heads/task-difficulty.json"),
        dir.path().join("h.json"),
    )
    .unwrap();
    std::fs::write(&heads, b"garbage").unwrap();
    let out = pointsman(
        &["classify", "--heads", heads.to_str().unwrap(), "hi"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("h.safetensors"), "{stderr}");
}
