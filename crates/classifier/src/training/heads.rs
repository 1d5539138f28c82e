//! `train heads`: fit the task and difficulty heads on frozen encoder
//! embeddings, measure them on held-out sources, and return them.
//!
//! Held-out measurement, both heads: leave-one-source-out (train on every
//! other source, predict the held-out one), plus, for the task head, the
//! evaluation-only sources scored by the final heads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use pointsman_records::Record;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::classifier::{head_input, load_encoder, VIEW_NAMES};
use crate::cues::{operation_cues, CUE_NAMES};
use crate::device::{DeviceChoice, Engine, Precision};
use crate::difficulty_target::{DifficultyTarget, JointDifficulty};
use crate::embed_cache::{self, EmbedCache};
use crate::encoder::Encoder;
use crate::error::{ClassifierError, Result};
use crate::features::FEATURE_NAMES;
use crate::heads::{
    feature_positions, softmax, zero_features, Dense, DifficultyHead, EncoderInfo, Heads,
    HeadsMetadata, Mlp, TaskHead, FORMAT_VERSION,
};
use crate::irt::IrtConfig;
use crate::language::LanguageDirections;
use crate::model_dir::ModelDir;
use crate::taxonomy::{Taxonomy, DEFAULT_TASKS};
use crate::train::{train_classifier, TrainConfig};

use super::difficulty_blend::final_knn;
use super::difficulty_cv::{
    difficulty_cv, fit_difficulty, outcome_data, DifficultyCv, DifficultyCvOptions,
};
use super::difficulty_within::difficulty_within_source_cv;
use super::heads_report::HeadsReport;
use super::language_pairs::language_directions;
use super::metrics::Confusion;
use super::progress::Progress;
use super::records::{
    example_weights, examples, no_labelled_records, read_dir_records, read_dirs_records,
    read_optional_dir_records, Example, ExampleWeighting,
};
use super::task_cv::{argmax, task_cv};

/// Everything a `train heads` run reads and how it fits (the command's
/// flags, paths already resolved).
#[derive(Debug, Clone)]
pub struct HeadsTrainingOptions {
    /// Folders of task-labelled JSONL records to train on.
    pub tasks: Vec<PathBuf>,
    /// Folder of task-labelled records used only for evaluation (skipped
    /// when it is not a folder).
    pub eval: PathBuf,
    /// Folder of records with per-model outcomes (the difficulty head's data).
    pub outcomes: PathBuf,
    /// The difficulty head trains on at most this many records per outcome file.
    pub outcomes_per_file: usize,
    pub difficulty_target: DifficultyTarget,
    /// Weight of the within-source pairwise ranking loss (0 = regression only).
    pub difficulty_pair_weight: f64,
    /// Ridge on each prompt's IRT difficulty.
    pub irt_item_ridge: f64,
    /// Task labels; `None`: the built-in names if the data uses only those,
    /// else the labels found.
    pub labels: Option<Vec<String>>,
    /// The embedding cache's folder.
    pub cache_dir: PathBuf,
    pub model_dir: PathBuf,
    /// A LoRA adapter merged into the encoder.
    pub adapter: Option<PathBuf>,
    /// Number format of the CPU encoder that embeds the prompts.
    pub precision: Precision,
    pub seed: u64,
    /// Hidden width of the task head (0 = linear).
    pub hidden: usize,
    pub epochs: usize,
    /// Task heads in the seed ensemble (1 = one head; see
    /// [`crate::train::mean_of_logits`]).
    pub task_members: usize,
    /// Surface features in the head input.
    pub features: bool,
    /// Surface features the task head is trained (and reads) without, as 0;
    /// the difficulty head keeps them. Names from [`FEATURE_NAMES`].
    pub task_features_off: Vec<String>,
    /// The task head also reads the prompt's operation cues
    /// ([`crate::cues`]); the difficulty head does not.
    pub task_cues: bool,
    /// Instruction views in the head input.
    pub views: bool,
    /// Folders of translation pairs: when any are given, the task head
    /// reads the embeddings with each language's mean offset removed
    /// ([`crate::language`]); the difficulty head is unchanged.
    pub language_pairs: Vec<PathBuf>,
    /// When `language_pairs` is missing or holds too few pairs for the
    /// training records, train without directions (a note says why)
    /// instead of failing.
    pub language_pairs_optional: bool,
    /// Run the task head's leave-one-source-out.
    pub task_cv: bool,
    /// Run the difficulty head's leave-one-source-out.
    pub difficulty_cv: bool,
    /// Only the difficulty head's leave-one-source-out; no heads are trained.
    pub difficulty_cv_only: bool,
    /// With `difficulty_cv_only`: K > 0 runs K folds inside each outcome
    /// source instead of leave-one-source-out
    /// ([`super::difficulty_within`]); 0 = leave-one-source-out.
    pub difficulty_within_source_folds: usize,
    pub difficulty_hidden: usize,
    pub difficulty_epochs: usize,
    /// Difficulty heads in the seed ensemble (1 = one head).
    pub difficulty_members: usize,
    /// Neighbour counts tried for the difficulty's kNN part.
    pub difficulty_knn_k: Vec<usize>,
    /// Blend weights tried (`[0.0]`: the head alone, no bank).
    pub difficulty_knn_weight: Vec<f64>,
    /// Folds of training sources in the inner CV that picks k and the weight.
    pub difficulty_inner_folds: usize,
    /// How the task loss weights its examples (class share, source size,
    /// sources within a class).
    pub weighting: ExampleWeighting,
    /// AdamW learning rate of both heads.
    pub learning_rate: f64,
    /// AdamW weight decay of both heads.
    pub weight_decay: f64,
}

