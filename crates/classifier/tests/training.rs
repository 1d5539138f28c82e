//! The training runs as library calls, without the CLI: `train_heads` and
//! `train_encoder` on tiny data with the real encoders return their
//! artifacts and reports as data, and bad data or options fail with the
//! classifier's typed errors before any training.

use std::path::{Path, PathBuf};

use pointsman_classifier::cues::CUE_NAMES;
use pointsman_classifier::difficulty_target::DifficultyTarget;
use pointsman_classifier::training::records::read_dir_records;
use pointsman_classifier::training::{
    train_encoder, train_heads, EncoderTrainingOptions, ExampleWeighting, HeadsTraining,
    HeadsTrainingOptions, Silent,
};
use pointsman_classifier::{ClassifierError, Precision};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Task records of sources a, b, c; outcome records of sources x, y, z where
/// longer products are failed by more of three models.
fn data(root: &Path) {
    for (s, source) in ["a", "b", "c"].iter().enumerate() {
        let rows: Vec<_> = (0..6)
            .map(|i| {
                let (task, prompt) = if i % 2 == 0 {
                    ("code", format!("Write a Python function {s}{i} that sorts a list."))
                } else {
                    ("math", format!("What is {i} times {} plus {s}?", i + 3))
                };
                serde_json::json!({"id": format!("{source}{i}"), "source": source, "prompt": prompt, "task": task})
            })
            .collect();
        write_jsonl(&root.join(format!("tasks/{source}.jsonl")), &rows);
    }
    for (s, source) in ["x", "y", "z"].iter().enumerate() {
        let rows: Vec<_> = (0..8)
            .map(|i| {
                let terms: Vec<String> = (0..=i).map(|k| format!("{}", 7 * k + s + 1)).collect();
                let outcomes: serde_json::Map<String, serde_json::Value> = (0..3)
                    .map(|m| {
                        let score = if i < 2 + 2 * m { 1.0 } else { 0.0 };
                        (format!("model-{m}"), serde_json::json!({"score": score}))
                    })
                    .collect();
                serde_json::json!({"id": format!("{source}{i}"), "source": source,
                    "prompt": format!("Compute {} exactly.", terms.join(" * ")), "outcomes": outcomes})
            })
            .collect();
        write_jsonl(&root.join(format!("outcomes/{source}.jsonl")), &rows);
    }
}

fn heads_options(root: &Path) -> HeadsTrainingOptions {
    HeadsTrainingOptions {
        tasks: vec![root.join("tasks")],
        eval: root.join("no-eval"),
        outcomes: root.join("outcomes"),
        outcomes_per_file: 600,
        difficulty_target: DifficultyTarget::WithinSourceRank,
        difficulty_pair_weight: 1.0,
        irt_item_ridge: 1.0,
        labels: None,
        cache_dir: root.join("cache"),
        model_dir: models().join("multilingual-e5-small"),
        adapter: None,
        precision: Precision::F32,
        seed: 17,
        hidden: 8,
        epochs: 2,
        task_members: 1,
        features: true,
        task_features_off: vec![],
        task_cues: false,
        views: true,
        language_pairs: vec![],
        language_pairs_optional: false,
        task_cv: true,
        difficulty_cv: true,
        difficulty_cv_only: false,
        difficulty_within_source_folds: 0,
        difficulty_hidden: 8,
        difficulty_epochs: 2,
        difficulty_members: 1,
        difficulty_knn_k: vec![10],
        difficulty_knn_weight: vec![0.0],
        difficulty_inner_folds: 3,
        weighting: ExampleWeighting::default(),
        learning_rate: 1e-3,
        weight_decay: 1e-2,
    }
}

/// The smallest `train encoder` settings (MiniLM, one adapted layer,
/// 16-token window, one epoch) over the data `data` writes under `dir`.
fn small_encoder_options(dir: &Path, outcomes: Vec<PathBuf>) -> EncoderTrainingOptions {
    EncoderTrainingOptions {
        tasks: vec![dir.join("tasks")],
        eval: dir.join("no-eval"),
        model_dir: models().join("all-MiniLM-L6-v2"),
        folds: 0,
        cv_only: false,
        layers: 1,
        rank: 8,
        alpha: 16.0,
        targets: None,
        epochs: 1,
        select_epochs: None,
        learning_rate: 1e-3,
        head_learning_rate: 1e-2,
        batch_size: 4,
        window: 16,
        seed: 17,
        class_weight_power: 0.5,
        max_per_source: 0,
        eval_max_per_source: 0,
        lower_cache: None,
        outcomes,
        outcomes_per_file: 100,
        difficulty_loss_weight: 1.0,
        difficulty_pair_weight: 1.0,
        success_loss_weight: 0.0,
        difficulty_head_learning_rate: 1e-3,
    }
}

