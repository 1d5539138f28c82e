//! The router crate's one error type.

/// What can go wrong in catalog parsing, artifact parsing, training or deciding.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A catalog that does not parse or validate; `line` is 1-based.
    #[error("catalog line {line}: field `{field}`: {message}")]
    Catalog {
        line: usize,
        field: String,
        message: String,
    },
    /// A success-model artifact that does not parse or has the wrong version.
    #[error("success-model artifact: {0}")]
    Artifact(String),
    /// Training data the success model cannot be fitted on.
    #[error("training: {0}")]
    Training(String),
    /// A decision input lacks what the artifact reads (its head features).
    #[error("decision input: {0}")]
    MissingFeatures(String),
    /// No model in the catalog satisfies the request's constraints.
    #[error("no model satisfies the constraints: {0}")]
    NoEligibleModel(String),
}
