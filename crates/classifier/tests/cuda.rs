//! The candle encoder on a CUDA GPU against the same encoder on the CPU,
//! on the same weights (issue 12: the `cuda` feature, built and tested on a
//! GPU). The CPU candle encoder is itself held to Pointsman's native
//! encoder and to sentence-transformers (`native_encoder.rs`,
//! `multilingual.rs`), so this isolates what the device changes.
//!
//! Compiled only with `--features cuda`; CI builds neither (it has no GPU
//! and no CUDA toolchain). `scripts/build-cuda` builds it here from PyPI's
//! CUDA 13.0 toolchain, and `scripts/device-cuda-check` runs it on a GPU
//! machine. Built with the feature, a test fails when no GPU answers:
//! a CUDA build that cannot reach its GPU is the failure this is for.
//!
//! The model directory is `POINTSMAN_CUDA_MODEL_DIR`, else
//! `models/all-MiniLM-L6-v2`. The GPU machine gets no real weights (what
//! travels there is limited to 64 MiB with the repository), so the device
//! script gives it directories of random weights in the real models'
//! shapes: agreement with the CPU on the same weights is what is tested,
//! and the weights' values do not change the arithmetic's cost. (The
//! native encoder would not do as the CPU side there: it stores a word
//! table over 64 MB as int8 blocks, exact only for e5's 4-bit rows.)
#![cfg(feature = "cuda")]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use pointsman_classifier::bench_prompts::{mixed_batch, LONG, SHORT};
use pointsman_classifier::{BertEncoder, Encoder, ModelDir};

fn model_dir() -> PathBuf {
    match std::env::var_os("POINTSMAN_CUDA_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"),
    }
}

fn gpu() -> Device {
    Device::new_cuda(0)
        .unwrap_or_else(|e| panic!("built with `cuda` but CUDA device 0 does not answer: {e}"))
}

/// Largest |a − b| over two embeddings.
fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The GPU's f32 sums run in another order than the CPU's (and cuBLAS may
/// split them further), so the bits differ; on unit-length 384-d vectors
/// whose entries are about 0.05, 1e-4 is 0.2% of a typical entry, where a
/// wrong mask, position or layer norm moves entries by 1e-2 or more.
const TOLERANCE: f32 = 1e-4;

#[test]
fn cuda_matches_the_cpu_across_lengths_batched_and_alone() {
    let dir = ModelDir::open(&model_dir()).expect("a model directory (see the module docs)");
    let cuda = BertEncoder::load(&dir, gpu()).unwrap();
    let cpu = BertEncoder::load(&dir, Device::Cpu).unwrap();
    assert_eq!((cuda.dim(), cuda.window()), (cpu.dim(), cpu.window()));
    let prompts = common::prompts_across_lengths();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let lengths: Vec<usize> = texts.iter().map(|t| cpu.token_count(t).unwrap()).collect();
    assert!(
        lengths.contains(&cpu.window()),
        "one prompt fills the window: {lengths:?}"
    );
    let want = cpu.embed(&texts).unwrap();
    let batched = cuda.embed(&texts).unwrap();
    for (i, (g, w)) in batched.iter().zip(&want).enumerate() {
        let single = cuda.embed(&[texts[i]]).unwrap().remove(0);
        let (worst, worst_single) = (max_abs(g, w), max_abs(&single, w));
        eprintln!(
            "prompt {i}: {} tokens, max |cuda - cpu| batched {worst:.2e}, alone {worst_single:.2e}",
            lengths[i]
        );
        assert!(
            worst < TOLERANCE && worst_single < TOLERANCE,
            "prompt {i} ({} tokens): max |diff| batched {worst}, alone {worst_single}",
            lengths[i]
        );
        let norm: f32 = g.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "prompt {i}: norm {norm}");
    }
}

#[test]
fn device_auto_takes_the_gpu() {
    // `--device auto` takes the GPU in a CUDA build when one answers.
    let device = pointsman_classifier::DeviceChoice::Auto.resolve().unwrap();
    assert!(device.is_cuda(), "auto resolved to {device:?}");
}

/// Latency of the encoder alone, GPU and CPU candle, on the `classify`
/// bench's prompts (batch 1 at ~20 and ~200 tokens, a mixed batch of 32):
/// the median of 30 calls (10 for the batch) after 3 untimed ones. A
/// measurement for the device script to record, not a check: it asserts
/// nothing about time, and is ignored unless asked for (`--ignored`). It
/// lives here rather than in a criterion bench because the GPU machine
/// takes 64 MiB with the repository, and a second CUDA binary (6.8 MB
/// compressed) does not fit beside this one.
#[test]
#[ignore]
fn cuda_encoder_latency() {
    let dir = ModelDir::open(&model_dir()).expect("a model directory (see the module docs)");
    let batch = mixed_batch();
    for (name, device) in [("cuda", gpu()), ("cpu_candle", Device::Cpu)] {
        let enc = BertEncoder::load(&dir, device).unwrap();
        let cases: [(&str, Vec<&str>, usize); 3] = [
            ("batch1_short", vec![SHORT], 30),
            ("batch1_long", vec![LONG], 30),
            ("batch32_mixed", batch.clone(), 10),
        ];
        for (case, texts, n) in cases {
            for _ in 0..3 {
                enc.embed(&texts).unwrap();
            }
            let mut ms: Vec<f64> = (0..n)
                .map(|_| {
                    let t = Instant::now();
                    enc.embed(&texts).unwrap();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            let tokens: usize = texts.iter().map(|t| enc.token_count(t).unwrap()).sum();
            println!(
                "latency {} {name} {case}: median {:.3} ms, min {:.3}, max {:.3} ({} prompts, {tokens} tokens, {n} calls)",
                dir.path.display(),
                ms[n / 2],
                ms[0],
                ms[n - 1],
                texts.len()
            );
        }
    }
}
