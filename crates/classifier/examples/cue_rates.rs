//! Where the operation cues fire: for each task label of the given record
//! files (JSON lines with `prompt` and `task`), the share of its prompts
//! on which each cue of [`pointsman_classifier::cues`] is set. Uses the
//! library's own matcher, so the table is what the task head reads.
//!
//! `cargo run --release -p pointsman-classifier --example cue_rates -- training-data/tasks/*.jsonl`

use std::collections::BTreeMap;

use pointsman_classifier::cues::{operation_cues, CUE_NAMES};

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    assert!(!files.is_empty(), "usage: cue_rates FILE.jsonl [...]");
    // label -> (prompts, times each cue fired)
    let mut by_label: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (n, line) in text.lines().enumerate() {
            let record: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}:{}: {e}", n + 1));
            let (Some(prompt), Some(task)) = (record["prompt"].as_str(), record["task"].as_str())
            else {
                continue;
            };
            let entry = by_label
                .entry(task.to_string())
                .or_insert_with(|| (0, vec![0; CUE_NAMES.len()]));
            entry.0 += 1;
            for (count, flag) in entry.1.iter_mut().zip(operation_cues(prompt)) {
                *count += usize::from(flag == 1.0);
            }
        }
    }
    let short: Vec<&str> = CUE_NAMES.iter().map(|c| &c["cue_".len()..]).collect();
    println!("| task | n | {} |", short.join(" | "));
    println!("|---|---|{}", "---|".repeat(short.len()));
    for (label, (n, fired)) in &by_label {
        let shares: Vec<String> = fired
            .iter()
            .map(|&f| format!("{:.2}", f as f64 / *n as f64))
            .collect();
        println!("| {label} | {n} | {} |", shares.join(" | "));
    }
}
