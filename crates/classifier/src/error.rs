//! The classifier layer's one error type.

use std::path::PathBuf;

/// Everything that can go wrong loading or running the encoder and heads.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// A model file is missing or unreadable: names the path and the fix.
    #[error("{path}: {reason}. Fetch the default model with `{fetch}`, or pass --model-dir DIR (Hugging Face layout: config.json, tokenizer.json, model.safetensors)")]
    MissingFile {
        path: PathBuf,
        reason: String,
        fetch: String,
    },
    /// A file's sha256 does not match its pin.
    #[error("{path}: sha256 is {actual}, expected {expected} (corrupt or different file). Fetch it again with `{fetch}`")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
        fetch: String,
    },
    /// A file was readable but its content is wrong (bad JSON, bad tensors, wrong shapes).
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A model the native CPU encoder does not run (another architecture).
    #[error("{path}: the native encoder does not support {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// A `model_type` no engine here runs (neither native nor candle): named,
    /// never run as BERT.
    #[error("{path}: model_type `{model_type}` is not supported (Pointsman runs `bert` and `xlm-roberta` encoders)")]
    UnsupportedArchitecture { path: PathBuf, model_type: String },
    /// Heads trained for another encoder or another input layout.
    #[error("heads {path} do not fit this encoder: {reason}")]
    Incompatible { path: PathBuf, reason: String },
    /// A prompt the classifier refuses (empty).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("device: {0}")]
    Device(String),
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
    /// A training option out of range or inconsistent with the others
    /// (the message names the option's flag).
    #[error("{0}")]
    InvalidOption(String),
    /// The training data holds nothing to train on.
    #[error("{0}")]
    NoTrainingData(String),
    /// A training-data folder or file could not be read.
    #[error("cannot read {}", path.display())]
    ReadData {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A training-data file with malformed lines: each line's error, in order.
    #[error("{}: {} malformed line(s)", path.display(), errors.len())]
    MalformedRecords { path: PathBuf, errors: Vec<String> },
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ClassifierError>;