/// What a `train heads` run produced.
pub enum HeadsTraining {
    /// The heads (version in their metadata) and the held-out report.
    Trained {
        heads: Box<Heads>,
        report: HeadsReport,
    },
    /// `difficulty_cv_only`: the difficulty head's leave-one-source-out and
    /// the head's shape.
    DifficultyCvOnly {
        cv: DifficultyCv,
        hidden: usize,
        epochs: usize,
    },
}

impl HeadsTraining {
    /// The Markdown report of the run.
    pub fn markdown(&self) -> String {
        match self {
            HeadsTraining::Trained { report, .. } => report.markdown(),
            HeadsTraining::DifficultyCvOnly { cv, hidden, epochs } => format!(
                "{}\nDifficulty head: hidden {hidden}, epochs {epochs}.\n",
                cv.markdown()
            ),
        }
    }
}

/// Reads the records, embeds them (through the cache), runs the held-out
/// measurements `opts` asks for and fits the final heads.
pub fn train_heads(opts: &HeadsTrainingOptions, progress: &dyn Progress) -> Result<HeadsTraining> {
    let dir = ModelDir::open_with_adapter(&opts.model_dir, opts.adapter.as_deref())?;
    let encoder = load_encoder(&dir, DeviceChoice::Cpu, Engine::Native(opts.precision))?;
    let encoder = encoder.as_ref();
    let with_features = opts.features;

    // ---- data
    let (task_records, task_hashes) = read_dirs_records(&opts.tasks)?;
    let (eval_records, _) = read_optional_dir_records(&opts.eval)?;
    let (outcome_records, outcome_hashes) = read_dir_records(&opts.outcomes)?;

    let taxonomy = taxonomy_for(opts.labels.as_deref(), &task_records)?;
    let train = examples(&task_records, &taxonomy);
    let evals = examples(&eval_records, &taxonomy);
    if train.is_empty() {
        return Err(no_labelled_records(&opts.tasks, &taxonomy.labels()));
    }
    let outcomes = outcome_data(&outcome_records, opts.outcomes_per_file, opts.seed);
    let irt = IrtConfig {
        item_ridge: opts.irt_item_ridge,
        ..Default::default()
    };
    progress.note(&format!(
        "{} training prompts ({} sources), {} eval prompts, {} prompts with outcomes",
        train.len(),
        train
            .iter()
            .map(|e| &e.source)
            .collect::<BTreeSet<_>>()
            .len(),
        evals.len(),
        outcomes.sample.len()
    ));

    // ---- embeddings
    let encoder_id = embed_cache::encoder_id(encoder, &dir.weights_sha256);
    let mut cache = EmbedCache::open(&opts.cache_dir, &encoder_id, encoder)?;
    let texts: Vec<&str> = train
        .iter()
        .map(|e| e.prompt.as_str())
        .chain(evals.iter().map(|e| e.prompt.as_str()))
        .chain(
            outcomes
                .sample
                .iter()
                .map(|&i| outcomes.rows[i].prompt.as_str()),
        )
        .collect();
    let inputs = head_inputs(
        encoder,
        &mut cache,
        &texts,
        opts.views,
        with_features,
        progress,
    )?;
    let (x_train, rest) = inputs.split_at(train.len());
    let (x_eval, x_scored) = rest.split_at(evals.len());
    // The task head's inputs: the same, less the language directions.
    let language = if opts.language_pairs.is_empty() {
        None
    } else {
        let found = language_directions(
            &opts.language_pairs,
            &task_records,
            encoder,
            &mut cache,
            progress,
        );
        match found {
            Ok(found) => Some(found),
            Err(e) if opts.language_pairs_optional => {
                progress.note(&format!(
                    "no language directions ({e}); the task head reads the embedding as it is"
                ));
                None
            }
            Err(e) => return Err(e),
        }
    };
    let projected = language.as_ref().map(|(dirs, _)| {
        (
            without_language(dirs, x_train),
            without_language(dirs, x_eval),
        )
    });
    let (x_train_task, x_eval_task) = match &projected {
        Some((train, eval)) => (train.as_slice(), eval.as_slice()),
        None => (x_train, x_eval),
    };
    // Surface features the task head does without: 0 in its inputs, here
    // and at inference; the difficulty head keeps the full input.
    let features_off = task_features_off(&opts.task_features_off, with_features, x_train[0].len())?;
    let zeroed = (!features_off.is_empty()).then(|| {
        (
            without_features(&features_off, x_train_task),
            without_features(&features_off, x_eval_task),
        )
    });
    let (x_train_task, x_eval_task) = match &zeroed {
        Some((train, eval)) => (train.as_slice(), eval.as_slice()),
        None => (x_train_task, x_eval_task),
    };
    // The operation cues follow, for the task head only.
    let cued = opts.task_cues.then(|| {
        (
            with_cues(&train, x_train_task),
            with_cues(&evals, x_eval_task),
        )
    });
    let (x_train_task, x_eval_task) = match &cued {
        Some((train, eval)) => (train.as_slice(), eval.as_slice()),
        None => (x_train_task, x_eval_task),
    };

    let task_cfg = TrainConfig {
        hidden: opts.hidden,
        epochs: opts.epochs,
        seed: opts.seed,
        learning_rate: opts.learning_rate,
        weight_decay: opts.weight_decay,
        members: opts.task_members.max(1),
        ..Default::default()
    };
    let diff_cfg = TrainConfig {
        hidden: opts.difficulty_hidden,
        epochs: opts.difficulty_epochs,
        seed: opts.seed + 1,
        learning_rate: opts.learning_rate,
        weight_decay: opts.weight_decay,
        members: opts.difficulty_members.max(1),
        ..Default::default()
    };
    let cv_options = DifficultyCvOptions {
        kind: opts.difficulty_target,
        pair_weight: opts.difficulty_pair_weight,
        embedding_dim: encoder.dim(),
        knn_ks: opts.difficulty_knn_k.clone(),
        knn_weights: opts.difficulty_knn_weight.clone(),
        inner_folds: opts.difficulty_inner_folds,
    };
    if opts.difficulty_cv_only {
        let cv = match opts.difficulty_within_source_folds {
            0 => difficulty_cv(&outcomes, x_scored, &cv_options, &irt, &diff_cfg, progress)?,
            k => difficulty_within_source_cv(
                &outcomes,
                x_scored,
                &cv_options,
                k,
                &irt,
                &diff_cfg,
                progress,
            )?,
        };
        return Ok(HeadsTraining::DifficultyCvOnly {
            cv,
            hidden: diff_cfg.hidden,
            epochs: diff_cfg.epochs,
        });
    }
    let weights = example_weights(&train, taxonomy.len(), opts.weighting);
    let labels: Vec<usize> = train.iter().map(|e| e.label).collect();

    // ---- task head: leave-one-source-out
    let task_cv = if opts.task_cv {
        Some(task_cv(
            &train,
            x_train_task,
            &labels,
            &weights,
            &taxonomy,
            &task_cfg,
            progress,
        )?)
    } else {
        None
    };

    // ---- final task head + eval-only sources
    let task_mlp = train_classifier(x_train_task, &labels, &weights, taxonomy.len(), &task_cfg)?;
    let mut eval_sources: BTreeMap<String, Confusion> = BTreeMap::new();
    for (e, x) in evals.iter().zip(x_eval_task) {
        let c = eval_sources
            .entry(e.source.clone())
            .or_insert_with(|| Confusion::new(taxonomy.labels()));
        c.add(e.label, argmax(&softmax(&task_mlp.forward(x))));
    }

    // ---- difficulty head
    let difficulty_cv = if opts.difficulty_cv && !outcomes.sample.is_empty() {
        Some(difficulty_cv(
            &outcomes,
            x_scored,
            &cv_options,
            &irt,
            &diff_cfg,
            progress,
        )?)
    } else {
        None
    };
    let report = HeadsReport {
        task_cv,
        eval_sources,
        difficulty_cv,
    };
    let mut metrics = report.metrics();
    let mut neighbours = None;
    let diff_mlp = if outcomes.sample.is_empty() {
        progress
            .note("warning: no outcome records; the difficulty head is untrained (constant 0.5)");
        Mlp {
            layers: vec![Dense {
                weight: vec![0.0; x_train[0].len()],
                bias: vec![0.0],
                inputs: x_train[0].len(),
                outputs: 1,
            }],
        }
    } else {
        let joint = JointDifficulty::fit_rows(&outcomes.rows, &irt)?;
        metrics.insert(
            "difficulty_joint_irt".into(),
            json!(joint.summary(&outcomes.rows)),
        );
        let targets = joint.targets(&outcomes.rows, &outcomes.sample, opts.difficulty_target);
        neighbours = final_knn(
            &outcomes,
            x_scored,
            &targets,
            &cv_options,
            &diff_cfg,
            progress,
        )?;
        fit_difficulty(
            x_scored,
            &targets,
            &outcomes.sample_groups(&outcomes.sample),
            opts.difficulty_pair_weight,
            &diff_cfg,
        )?
    };

    // ---- metadata
    let mut hasher = Sha256::new();
    for h in task_hashes.iter().chain(&outcome_hashes) {
        hasher.update(h.as_bytes());
    }
    let data_sha = hex::encode(hasher.finalize());
    let settings = json!({
        "seed": opts.seed, "hidden": opts.hidden, "epochs": opts.epochs, "features": with_features, "views": opts.views,
        "outcomes_per_file": opts.outcomes_per_file, "learning_rate": task_cfg.learning_rate,
        "weight_decay": task_cfg.weight_decay, "batch_size": task_cfg.batch_size,
        "class_weight_power": opts.weighting.class_power, "source_weight_power": opts.weighting.source_power,
        "difficulty_target": opts.difficulty_target.to_string(), "irt_item_ridge": irt.item_ridge,
        "difficulty_pair_weight": opts.difficulty_pair_weight,
        "difficulty_hidden": diff_cfg.hidden, "difficulty_epochs": diff_cfg.epochs,
    });
    // The kNN grid enters the settings (and so the version) only when it is
    // on, so heads trained without it keep the version their command gives.
    let mut settings = settings;
    if cv_options.uses_knn() {
        settings["difficulty_knn_k"] = json!(cv_options.knn_ks);
        settings["difficulty_knn_weight"] = json!(cv_options.knn_weights);
        settings["difficulty_inner_folds"] = json!(cv_options.inner_folds);
    }
    // Likewise the features the task head does without, only when any.
    if !features_off.is_empty() {
        settings["task_features_off"] = json!(opts.task_features_off);
    }
    // Likewise the task head's ensemble, only when it has more than one member.
    if task_cfg.members > 1 {
        settings["task_members"] = json!(task_cfg.members);
    }
    if diff_cfg.members > 1 {
        settings["difficulty_members"] = json!(diff_cfg.members);
    }
    // Likewise the operation cues, only when on.
    if opts.task_cues {
        settings["task_cues"] = json!(CUE_NAMES);
    }
    // Likewise the within-class source balance, only when on.
    if opts.weighting.class_source_power != 0.0 {
        settings["class_source_weight_power"] = json!(opts.weighting.class_source_power);
    }
    // The precision enters the settings (and so the version) only when it is
    // not f32, so heads fitted on f32 embeddings keep the version they had
    // before `--precision` existed and stay reproducible by their command.
    if encoder.precision() != "f32" {
        settings["precision"] = json!(encoder.precision());
    }
    // Likewise the language directions, only when on.
    if let Some((_, info)) = &language {
        settings["language_pairs"] = json!(info.pairs_by_language);
    }
    let version = format!(
        "heads-{}",
        &hex::encode(Sha256::digest(format!(
            "{data_sha}{settings}{}",
            dir.weights_sha256
        )))[..12]
    );
    let metadata = HeadsMetadata {
        format_version: FORMAT_VERSION,
        version,
        encoder: EncoderInfo {
            name: opts
                .model_dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            weights_sha256: dir.weights_sha256.clone(),
            window: encoder.window(),
            truncation: "head_and_tail".into(),
        },
        features: if with_features {
            FEATURE_NAMES.iter().map(|s| s.to_string()).collect()
        } else {
            vec![]
        },
        task_features_off: opts.task_features_off.clone(),
        task_cues: if opts.task_cues {
            CUE_NAMES.iter().map(|s| s.to_string()).collect()
        } else {
            vec![]
        },
        views: if opts.views {
            VIEW_NAMES.iter().map(|s| s.to_string()).collect()
        } else {
            vec![]
        },
        task_labels: taxonomy.clone(),
        difficulty_target: opts.difficulty_target.describe(),
        difficulty_knn: neighbours.as_ref().map(|b| b.blend),
        language_directions: language.as_ref().map(|(_, info)| info.clone()),
        training: json!({
            "embedding_dim": encoder.dim(),
            "training_data_sha256": data_sha,
            "task_files": task_hashes,
            "outcome_files": outcome_hashes,
            "task_examples": train.len(),
            "difficulty_examples": outcomes.sample.len(),
            "irt_rows": outcomes.rows.len(),
            "settings": settings,
        }),
        metrics: serde_json::Value::Object(metrics),
    };
    let heads = Heads {
        task: TaskHead {
            mlp: task_mlp,
            labels: taxonomy,
            language: language.map(|(dirs, _)| dirs),
            features_off,
            cues: opts.task_cues,
        },
        difficulty: DifficultyHead {
            mlp: diff_mlp,
            neighbours,
        },
        metadata,
    };
    Ok(HeadsTraining::Trained {
        heads: Box::new(heads),
        report,
    })
}