#[test]
fn train_heads_returns_the_heads_and_the_report_as_data() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let opts = heads_options(dir.path());
    let HeadsTraining::Trained { heads, report } = train_heads(&opts, &Silent).unwrap() else {
        panic!("heads were asked for");
    };
    assert_eq!(heads.task.labels.labels().len(), 11);
    let training = &heads.metadata.training;
    assert_eq!(training["task_examples"], 18);
    assert_eq!(training["difficulty_examples"], 24);
    let task_cv = report.task_cv.as_ref().expect("task CV asked for");
    assert_eq!(task_cv.per_source.len(), 3);
    assert_eq!(task_cv.confusion.total(), 18);
    let difficulty = report
        .difficulty_cv
        .as_ref()
        .expect("difficulty CV asked for");
    assert_eq!(
        difficulty.per_source.keys().collect::<Vec<_>>(),
        ["x", "y", "z"]
    );
    let text = report.markdown();
    assert!(text.contains("### Task type, leave-one-source-out over the 3 training sources"));
    assert!(text.contains("| x | 8 | 0 |"), "{text}");
    // The metadata's metrics are the report's numbers.
    assert_eq!(
        heads.metadata.metrics["task_leave_one_source_out"]["overall"]["n"],
        18
    );

    // The difficulty CV alone: the same folds, no heads.
    let cv_only = HeadsTrainingOptions {
        difficulty_cv_only: true,
        difficulty_within_source_folds: 0,
        ..opts
    };
    match train_heads(&cv_only, &Silent).unwrap() {
        HeadsTraining::DifficultyCvOnly { cv, hidden, epochs } => {
            assert_eq!((hidden, epochs), (8, 2));
            for (s, r) in &cv.per_source {
                assert_eq!(r.spearman, difficulty.per_source[s].spearman, "{s}");
            }
        }
        HeadsTraining::Trained { .. } => panic!("no heads with difficulty_cv_only"),
    }
}

/// German and Chinese translations of every task record `data` writes,
/// as `train heads --language-pairs` reads them.
fn translations(root: &Path) -> PathBuf {
    let mut rows = Vec::new();
    for (s, source) in ["a", "b", "c"].iter().enumerate() {
        for i in 0..6 {
            let (de, zh) = if i % 2 == 0 {
                (
                    format!("Schreibe eine Python-Funktion {s}{i}, die eine Liste sortiert."),
                    format!("写一个对列表排序的 Python 函数 {s}{i}。"),
                )
            } else {
                (
                    format!("Was ist {i} mal {} plus {s}?", i + 3),
                    format!("{i} 乘以 {} 加 {s} 等于多少？", i + 3),
                )
            };
            for (lang, prompt) in [("de", de), ("zh", zh)] {
                rows.push(
                    serde_json::json!({"id": format!("{lang}/{source}{i}"), "source": source,
                    "prompt": prompt, "task": if i % 2 == 0 { "code" } else { "math" },
                    "lang": lang, "translated_from": format!("{source}{i}")}),
                );
            }
        }
    }
    let dir = root.join("translated");
    write_jsonl(&dir.join("translated.jsonl"), &rows);
    dir
}

