//! What the difficulty head is fitted to: per-prompt difficulty learned
//! from every outcome row jointly (see [`crate::irt`]), in one of a few
//! shapes chosen by leave-one-source-out.
//!
//! Outcome sources name models differently and hold the same benchmark
//! prompts in different formats; [`canonical_model`] and [`item_key`] map
//! both onto shared identities so that the joint fit can tie the sources'
//! scales together.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::error::{ClassifierError, Result};
use crate::irt::{fit, IrtConfig, IrtFit, Response};

/// One prompt's outcomes: the source it came from, its text, and each
/// model's score in [0, 1].
#[derive(Debug, Clone)]
pub struct OutcomeRow {
    pub source: String,
    pub prompt: String,
    pub scores: Vec<(String, f64)>,
}

impl OutcomeRow {
    /// 1 − mean score across the models that answered: the old target, and
    /// the truth within one source (where every prompt had the same models).
    pub fn mean_failure(&self) -> f64 {
        if self.scores.is_empty() {
            return 0.5;
        }
        let mean = self.scores.iter().map(|(_, s)| s).sum::<f64>() / self.scores.len() as f64;
        (1.0 - mean).clamp(0.0, 1.0)
    }
}

/// Models that the public outcome files name differently. RouterBench
/// served Mixtral-8x7B-Instruct through Together as `mixtral-8x7b-chat`;
/// RouteLLM names the Hugging Face checkpoint.
const MODEL_ALIASES: &[(&str, &str)] = &[
    (
        "mistralai/mixtral-8x7b-chat",
        "mistralai/mixtral-8x7b-instruct-v0.1",
    ),
    ("mixtral-8x7b-chat", "mistralai/mixtral-8x7b-instruct-v0.1"),
];

/// One name per model across sources: lower case, known aliases folded.
pub fn canonical_model(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    MODEL_ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map(|(_, canonical)| canonical.to_string())
        .unwrap_or(lower)
}

/// A key under which the same benchmark question matches across sources
/// that format it differently: in the last few-shot block of the prompt
/// (RouterBench prepends worked examples), without a leading "Question:"
/// or "Please answer with the letter…", the first line with at least
/// [`MIN_KEY_CHARS`] letters and digits (RouterDC's ARC rows lack the
/// answer options RouterBench's have; code prompts open with `"""`), those
/// letters and digits only, lower case. Empty when no line is long enough:
/// such prompts are never matched.
pub fn item_key(prompt: &str) -> String {
    let last_block = prompt
        .rsplit("\n\n")
        .map(str::trim)
        .find(|b| !b.is_empty())
        .unwrap_or("");
    let mut text = last_block.trim_start();
    for prefix in [
        "Please answer with the letter of the correct answer.",
        "Question:",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest.trim_start();
        }
    }
    let line = text
        .lines()
        .find(|l| l.chars().filter(|c| c.is_alphanumeric()).count() >= MIN_KEY_CHARS)
        .unwrap_or("");
    let mut key = String::new();
    for word in line
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !key.is_empty() {
            key.push(' ');
        }
        key.extend(word.chars().flat_map(char::to_lowercase));
    }
    key
}

/// Shorter lines ("Examples:", "下列说法正确的是") name too many prompts to match on.
pub const MIN_KEY_CHARS: usize = 12;

/// The shape of the difficulty head's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DifficultyTarget {
    /// 1 − mean score across the models that answered (before 2026-11-30).
    MeanFailure,
    /// Joint-IRT failure probability of an average catalog model, with the
    /// source's mean difficulty (in logits) scaled by `source_weight`:
    /// 1 keeps it (plain joint IRT), 0 centres every source on the overall
    /// mean, so the head must learn to order prompts within a source and
    /// gets nothing for recognising which benchmark a prompt comes from.
    Irt { source_weight: f64 },
    /// The prompt's percentile of joint-IRT difficulty within its source.
    WithinSourceRank,
}

impl fmt::Display for DifficultyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DifficultyTarget::MeanFailure => write!(f, "mean-failure"),
            DifficultyTarget::Irt { source_weight } if *source_weight == 1.0 => write!(f, "irt"),
            DifficultyTarget::Irt { source_weight } => write!(f, "irt-source-{source_weight}"),
            DifficultyTarget::WithinSourceRank => write!(f, "irt-rank"),
        }
    }
}