/// Input positions of the surface features named in `names` (the features
/// come last in an input of `inputs` values); an unknown name, or names
/// without features, are refused.
fn task_features_off(names: &[String], with_features: bool, inputs: usize) -> Result<Vec<usize>> {
    if names.is_empty() {
        return Ok(vec![]);
    }
    if !with_features {
        return Err(ClassifierError::InvalidOption(
            "task features off, but the heads train without surface features".into(),
        ));
    }
    feature_positions(names, &FEATURE_NAMES, inputs).map_err(|name| {
        ClassifierError::InvalidOption(format!(
            "task feature off {name:?} is not a surface feature; one of {FEATURE_NAMES:?}"
        ))
    })
}

/// Copies of `xs` with the given feature positions set to 0.
fn without_features(positions: &[usize], xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    xs.iter()
        .map(|x| {
            let mut x = x.clone();
            zero_features(&mut x, positions);
            x
        })
        .collect()
}

/// Copies of `xs` with the language directions removed.
/// Each input with its example's operation cues appended.
fn with_cues(examples: &[Example], xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    examples
        .iter()
        .zip(xs)
        .map(|(e, x)| {
            let mut x = x.clone();
            x.extend(operation_cues(&e.prompt));
            x
        })
        .collect()
}

fn without_language(dirs: &LanguageDirections, xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    xs.iter()
        .map(|x| {
            let mut x = x.clone();
            dirs.remove_from(&mut x);
            x
        })
        .collect()
}