#[test]
fn seed_ensembles_are_wider_heads_recorded_in_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let single = HeadsTrainingOptions {
        task_cv: false,
        difficulty_cv: false,
        ..heads_options(dir.path())
    };
    let trained = |opts: &HeadsTrainingOptions| match train_heads(opts, &Silent).unwrap() {
        HeadsTraining::Trained { heads, .. } => heads,
        HeadsTraining::DifficultyCvOnly { .. } => panic!("heads were asked for"),
    };
    let one = trained(&single);
    let settings = &one.metadata.training["settings"];
    assert!(settings.get("task_members").is_none() && settings.get("difficulty_members").is_none());
    let many = trained(&HeadsTrainingOptions {
        task_members: 3,
        difficulty_members: 2,
        ..single.clone()
    });
    // hidden 8 in both heads: the members' units side by side.
    assert_eq!(one.task.mlp.layers[0].outputs, 8);
    assert_eq!(many.task.mlp.layers[0].outputs, 24);
    assert_eq!(many.difficulty.mlp.layers[0].outputs, 16);
    // Member 0 is the single head: its units are the ensemble's first eight.
    assert_eq!(
        many.task.mlp.layers[0].weight[..one.task.mlp.layers[0].weight.len()],
        one.task.mlp.layers[0].weight[..]
    );
    let settings = &many.metadata.training["settings"];
    assert_eq!(settings["task_members"], 3);
    assert_eq!(settings["difficulty_members"], 2);
    assert_ne!(one.metadata.version, many.metadata.version);
    // It saves and loads as any heads file.
    let path = dir.path().join("many.safetensors");
    many.save(&path).unwrap();
    let loaded = pointsman_classifier::Heads::load(&path).unwrap();
    assert_eq!(loaded.task.mlp, many.task.mlp);
    assert_eq!(loaded.difficulty.mlp, many.difficulty.mlp);
}

#[test]
fn language_pairs_change_the_task_head_only() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let pairs = translations(dir.path());
    let plain = HeadsTrainingOptions {
        task_cv: false,
        difficulty_cv: false,
        ..heads_options(dir.path())
    };
    let with_pairs = HeadsTrainingOptions {
        language_pairs: vec![pairs.clone()],
        ..plain.clone()
    };
    let trained = |opts: &HeadsTrainingOptions| match train_heads(opts, &Silent).unwrap() {
        HeadsTraining::Trained { heads, .. } => heads,
        HeadsTraining::DifficultyCvOnly { .. } => panic!("heads were asked for"),
    };
    let (a, b) = (trained(&plain), trained(&with_pairs));
    let info = b.metadata.language_directions.as_ref().expect("directions");
    assert_eq!(info.rank, 2);
    assert_eq!(info.pairs_by_language["de"], 18);
    assert_eq!(info.pairs_by_language["zh"], 18);
    assert_eq!(b.task.language.as_ref().map(|d| d.rank()), Some(2));
    assert!(a.task.language.is_none() && a.metadata.language_directions.is_none());
    // The difficulty head is the same to the bit; the task head is not.
    assert_eq!(a.difficulty.mlp, b.difficulty.mlp);
    assert_ne!(a.task.mlp, b.task.mlp);
    assert_ne!(a.metadata.version, b.metadata.version);

    // Pairs whose originals are not training records (a leave-one-source-out
    // fold holding their source out) give no direction; with none left the
    // run fails, naming the folder.
    let only_a = dir.path().join("only-a");
    std::fs::create_dir_all(&only_a).unwrap();
    std::fs::copy(dir.path().join("tasks/a.jsonl"), only_a.join("a.jsonl")).unwrap();
    let opts = HeadsTrainingOptions {
        tasks: vec![only_a],
        ..with_pairs
    };
    let err = train_heads(&opts, &Silent).err().expect("too few pairs");
    assert!(
        matches!(&err, ClassifierError::NoTrainingData(m) if m.contains("translated") && m.contains("12 translation pairs")),
        "{err}"
    );
    // The CLI's default folder is optional: too few pairs, or no folder,
    // train without directions.
    for pairs in [pairs, dir.path().join("no-such-folder")] {
        let optional = HeadsTrainingOptions {
            language_pairs: vec![pairs],
            language_pairs_optional: true,
            ..opts.clone()
        };
        let heads = trained(&optional);
        assert!(heads.task.language.is_none() && heads.metadata.language_directions.is_none());
    }
}

