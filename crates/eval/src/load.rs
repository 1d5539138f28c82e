//! From record files to [`EvalSet`]s: embeddings (cached on disk), task
//! distributions from the classifier's task head, and a cost for every
//! outcome. [`load_sets`] does it all from paths (`pointsman eval` and
//! `train router`); [`build_sets`] from records and a loaded encoder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pointsman_classifier::classifier::load_encoder;
use pointsman_classifier::features::{surface_features, FEATURE_NAMES};
use pointsman_classifier::training::Progress;
use pointsman_classifier::{
    embed_cache, Classifier, DeviceChoice, EmbedCache, Encoder, Engine, ModelDir, DEFAULT_BATCH,
};
use pointsman_records::Record;
use pointsman_router::head_features::{
    surface_feature, task_feature, DIFFICULTY_FEATURE, SURFACE_PREFIX,
};
use pointsman_router::{catalog::estimate_tokens, Catalog, PromptInput, Selection};

use crate::error::EvalError;
use crate::harness::{EvalRow, EvalSet, Observed};

/// How an outcome without `cost_usd` is priced: from the catalog, with the
/// prompt's estimated input tokens (characters / 4) and `output_tokens`
/// assumed for the completion.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    pub catalog: Option<Catalog>,
    /// Completion tokens assumed per call.
    pub output_tokens: u64,
    /// Give unpriceable outcomes a NaN cost instead of failing (fitting
    /// the success model needs no costs).
    pub allow_unpriced: bool,
}

impl Pricing {
    /// The outcome's own cost, else the catalog price; an error names the
    /// model and record when neither is known.
    pub fn cost(
        &self,
        record: &Record,
        model: &str,
        recorded: Option<f64>,
    ) -> Result<f64, EvalError> {
        if let Some(c) = recorded {
            return Ok(c);
        }
        let spec = self.catalog.as_ref().and_then(|c| c.get(model));
        if spec.is_none() && self.allow_unpriced {
            return Ok(f64::NAN);
        }
        let spec = spec.ok_or_else(|| {
            EvalError::Data(format!(
                "record `{}`: model `{model}` has no cost_usd and no catalog entry; pass --catalog with a price for it",
                record.id
            ))
        })?;
        Ok(spec.cost_usd(estimate_tokens(&record.prompt), self.output_tokens))
    }
}

/// What reads the prompts: the full classifier (embedding plus task head),
/// or the encoder alone (one pseudo-task, "any").
pub enum PromptReader<'a> {
    Classifier(&'a Classifier),
    EncoderOnly(&'a dyn Encoder),
}

impl PromptReader<'_> {
    fn encoder(&self) -> &dyn Encoder {
        match self {
            PromptReader::Classifier(c) => c.encoder(),
            PromptReader::EncoderOnly(e) => *e,
        }
    }

    fn tasks(&self) -> Vec<String> {
        match self {
            PromptReader::Classifier(c) => c.heads().task.labels.labels().to_vec(),
            PromptReader::EncoderOnly(_) => vec!["any".into()],
        }
    }
}

/// Reads a record file, failing if any line is malformed.
pub fn read_records(path: &Path) -> Result<Vec<Record>, EvalError> {
    let (good, bad) = pointsman_records::read_file(path).map_err(|source| EvalError::Io {
        path: path.into(),
        source,
    })?;
    if let Some(first) = bad.first() {
        return Err(EvalError::Records {
            path: path.into(),
            count: bad.len(),
            first: first.to_string(),
        });
    }
    Ok(good
        .into_iter()
        .filter(|r| !r.outcomes.is_empty())
        .collect())
}

