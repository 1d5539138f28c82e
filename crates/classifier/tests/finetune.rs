//! LoRA fine-tuning on the real MiniLM (BERT) and multilingual-e5-small
//! (XLM-RoBERTa) weights: a seeded run is reproducible bit for bit, and an
//! adapter merged into the weights at load (native f32/bf16/int8 and candle)
//! gives the same embeddings as the unmerged forward that applies the
//! factors explicitly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pointsman_classifier::finetune::lora::{LoraPair, TARGETS};
use pointsman_classifier::finetune::model::{module_name, FrozenBert, LoraSet};
use pointsman_classifier::finetune::{
    finetune, finetune_snapshots, AdapterMetadata, FinetuneConfig, LoraAdapter, LowerCache,
};
use pointsman_classifier::tokenize::PromptTokenizer;
use pointsman_classifier::{
    BertEncoder, ClassifierError, Encoder, ModelDir, NativeBertEncoder, Precision,
};
use rand::{Rng, SeedableRng};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

fn e5_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/multilingual-e5-small")
}

const PROMPTS: [(&str, usize); 12] = [
    ("Write a Python function that reverses a linked list.", 0),
    (
        "Fix the bug in this JavaScript loop: for (i=0;i<n;i++) {}",
        0,
    ),
    ("How do I sort a dictionary by value in Rust?", 0),
    ("Implement binary search in C++.", 0),
    ("What is 17 times 23?", 1),
    ("Solve for x: 3x + 5 = 20.", 1),
    ("A train travels 60 km in 45 minutes. What is its speed?", 1),
    ("Compute the derivative of x^3 sin x.", 1),
    ("Write a short poem about autumn leaves.", 2),
    (
        "Tell me a story about a dragon who is afraid of heights.",
        2,
    ),
    ("Write a haiku about the sea at night.", 2),
    ("Compose a limerick about a cat and a hat.", 2),
];

fn load(path: &std::path::Path) -> (ModelDir, FrozenBert) {
    let dir = ModelDir::open(path).expect("run scripts/fetch-model first");
    let bert = FrozenBert::load(&dir.config_path(), &dir.weights_path()).unwrap();
    (dir, bert)
}

fn tiny_run(dir: &ModelDir, bert: &FrozenBert, seed: u64) -> (LoraAdapter, Vec<f32>) {
    tiny_runs(dir, bert, seed, 2, &[2]).pop().unwrap()
}

/// Trains `epochs` epochs and returns the snapshots after `after`.
fn tiny_runs(
    dir: &ModelDir,
    bert: &FrozenBert,
    seed: u64,
    epochs: usize,
    after: &[usize],
) -> Vec<(LoraAdapter, Vec<f32>)> {
    let tok = PromptTokenizer::load(dir, 32).unwrap();
    let ids: Vec<Vec<u32>> = PROMPTS.iter().map(|(t, _)| tok.ids(t).unwrap()).collect();
    let cfg = FinetuneConfig {
        layers: 1,
        rank: 2,
        epochs,
        batch_size: 4,
        seed,
        ..Default::default()
    };
    let cache = LowerCache::build(bert, &ids, bert.num_layers() - 1, &|_| {}).unwrap();
    let rows: Vec<usize> = (0..PROMPTS.len()).collect();
    let labels: Vec<usize> = PROMPTS.iter().map(|p| p.1).collect();
    if after == [epochs] {
        let out = finetune(
            bert,
            &cache,
            &rows,
            &labels,
            &vec![1.0; rows.len()],
            3,
            &cfg,
            &|_, _, _| {},
        )
        .unwrap();
        return vec![(out.adapter.unwrap(), out.head_weight)];
    }
    finetune_snapshots(
        bert,
        &cache,
        &rows,
        &labels,
        &vec![1.0; rows.len()],
        3,
        &cfg,
        after,
        &|_, _, _| {},
    )
    .unwrap()
    .into_iter()
    .map(|m| (m.adapter.unwrap(), m.head_weight))
    .collect()
}

