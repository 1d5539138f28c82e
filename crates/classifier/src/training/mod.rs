//! The training runs behind `pointsman train heads` and `pointsman train
//! encoder`, as library functions: read the labelled and outcome records,
//! embed them, fit, measure on held-out sources, and return the trained
//! artifact with its report as data. The CLI only parses flags, resolves
//! paths, draws progress and writes files.
//!
//! - [`heads`]: the task and difficulty heads on frozen embeddings
//!   ([`train_heads`]), with the task head's leave-one-source-out
//!   ([`task_cv`]) and the difficulty head's ([`difficulty_cv`], its kNN
//!   blend in [`difficulty_blend`]); the report in [`heads_report`].
//! - [`encoder`]: LoRA fine-tuning of the encoder's top layers
//!   ([`train_encoder`]), its source-grouped folds ([`encoder_folds`]), the
//!   multi-task outcome part ([`encoder_outcomes`]) and the report
//!   ([`encoder_report`]).
//! - [`records`]: the record folders both read; [`metrics`]: confusion
//!   matrices and rank correlation; [`progress`]: how a run reports progress.

pub mod difficulty_blend;
pub mod difficulty_cv;
pub mod difficulty_within;
pub mod encoder;
pub mod encoder_folds;
pub mod encoder_outcomes;
pub mod encoder_report;
pub mod heads;
pub mod heads_report;
pub mod language_pairs;
pub mod metrics;
pub mod progress;
pub mod records;
pub mod task_cv;

pub use encoder::{train_encoder, EncoderTraining, EncoderTrainingOptions};
pub use heads::{train_heads, HeadsTraining, HeadsTrainingOptions};
pub use progress::{Progress, Silent};
pub use records::ExampleWeighting;
