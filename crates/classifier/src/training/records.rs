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

/// How the task loss weights its examples; see [`example_weights`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExampleWeighting {
    /// Inverse class share to this power (0.5 by default, so rare classes
    /// count without drowning the common ones).
    pub class_power: f32,
    /// Mean source size over the example's source size, to this power (0 by default).
    pub source_power: f32,
    /// Within its class, the mean count per source of that class over the
    /// count of the example's own source, to this power (0 by default). At 1
    /// every source that carries a class weighs the same in it, so one
    /// benchmark's style (Winogrande's for `reasoning`, Dolly's for
    /// `classification`) does not become the class.
    pub class_source_power: f32,
}

impl Default for ExampleWeighting {
    fn default() -> Self {
        Self {
            class_power: 0.5,
            source_power: 0.0,
            class_source_power: 0.0,
        }
    }
}

/// Per-example task-loss weights, the product of the three factors of
/// [`ExampleWeighting`].
pub fn example_weights(train: &[Example], classes: usize, weighting: ExampleWeighting) -> Vec<f32> {
    let ExampleWeighting {
        class_power,
        source_power,
        class_source_power,
    } = weighting;
    let mut counts = vec![0usize; classes];
    train.iter().for_each(|e| counts[e.label] += 1);
    let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
    train
        .iter()
        .for_each(|e| *by_source.entry(e.source.as_str()).or_default() += 1);
    let mut by_class_source: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    train.iter().for_each(|e| {
        *by_class_source
            .entry((e.label, e.source.as_str()))
            .or_default() += 1
    });
    let mut sources_of_class = vec![0usize; classes];
    by_class_source
        .keys()
        .for_each(|(c, _)| sources_of_class[*c] += 1);
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
            let w = c * s;
            if class_source_power == 0.0 {
                // skipped, not multiplied by 1.0, so the default stays bit-for-bit
                return w;
            }
            let mean_in_class = counts[e.label] as f32 / sources_of_class[e.label] as f32;
            let own = by_class_source[&(e.label, e.source.as_str())] as f32;
            w * (mean_in_class / own).powf(class_source_power)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn example(source: &str, label: usize) -> Example {
        Example {
            source: source.into(),
            prompt: String::new(),
            label,
        }
    }

    /// Class 0: 30 from `big`, 10 from `small`; class 1: 40 from `small`.
    fn data() -> Vec<Example> {
        let mut v: Vec<Example> = (0..30).map(|_| example("big", 0)).collect();
        v.extend((0..10).map(|_| example("small", 0)));
        v.extend((0..40).map(|_| example("small", 1)));
        v
    }

    fn class_mass(train: &[Example], w: &[f32], label: usize, source: &str) -> f32 {
        train
            .iter()
            .zip(w)
            .filter(|(e, _)| e.label == label && e.source == source)
            .map(|(_, w)| w)
            .sum()
    }

    #[test]
    fn class_source_balance_gives_each_source_of_a_class_the_same_mass() {
        let train = data();
        let balanced = example_weights(
            &train,
            2,
            ExampleWeighting {
                class_source_power: 1.0,
                ..ExampleWeighting::default()
            },
        );
        let (big, small) = (
            class_mass(&train, &balanced, 0, "big"),
            class_mass(&train, &balanced, 0, "small"),
        );
        assert!((big - small).abs() < 1e-4, "big {big} small {small}");
        // a class held by one source is untouched by the factor
        let plain = example_weights(&train, 2, ExampleWeighting::default());
        assert_eq!(balanced[79], plain[79]);
        // unweighted, the big source dominates its class three to one
        let (big, small) = (
            class_mass(&train, &plain, 0, "big"),
            class_mass(&train, &plain, 0, "small"),
        );
        assert!((big / small - 3.0).abs() < 1e-4);
    }
}
