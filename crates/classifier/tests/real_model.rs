//! Tests against the real all-MiniLM-L6-v2 weights (fetched by
//! `scripts/fetch-model`; the test script runs it first).

use std::path::PathBuf;

use pointsman_classifier::{BertEncoder, ClassifierError, Encoder, ModelDir};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

fn encoder() -> BertEncoder {
    let dir = ModelDir::open(&model_dir()).expect("run scripts/fetch-model first");
    BertEncoder::load(&dir, candle_core::Device::Cpu).unwrap()
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    dims: Vec<usize>,
    values: Vec<Vec<f32>>,
}

/// Values from sentence-transformers 6.2.0 (torch 2.15, CPU) on the same
/// weights, written by scripts/reference_embeddings.py into
/// tests/data/reference_embeddings.json.
#[test]
fn embeddings_match_sentence_transformers() {
    let reference: Reference =
        serde_json::from_str(include_str!("data/reference_embeddings.json")).unwrap();
    let enc = encoder();
    assert_eq!(enc.dim(), 384);
    assert_eq!(
        enc.window(),
        256,
        "sentence_bert_config.json sets max_seq_length 256"
    );
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    // Once as a padded batch, once one by one: padding must not change results.
    let batched = enc.embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = enc.embed(&[text]).unwrap().remove(0);
        let norm: f32 = single.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        for (k, &d) in reference.dims.iter().enumerate() {
            let want = reference.values[i][k];
            assert!(
                (single[d] - want).abs() < 1e-5,
                "sentence {i} dim {d}: {} vs {want}",
                single[d]
            );
            assert!(
                (batched[i][d] - want).abs() < 1e-5,
                "batched sentence {i} dim {d}: {} vs {want}",
                batched[i][d]
            );
        }
    }
}

#[test]
fn long_prompts_are_truncated_to_the_window_keeping_head_and_tail() {
    let enc = encoder();
    let long = format!(
        "Summarize the following text. {} What is the gist?",
        "lorem ipsum dolor sit amet ".repeat(400)
    );
    assert_eq!(enc.token_count(&long).unwrap(), 256);
    assert!(enc.token_count("short prompt").unwrap() < 10);
    // The tail matters: two long prompts that differ only at the end embed differently.
    let a = format!("{} Translate this into French.", "word ".repeat(600));
    let b = format!("{} Write a poem about this.", "word ".repeat(600));
    let e = enc.embed(&[&a, &b]).unwrap();
    let cos: f32 = e[0].iter().zip(&e[1]).map(|(x, y)| x * y).sum();
    assert!(cos < 0.99, "tail was dropped: cosine {cos}");
}

#[test]
fn corrupt_weights_fail_at_startup_with_path_and_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    std::fs::copy(
        model_dir().with_extension("manifest.json"),
        tmp.path().join("m.manifest.json"),
    )
    .unwrap();
    let err = ModelDir::open(&dir).unwrap_err();
    assert!(matches!(err, ClassifierError::Checksum { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("53aa5117")
            && msg.contains("scripts/fetch-model"),
        "{msg}"
    );

    // Without a manifest the file is opened, and candle's own check names the file.
    std::fs::remove_file(tmp.path().join("m.manifest.json")).unwrap();
    let opened = ModelDir::open(&dir).unwrap();
    let err = BertEncoder::load(&opened, candle_core::Device::Cpu)
        .err()
        .expect("garbage weights must fail");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("not found"),
        "{err}"
    );
}
