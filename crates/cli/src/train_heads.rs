//! `pointsman train heads`: fit the task and difficulty heads on frozen
//! encoder embeddings, measure them on held-out sources, write them.
//!
//! Held-out measurement, both heads: leave-one-source-out (train on every
//! other source, predict the held-out one), plus, for the task head, the
//! evaluation-only sources in `--eval` scored by the final heads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use pointsman_classifier::classifier::head_input;
use pointsman_classifier::difficulty_target::{DifficultyTarget, JointDifficulty};
use pointsman_classifier::features::FEATURE_NAMES;
use pointsman_classifier::heads::{softmax, EncoderInfo, HeadsMetadata, Mlp, FORMAT_VERSION};
use pointsman_classifier::irt::IrtConfig;
use pointsman_classifier::train::{train_classifier, TrainConfig};
use pointsman_classifier::{
    classifier::load_encoder, DeviceChoice, DifficultyHead, EmbedCache, Engine, Heads, ModelDir,
    Precision, TaskHead, Taxonomy, DEFAULT_TASKS,
};
use pointsman_records::Record;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::heads_difficulty::{
    difficulty_cv, final_knn, fit_difficulty, outcome_data, DifficultyCvOptions,
};
use crate::metrics::Confusion;
use crate::paths;

/// Chosen by leave-one-source-out over the outcome sources (docs/EVALUATION.md, "Difficulty").
const DEFAULT_DIFFICULTY_TARGET: &str = "irt-rank";

#[derive(Args)]
pub struct TrainHeadsArgs {
    /// Folder(s) of task-labelled JSONL records to train on (each file one source unless records name theirs);
    /// add `training-data/tasks-translated` for the translated labels (not in the shipped heads).
    #[arg(long, num_args = 1.., default_value = "training-data/tasks")]
    tasks: Vec<PathBuf>,
    /// Folder of task-labelled JSONL records used only for evaluation.
    #[arg(long, default_value = "training-data/eval")]
    eval: PathBuf,
    /// Folder of JSONL records with per-model outcomes (the difficulty head's data; every row feeds the IRT fit).
    #[arg(long, default_value = "training-data/outcomes")]
    outcomes: PathBuf,
    /// The difficulty head trains on at most this many records per outcome file (seeded sample).
    #[arg(long, default_value_t = 600)]
    outcomes_per_file: usize,
    /// What the difficulty head fits: irt-rank (percentile of joint-IRT difficulty within its source), irt-centred (each source centred), irt, irt-source-<w> or mean-failure (before 2026-11-30).
    #[arg(long, default_value = DEFAULT_DIFFICULTY_TARGET, value_parser = clap::value_parser!(DifficultyTarget))]
    difficulty_target: DifficultyTarget,
    /// Weight of a within-source pairwise ranking loss added to the difficulty head's (0 = regression only).
    #[arg(long, default_value_t = 1.0)]
    difficulty_pair_weight: f64,
    /// Ridge on each prompt's IRT difficulty (a N(0, 1/ridge) prior).
    #[arg(long, default_value_t = IrtConfig::default().item_ridge)]
    irt_item_ridge: f64,
    /// Task labels, comma-separated; default: the 11 built-in names if the data uses only those, else the labels found.
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Where to write the heads (metadata goes to the .json beside it).
    #[arg(long, default_value = paths::DEFAULT_HEADS)]
    out: PathBuf,
    /// Markdown report of the held-out evaluation.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value = "target/embedding-cache")]
    cache_dir: PathBuf,
    #[arg(long, default_value = paths::DEFAULT_MODEL_DIR)]
    model_dir: PathBuf,
    /// A LoRA adapter (`pointsman train encoder`) merged into the encoder; the heads then fit the merged encoder only.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Number format of the CPU encoder that embeds the training prompts (f32, bf16, int8); heads fit on int8 embeddings match `--precision int8` at inference. The embedding cache keeps each format apart.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Hidden width of the task head (0 = linear).
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Train on the embedding alone, without surface features.
    #[arg(long)]
    no_features: bool,
    /// Train on the full-prompt embedding only, without the instruction views.
    #[arg(long)]
    no_views: bool,
    /// Skip the leave-one-source-out runs (faster; the report then has only the eval sources).
    #[arg(long)]
    no_cv: bool,
    /// Only the difficulty head's leave-one-source-out: no heads are trained or written, the report is.
    #[arg(long, conflicts_with = "no_cv")]
    difficulty_cv_only: bool,
    /// Hidden width of the difficulty head (0 = linear); chosen by leave-one-source-out.
    #[arg(long, default_value_t = 64)]
    difficulty_hidden: usize,
    /// Epochs of the difficulty head; chosen by leave-one-source-out.
    #[arg(long, default_value_t = 10)]
    difficulty_epochs: usize,
    /// Neighbour counts tried for the difficulty's kNN part (comma-separated; inner CV over the training sources picks one).
    #[arg(long, value_delimiter = ',', default_value = "10,30,100")]
    difficulty_knn_k: Vec<usize>,
    /// Weights w tried in the difficulty blend (1 − w) · head + w · kNN (comma-separated; inner CV picks one; `0` alone = the head alone, no bank).
    /// Default `0`: the blend's +0.02 within-source Spearman (e5, leave-one-source-out) does not pay for its ~1 ms per prompt, 32 MB of
    /// memory and 8 MB of heads file, and it is worse on AlpacaEval (docs/EVALUATION.md, "Difficulty"); `0,0.25,0.5` is the grid measured there.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    difficulty_knn_weight: Vec<f64>,
    /// Folds of training sources in the inner CV that picks the kNN's k and weight.
    #[arg(long, default_value_t = 3)]
    difficulty_inner_folds: usize,
    /// Skip the task head's leave-one-source-out but run the difficulty head's.
    #[arg(long, conflicts_with = "no_cv")]
    no_task_cv: bool,
    /// Task-loss weight of an example ∝ (1 / its class's share)^P; 0 = unweighted, 1 = fully balanced.
    #[arg(long, default_value_t = 0.5)]
    class_weight_power: f32,
    /// Also multiply by (mean source size / its source's size)^P, so large sources do not dominate.
    #[arg(long, default_value_t = 0.0)]
    source_weight_power: f32,
    /// AdamW learning rate of both heads.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// AdamW weight decay of both heads.
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f64,
}

