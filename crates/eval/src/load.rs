//! From record files to [`EvalSet`]s: embeddings (cached on disk), task
//! distributions from the classifier's task head, and a cost for every
//! outcome.

use std::collections::BTreeSet;
use std::path::Path;

use pointsman_classifier::{Classifier, EmbedCache, Encoder, DEFAULT_BATCH};
use pointsman_records::Record;
use pointsman_router::head_features::{task_feature, DIFFICULTY_FEATURE};
use pointsman_router::{catalog::estimate_tokens, Catalog};

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
    let head_features: Vec<String> = match reader {
        PromptReader::Classifier(_) => tasks
            .iter()
            .map(|t| task_feature(t))
            .chain(std::iter::once(DIFFICULTY_FEATURE.to_string()))
            .collect(),
        PromptReader::EncoderOnly(_) => Vec::new(),
    };
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
            let (task_scores, head_outputs) = match reader {
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