/// The task labels: `labels` when given; else the 11 built-in names if the
/// records use only those, else the labels the records use.
fn taxonomy_for(labels: Option<&[String]>, records: &[(String, Record)]) -> Result<Taxonomy> {
    let found: BTreeSet<String> = records.iter().filter_map(|(_, r)| r.task.clone()).collect();
    match labels {
        Some(l) => Taxonomy::new(l.to_vec()).map_err(ClassifierError::InvalidOption),
        None if found.iter().all(|l| DEFAULT_TASKS.contains(&l.as_str())) => {
            Ok(Taxonomy::default_tasks())
        }
        None => Taxonomy::new(found.into_iter().collect()).map_err(ClassifierError::InvalidOption),
    }
}

/// Each text's head input: its embedding (through `cache`), with the
/// instruction views and surface features when asked for.
fn head_inputs(
    encoder: &dyn Encoder,
    cache: &mut EmbedCache,
    texts: &[&str],
    with_views: bool,
    with_features: bool,
    progress: &dyn Progress,
) -> Result<Vec<Vec<f32>>> {
    let report_to = |done, total| progress.update(done, total);
    progress.begin("embedding", 0);
    let embs = cache.embed_all(encoder, texts, 32, &report_to)?;
    progress.end();
    let view_embs = if with_views {
        progress.begin("embedding instruction views", 0);
        let v = cache.embed_views(encoder, texts, 32, &report_to)?;
        progress.end();
        v
    } else {
        vec![None; texts.len()]
    };
    Ok(texts
        .iter()
        .zip(&embs)
        .zip(&view_embs)
        .map(|((t, e), v)| {
            let views = with_views.then(|| {
                v.as_ref()
                    .map(|(h, l)| (h.as_slice(), l.as_slice()))
                    .unwrap_or((e, e))
            });
            head_input(e, views, t, with_features)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_off_are_named_features_placed_after_the_embedding() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let inputs = 8 + FEATURE_NAMES.len();
        let at = task_features_off(&names(&[FEATURE_NAMES[0], "non_latin_share"]), true, inputs)
            .unwrap();
        let nl = FEATURE_NAMES
            .iter()
            .position(|f| *f == "non_latin_share")
            .unwrap();
        assert_eq!(at, vec![8, 8 + nl]);
        assert!(task_features_off(&[], false, 8).unwrap().is_empty());
        let err = task_features_off(&names(&["colour"]), true, inputs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"colour\" is not a surface feature"), "{err}");
        let err = task_features_off(&names(&["non_latin_share"]), false, 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("without surface features"), "{err}");
    }
}
