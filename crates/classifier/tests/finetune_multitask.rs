//! Multi-task LoRA fine-tuning (task labels plus difficulty from outcomes)
//! on the real MiniLM weights and a tiny synthetic set: seeded and
//! reproducible bit for bit, a difficulty weight of 0 leaves the task-only
//! adapter unchanged bit for bit, the difficulty loss does shape the
//! embedding, and so does the optional per-model success part.

use std::path::PathBuf;

use pointsman_classifier::finetune::model::FrozenBert;
use pointsman_classifier::finetune::{
    finetune_multitask_snapshots, DifficultyTask, FinetuneConfig, Finetuned, LoraAdapter,
    LowerCache,
};
use pointsman_classifier::tokenize::PromptTokenizer;
use pointsman_classifier::ModelDir;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

/// Task-labelled prompts (code 0, maths 1, creative 2).
const TASKS: [(&str, usize); 9] = [
    ("Write a Python function that reverses a linked list.", 0),
    ("How do I sort a dictionary by value in Rust?", 0),
    ("Implement binary search in C++.", 0),
    ("What is 17 times 23?", 1),
    ("Solve for x: 3x + 5 = 20.", 1),
    ("Compute the derivative of x^3 sin x.", 1),
    ("Write a short poem about autumn leaves.", 2),
    ("Write a haiku about the sea at night.", 2),
    ("Compose a limerick about a cat and a hat.", 2),
];

/// Outcome prompts of two sources, each with a difficulty target: within
/// each source, the proofs and the long multi-step requests are hard, the
/// one-liners easy.
const OUTCOMES: [(&str, usize, f32); 12] = [
    ("What is 2 + 2?", 0, 0.05),
    ("What is 10 divided by 5?", 0, 0.1),
    ("What is 3 times 3?", 0, 0.15),
    (
        "Prove that there are infinitely many primes congruent to 3 mod 4.",
        0,
        0.9,
    ),
    (
        "Prove that every bounded monotone sequence of reals converges.",
        0,
        0.95,
    ),
    (
        "Show that the square root of 2 is irrational, with a full proof.",
        0,
        0.85,
    ),
    ("Print hello world in Python.", 1, 0.1),
    ("Add two numbers in JavaScript.", 1, 0.05),
    ("Return the length of a list in Python.", 1, 0.15),
    (
        "Implement a lock-free concurrent hash map in C++ with resizing.",
        1,
        0.9,
    ),
    (
        "Write a compiler for a subset of Lisp to x86 assembly in Rust.",
        1,
        0.95,
    ),
    (
        "Implement a distributed consensus protocol (Raft) with log compaction.",
        1,
        0.85,
    ),
];

struct Fixture {
    bert: FrozenBert,
    cache: LowerCache,
}

fn fixture() -> Fixture {
    let dir = ModelDir::open(&model_dir()).expect("run scripts/fetch-model first");
    let bert = FrozenBert::load(&dir.config_path(), &dir.weights_path()).unwrap();
    let tok = PromptTokenizer::load(&dir, 32).unwrap();
    let ids: Vec<Vec<u32>> = TASKS
        .iter()
        .map(|(t, _)| *t)
        .chain(OUTCOMES.iter().map(|(t, _, _)| *t))
        .map(|t| tok.ids(t).unwrap())
        .collect();
    let cache = LowerCache::build(&bert, &ids, bert.num_layers() - 1, &|_| {}).unwrap();
    Fixture { bert, cache }
}

fn difficulty(loss_weight: f64) -> DifficultyTask {
    DifficultyTask {
        rows: (TASKS.len()..TASKS.len() + OUTCOMES.len()).collect(),
        targets: OUTCOMES.iter().map(|o| o.2).collect(),
        groups: OUTCOMES.iter().map(|o| o.1).collect(),
        loss_weight,
        pair_weight: 1.0,
        success: Vec::new(),
        success_weight: 0.0,
        head_learning_rate: 1e-3,
    }
}

/// [`difficulty`] plus per-model success: two models of fixed abilities
/// −1 and +1; the weak one fails every hard prompt, the strong one only
/// the hardest.
fn with_success(weight: f64) -> DifficultyTask {
    let mut t = difficulty(1.0);
    t.success = OUTCOMES
        .iter()
        .map(|o| vec![(-1.0, f32::from(o.2 < 0.5)), (1.0, f32::from(o.2 < 0.9))])
        .collect();
    t.success_weight = weight;
    t
}

fn run(f: &Fixture, seed: u64, epochs: usize, task: Option<&DifficultyTask>) -> Finetuned {
    let cfg = FinetuneConfig {
        layers: 1,
        rank: 2,
        epochs,
        batch_size: 3,
        seed,
        ..Default::default()
    };
    let rows: Vec<usize> = (0..TASKS.len()).collect();
    let labels: Vec<usize> = TASKS.iter().map(|t| t.1).collect();
    finetune_multitask_snapshots(
        &f.bert,
        &f.cache,
        &rows,
        &labels,
        &vec![1.0; rows.len()],
        3,
        &cfg,
        task,
        &[epochs],
        &|_, _, _| {},
    )
    .unwrap()
    .pop()
    .unwrap()
}

