//! Encoder plus heads, end to end from text: batch 1 at ~20 and ~200 tokens,
//! and batch 32. Run: `cargo bench -p switchyard-classifier --bench classify`.
//! Needs the fetched model (scripts/fetch-model) and the shipped heads.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_classifier::{Classifier, DeviceChoice};

const SHORT: &str = "Write a Python function that checks whether a string is a palindrome."; // 15 words

fn long_prompt() -> String {
    // A real-style request with a pasted error, about 200 tokens.
    "I am getting this error when I run my Flask app in Docker and I can't figure out why. \
     It works fine locally. Here is the traceback:\n\nTraceback (most recent call last):\n  \
     File \"/app/app.py\", line 12, in <module>\n    from flask_sqlalchemy import SQLAlchemy\n\
     ModuleNotFoundError: No module named 'flask_sqlalchemy'\n\nMy Dockerfile is:\n\nFROM python:3.11-slim\n\
     WORKDIR /app\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nCOPY . .\n\
     CMD [\"python\", \"app.py\"]\n\nand requirements.txt contains flask and gunicorn. I rebuilt the image \
     twice with --no-cache and the error stays the same. What am I doing wrong, and how should I structure \
     the Dockerfile so that dependencies are cached between builds but still installed correctly? Please \
     explain step by step and show the corrected files."
        .to_string()
}

fn classifier() -> Classifier {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Classifier::load(
        &root.join("models/all-MiniLM-L6-v2"),
        &root.join("models/heads/task-difficulty.safetensors"),
        DeviceChoice::Cpu,
    )
    .expect("run scripts/fetch-model and keep models/heads in place")
}

fn bench(c: &mut Criterion) {
    let clf = classifier();
    let long = long_prompt();
    eprintln!(
        "tokens: short {}, long {}",
        clf.encoder().token_count(SHORT).unwrap(),
        clf.encoder().token_count(&long).unwrap()
    );
    let mut g = c.benchmark_group("classify");
    g.sample_size(30);
    g.bench_function("batch1_short", |b| {
        b.iter(|| clf.predict(&[SHORT]).unwrap())
    });
    g.bench_function("batch1_long", |b| {
        b.iter(|| clf.predict(&[long.as_str()]).unwrap())
    });
    let batch: Vec<&str> = (0..32)
        .map(|i| if i % 4 == 0 { long.as_str() } else { SHORT })
        .collect();
    g.throughput(Throughput::Elements(32));
    g.sample_size(10);
    g.bench_function("batch32_mixed", |b| b.iter(|| clf.predict(&batch).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
