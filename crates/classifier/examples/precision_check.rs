//! How far reduced precision moves the encoder and the classifier, on real
//! prompts: `cargo run --release --example precision_check -- FILE.jsonl
//! [bf16,int8] [limit]`. For each precision, against the f32 native
//! encoder: cosine similarity of the embeddings (min, p1, median), the
//! share of prompts whose predicted task changes, and the largest change
//! in difficulty; where the records carry a `task` label, the task accuracy
//! of each. Used for the accuracy table in docs/PERFORMANCE.md.

use std::path::PathBuf;

use pointsman_classifier::{Classifier, DeviceChoice, Engine, Precision};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .expect("usage: precision_check FILE.jsonl [bf16,int8] [limit]");
    let precisions: Vec<Precision> = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("bf16,int8")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let limit: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let records: Vec<(String, Option<String>)> = std::fs::read_to_string(file)
        .expect("read the prompts")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let prompt = v["prompt"].as_str().expect("a prompt field").to_string();
            (prompt, v["task"].as_str().map(str::to_string))
        })
        .take(limit)
        .collect();
    let prompts: Vec<String> = records.iter().map(|r| r.0.clone()).collect();
    let accuracy = |p: &[pointsman_classifier::Prediction]| -> Option<f64> {
        let labelled: Vec<_> = records
            .iter()
            .zip(p)
            .filter_map(|(r, p)| r.1.as_ref().map(|t| (t, p)))
            .collect();
        (!labelled.is_empty()).then(|| {
            labelled.iter().filter(|(t, p)| **t == p.task).count() as f64 / labelled.len() as f64
        })
    };
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let load = |engine| {
        Classifier::load_with(
            &root.join("models/all-MiniLM-L6-v2"),
            &root.join("models/heads/task-difficulty.safetensors"),
            DeviceChoice::Cpu,
            engine,
        )
        .expect("scripts/fetch-model")
    };
    let reference = load(Engine::default());
    let want_emb = reference.encoder().embed(&texts).unwrap();
    let want = reference.predict(&texts).unwrap();
    println!(
        "{} prompts from {file}; f32 task accuracy {:?}",
        texts.len(),
        accuracy(&want)
    );
    for precision in precisions {
        let clf = load(Engine::Native(precision));
        let got_emb = clf.encoder().embed(&texts).unwrap();
        let got = clf.predict(&texts).unwrap();
        let mut cos: Vec<f64> = want_emb
            .iter()
            .zip(&got_emb)
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (*x as f64) * (*y as f64))
                    .sum()
            })
            .collect();
        cos.sort_by(f64::total_cmp);
        let flips = want
            .iter()
            .zip(&got)
            .filter(|(a, b)| a.task != b.task)
            .count();
        let max_diff = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a.difficulty - b.difficulty).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{} ({}): cosine to f32 min {:.5}, p1 {:.5}, median {:.6}; task changed on {} of {} ({:.2}%); max |difficulty change| {:.4}; task accuracy {:?}",
            precision,
            clf.encoder().precision(),
            cos[0],
            cos[cos.len() / 100],
            cos[cos.len() / 2],
            flips,
            texts.len(),
            100.0 * flips as f64 / texts.len() as f64,
            max_diff,
            accuracy(&got)
        );
    }
}