/// Builds one [`EvalSet`] per group of records, all aligned to the same
/// model list (the union over groups, sorted) and task list. Embeddings
/// come from the cache in `cache_dir` where present. `progress(done, total)`
/// reports encoder work.
pub fn build_sets(
    groups: &[Vec<Record>],
    reader: &PromptReader,
    encoder_id: &str,
    cache_dir: &Path,
    pricing: &Pricing,
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<EvalSet>, EvalError> {
    let models: Vec<String> = groups
        .iter()
        .flatten()
        .flat_map(|r| r.outcomes.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tasks = reader.tasks();
    // The heads' outputs the success model may read beside the embedding
    // (pointsman_router::head_features): every task probability, then the
    // difficulty score.
    let mut head_features: Vec<String> = match reader {
        PromptReader::Classifier(_) => tasks
            .iter()
            .map(|t| task_feature(t))
            .chain(std::iter::once(DIFFICULTY_FEATURE.to_string()))
            .collect(),
        PromptReader::EncoderOnly(_) => Vec::new(),
    };
    // Then the surface features, which any reader has (the text alone).
    head_features.extend(FEATURE_NAMES.iter().map(|n| surface_feature(n)));
    let encoder = reader.encoder();
    let mut cache = EmbedCache::open(cache_dir, encoder_id, encoder)?;
    let texts: Vec<&str> = groups.iter().flatten().map(|r| r.prompt.as_str()).collect();
    let mut embeddings = cache
        .embed_all(encoder, &texts, DEFAULT_BATCH, progress)?
        .into_iter();
    // Heads that read the instruction views need them for long prompts.
    let uses_views = matches!(reader, PromptReader::Classifier(c) if c.heads().uses_views());
    let mut views = if uses_views {
        cache
            .embed_views(encoder, &texts, DEFAULT_BATCH, progress)?
            .into_iter()
    } else {
        vec![None; texts.len()].into_iter()
    };
    let mut sets = Vec::new();
    for group in groups {
        let mut rows = Vec::with_capacity(group.len());
        for r in group {
            let embedding = embeddings.next().expect("one embedding per record");
            let view = views.next().expect("one view slot per record");
            let (task_scores, mut head_outputs) = match reader {
                PromptReader::Classifier(c) => {
                    let p = c.predict_from_embedding(
                        &r.prompt,
                        &embedding,
                        view.as_ref().map(|(h, t)| (h.as_slice(), t.as_slice())),
                    );
                    let scores: Vec<f32> = tasks
                        .iter()
                        .map(|t| p.task_scores.get(t).copied().unwrap_or(0.0))
                        .collect();
                    let mut outputs = scores.clone();
                    outputs.push(p.difficulty);
                    (scores, outputs)
                }
                PromptReader::EncoderOnly(_) => (vec![1.0], Vec::new()),
            };
            head_outputs.extend(surface_features(&r.prompt));
            let outcomes = models
                .iter()
                .map(|m| match r.outcomes.get(m) {
                    Some(o) => pricing.cost(r, m, o.cost_usd).map(|cost_usd| {
                        Some(Observed {
                            score: o.score,
                            cost_usd,
                        })
                    }),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(EvalRow {
                id: r.id.clone(),
                embedding,
                task_scores,
                outcomes,
                head_outputs,
            });
        }
        sets.push(EvalSet {
            models: models.clone(),
            tasks: tasks.clone(),
            encoder_id: encoder_id.into(),
            head_features: head_features.clone(),
            rows,
        });
    }
    Ok(sets)
}

/// The classifier heads whose outputs the success model may read beside
/// the embedding (`--head-features`): none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadOutputs {
    /// The task head's probability of each task label.
    pub task: bool,
    /// The difficulty head's score (leaky on the outcome files it was
    /// fitted on).
    pub difficulty: bool,
    /// The prompt's surface features (its length in characters and lines,
    /// code and maths shares, ...: `pointsman_classifier::features`),
    /// computed from the text alone; no head needed.
    pub surface: bool,
}

impl HeadOutputs {
    /// Whether any head output is wanted.
    pub fn any(self) -> bool {
        self.task || self.difficulty || self.surface
    }

    /// Whether any wanted output comes from a classifier head.
    pub fn needs_heads(self) -> bool {
        self.task || self.difficulty
    }

    /// The selection's prompt inputs: `explicit` unless empty; else, with
    /// the surface features alone, the embedding or the embedding followed
    /// by them (ten numbers are too few to read alone); with head outputs,
    /// the embedding or the heads' outputs alone; else the default
    /// selection's (the embedding).
    pub fn prompt_inputs(self, explicit: &[PromptInput]) -> Vec<PromptInput> {
        if !explicit.is_empty() {
            explicit.to_vec()
        } else if self.surface && !self.needs_heads() {
            vec![PromptInput::Embedding, PromptInput::EmbeddingAndHeads]
        } else if self.any() {
            vec![PromptInput::Embedding, PromptInput::Heads]
        } else {
            Selection::default().inputs
        }
    }
}

/// What [`load_sets`] reads the records with. Paths are used as given
/// (the caller resolves them).
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The encoder (Hugging Face layout).
    pub model_dir: PathBuf,
    /// A LoRA adapter merged into the encoder at load.
    pub adapter: Option<PathBuf>,
    /// The trained heads; when the file is missing the encoder runs alone
    /// (one pseudo-task, no head outputs), with a warning.
    pub heads: PathBuf,
    pub device: DeviceChoice,
    pub engine: Engine,
    /// The embedding cache folder.
    pub cache_dir: PathBuf,
    /// A catalog (TOML) pricing outcomes that carry no `cost_usd`.
    pub catalog: Option<PathBuf>,
    /// Completion tokens assumed when pricing from the catalog.
    pub output_tokens: u64,
    /// Give unpriceable outcomes a NaN cost instead of failing (fitting
    /// needs no costs).
    pub allow_unpriced: bool,
    /// One pseudo-task for the success model's task mixture; the heads
    /// still run for `head_outputs`.
    pub no_task_head: bool,
    /// The head outputs the sets keep (the others are dropped).
    pub head_outputs: HeadOutputs,
}

/// Reads the record files of each group (failing on a malformed line), the
/// catalog and the encoder (with the heads unless not needed or missing),
/// and builds the aligned sets ([`build_sets`]). Warnings go to `progress`
/// as notes; the embedding is its phase "embedding".
pub fn load_sets(
    groups: &[&[PathBuf]],
    opts: &LoadOptions,
    progress: &dyn Progress,
) -> Result<Vec<EvalSet>, EvalError> {
    let records: Vec<Vec<Record>> = groups
        .iter()
        .map(|paths| {
            paths
                .iter()
                .map(|p| read_records(p))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.concat())
        })
        .collect::<Result<_, _>>()?;
    let catalog = match &opts.catalog {
        Some(p) => Some(read_catalog(p)?),
        None => None,
    };
    let pricing = Pricing {
        catalog,
        output_tokens: opts.output_tokens,
        allow_unpriced: opts.allow_unpriced,
    };
    let dir = ModelDir::open_with_adapter(&opts.model_dir, opts.adapter.as_deref())?;
    let heads = &opts.heads;
    let mut wanted = opts.head_outputs;
    if wanted.needs_heads() && !heads.exists() {
        progress.note(&format!(
            "warning: no heads at {}; the success model reads the embedding alone",
            heads.display()
        ));
        wanted = HeadOutputs {
            surface: wanted.surface,
            ..HeadOutputs::default()
        };
    }
    // The heads run for the task mixture unless no_task_head, and for the
    // head outputs either way.
    let no_task_head = (opts.no_task_head || !heads.exists()) && !wanted.needs_heads();
    if !heads.exists() && !opts.no_task_head {
        progress.note(&format!(
            "warning: no task heads at {}; using the encoder alone (one pseudo-task)",
            heads.display()
        ));
    }
    // Loaded here so the reader can borrow it.
    let (encoder, classifier);
    let reader = if no_task_head {
        encoder = load_encoder(&dir, opts.device, opts.engine)?;
        PromptReader::EncoderOnly(encoder.as_ref())
    } else {
        classifier = Classifier::from_dir(dir.clone(), heads, opts.device, opts.engine)?;
        PromptReader::Classifier(&classifier)
    };
    let id = embed_cache::encoder_id(reader.encoder(), &dir.weights_sha256);
    progress.begin("embedding", 0);
    let sets = build_sets(
        &records,
        &reader,
        &id,
        &opts.cache_dir,
        &pricing,
        &|done, total| progress.update(done, total),
    );
    progress.end();
    let mut sets = sets?;
    for set in &mut sets {
        if opts.no_task_head {
            set.one_task();
        }
        set.keep_head_features(|name| {
            if name == DIFFICULTY_FEATURE {
                wanted.difficulty
            } else if name.starts_with(SURFACE_PREFIX) {
                wanted.surface
            } else {
                wanted.task
            }
        });
    }
    if wanted.difficulty {
        progress.note(
            "warning: --head-features difficulty: the difficulty head was fitted on training-data/outcomes; on those files its output carries the test rows' outcomes (fair on AlpacaEval only)",
        );
    }
    Ok(sets)
}

/// Reads and parses a catalog file.
fn read_catalog(path: &Path) -> Result<Catalog, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::CatalogRead {
        path: path.into(),
        source,
    })?;
    Catalog::from_toml_str(&text).map_err(|source| EvalError::Catalog {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn head_outputs_choose_the_selections_prompt_inputs() {
        let none = HeadOutputs::default();
        let task = HeadOutputs {
            task: true,
            ..HeadOutputs::default()
        };
        let surface = HeadOutputs {
            surface: true,
            ..HeadOutputs::default()
        };
        assert_eq!(
            surface.prompt_inputs(&[]),
            [PromptInput::Embedding, PromptInput::EmbeddingAndHeads]
        );
        assert!(surface.any() && !surface.needs_heads() && task.needs_heads());
        assert_eq!(none.prompt_inputs(&[]), Selection::default().inputs);
        assert_eq!(
            task.prompt_inputs(&[]),
            [PromptInput::Embedding, PromptInput::Heads]
        );
        let explicit = [PromptInput::EmbeddingAndHeads];
        assert_eq!(task.prompt_inputs(&explicit), explicit);
        assert_eq!(none.prompt_inputs(&explicit), explicit);
        assert!(!none.any() && task.any());
    }

    #[test]
    fn knn_dims_replace_the_default_spaces_unless_empty() {
        let default = Selection::default();
        assert_eq!(default.clone().with_knn_dims(&[]), default);
        let reduced = Selection::default().with_knn_dims(&[0, 32]);
        assert_eq!(reduced.knn_dims, [0, 32]);
        assert_eq!(
            Selection {
                knn_dims: default.knn_dims.clone(),
                ..reduced
            },
            default
        );
    }

    #[test]
    fn a_bad_catalog_names_its_path_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = read_catalog(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", missing.display())
        );
        assert!(err.source().is_some_and(|s| s.is::<std::io::Error>()));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "not = [toml").unwrap();
        let err = read_catalog(&bad).unwrap_err();
        assert_eq!(err.to_string(), bad.display().to_string());
        let cause = err.source().expect("the parse error").to_string();
        assert!(cause.contains("line 1"), "{cause}");
    }
}
