//! What `pointsman bench classify` measures: named cases of calls, each
//! call timed twice back to back in every round (the encoder alone, then
//! classify end to end) so machine noise hits both alike, and what each
//! case makes the encoder read. Printing them is the caller's business.

use std::time::Instant;

use crate::bench_prompts::{mixed_batch, LONG, SHORT};
use crate::classifier::instruction_views;
use crate::{Classifier, Result};

/// A named set of calls; each call is one batch handed to the encoder and
/// to the classifier, and is timed on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub calls: Vec<Vec<String>>,
}

/// The built-in cases: `batch1_short`, `batch1_long` and `batch32_mixed`
/// (the criterion bench's batch, [`mixed_batch`]).
pub fn builtin_cases() -> Vec<Case> {
    let one = |name: &str, text: &str| Case {
        name: name.into(),
        calls: vec![vec![text.to_string()]],
    };
    vec![
        one("batch1_short", SHORT),
        one("batch1_long", LONG),
        Case {
            name: "batch32_mixed".into(),
            calls: vec![mixed_batch().into_iter().map(String::from).collect()],
        },
    ]
}

/// Cases from the caller's prompts: `file_batch1` (every prompt alone),
/// then `file_batch{batch}` (the prompts in calls of `batch`; `batch` ≥ 1).
pub fn prompt_cases(prompts: &[String], batch: usize) -> Vec<Case> {
    vec![
        Case {
            name: "file_batch1".into(),
            calls: prompts.iter().map(|p| vec![p.clone()]).collect(),
        },
        Case {
            name: format!("file_batch{batch}"),
            calls: prompts.chunks(batch).map(<[String]>::to_vec).collect(),
        },
    ]
}

/// One case's timed samples, one per call per timed round, in
/// milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseTimes {
    /// `Encoder::embed` of the call's full prompts.
    pub encoder_ms: Vec<f64>,
    /// `Classifier::predict` end to end.
    pub classify_ms: Vec<f64>,
}

/// Runs `warmup` untimed then `iterations` timed rounds; each round runs
/// every case's calls in order. One [`CaseTimes`] per case.
pub fn time_cases(
    clf: &Classifier,
    cases: &[Case],
    warmup: u32,
    iterations: u32,
) -> Result<Vec<CaseTimes>> {
    let mut times = vec![CaseTimes::default(); cases.len()];
    for round in 0..warmup + iterations {
        let timed = round >= warmup;
        for (case, t) in cases.iter().zip(&mut times) {
            for call in &case.calls {
                let texts: Vec<&str> = call.iter().map(String::as_str).collect();
                let (e, c) = time_call(clf, &texts)?;
                if timed {
                    t.encoder_ms.push(e);
                    t.classify_ms.push(c);
                }
            }
        }
    }
    Ok(times)
}

/// Milliseconds for the encoder alone, then for classify, on one call.
fn time_call(clf: &Classifier, texts: &[&str]) -> Result<(f64, f64)> {
    let t = Instant::now();
    let e = clf.encoder().embed(texts)?;
    let encoder = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(e);
    let t = Instant::now();
    let p = clf.predict(texts)?;
    let classify = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(p);
    Ok((encoder, classify))
}

/// What a case makes the encoder read.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseShape {
    pub calls: usize,
    pub prompts: usize,
    /// Tokens per prompt (the encoder's tokenizer, before truncation).
    pub tokens: Vec<usize>,
    /// Prompts over 400 characters, whose instruction views classify also
    /// encodes (0 when the heads do not use views).
    pub prompts_with_views: usize,
    /// Sequences one encoder pass over the case encodes.
    pub encoder_sequences: usize,
    /// Sequences classify encodes: the prompts, plus two views of each
    /// long prompt when the heads use them.
    pub classify_sequences: usize,
}

impl CaseShape {
    /// The shape of `case` for `clf`'s tokenizer and heads.
    pub fn of(clf: &Classifier, case: &Case) -> Result<CaseShape> {
        let prompts: Vec<&str> = case.calls.iter().flatten().map(String::as_str).collect();
        let tokens = prompts
            .iter()
            .map(|p| clf.encoder().token_count(p))
            .collect::<Result<Vec<_>>>()?;
        let long = prompts
            .iter()
            .filter(|p| instruction_views(p).is_some())
            .count();
        let views = if clf.heads().uses_views() { long } else { 0 };
        Ok(CaseShape {
            calls: case.calls.len(),
            prompts: prompts.len(),
            tokens,
            prompts_with_views: views,
            encoder_sequences: prompts.len(),
            classify_sequences: prompts.len() + 2 * views,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_cases_are_the_criterion_benchs_prompts() {
        assert_eq!(LONG.chars().count(), 783);
        assert!(instruction_views(LONG).is_some() && instruction_views(SHORT).is_none());
        let cases = builtin_cases();
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["batch1_short", "batch1_long", "batch32_mixed"]);
        let mixed = &cases[2].calls[0];
        assert_eq!(mixed.len(), 32);
        assert_eq!(mixed.iter().filter(|t| t.as_str() == LONG).count(), 8);
    }

    #[test]
    fn prompt_cases_split_the_prompts_into_calls() {
        let prompts: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        let cases = prompt_cases(&prompts, 2);
        assert_eq!(cases[0].name, "file_batch1");
        assert_eq!(cases[0].calls.len(), 5);
        assert_eq!(cases[1].name, "file_batch2");
        let sizes: Vec<usize> = cases[1].calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