pub(crate) struct Example {
    pub(crate) source: String,
    pub(crate) prompt: String,
    pub(crate) label: usize,
}

#[allow(clippy::type_complexity)] // (records with their file names, the files skipped): read once, used once
/// Records with their file's stem (the source unless a record names its
/// own), and `file:sha256` of every file read.
pub(crate) type SourcedRecords = (Vec<(String, Record)>, Vec<String>);

/// [`read_dir_records`] over several folders, in the order given.
pub(crate) fn read_dirs_records(dirs: &[PathBuf]) -> anyhow::Result<SourcedRecords> {
    let (mut records, mut hashes) = (Vec::new(), Vec::new());
    for dir in dirs {
        let (r, h) = read_dir_records(dir)?;
        records.extend(r);
        hashes.extend(h);
    }
    Ok((records, hashes))
}

pub(crate) fn read_dir_records(dir: &Path) -> anyhow::Result<SourcedRecords> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut hashes = Vec::new();
    for f in files {
        let (good, bad) = pointsman_records::read_file(&f)
            .with_context(|| format!("cannot read {}", f.display()))?;
        for e in &bad {
            eprintln!("error: {}: {e}", f.display());
        }
        if !bad.is_empty() {
            bail!("{}: {} malformed line(s)", f.display(), bad.len());
        }
        hashes.push(format!(
            "{}:{}",
            f.file_name().unwrap().to_string_lossy(),
            crate_sha(&f)?
        ));
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        out.extend(good.into_iter().map(|r| (stem.clone(), r)));
    }
    Ok((out, hashes))
}

