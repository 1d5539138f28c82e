//! Prompt text to token ids, with the truncation rule applied. Shared by
//! every encoder so they all see the same tokens.

use tokenizers::Tokenizer;

use crate::error::{ClassifierError, Result};
use crate::model_dir::ModelDir;
use crate::truncate;
use crate::unigram::CompactUnigram;

/// The model directory's tokenizer with our own truncation (head and tail)
/// and no padding. The model's default prompt (e5's "query: ") is put before
/// every text, as sentence-transformers does, so the encoder sees what it
/// was trained on.
pub struct PromptTokenizer {
    tokenizer: Backend,
    window: usize,
    prompt: String,
}

/// Unigram vocabularies (SentencePiece: XLM-R, e5) go to the compact reader,
/// which keeps e5's 250k pieces in ~15 MB instead of ~290 MB
/// (`unigram.rs`); everything else to the `tokenizers` library.
enum Backend {
    Library(Box<Tokenizer>),
    Compact(Box<CompactUnigram>),
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`; `window` is the encoder's sequence limit.
    pub fn load(dir: &ModelDir, window: usize) -> Result<PromptTokenizer> {
        let path = dir.tokenizer_path();
        let corrupt = |e: &dyn std::fmt::Display| ClassifierError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ClassifierError::Io {
            path: path.clone(),
            source,
        })?;
        let tokenizer = if CompactUnigram::is_unigram(&text) {
            Backend::Compact(Box::new(CompactUnigram::from_json(&path, &text)?))
        } else {
            let mut tokenizer: Tokenizer = text.parse().map_err(|e| corrupt(&e))?;
            // We truncate ourselves (head and tail) and never pad: each
            // encoder decides how to batch.
            tokenizer.with_truncation(None).map_err(|e| corrupt(&e))?;
            tokenizer.with_padding(None);
            Backend::Library(Box::new(tokenizer))
        };
        Ok(PromptTokenizer {
            tokenizer,
            window,
            prompt: dir.prompt(),
        })
    }

    /// The text put before every prompt ("" for most models).
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Token ids of the prompt and `text`, special tokens included, cut to
    /// the window.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let clipped = truncate::clip_chars(text);
        let encode = |t: &str| match &self.tokenizer {
            Backend::Library(tok) => tok
                .encode(t, true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| ClassifierError::Tokenizer(e.to_string())),
            Backend::Compact(tok) => tok.encode(t),
        };
        let ids = if self.prompt.is_empty() {
            encode(clipped.as_ref())?
        } else {
            encode(&format!("{}{}", self.prompt, clipped))?
        };
        Ok(truncate::head_and_tail(&ids, self.window))
    }
}
