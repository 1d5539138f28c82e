//! Fine-tuning the encoder with LoRA adapters: the adapter format and its
//! merge into the base weights ([`lora`]), a layer-by-layer candle BERT
//! that applies adapters explicitly and trains them ([`model`]), and the
//! seeded training loop ([`train`]: task labels, and optionally difficulty
//! learned from outcomes beside them) with its cache of frozen lower layers
//! ([`cache`]).

pub mod cache;
pub mod lora;
pub mod merge;
pub mod model;
pub mod multitask;
pub mod train;

pub use lora::{AdapterMetadata, LoraAdapter};
pub use train::{
    finetune, finetune_multitask_snapshots, finetune_snapshots, source_folds, DifficultyTask,
    FinetuneConfig, Finetuned, LowerCache,
};
