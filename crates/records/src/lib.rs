//! The record format of DESIGN.md: one JSON object per line, holding a prompt,
//! optional labels (task, difficulty) and optional per-model outcomes.
//!
//! Readers never stop at a bad line: [`read_records`] yields every good record
//! and reports each malformed line with its 1-based line number, so a caller
//! can process the rest and fail at the end.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

/// One outcome of one model on one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Quality in [0, 1]; 1 = success.
    pub score: f64,
    /// What the call cost in US dollars, if known (else priced from the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// A labelled prompt with optional outcomes. Unknown fields are kept in
/// `extra` so a record read and written again loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Difficulty label in [0, 1], higher = harder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<f64>,
    /// Outcomes keyed by model name; ordered so output is deterministic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, Outcome>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a line could not be read as a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("line {line}: could not read input: {source}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
}

impl RecordError {
    /// The 1-based line number the error refers to.
    pub fn line(&self) -> usize {
        match self {
            RecordError::Malformed { line, .. } | RecordError::Io { line, .. } => *line,
        }
    }
}

impl Record {
    /// A record with only an id and a prompt.
    pub fn new(id: impl Into<String>, prompt: impl Into<String>) -> Self {
        Record {
            id: id.into(),
            prompt: prompt.into(),
            source: None,
            task: None,
            difficulty: None,
            outcomes: BTreeMap::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Parses one line; `line` is only used in the error.
    pub fn parse_line(text: &str, line: usize) -> Result<Record, RecordError> {
        let bad = |reason: String| RecordError::Malformed { line, reason };
        let record: Record = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        record.validate().map_err(bad)?;
        Ok(record)
    }

    /// Checks the ranges DESIGN.md promises: non-empty prompt, scores and
    /// difficulty in [0, 1], costs non-negative.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("field `id` is empty".into());
        }
        if self.prompt.trim().is_empty() {
            return Err(format!("record `{}`: field `prompt` is empty", self.id));
        }
        if let Some(d) = self.difficulty {
            if !(0.0..=1.0).contains(&d) {
                return Err(format!(
                    "record `{}`: `difficulty` {d} is outside [0, 1]",
                    self.id
                ));
            }
        }
        for (model, o) in &self.outcomes {
            if !(0.0..=1.0).contains(&o.score) {
                return Err(format!(
                    "record `{}`: `outcomes.{model}.score` {} is outside [0, 1]",
                    self.id, o.score
                ));
            }
            // NaN fails too.
            if o.cost_usd.is_some_and(|c| c.is_nan() || c < 0.0) {
                return Err(format!(
                    "record `{}`: `outcomes.{model}.cost_usd` is negative",
                    self.id
                ));
            }
        }
        Ok(())
    }

    /// The record as one JSON line (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a Record always serialises")
    }
}

/// Reads records from JSON lines. Blank lines are skipped. Each item is the
/// record or the error for that line; reading goes on after an error.
pub fn read_records<R: BufRead>(reader: R) -> impl Iterator<Item = Result<Record, RecordError>> {
    reader.lines().enumerate().filter_map(|(i, line)| {
        let line_no = i + 1;
        match line {
            Err(source) => Some(Err(RecordError::Io {
                line: line_no,
                source,
            })),
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(Record::parse_line(&text, line_no)),
        }
    })
}

/// Reads a whole file, splitting good records from errors.
pub fn read_file(path: &std::path::Path) -> std::io::Result<(Vec<Record>, Vec<RecordError>)> {
    let file = std::fs::File::open(path)?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for item in read_records(std::io::BufReader::new(file)) {
        match item {
            Ok(r) => good.push(r),
            Err(e) => bad.push(e),
        }
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_design_example_and_keeps_unknown_fields() {
        let line = r#"{"id": "mbpp/17", "prompt": "Write a python function", "source": "mbpp", "task": "code", "lang": "en",
            "outcomes": {"gpt-4": {"score": 1.0, "cost_usd": 0.00213}, "mistral": {"score": 0.0}}}"#;
        let r = Record::parse_line(line, 1).unwrap();
        assert_eq!(r.task.as_deref(), Some("code"));
        assert_eq!(r.outcomes["gpt-4"].cost_usd, Some(0.00213));
        assert_eq!(r.outcomes["mistral"].cost_usd, None);
        assert_eq!(r.extra["lang"], "en");
        let again = Record::parse_line(&r.to_line(), 1).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers_and_reading_goes_on() {
        let input = "{\"id\":\"a\",\"prompt\":\"x\"}\nnot json\n\n{\"id\":\"b\"}\n{\"id\":\"c\",\"prompt\":\"  \"}\n{\"id\":\"d\",\"prompt\":\"y\"}\n";
        let items: Vec<_> = read_records(input.as_bytes()).collect();
        assert_eq!(items.len(), 5);
        let bad: Vec<usize> = items
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.line()))
            .collect();
        assert_eq!(bad, vec![2, 4, 5]);
        let good: Vec<&str> = items
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.id.as_str()))
            .collect();
        assert_eq!(good, vec!["a", "d"]);
        let msg = items[2].as_ref().unwrap_err().to_string();
        assert!(
            msg.starts_with("line 4:") && msg.contains("prompt"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_values_are_rejected_naming_the_field() {
        let e = Record::parse_line(
            r#"{"id":"a","prompt":"p","outcomes":{"m":{"score":1.5}}}"#,
            3,
        )
        .unwrap_err();
        assert!(e.to_string().contains("outcomes.m.score"), "{e}");
        let e = Record::parse_line(r#"{"id":"a","prompt":"p","difficulty":-0.1}"#, 3).unwrap_err();
        assert!(e.to_string().contains("difficulty"), "{e}");
    }
}
