//! Routing: the model catalog, the success model P(model succeeds | prompt)
//! and the policy that turns both into a decision.
//!
//! Pure: plain data and functions. Nothing here reads files, talks to the
//! network or runs the encoder; callers pass strings and embeddings in.

pub mod catalog;
pub mod cost;
pub mod error;
pub mod explore;
pub mod head_features;
pub mod holdout;
pub mod neighbours;
pub mod policy;
pub mod routing_value;
pub mod select;
pub mod success;
pub mod target;
pub mod train;
pub mod validate;

pub use catalog::{Catalog, ModelSpec};
pub use cost::{expected_costs, fit_cost_model, CostModel, CostSelection, RowCosts};
pub use error::RouterError;
pub use explore::Explored;
pub use head_features::{HeadFeatures, PromptInput};
pub use holdout::{fit_validated, Validated, Validation};
pub use neighbours::{Neighbours, SearchMode};
pub use policy::{choose, Candidate, Constraints, Decision, Policy};
pub use select::Selection;
pub use success::{CandidateLoss, SelectionRecord, SuccessModel, ARTIFACT_VERSION};
pub use target::{TargetPoint, TargetTable};
pub use train::{fit, fit_fixed, fit_with_costs, routed_indices, TrainConfig, TrainingRow};
