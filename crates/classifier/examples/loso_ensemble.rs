//! Leave-one-source-out of an ensemble of task heads: for every fold
//! directory present in each of the given `scripts/loso.py` work folders,
//! scores the fold's held-out prompts with each run's heads and with the
//! mean of their softmax outputs. Embeddings come from the training cache
//! (`target/embedding-cache`), so nothing is re-encoded when the runs were
//! trained with the same encoder.
//!
//! `cargo run --release -p pointsman-classifier --example loso_ensemble -- WORK1 WORK2 [WORK3 ...]`
//!
//! Prints one line per fold (member accuracies, ensemble accuracy), then
//! pooled accuracy and macro recall for each member and the ensemble.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pointsman_classifier::classifier::{head_input, load_encoder};
use pointsman_classifier::embed_cache::encoder_id;
use pointsman_classifier::{DeviceChoice, EmbedCache, Engine, Heads, ModelDir, Precision};

fn main() {
    let works: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    assert!(works.len() >= 2, "usage: loso_ensemble WORK1 WORK2 [...]");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = ModelDir::open(&root.join("models/multilingual-e5-small")).expect("model dir");
    let encoder =
        load_encoder(&dir, DeviceChoice::Cpu, Engine::Native(Precision::F32)).expect("encoder");
    let id = encoder_id(encoder.as_ref(), &dir.weights_sha256);
    let mut cache = EmbedCache::open(&root.join("target/embedding-cache"), &id, encoder.as_ref())
        .expect("cache");

    let mut folds: Vec<String> = std::fs::read_dir(&works[0])
        .expect("work dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("heads.safetensors").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| {
            works
                .iter()
                .all(|w| w.join(f).join("heads.safetensors").exists())
        })
        .collect();
    folds.sort();

    let members = works.len();
    // [member..., ensemble] -> (label -> (right, total))
    let mut per_class: Vec<BTreeMap<String, (usize, usize)>> = vec![BTreeMap::new(); members + 1];
    for fold in &folds {
        let (prompts, labels) = held_out(&works[0].join(fold).join("eval/held_out.jsonl"));
        let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let embs = cache
            .embed_all(encoder.as_ref(), &texts, 32, &|_, _| {})
            .expect("embed");
        let views = cache
            .embed_views(encoder.as_ref(), &texts, 32, &|_, _| {})
            .expect("views");
        let heads: Vec<Heads> = works
            .iter()
            .map(|w| Heads::load(&w.join(fold).join("heads.safetensors")).expect("heads"))
            .collect();
        let names = heads[0].task.labels.labels().to_vec();
        let mut right = vec![0usize; members + 1];
        for (i, text) in texts.iter().enumerate() {
            let mut mean = vec![0f32; names.len()];
            for (m, h) in heads.iter().enumerate() {
                assert_eq!(h.task.labels.labels(), names.as_slice(), "same taxonomy");
                let v = views[i]
                    .as_ref()
                    .map(|(a, b)| (a.as_slice(), b.as_slice()))
                    .unwrap_or((&embs[i], &embs[i]));
                let input = head_input(
                    &embs[i],
                    h.uses_views().then_some(v),
                    text,
                    h.uses_features(),
                );
                let s = h.task.scores(&input, text);
                mean.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
                tally(
                    &mut per_class[m],
                    &mut right[m],
                    &names[argmax(&s)],
                    &labels[i],
                );
            }
            tally(
                &mut per_class[members],
                &mut right[members],
                &names[argmax(&mean)],
                &labels[i],
            );
        }
        let n = texts.len() as f64;
        let accs: Vec<String> = right
            .iter()
            .map(|r| format!("{:.3}", *r as f64 / n))
            .collect();
        println!("{fold:24} {:5} {}", texts.len(), accs.join(" "));
    }
    for (m, classes) in per_class.iter().enumerate() {
        let (r, t) = classes.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let macro_recall = classes
            .values()
            .map(|(r, t)| *r as f64 / *t as f64)
            .sum::<f64>()
            / classes.len() as f64;
        let name = if m == members {
            "ensemble".to_string()
        } else {
            works[m].display().to_string()
        };
        let recalls: Vec<String> = classes
            .iter()
            .map(|(k, (r, t))| format!("{k} {:.2}", *r as f64 / *t as f64))
            .collect();
        println!(
            "{name}: accuracy {:.4} ({r}/{t}), macro recall {macro_recall:.4}; {}",
            r as f64 / t as f64,
            recalls.join(", ")
        );
    }
}

fn tally(
    classes: &mut BTreeMap<String, (usize, usize)>,
    right: &mut usize,
    predicted: &str,
    truth: &str,
) {
    let e = classes.entry(truth.to_string()).or_default();
    e.1 += 1;
    if predicted == truth {
        e.0 += 1;
        *right += 1;
    }
}

fn argmax(s: &[f32]) -> usize {
    s.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// The fold's own held-out prompts (not its `:translated` ones) and labels.
fn held_out(path: &Path) -> (Vec<String>, Vec<String>) {
    let mut prompts = Vec::new();
    let mut labels = Vec::new();
    for line in std::fs::read_to_string(path)
        .expect("held_out.jsonl")
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if v["source"]
            .as_str()
            .is_some_and(|s| s.ends_with(":translated"))
        {
            continue;
        }
        prompts.push(v["prompt"].as_str().expect("prompt").to_string());
        labels.push(v["task"].as_str().expect("task").to_string());
    }
    (prompts, labels)
}