#[test]
fn operation_cues_widen_the_task_head_only() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let plain = HeadsTrainingOptions {
        task_cv: false,
        difficulty_cv: false,
        ..heads_options(dir.path())
    };
    let cued = HeadsTrainingOptions {
        task_cues: true,
        ..plain.clone()
    };
    let trained = |opts: &HeadsTrainingOptions| match train_heads(opts, &Silent).unwrap() {
        HeadsTraining::Trained { heads, .. } => heads,
        HeadsTraining::DifficultyCvOnly { .. } => panic!("heads were asked for"),
    };
    let (a, b) = (trained(&plain), trained(&cued));
    assert_eq!(b.metadata.task_cues, CUE_NAMES);
    assert!(a.metadata.task_cues.is_empty() && !a.task.cues && b.task.cues);
    assert_eq!(b.task.mlp.inputs(), a.task.mlp.inputs() + CUE_NAMES.len());
    // The difficulty head is the same to the bit; the version tells the two apart.
    assert_eq!(a.difficulty.mlp, b.difficulty.mlp);
    assert_ne!(a.metadata.version, b.metadata.version);
    assert_eq!(
        b.metadata.training["settings"]["task_cues"][0],
        CUE_NAMES[0]
    );

    // Saved and loaded, the heads read the cues again.
    let path = dir.path().join("cued/task-difficulty.safetensors");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    b.save(&path).unwrap();
    let loaded = pointsman_classifier::Heads::load(&path).unwrap();
    assert!(loaded.task.cues);
    assert_eq!(loaded.metadata.version, b.metadata.version);
}

#[test]
fn bad_data_and_bad_options_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    // A malformed line: the file fails whole, each bad line named.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("s.jsonl"),
        "{\"id\": \"1\", \"prompt\": \"fine\", \"task\": \"code\"}\nnot json\n",
    )
    .unwrap();
    match read_dir_records(&bad) {
        Err(ClassifierError::MalformedRecords { path, errors }) => {
            assert_eq!(path, bad.join("s.jsonl"));
            assert_eq!(errors.len(), 1);
            assert!(errors[0].starts_with("line 2"), "{errors:?}");
        }
        other => panic!("{:?}", other.map(|r| r.0.len())),
    }
    let missing = dir.path().join("missing");
    let err = read_dir_records(&missing).unwrap_err();
    assert!(matches!(err, ClassifierError::ReadData { .. }), "{err}");

    // No record with a known label.
    let opts = HeadsTrainingOptions {
        tasks: vec![dir.path().join("outcomes")],
        ..heads_options(dir.path())
    };
    let err = train_heads(&opts, &Silent)
        .err()
        .expect("no labelled records");
    assert!(matches!(err, ClassifierError::NoTrainingData(_)), "{err}");

    // Epoch selection without folds, before any training.
    let opts = EncoderTrainingOptions {
        folds: 1,
        select_epochs: Some(vec![1, 2]),
        ..small_encoder_options(dir.path(), vec![])
    };
    let err = train_encoder(&opts, &Silent).err().expect("refused");
    assert!(
        matches!(&err, ClassifierError::InvalidOption(m) if m.contains("--select-epochs")),
        "{err}"
    );
    let opts = EncoderTrainingOptions {
        select_epochs: None,
        difficulty_loss_weight: f64::NAN,
        ..opts
    };
    let err = train_encoder(&opts, &Silent).err().expect("refused");
    assert!(
        matches!(&err, ClassifierError::InvalidOption(m) if m.contains("--difficulty-loss-weight")),
        "{err}"
    );
}

#[test]
fn train_encoder_returns_the_adapter_and_the_report_as_data() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let opts = EncoderTrainingOptions {
        folds: 3,
        ..small_encoder_options(dir.path(), vec![dir.path().join("outcomes")])
    };
    let trained = train_encoder(&opts, &Silent).unwrap();
    let folds = trained.report.folds.as_ref().expect("3 folds");
    assert_eq!(folds.candidates, [1]);
    assert_eq!(folds.confusions[1][0].total(), 18);
    assert_eq!(folds.per_source.len(), 3);
    let difficulty = folds.difficulty.as_ref().expect("outcomes given");
    assert_eq!(difficulty.rows.keys().collect::<Vec<_>>(), ["x", "y", "z"]);
    let (_, metadata) = trained.adapter.as_ref().expect("not cv_only");
    assert_eq!(metadata.training["task_examples"], 18);
    assert_eq!(
        metadata.training["metrics"]["task_source_folds"]["folds"],
        3
    );
    assert!(trained
        .report
        .markdown()
        .contains("### Difficulty on held-out outcome sources (3 source groups"));

    // Held-out only: the same report, no adapter.
    let cv = train_encoder(
        &EncoderTrainingOptions {
            cv_only: true,
            ..opts
        },
        &Silent,
    )
    .unwrap();
    assert!(cv.adapter.is_none());
    assert_eq!(cv.report.markdown(), trained.report.markdown());
}