impl FromStr for DifficultyTarget {
    type Err = String;
    /// `mean-failure`, `irt`, `irt-centred` (= `irt-source-0`),
    /// `irt-source-<w>` with w in [0, 1], or `irt-rank`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean-failure" => Ok(DifficultyTarget::MeanFailure),
            "irt" => Ok(DifficultyTarget::Irt { source_weight: 1.0 }),
            "irt-centred" => Ok(DifficultyTarget::Irt { source_weight: 0.0 }),
            "irt-rank" => Ok(DifficultyTarget::WithinSourceRank),
            _ => match s.strip_prefix("irt-source-").map(str::parse::<f64>) {
                Some(Ok(w)) if (0.0..=1.0).contains(&w) => {
                    Ok(DifficultyTarget::Irt { source_weight: w })
                }
                _ => Err(format!(
                    "unknown difficulty target `{s}` (mean-failure, irt, irt-centred, irt-source-<0..1>, irt-rank)"
                )),
            },
        }
    }
}

impl DifficultyTarget {
    /// The target in words, for the heads' metadata.
    pub fn describe(&self) -> String {
        match self {
            DifficultyTarget::MeanFailure => {
                "1 - mean score across the models that answered the prompt".into()
            }
            DifficultyTarget::Irt { source_weight } => format!(
                "probability that an average catalog model fails the prompt, from a Rasch model \
                 fitted jointly to every outcome row (P(success) = sigmoid(ability - difficulty)), \
                 with each source's mean difficulty scaled by {source_weight}"
            ),
            DifficultyTarget::WithinSourceRank => {
                "percentile of joint-IRT difficulty within the prompt's source".into()
            }
        }
    }
}

/// A joint IRT fit over outcome rows, with each row's item.
#[derive(Debug, Clone)]
pub struct JointDifficulty {
    pub fit: IrtFit,
    /// The IRT item of each row given to [`JointDifficulty::fit_rows`].
    pub row_item: Vec<usize>,
    /// Canonical model names, in the fit's ability order.
    pub models: Vec<String>,
}

/// Counts that describe a joint fit, for reports and metadata.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JointSummary {
    pub rows: usize,
    pub items: usize,
    /// Items that rows of more than one source share.
    pub items_shared_across_sources: usize,
    pub models: Vec<String>,
    pub sweeps: usize,
}

impl JointDifficulty {
    /// Fits one Rasch model to every row. Rows of different sources with
    /// the same [`item_key`] share one difficulty, but only where the key
    /// is unique within each of those sources (a key that repeats inside
    /// a source, such as a generic question stem, names several prompts).
    pub fn fit_rows(rows: &[OutcomeRow], cfg: &IrtConfig) -> Result<JointDifficulty> {
        let keys: Vec<String> = rows.iter().map(|r| item_key(&r.prompt)).collect();
        let mut per_source: HashMap<(&str, &str), usize> = HashMap::new();
        for (r, k) in rows.iter().zip(&keys) {
            *per_source
                .entry((r.source.as_str(), k.as_str()))
                .or_default() += 1;
        }
        let mut items: HashMap<&str, usize> = HashMap::new();
        let mut row_item = Vec::with_capacity(rows.len());
        let mut next = 0usize;
        for (r, k) in rows.iter().zip(&keys) {
            let shareable = !k.is_empty() && per_source[&(r.source.as_str(), k.as_str())] == 1;
            let item = if shareable {
                *items.entry(k.as_str()).or_insert_with(|| {
                    next += 1;
                    next - 1
                })
            } else {
                next += 1;
                next - 1
            };
            row_item.push(item);
        }
        let mut model_index: BTreeMap<String, usize> = BTreeMap::new();
        for r in rows {
            for (m, _) in &r.scores {
                let n = model_index.len();
                model_index.entry(canonical_model(m)).or_insert(n);
            }
        }
        let mut responses = Vec::new();
        for (r, &item) in rows.iter().zip(&row_item) {
            for (m, s) in &r.scores {
                if !s.is_finite() || !(0.0..=1.0).contains(s) {
                    return Err(ClassifierError::InvalidInput(format!(
                        "{}: score {s} of {m} is outside [0, 1]",
                        r.source
                    )));
                }
                responses.push(Response {
                    item,
                    model: model_index[&canonical_model(m)],
                    score: *s,
                });
            }
        }
        let fit = fit(&responses, next, model_index.len(), cfg)?;
        let mut models = vec![String::new(); model_index.len()];
        for (name, i) in model_index {
            models[i] = name;
        }
        Ok(JointDifficulty {
            fit,
            row_item,
            models,
        })
    }