/// Every factor's bits, in module order: equal bits are equal adapter bytes.
fn bits(a: &LoraAdapter) -> Vec<u32> {
    a.modules
        .values()
        .flat_map(|p| p.a.iter().chain(&p.b).map(|x| x.to_bits()))
        .collect()
}

#[test]
fn multitask_finetuning_is_reproducible_from_a_seed() {
    let f = fixture();
    let task = difficulty(1.0);
    let a = run(&f, 3, 2, Some(&task));
    let b = run(&f, 3, 2, Some(&task));
    let (aa, ab) = (a.adapter.as_ref().unwrap(), b.adapter.as_ref().unwrap());
    assert_eq!(bits(aa), bits(ab), "same seed, same adapter bytes");
    assert_eq!(a.difficulty_head, b.difficulty_head);
    assert_eq!(a.difficulty_losses.len(), 2);
    let c = run(&f, 4, 2, Some(&task));
    assert_ne!(bits(aa), bits(c.adapter.as_ref().unwrap()), "another seed");
    // The outcome loss moves the adapter away from the task-only one.
    let task_only = run(&f, 3, 2, None);
    assert_ne!(bits(aa), bits(task_only.adapter.as_ref().unwrap()));
    assert!(task_only.difficulty_head.is_none() && task_only.difficulty_losses.is_empty());
}

/// The difficulty side draws from its own RNG and adds weight x loss to
/// the step's loss: at weight 0 the task side (batch order, LoRA and task
/// head updates) is exactly the task-only run's.
#[test]
fn zero_difficulty_weight_gives_the_task_only_adapter_bit_for_bit() {
    let f = fixture();
    let task_only = run(&f, 5, 3, None);
    let zero = run(&f, 5, 3, Some(&difficulty(0.0)));
    assert_eq!(
        bits(task_only.adapter.as_ref().unwrap()),
        bits(zero.adapter.as_ref().unwrap())
    );
    assert_eq!(
        task_only
            .head_weight
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        zero.head_weight
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
    assert_eq!(task_only.epoch_losses, zero.epoch_losses);
}

/// With the difficulty loss on, the jointly trained difficulty head orders
/// the outcome prompts within each source (the data it was fitted to: a
/// check that the loss reaches the head and the adapter, not a held-out
/// claim).
#[test]
fn the_difficulty_loss_is_learned() {
    let f = fixture();
    let task = difficulty(1.0);
    let model = run(&f, 7, 12, Some(&task));
    let losses = &model.difficulty_losses;
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "difficulty loss did not fall: {losses:?}"
    );
    let emb = f.cache.embed(&f.bert, &task.rows, model.lora()).unwrap();
    let pred = model.predict_difficulty(&emb).unwrap();
    for source in 0..2 {
        let (mut hard, mut easy) = (Vec::new(), Vec::new());
        for (k, o) in OUTCOMES.iter().enumerate() {
            if o.1 == source {
                if o.2 > 0.5 { &mut hard } else { &mut easy }.push(pred[k]);
            }
        }
        let min_hard = hard.iter().copied().fold(f32::INFINITY, f32::min);
        let max_easy = easy.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(
            min_hard > max_easy,
            "source {source}: hard {hard:?} vs easy {easy:?}"
        );
    }
}

#[test]
fn the_success_part_is_reproducible_and_shapes_the_adapter() {
    let f = fixture();
    let a = run(&f, 3, 2, Some(&with_success(1.0)));
    let b = run(&f, 3, 2, Some(&with_success(1.0)));
    assert_eq!(
        bits(a.adapter.as_ref().unwrap()),
        bits(b.adapter.as_ref().unwrap())
    );
    let without = run(&f, 3, 2, Some(&with_success(0.0)));
    assert_ne!(
        bits(a.adapter.as_ref().unwrap()),
        bits(without.adapter.as_ref().unwrap())
    );
    // Weight 0 with outcomes attached is the difficulty-only run.
    let plain = run(&f, 3, 2, Some(&difficulty(1.0)));
    assert_eq!(
        bits(plain.adapter.as_ref().unwrap()),
        bits(without.adapter.as_ref().unwrap())
    );
}

#[test]
fn a_malformed_difficulty_task_is_refused() {
    let f = fixture();
    let mut bad = difficulty(1.0);
    bad.targets[0] = 1.5;
    let cfg = FinetuneConfig {
        layers: 1,
        rank: 2,
        epochs: 1,
        ..Default::default()
    };
    let go = |t: &DifficultyTask| {
        finetune_multitask_snapshots(
            &f.bert,
            &f.cache,
            &[0, 1],
            &[0, 1],
            &[1.0, 1.0],
            3,
            &cfg,
            Some(t),
            &[1],
            &|_, _, _| {},
        )
        .map(|_| ())
    };
    assert!(go(&bad).is_err());
    let mut bad = difficulty(1.0);
    bad.rows[0] = 999;
    assert!(go(&bad).is_err());
    let mut bad = difficulty(-1.0);
    bad.groups.pop();
    assert!(go(&bad).is_err());
    assert!(go(&difficulty(f64::NAN)).is_err());
    let mut bad = with_success(1.0);
    bad.success.pop();
    assert!(go(&bad).is_err());
    let mut bad = with_success(1.0);
    bad.success[0][0].1 = 2.0;
    assert!(go(&bad).is_err());
}