/// `train encoder --select-epochs` scores snapshots of one run: each must
/// be exactly what a run of that many epochs returns.
#[test]
fn a_snapshot_after_e_epochs_equals_a_run_of_e_epochs() {
    let (dir, bert) = load(&model_dir());
    let snaps = tiny_runs(&dir, &bert, 5, 3, &[1, 3]);
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0], tiny_runs(&dir, &bert, 5, 1, &[1])[0]);
    assert_eq!(snaps[1], tiny_runs(&dir, &bert, 5, 3, &[3])[0]);
    assert_ne!(snaps[0].0, snaps[1].0, "two more epochs moved the adapter");
}

fn check_reproducible(path: &std::path::Path, top_layer: usize) {
    let (dir, bert) = load(path);
    let (a, head_a) = tiny_run(&dir, &bert, 3);
    assert_eq!(a.modules.len(), TARGETS.len(), "one pair per target");
    assert!(
        a.modules
            .keys()
            .all(|k| k.starts_with(&format!("encoder.layer.{top_layer}."))),
        "only the top layer is adapted: {:?}",
        a.modules.keys()
    );
    assert!(
        a.modules.values().any(|p| p.b.iter().any(|&x| x != 0.0)),
        "training moved B away from its zero start"
    );
    let (b, head_b) = tiny_run(&dir, &bert, 3);
    assert_eq!(a, b, "same seed, same adapter, bit for bit");
    assert_eq!(head_a, head_b);
    let (c, _) = tiny_run(&dir, &bert, 4);
    assert_ne!(a, c, "another seed gives another adapter");
}

#[test]
fn finetuning_is_reproducible_from_a_seed() {
    check_reproducible(&model_dir(), 5);
}

#[test]
fn e5_finetuning_is_reproducible_from_a_seed() {
    check_reproducible(&e5_dir(), 11);
}

