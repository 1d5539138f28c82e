//! The native CPU encoder against the reference implementations: the
//! sentence-transformers values pinned in tests/data, and candle on the same
//! weights for prompts of every length the window allows.

mod common;

use std::path::PathBuf;

use pointsman_classifier::{
    BertEncoder, ClassifierError, Encoder, ModelDir, NativeBertEncoder, Precision,
};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

fn native() -> NativeBertEncoder {
    let dir = ModelDir::open(&model_dir()).expect("run scripts/fetch-model first");
    NativeBertEncoder::load(&dir).unwrap()
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    dims: Vec<usize>,
    values: Vec<Vec<f32>>,
}

/// The tolerance every encoder is held to against sentence-transformers.
const TOLERANCE: f32 = 1e-5;

#[test]
fn native_matches_sentence_transformers() {
    let reference: Reference =
        serde_json::from_str(include_str!("data/reference_embeddings.json")).unwrap();
    let enc = native();
    assert_eq!((enc.dim(), enc.window()), (384, 256));
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let batched = enc.embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = enc.embed(&[text]).unwrap().remove(0);
        let norm: f32 = single.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        for (k, &d) in reference.dims.iter().enumerate() {
            let want = reference.values[i][k];
            assert!(
                (single[d] - want).abs() < TOLERANCE,
                "sentence {i} dim {d}: {} vs {want}",
                single[d]
            );
            assert!(
                (batched[i][d] - want).abs() < TOLERANCE,
                "batched {i} dim {d}"
            );
        }
    }
}

#[test]
fn native_matches_candle_across_lengths() {
    let dir = ModelDir::open(&model_dir()).unwrap();
    let candle = BertEncoder::load(&dir, candle_core::Device::Cpu).unwrap();
    let enc = native();
    let prompts = common::prompts_across_lengths();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let lengths: Vec<usize> = texts.iter().map(|t| enc.token_count(t).unwrap()).collect();
    assert!(
        lengths.contains(&256),
        "one prompt fills the window: {lengths:?}"
    );
    let want = candle.embed(&texts).unwrap();
    let got = enc.embed(&texts).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let worst = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "prompt {i}: {} tokens, max |native - candle| {worst:.2e}",
            lengths[i]
        );
        assert!(
            worst < TOLERANCE,
            "prompt {i} ({} tokens): max |diff| {worst}",
            lengths[i]
        );
        let single = enc.embed(&[texts[i]]).unwrap().remove(0);
        assert_eq!(&single, g, "batch and single passes agree exactly");
    }
}

/// bf16 and int8 stay within a stated cosine of f32 on prompts of every
/// length, batched and single passes still agree exactly, and a CPU without
/// the instructions falls back to exactly the f32 encoder.
#[test]
fn reduced_precision_stays_close_to_f32() {
    let dir = ModelDir::open(&model_dir()).unwrap();
    let f32_enc = native();
    let prompts = common::prompts_across_lengths();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let want = f32_enc.embed(&texts).unwrap();
    // Measured on 500 real ShareGPT prompts (docs/PERFORMANCE.md): bf16
    // min cosine 0.99997, int8 0.9969.
    for (precision, min_cosine) in [(Precision::Bf16, 0.9999), (Precision::Int8, 0.995)] {
        let enc = NativeBertEncoder::load_with(&dir, precision).unwrap();
        let got = enc.embed(&texts).unwrap();
        if enc.precision() == "f32" {
            eprintln!("{precision}: not supported by this CPU; checking the f32 fallback");
            assert_eq!(got, want, "the fallback is the f32 encoder");
            continue;
        }
        assert_eq!(enc.precision(), precision.name());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let cosine: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            eprintln!("{precision} prompt {i}: cosine to f32 {cosine:.6}");
            assert!(
                cosine > min_cosine,
                "{precision} prompt {i}: cosine {cosine}"
            );
            let single = enc.embed(&[texts[i]]).unwrap().remove(0);
            assert_eq!(
                &single, g,
                "{precision}: batch and single passes agree exactly"
            );
        }
    }
}

/// A directory with the real tokenizer and weights but an edited config.
fn model_with_config(edit: impl Fn(&mut serde_json::Value)) -> (tempfile::TempDir, ModelDir) {
    let tmp = tempfile::tempdir().unwrap();
    let src = model_dir();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(src.join(f), tmp.path().join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let dir = ModelDir::open(tmp.path()).unwrap();
    (tmp, dir)
}

#[test]
fn weights_that_do_not_fit_the_config_fail_with_path_and_tensor() {
    let (_tmp, dir) = model_with_config(|c| c["intermediate_size"] = 1024.into());
    let err = NativeBertEncoder::load(&dir)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains("encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
}

#[test]
fn unsupported_architecture_is_named() {
    let (_tmp, dir) = model_with_config(|c| c["hidden_act"] = "swish".into());
    match NativeBertEncoder::load(&dir) {
        Err(ClassifierError::Unsupported { reason, .. }) => assert!(reason.contains("swish")),
        other => panic!("expected Unsupported, got {:?}", other.err()),
    }
}
