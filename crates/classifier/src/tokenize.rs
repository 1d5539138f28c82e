//! Prompt text to token ids, with the truncation rule applied. Shared by
//! every encoder so they all see the same tokens.

use tokenizers::Tokenizer;

use crate::error::{ClassifierError, Result};
use crate::model_dir::ModelDir;
use crate::truncate;

/// The model directory's tokenizer with our own truncation (head and tail)
/// and no padding.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    window: usize,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`; `window` is the encoder's sequence limit.
    pub fn load(dir: &ModelDir, window: usize) -> Result<PromptTokenizer> {
        let path = dir.tokenizer_path();
        let corrupt = |e: &dyn std::fmt::Display| ClassifierError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| corrupt(&e))?;
        // We truncate ourselves (head and tail) and never pad: each encoder
        // decides how to batch.
        tokenizer.with_truncation(None).map_err(|e| corrupt(&e))?;
        tokenizer.with_padding(None);
        Ok(PromptTokenizer { tokenizer, window })
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Token ids of `text`, special tokens included, cut to the window.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let clipped = truncate::clip_chars(text);
        let enc = self
            .tokenizer
            .encode(clipped.as_ref(), true)
            .map_err(|e| ClassifierError::Tokenizer(e.to_string()))?;
        Ok(truncate::head_and_tail(enc.get_ids(), self.window))
    }
}