fn crate_sha(path: &Path) -> anyhow::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

pub(crate) fn bar(msg: &'static str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    b.set_message(msg);
    b
}

/// A `progress(done, total)` callback that drives `bar`.
fn report_to(bar: &indicatif::ProgressBar) -> impl Fn(usize, usize) + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

pub fn run(args: TrainHeadsArgs) -> anyhow::Result<ExitCode> {
    let model_dir = paths::resolve(&args.model_dir);
    let dir = ModelDir::open(&model_dir)?;
    let dir = match &args.adapter {
        Some(a) => dir.with_adapter(&paths::resolve(a))?,
        None => dir,
    };
    let encoder = load_encoder(&dir, DeviceChoice::Cpu, Engine::Native(args.precision))?;
    let encoder = encoder.as_ref();
    let with_features = !args.no_features;

    // ---- data
    let (task_records, task_hashes) = read_dirs_records(&args.tasks)?;
    let (eval_records, _) = if args.eval.is_dir() {
        read_dir_records(&args.eval)?
    } else {
        (Vec::new(), Vec::new())
    };
    let (outcome_records, outcome_hashes) = read_dir_records(&args.outcomes)?;

    let found: BTreeSet<String> = task_records
        .iter()
        .filter_map(|(_, r)| r.task.clone())
        .collect();
    let taxonomy = match &args.labels {
        Some(l) => Taxonomy::new(l.clone()).map_err(anyhow::Error::msg)?,
        None if found.iter().all(|l| DEFAULT_TASKS.contains(&l.as_str())) => {
            Taxonomy::default_tasks()
        }
        None => Taxonomy::new(found.into_iter().collect()).map_err(anyhow::Error::msg)?,
    };
    let to_examples = |records: &[(String, Record)]| -> Vec<Example> {
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
    };
    let train = to_examples(&task_records);
    let evals = to_examples(&eval_records);
    if train.is_empty() {
        bail!(
            "no records in {} carry a task label from {:?}",
            args.tasks
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            taxonomy.labels()
        );
    }
    let outcomes = outcome_data(&outcome_records, args.outcomes_per_file, args.seed);
    let irt = IrtConfig {
        item_ridge: args.irt_item_ridge,
        ..Default::default()
    };
    eprintln!(
        "{} training prompts ({} sources), {} eval prompts, {} prompts with outcomes",
        train.len(),
        train
            .iter()
            .map(|e| &e.source)
            .collect::<BTreeSet<_>>()
            .len(),
        evals.len(),
        outcomes.sample.len()
    );

    // ---- embeddings
    let encoder_id = pointsman_classifier::embed_cache::encoder_id(encoder, &dir.weights_sha256);
    let mut cache = EmbedCache::open(&args.cache_dir, &encoder_id, encoder)?;
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
    let b = bar("embedding");
    let embs = cache.embed_all(encoder, &texts, 32, &report_to(&b))?;
    b.finish_and_clear();
    let with_views = !args.no_views;
    let view_embs = if with_views {
        let b = bar("embedding instruction views");
        let v = cache.embed_views(encoder, &texts, 32, &report_to(&b))?;
        b.finish_and_clear();
        v
    } else {
        vec![None; texts.len()]
    };
    let inputs: Vec<Vec<f32>> = texts
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
        .collect();
    let (x_train, rest) = inputs.split_at(train.len());
    let (x_eval, x_scored) = rest.split_at(evals.len());

    let task_cfg = TrainConfig {
        hidden: args.hidden,
        epochs: args.epochs,
        seed: args.seed,
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        ..Default::default()
    };
    let diff_cfg = TrainConfig {
        hidden: args.difficulty_hidden,
        epochs: args.difficulty_epochs,
        seed: args.seed + 1,
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        ..Default::default()
    };
    let cv_options = DifficultyCvOptions {
        kind: args.difficulty_target,
        pair_weight: args.difficulty_pair_weight,
        embedding_dim: encoder.dim(),
        knn_ks: args.difficulty_knn_k.clone(),
        knn_weights: args.difficulty_knn_weight.clone(),
        inner_folds: args.difficulty_inner_folds,
    };
    if args.difficulty_cv_only {
        let cv = difficulty_cv(&outcomes, x_scored, &cv_options, &irt, &diff_cfg)?;
        let text = format!(
            "{}\nDifficulty head: hidden {}, epochs {}.\n",
            cv.markdown(),
            diff_cfg.hidden,
            diff_cfg.epochs
        );
        match &args.report {
            Some(path) => std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => eprintln!("{text}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let weights = example_weights(
        &train,
        taxonomy.len(),
        args.class_weight_power,
        args.source_weight_power,
    );
    let labels: Vec<usize> = train.iter().map(|e| e.label).collect();

    // ---- task head: leave-one-source-out
    let mut report = String::new();
    let mut metrics = serde_json::Map::new();
    if !args.no_cv && !args.no_task_cv {
        let (conf, per_source) = task_cv(&train, x_train, &labels, &weights, &taxonomy, &task_cfg)?;
        report += &format!(
            "### Task type, leave-one-source-out over the {} training sources\n\nEach source was held out in turn; heads trained on all the others predicted it. Accuracy {:.3}, macro recall {:.3}, n = {}.\n\n| held-out source | n | accuracy |\n|---|---|---|\n",
            per_source.len(), conf.accuracy(), conf.macro_recall(), conf.total()
        );
        for (s, (n, acc)) in &per_source {
            report += &format!("| {s} | {n} | {acc:.3} |\n");
        }
        report += &format!(
            "\nConfusion matrix (all held-out predictions):\n\n{}\n",
            conf.markdown()
        );
        metrics.insert(
            "task_leave_one_source_out".into(),
            json!({"overall": conf.to_json(), "per_source": per_source}),
        );
    }

    // ---- final task head + eval-only sources
    let task_mlp = train_classifier(x_train, &labels, &weights, taxonomy.len(), &task_cfg)?;
    if !evals.is_empty() {
        let mut by_source: BTreeMap<String, Confusion> = BTreeMap::new();
        for (e, x) in evals.iter().zip(x_eval) {
            let c = by_source
                .entry(e.source.clone())
                .or_insert_with(|| Confusion::new(taxonomy.labels()));
            c.add(e.label, argmax(&softmax(&task_mlp.forward(x))));
        }
        report += "### Task type, evaluation-only sources (never trained on), final heads\n\n| source | n | accuracy | macro recall |\n|---|---|---|---|\n";
        for (s, c) in &by_source {
            report += &format!(
                "| {s} | {} | {:.3} | {:.3} |\n",
                c.total(),
                c.accuracy(),
                c.macro_recall()
            );
        }
        for (s, c) in &by_source {
            report += &format!("\nConfusion matrix, {s}:\n\n{}\n", c.markdown());
        }
        metrics.insert(
            "task_eval_sources".into(),
            json!(by_source
                .iter()
                .map(|(s, c)| (s.clone(), c.to_json()))
                .collect::<serde_json::Map<_, _>>()),
        );
    }

    // ---- difficulty head
    if !args.no_cv && !outcomes.sample.is_empty() {
        let cv = difficulty_cv(&outcomes, x_scored, &cv_options, &irt, &diff_cfg)?;
        report += &cv.markdown();
        metrics.insert(
            "difficulty_leave_one_source_out".into(),
            serde_json::to_value(&cv)?,
        );
    }
    let mut neighbours = None;
    let diff_mlp = if outcomes.sample.is_empty() {
        eprintln!("warning: no outcome records; the difficulty head is untrained (constant 0.5)");
        Mlp {
            layers: vec![pointsman_classifier::heads::Dense {
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
            serde_json::to_value(joint.summary(&outcomes.rows))?,
        );
        let targets = joint.targets(&outcomes.rows, &outcomes.sample, args.difficulty_target);
        neighbours = final_knn(&outcomes, x_scored, &targets, &cv_options, &diff_cfg)?;
        fit_difficulty(
            x_scored,
            &targets,
            &outcomes.sample_groups(&outcomes.sample),
            args.difficulty_pair_weight,
            &diff_cfg,
        )?
    };

    // ---- write
    let mut hasher = Sha256::new();
    for h in task_hashes.iter().chain(&outcome_hashes) {
        hasher.update(h.as_bytes());
    }
    let data_sha = hex::encode(hasher.finalize());
    let settings = json!({
        "seed": args.seed, "hidden": args.hidden, "epochs": args.epochs, "features": with_features, "views": with_views,
        "outcomes_per_file": args.outcomes_per_file, "learning_rate": task_cfg.learning_rate,
        "weight_decay": task_cfg.weight_decay, "batch_size": task_cfg.batch_size,
        "class_weight_power": args.class_weight_power, "source_weight_power": args.source_weight_power,
        "difficulty_target": args.difficulty_target.to_string(), "irt_item_ridge": irt.item_ridge,
        "difficulty_pair_weight": args.difficulty_pair_weight,
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
    // The precision enters the settings (and so the version) only when it is
    // not f32, so heads fitted on f32 embeddings keep the version they had
    // before `--precision` existed and stay reproducible by their command.
    if encoder.precision() != "f32" {
        settings["precision"] = json!(encoder.precision());
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
        version: version.clone(),
        encoder: EncoderInfo {
            name: model_dir
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
        views: if with_views {
            pointsman_classifier::classifier::VIEW_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            vec![]
        },
        task_labels: taxonomy.clone(),
        difficulty_target: args.difficulty_target.describe(),
        difficulty_knn: neighbours.as_ref().map(|b| b.blend),
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
        },
        difficulty: DifficultyHead {
            mlp: diff_mlp,
            neighbours,
        },
        metadata,
    };
    heads.save(&args.out)?;
    eprintln!("wrote {} ({version})", args.out.display());
    if let Some(path) = &args.report {
        std::fs::write(path, &report)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    } else {
        eprintln!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// Per-example task-loss weights: inverse class frequency to the power
/// `class_power` (0.5 by default, so rare classes count without drowning the
/// common ones), times inverse source size to the power `source_power`
/// (0 by default).
pub(crate) fn example_weights(
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

type PerSource = BTreeMap<String, (usize, f64)>;

fn task_cv(
    train: &[Example],
    x: &[Vec<f32>],
    labels: &[usize],
    weights: &[f32],
    taxonomy: &Taxonomy,
    cfg: &TrainConfig,
) -> anyhow::Result<(Confusion, PerSource)> {
    let sources: BTreeSet<&str> = train.iter().map(|e| e.source.as_str()).collect();
    let mut conf = Confusion::new(taxonomy.labels());
    let mut per_source = BTreeMap::new();
    let b = bar("leave-one-source-out (task)");
    b.set_length(sources.len() as u64);
    for s in sources {
        let (tr, te): (Vec<usize>, Vec<usize>) =
            (0..train.len()).partition(|&i| train[i].source != s);
        let pick = |idx: &[usize]| idx.iter().map(|&i| x[i].clone()).collect::<Vec<_>>();
        let mlp = train_classifier(
            &pick(&tr),
            &tr.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
            &tr.iter().map(|&i| weights[i]).collect::<Vec<_>>(),
            taxonomy.len(),
            cfg,
        )?;
        let mut right = 0;
        for &i in &te {
            let p = argmax(&softmax(&mlp.forward(&x[i])));
            conf.add(labels[i], p);
            right += usize::from(p == labels[i]);
        }
        per_source.insert(
            s.to_string(),
            (te.len(), right as f64 / te.len().max(1) as f64),
        );
        b.inc(1);
    }
    b.finish_and_clear();
    Ok((conf, per_source))
}
