//! Encoder plus heads, end to end from text: batch 1 at ~20 and ~200 tokens,
//! and batch 32. Run: `cargo bench -p pointsman-classifier --bench classify`.
//! Needs the fetched model (scripts/fetch-model) and the shipped heads.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pointsman_classifier::bench_prompts::{LONG, SHORT};
use pointsman_classifier::{Classifier, DeviceChoice, Engine, Precision};

fn classifier(engine: Engine) -> Classifier {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Classifier::load_with(
        &root.join("models/all-MiniLM-L6-v2"),
        &root.join("models/heads/task-difficulty.safetensors"),
        DeviceChoice::Cpu,
        engine,
    )
    .expect("run scripts/fetch-model and keep models/heads in place")
}

/// Classify end to end (for prompts over 400 characters that is three
/// encoder passes: the prompt and its two instruction views), and the
/// encoder alone on the full prompt. `POINTSMAN_BENCH_CANDLE=1` adds the
/// same rows for the candle engine, to show what the native one buys.
fn bench(c: &mut Criterion) {
    let long = LONG.to_string();
    let batch: Vec<&str> = (0..32)
        .map(|i| if i % 4 == 0 { long.as_str() } else { SHORT })
        .collect();
    let mut engines = vec![("native".to_string(), Engine::default())];
    // POINTSMAN_BENCH_PRECISIONS=bf16,int8 adds the reduced-precision
    // native rows (CPUs without the instructions run them in f32).
    if let Ok(list) = std::env::var("POINTSMAN_BENCH_PRECISIONS") {
        for p in list.split(',').filter(|p| !p.is_empty()) {
            let precision: Precision = p.parse().expect("POINTSMAN_BENCH_PRECISIONS");
            engines.push((format!("native_{p}"), Engine::Native(precision)));
        }
    }
    if std::env::var_os("POINTSMAN_BENCH_CANDLE").is_some() {
        engines.push(("candle".to_string(), Engine::Candle));
    }
    for (name, engine) in engines {
        let clf = classifier(engine);
        eprintln!(
            "{name}: tokens short {}, long {}",
            clf.encoder().token_count(SHORT).unwrap(),
            clf.encoder().token_count(&long).unwrap()
        );
        let mut g = c.benchmark_group(format!("classify_{name}"));
        g.sample_size(30);
        g.bench_function("batch1_short", |b| {
            b.iter(|| clf.predict(&[SHORT]).unwrap())
        });
        g.bench_function("batch1_long", |b| {
            b.iter(|| clf.predict(&[long.as_str()]).unwrap())
        });
        g.throughput(Throughput::Elements(32));
        g.sample_size(10);
        g.bench_function("batch32_mixed", |b| b.iter(|| clf.predict(&batch).unwrap()));
        g.finish();

        let enc = clf.encoder();
        let mut g = c.benchmark_group(format!("encoder_{name}"));
        g.sample_size(30);
        g.bench_function("batch1_short", |b| b.iter(|| enc.embed(&[SHORT]).unwrap()));
        g.bench_function("batch1_long", |b| {
            b.iter(|| enc.embed(&[long.as_str()]).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