    /// Each model's fitted ability, by canonical name.
    pub fn abilities(&self) -> HashMap<String, f64> {
        self.models
            .iter()
            .cloned()
            .zip(self.fit.abilities.iter().copied())
            .collect()
    }

    pub fn summary(&self, rows: &[OutcomeRow]) -> JointSummary {
        let mut sources: HashMap<usize, std::collections::HashSet<&str>> = HashMap::new();
        for (r, &item) in rows.iter().zip(&self.row_item) {
            sources.entry(item).or_default().insert(&r.source);
        }
        JointSummary {
            rows: rows.len(),
            items: self.fit.difficulties.len(),
            items_shared_across_sources: sources.values().filter(|s| s.len() > 1).count(),
            models: self.models.clone(),
            sweeps: self.fit.sweeps,
        }
    }

    /// Row `i`'s difficulty in logits.
    pub fn logit(&self, row: usize) -> f64 {
        self.fit.difficulties[self.row_item[row]]
    }

    /// Targets in [0, 1] for the rows at `picked` (indices into the rows
    /// given to [`JointDifficulty::fit_rows`]). Source means and
    /// within-source ranks are taken over every fitted row of the source,
    /// not only the picked ones.
    pub fn targets(
        &self,
        rows: &[OutcomeRow],
        picked: &[usize],
        kind: DifficultyTarget,
    ) -> Vec<f32> {
        let mut by_source: HashMap<&str, Vec<f64>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            by_source.entry(&r.source).or_default().push(self.logit(i));
        }
        let overall = rows
            .iter()
            .enumerate()
            .map(|(i, _)| self.logit(i))
            .sum::<f64>()
            / rows.len().max(1) as f64;
        let source_mean: HashMap<&str, f64> = by_source
            .iter()
            .map(|(s, v)| (*s, v.iter().sum::<f64>() / v.len() as f64))
            .collect();
        let sorted: HashMap<&str, Vec<f64>> = by_source
            .into_iter()
            .map(|(s, mut v)| {
                v.sort_by(f64::total_cmp);
                (s, v)
            })
            .collect();
        picked
            .iter()
            .map(|&i| {
                let r = &rows[i];
                let b = self.logit(i);
                let t = match kind {
                    DifficultyTarget::MeanFailure => r.mean_failure(),
                    DifficultyTarget::Irt { source_weight } => {
                        let m = source_mean[r.source.as_str()];
                        self.fit
                            .failure_probability(b - m + overall + source_weight * (m - overall))
                    }
                    DifficultyTarget::WithinSourceRank => {
                        let v = &sorted[r.source.as_str()];
                        let below = v.partition_point(|&x| x < b);
                        let upto = v.partition_point(|&x| x <= b);
                        // Mid-rank of ties, as a percentile strictly inside (0, 1).
                        (below + upto) as f64 / 2.0 / v.len() as f64 + 0.5 / v.len() as f64
                    }
                };
                t.clamp(0.0, 1.0) as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_match_the_same_question_across_formats() {
        let routerbench = "Q one?\nA) x\nB) y\nAnswer:\nA\n\nWhich is an example of condensation?\nA) dew\nB) ice\nPrint only a single choice";
        let routerdc = "Question:Which is an example of condensation?\nAnswer:";
        assert_eq!(item_key(routerbench), item_key(routerdc));
        assert_eq!(item_key(routerdc), "which is an example of condensation");
        let wino = "Please answer with the letter of the correct answer.\n\nThe _ was too heavy to lift.\nA) box\nB) bag";
        assert_eq!(item_key(wino), "the was too heavy to lift");
        assert_eq!(
            item_key("在802.3标准中，发送帧之前需要"),
            "在802 3标准中 发送帧之前需要"
        );
        assert_ne!(
            item_key("What is 20+2 in base 10?"),
            item_key("What is 20+3 in base 10?")
        );
        // Code prompts: the docstring line, not the quotes; short lines never match.
        assert_eq!(
            item_key("\"\"\"\nWrite a python function to count inversions.\nassert f([1]) == 0\n\"\"\"\n"),
            "write a python function to count inversions"
        );
        assert_eq!(item_key("Examples:\n>>> f()"), "");
    }

    #[test]
    fn model_aliases_fold_and_others_pass_through() {
        assert_eq!(
            canonical_model("mistralai/mixtral-8x7b-chat"),
            canonical_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
        );
        assert_eq!(canonical_model("gpt-4-1106-preview"), "gpt-4-1106-preview");
        assert_ne!(
            canonical_model("mistralai/mistral-7b-chat"),
            canonical_model("mistralai/Mistral-7B-v0.1")
        );
    }

    #[test]
    fn target_names_round_trip_and_bad_ones_are_refused() {
        for s in ["mean-failure", "irt", "irt-rank", "irt-source-0.5"] {
            assert_eq!(s.parse::<DifficultyTarget>().unwrap().to_string(), s);
        }
        assert_eq!(
            "irt-centred".parse::<DifficultyTarget>().unwrap(),
            DifficultyTarget::Irt { source_weight: 0.0 }
        );
        assert!("irt-source-2".parse::<DifficultyTarget>().is_err());
        assert!("hard".parse::<DifficultyTarget>().is_err());
    }

    fn row(source: &str, prompt: &str, scores: &[(&str, f64)]) -> OutcomeRow {
        OutcomeRow {
            source: source.into(),
            prompt: prompt.into(),
            scores: scores.iter().map(|(m, s)| (m.to_string(), *s)).collect(),
        }
    }

    /// Every target shape lies in [0, 1]; a shared prompt gets one
    /// difficulty; centring removes the source level but keeps the order
    /// within a source.
    #[test]
    fn targets_are_in_unit_interval_and_order_within_source() {
        let strong = ["gpt-4-1106-preview", "claude-v2"];
        let weak = ["mistralai/Mistral-7B-v0.1", "HuggingFaceH4/zephyr-7b-beta"];
        let mut rows = Vec::new();
        for i in 0..20 {
            // Source "easy": strong models, prompt i failed by i/10 of them (rounded).
            let s = if i < 10 { 1.0 } else { 0.0 };
            rows.push(row(
                "a",
                &format!("easy question {i}"),
                &[(strong[0], s), (strong[1], 1.0)],
            ));
            let s = if i < 5 { 1.0 } else { 0.0 };
            rows.push(row(
                "b",
                &format!("Question:hard question {i}\nAnswer:"),
                &[(weak[0], s), (weak[1], 0.0)],
            ));
        }
        // One prompt both sources hold, in their own formats.
        rows.push(row(
            "a",
            "shared question",
            &[
                (strong[0], 0.0),
                (strong[1], 0.0),
                ("mistralai/mixtral-8x7b-chat", 0.0),
            ],
        ));
        rows.push(row(
            "b",
            "Question:shared question\nAnswer:",
            &[
                (weak[0], 0.0),
                ("mistralai/Mixtral-8x7B-Instruct-v0.1", 0.0),
            ],
        ));
        let joint = JointDifficulty::fit_rows(&rows, &IrtConfig::default()).unwrap();
        assert_eq!(joint.row_item[40], joint.row_item[41]);
        assert_eq!(joint.models.len(), 5, "{:?}", joint.models);
        let all: Vec<usize> = (0..rows.len()).collect();
        for kind in [
            "mean-failure",
            "irt",
            "irt-centred",
            "irt-source-0.5",
            "irt-rank",
        ] {
            let t = joint.targets(&rows, &all, kind.parse().unwrap());
            assert!(t.iter().all(|v| (0.0..=1.0).contains(v)), "{kind}: {t:?}");
            // Within source a, prompt 15 (failed by gpt-4) is harder than prompt 2.
            assert!(t[30] > t[4], "{kind}: {} vs {}", t[30], t[4]);
        }
        let mean = |t: &[f32], src: &str| {
            let v: Vec<f32> = (0..40)
                .filter(|&i| rows[i].source == src)
                .map(|i| t[i])
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        let plain = joint.targets(&rows, &all, DifficultyTarget::Irt { source_weight: 1.0 });
        let centred = joint.targets(&rows, &all, DifficultyTarget::Irt { source_weight: 0.0 });
        let gap = |t: &[f32]| (mean(t, "b") - mean(t, "a")).abs();
        assert!(
            gap(&centred) < 0.5 * gap(&plain),
            "{} vs {}",
            gap(&centred),
            gap(&plain)
        );
    }
}
