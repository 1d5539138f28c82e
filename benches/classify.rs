//! Encoder plus heads, end to end from text: batch 1 at ~20 and ~200 tokens,
//! and batch 32, and the difficulty's kNN part alone. Run:
//! `cargo bench -p pointsman-classifier --bench classify`
//! (`-- difficulty_knn` for the kNN part only, `-- operation_cues` for the
//! task head's cue flags alone).
//! Needs the fetched model (scripts/fetch-model) and the shipped heads.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pointsman_classifier::bench_prompts::{mixed_batch, LONG, SHORT};
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
    let batch = mixed_batch();
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
            clf.encoder().token_count(LONG).unwrap()
        );
        let mut g = c.benchmark_group(format!("classify_{name}"));
        g.sample_size(30);
        g.bench_function("batch1_short", |b| {
            b.iter(|| clf.predict(&[SHORT]).unwrap())
        });
        g.bench_function("batch1_long", |b| b.iter(|| clf.predict(&[LONG]).unwrap()));
        g.throughput(Throughput::Elements(32));
        g.sample_size(10);
        g.bench_function("batch32_mixed", |b| b.iter(|| clf.predict(&batch).unwrap()));
        g.finish();

        let enc = clf.encoder();
        let mut g = c.benchmark_group(format!("encoder_{name}"));
        g.sample_size(30);
        g.bench_function("batch1_short", |b| b.iter(|| enc.embed(&[SHORT]).unwrap()));
        g.bench_function("batch1_long", |b| b.iter(|| enc.embed(&[LONG]).unwrap()));
        g.finish();
    }
}

/// The difficulty's kNN part alone: one query against a bank the size of
/// the shipped e5 one (10,479 outcome prompts × 384), k = 30.
fn bench_difficulty_knn(c: &mut Criterion) {
    use pointsman_classifier::difficulty_knn::{unit, KnnBlend, NeighbourBank};
    let (n, dim) = (10_479, 384);
    let row = |i: usize| -> Vec<f32> {
        unit(
            &(0..dim)
                .map(|j| ((i * 31 + j * 7) as f32 * 0.013).sin())
                .collect::<Vec<_>>(),
        )
    };
    let bank = NeighbourBank::new(
        dim,
        (0..n).flat_map(row).collect(),
        (0..n).map(|i| (i % 100) as f32 / 100.0).collect(),
        KnnBlend { k: 30, weight: 0.5 },
    )
    .unwrap();
    let query = row(n + 1);
    c.bench_function("difficulty_knn_10479x384_k30", |b| {
        b.iter(|| bank.mean_target(std::hint::black_box(&query)))
    });
}

/// The operation cues of one prompt (the task head's word matching, on
/// the request windows of a long prompt): what the cues add to a
/// classification beside the encoder passes.
fn bench_operation_cues(c: &mut Criterion) {
    use pointsman_classifier::cues::operation_cues;
    let mut g = c.benchmark_group("operation_cues");
    g.bench_function("short", |b| {
        b.iter(|| operation_cues(std::hint::black_box(SHORT)))
    });
    g.bench_function("long", |b| {
        b.iter(|| operation_cues(std::hint::black_box(LONG)))
    });
    g.finish();
}

criterion_group!(benches, bench_difficulty_knn, bench_operation_cues, bench);
criterion_main!(benches);
