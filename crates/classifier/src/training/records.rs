//! The record folders training reads: every `.jsonl` file of a folder, in
//! name order, each file one source unless its records name theirs, with a
//! `file:sha256` per file for the artifact's provenance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pointsman_records::Record;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::error::{ClassifierError, Result};
use crate::taxonomy::Taxonomy;

/// Records with their file's stem (the source unless a record names its
/// own), and `file:sha256` of every file read.
pub type SourcedRecords = (Vec<(String, Record)>, Vec<String>);

/// [`read_dir_records`] over several folders, in the order given.
pub fn read_dirs_records(dirs: &[PathBuf]) -> Result<SourcedRecords> {
    let (mut records, mut hashes) = (Vec::new(), Vec::new());
    for dir in dirs {
        let (r, h) = read_dir_records(dir)?;
        records.extend(r);
        hashes.extend(h);
    }
    Ok((records, hashes))
}

/// [`read_dir_records`] of `dir`, or nothing when `dir` is not a folder
/// (the evaluation-only records are optional).
pub fn read_optional_dir_records(dir: &Path) -> Result<SourcedRecords> {
    if dir.is_dir() {
        read_dir_records(dir)
    } else {
        Ok((Vec::new(), Vec::new()))
    }
}

/// The error of a run whose task folders `dirs` hold no record with one of
/// `labels`.
pub fn no_labelled_records(dirs: &[PathBuf], labels: &dyn std::fmt::Debug) -> ClassifierError {
    ClassifierError::NoTrainingData(format!(
        "no records in {} carry a task label from {labels:?}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
    ))
}

/// Every record of every `.jsonl` file in `dir` (sorted by name). A file
/// with any malformed line fails the whole read
/// ([`ClassifierError::MalformedRecords`] lists each line's error).
pub fn read_dir_records(dir: &Path) -> Result<SourcedRecords> {
    let cannot_read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClassifierError::ReadData { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(cannot_read(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut hashes = Vec::new();
    for f in files {
        let (good, bad) = pointsman_records::read_file(&f).map_err(cannot_read(&f))?;
        if !bad.is_empty() {
            return Err(ClassifierError::MalformedRecords {
                path: f,
                errors: bad.iter().map(ToString::to_string).collect(),
            });
        }
        let bytes = std::fs::read(&f).map_err(cannot_read(&f))?;
        hashes.push(format!(
            "{}:{}",
            f.file_name().unwrap().to_string_lossy(),
            hex::encode(Sha256::digest(bytes))
        ));
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        out.extend(good.into_iter().map(|r| (stem.clone(), r)));
    }
    Ok((out, hashes))
}

/// A task-labelled prompt.
pub struct Example {
    pub source: String,
    pub prompt: String,
    /// Index into the taxonomy.
    pub label: usize,
}

/// The records whose task is one of `taxonomy`'s labels, in order; the
/// others are skipped.
pub fn examples(records: &[(String, Record)], taxonomy: &Taxonomy) -> Vec<Example> {
    records
        .iter()
        .filter_map(|(file, r)| {
            let label = taxonomy.index_of(r.task.as_deref()?)?;
            Some(Example {
                source: r.source.clone().unwrap_or_else(|| file.clone()),
                prompt: r.prompt.clone(),
                label,
            })
        })
        .collect()
}

/// Per-example task-loss weights: inverse class frequency to the power
/// `class_power` (0.5 by default, so rare classes count without drowning the
/// common ones), times inverse source size to the power `source_power`
/// (0 by default).
pub fn example_weights(
    train: &[Example],
    classes: usize,
    class_power: f32,
    source_power: f32,
) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    train.iter().for_each(|e| counts[e.label] += 1);
    let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
    train
        .iter()
        .for_each(|e| *by_source.entry(e.source.as_str()).or_default() += 1);
    let n = train.len() as f32;
    let mean_source = n / by_source.len().max(1) as f32;
    train
        .iter()
        .map(|e| {
            let inv = n / (classes as f32 * counts[e.label] as f32);
            // sqrt for the default keeps earlier runs bit-for-bit reproducible
            let c = if class_power == 0.5 {
                inv.sqrt()
            } else {
                inv.powf(class_power)
            };
            let s = (mean_source / by_source[e.source.as_str()] as f32).powf(source_power);
            c * s
        })
        .collect()
}

/// All examples, or a seeded sample of at most `cap` per source (in their
/// original order).
pub fn sample_per_source(examples: Vec<Example>, cap: usize, seed: u64) -> Vec<Example> {
    if cap == 0 {
        return examples;
    }
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        by_source.entry(e.source.as_str()).or_default().push(i);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut keep = vec![false; examples.len()];
    for (_, mut rows) in by_source {
        rows.shuffle(&mut rng);
        rows.into_iter().take(cap).for_each(|i| keep[i] = true);
    }
    examples
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}