/// An adapter on the given layers with factors large enough to move the
/// embeddings well away from the base model's.
fn strong_adapter(hidden: usize, intermediate: usize, layers: [usize; 2]) -> LoraAdapter {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let rank = 4;
    let mut modules = BTreeMap::new();
    for layer in layers {
        for t in TARGETS {
            let (out, inp) = match t {
                "intermediate.dense" => (intermediate, hidden),
                "output.dense" => (hidden, intermediate),
                _ => (hidden, hidden),
            };
            let mut draw = |n: usize, s: f32| (0..n).map(|_| rng.random_range(-s..s)).collect();
            modules.insert(
                module_name(layer, t),
                LoraPair {
                    a: draw(rank * inp, 0.2),
                    b: draw(out * rank, 0.2),
                    inputs: inp,
                    outputs: out,
                },
            );
        }
    }
    LoraAdapter {
        rank,
        alpha: 8.0,
        modules,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
        * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn merged_adapter_forward_equals_the_unmerged_forward() {
    check_merged_equals_unmerged(&model_dir());
}

/// XLM-RoBERTa: positions from row pad + 1, `roberta.`-free names, the
/// 250k-row table; the same equality must hold.
#[test]
fn e5_merged_adapter_forward_equals_the_unmerged_forward() {
    check_merged_equals_unmerged(&e5_dir());
}

fn check_merged_equals_unmerged(path: &std::path::Path) {
    let (base, bert) = load(path);
    let n = bert.num_layers();
    let adapter = strong_adapter(384, 1536, [n - 2, n - 1]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lora.safetensors");
    let meta = AdapterMetadata {
        format_version: 0,
        rank: 0,
        alpha: 0.0,
        base_weights_sha256: base.weights_sha256.clone(),
        adapter_sha256: String::new(),
        training: serde_json::Value::Null,
    };
    adapter.save(&path, &meta).unwrap();
    let merged_dir = base.clone().with_adapter(&path).unwrap();
    assert_ne!(merged_dir.weights_sha256, base.weights_sha256);

    let texts = [
        "Summarize the following article in two sentences.",
        "def fib(n): return n if n < 2 else fib(n-1) + fib(n-2)",
        "Translate 'good morning' into German.",
        "Why is the sky blue? Explain it to a ten-year-old, with an example.",
        "Напиши короткое стихотворение о зиме.",
        "用三句话总结这篇文章。",
    ];
    // Unmerged: lower layers frozen, top two with the factors applied explicitly.
    let tok = PromptTokenizer::load(&base, 256).unwrap();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.ids(t).unwrap()).collect();
    let cache = LowerCache::build(&bert, &ids, n - 2, &|_| {}).unwrap();
    let rows: Vec<usize> = (0..texts.len()).collect();
    let set = LoraSet::from_adapter(&adapter).unwrap();
    let unmerged = cache.embed(&bert, &rows, Some(&set)).unwrap();
    let plain = cache.embed(&bert, &rows, None).unwrap();

    let native = NativeBertEncoder::load(&merged_dir).unwrap();
    let native_base = NativeBertEncoder::load(&base).unwrap();
    let candle = BertEncoder::load(&merged_dir, candle_core::Device::Cpu).unwrap();
    let merged = native.embed(&texts).unwrap();
    let merged_candle = candle.embed(&texts).unwrap();
    let base_emb = native_base.embed(&texts).unwrap();
    for i in 0..texts.len() {
        // The adapter matters: without it the embedding is far away ...
        assert!(
            cosine(&unmerged[i], &plain[i]) < 0.95,
            "adapter too weak for a meaningful test: cos {}",
            cosine(&unmerged[i], &plain[i])
        );
        // ... the explicit forward without factors is the base encoder ...
        assert!(max_abs(&plain[i], &base_emb[i]) < 1e-4);
        // ... and the merged encoders agree with the explicit forward.
        assert!(
            max_abs(&merged[i], &unmerged[i]) < 1e-4,
            "native: {}",
            max_abs(&merged[i], &unmerged[i])
        );
        assert!(
            max_abs(&merged_candle[i], &unmerged[i]) < 1e-4,
            "candle: {}",
            max_abs(&merged_candle[i], &unmerged[i])
        );
    }
    // Reduced-precision native paths pack the merged weights like any others.
    for precision in [Precision::Bf16, Precision::Int8] {
        let enc = NativeBertEncoder::load_with(&merged_dir, precision).unwrap();
        for (e, u) in enc.embed(&texts).unwrap().iter().zip(&unmerged) {
            assert!(cosine(e, u) > 0.99, "{precision}: cos {}", cosine(e, u));
        }
    }
}

#[test]
fn an_adapter_for_other_base_weights_is_refused() {
    let base = ModelDir::open(&model_dir()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("other.safetensors");
    let meta = AdapterMetadata {
        format_version: 0,
        rank: 0,
        alpha: 0.0,
        base_weights_sha256: "0".repeat(64),
        adapter_sha256: String::new(),
        training: serde_json::Value::Null,
    };
    strong_adapter(384, 1536, [4, 5])
        .save(&path, &meta)
        .unwrap();
    let err = base.with_adapter(&path).unwrap_err();
    assert!(matches!(err, ClassifierError::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("other.safetensors"));
}

/// The shipped e5 adapter (models/adapters/e5-lora.*, `train encoder
/// --model-dir models/multilingual-e5-small`) is bound to the e5 weights it
/// was trained on, merges at load, and moves the embedding.
#[test]
fn the_shipped_e5_adapter_merges_onto_e5() {
    let base = ModelDir::open(&e5_dir()).unwrap();
    let adapter = e5_dir().join("../adapters/e5-lora.safetensors");
    let merged = base.clone().with_adapter(&adapter).unwrap();
    assert_ne!(merged.weights_sha256, base.weights_sha256);
    let texts = ["Write a short story about a lighthouse keeper."];
    let tuned = NativeBertEncoder::load(&merged)
        .unwrap()
        .embed(&texts)
        .unwrap();
    let plain = NativeBertEncoder::load(&base)
        .unwrap()
        .embed(&texts)
        .unwrap();
    let c = cosine(&tuned[0], &plain[0]);
    assert!(c < 0.9999 && c > 0.5, "cos {c}");
    // Not for MiniLM: the binding refuses it.
    let minilm = ModelDir::open(&model_dir()).unwrap();
    assert!(matches!(
        minilm.with_adapter(&adapter).unwrap_err(),
        ClassifierError::Incompatible { .. }
    ));
}
