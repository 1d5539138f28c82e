//! The eval crate's one error type.

use std::path::PathBuf;

/// What can stop an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Input data that cannot be evaluated (missing costs, no usable rows, ...).
    #[error("{0}")]
    Data(String),
    /// A record file with malformed lines (each reported with its line number).
    #[error("{path}: {count} malformed line(s), first: {first}")]
    Records {
        path: PathBuf,
        count: usize,
        first: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Logs that cannot support an off-policy estimate (no exploration,
    /// too few rows, too small an effective sample size).
    #[error("the logs cannot support this estimate: {0}")]
    Unsupported(String),
    /// A catalog file that cannot be read.
    #[error("cannot read {}", path.display())]
    CatalogRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A catalog file that does not parse (the source names the field and
    /// line).
    #[error("{}", path.display())]
    Catalog {
        path: PathBuf,
        #[source]
        source: pointsman_router::RouterError,
    },
    #[error(transparent)]
    Router(#[from] pointsman_router::RouterError),
    #[error(transparent)]
    Classifier(#[from] pointsman_classifier::ClassifierError),
    /// The outcome store failed while being read.
    #[error(transparent)]
    Store(#[from] pointsman_store::StoreError),
}
