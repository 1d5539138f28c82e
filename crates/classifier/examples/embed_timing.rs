//! Times the encoder on one prompt, for profiling (`perf record`) and quick
//! comparisons: `cargo run --release --example embed_timing -- [short|long] [iterations] [native|candle]`.
//! Benchmarks proper live in benches/classify.rs.

use std::path::PathBuf;
use std::time::Instant;

use pointsman_classifier::classifier::load_encoder;
use pointsman_classifier::{DeviceChoice, Engine, ModelDir};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("long");
    let iterations: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let engine: Engine = args.get(3).map(|s| s.parse().unwrap()).unwrap_or_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = ModelDir::open(&root.join("models/all-MiniLM-L6-v2")).expect("scripts/fetch-model");
    let enc = load_encoder(&dir, DeviceChoice::Cpu, engine).unwrap();
    let text = match which {
        "short" => {
            "Write a Python function that checks whether a string is a palindrome.".to_string()
        }
        _ => "I am getting this error when I run my Flask app in Docker. ".repeat(20),
    };
    println!("{} tokens", enc.token_count(&text).unwrap());
    for _ in 0..3 {
        enc.embed(&[&text]).unwrap();
    }
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            enc.embed(&[&text]).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "median {:.3} ms, min {:.3} ms",
        times[times.len() / 2],
        times[0]
    );
}
