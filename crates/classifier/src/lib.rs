//! Pointsman's classifier: reads a prompt with a local BERT-family encoder
//! (native Rust on the CPU, candle on CUDA) and predicts its task type and difficulty.
//!
//! Knows nothing of gRPC or storage. The seam is [`Encoder`]: everything
//! above it works on embeddings.

// Every unsafe operation sits in its own `unsafe {}` block with a
// `// SAFETY:` comment that argues why it is sound (issue 13, item 12).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bench_prompts;
pub mod classifier;
pub mod cues;
pub mod device;
pub mod difficulty_knn;
pub mod difficulty_target;
pub mod embed_cache;
pub mod encoder;
pub mod error;
pub mod features;
pub mod finetune;
pub mod heads;
pub mod irt;
pub mod language;
pub mod model_dir;
pub mod native;
pub mod speed;
pub mod taxonomy;
pub mod tokenize;
pub mod train;
pub mod training;
pub mod truncate;
pub mod unigram;

pub use classifier::{Classifier, Embedded, Prediction, DEFAULT_BATCH};
pub use device::{DeviceChoice, Engine, Precision};
pub use embed_cache::EmbedCache;
pub use encoder::{BertEncoder, Encoder};
pub use error::{ClassifierError, Result};
pub use heads::{DifficultyHead, Heads, HeadsMetadata, TaskHead};
pub use model_dir::ModelDir;
pub use native::NativeBertEncoder;
pub use taxonomy::{Taxonomy, DEFAULT_TASKS};
