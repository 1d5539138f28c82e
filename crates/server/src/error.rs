//! The server layer's one error type. Each variant maps to one gRPC status
//! here ([`ServerError::code`]) and to one HTTP status in `http::error`.

use pointsman_classifier::ClassifierError;
use pointsman_store::StoreError;
use pointsman_upstream::{ErrorClass, UpstreamError};
use tonic::{Code, Status};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A request field out of range or malformed; the message starts with the field name.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// A prompt over `--max-prompt-bytes` (HTTP 413; gRPC INVALID_ARGUMENT).
    #[error("{field}: is {bytes} bytes, over the maximum of {max} (--max-prompt-bytes)")]
    PromptTooLarge {
        field: String,
        bytes: usize,
        max: usize,
    },
    /// An unknown decision id or model; the message starts with the field name.
    #[error("{field}: {message}")]
    NotFound { field: String, message: String },
    /// The encoder queue is full (backpressure, not a timeout).
    #[error(
        "overloaded: the encoder queue is full ({capacity} requests waiting); retry with back-off"
    )]
    Overloaded { capacity: usize },
    /// Too many store calls in flight (backpressure).
    #[error("overloaded: {capacity} outcome-store writes in flight; retry with back-off")]
    StoreBusy { capacity: usize },
    /// A tenant's spend budget is used up and its action is `reject`.
    #[error("tenant {tenant}: spend budget of {budget_usd} USD per {period} is used up ({spent_usd:.6} USD spent this {period}: expected costs, reported ones where outcomes gave them); it renews at the start of the next {period} (UTC)")]
    BudgetExhausted {
        tenant: String,
        budget_usd: f64,
        period: &'static str,
        spent_usd: f64,
    },
    /// The request's deadline passed before it was served.
    #[error("deadline exceeded before the request was served")]
    DeadlineExceeded,
    /// Route needs a router artifact and none is loaded.
    #[error("{0}")]
    NotReady(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The classifier failed on input it accepted.
    #[error("classifier: {0}")]
    Classifier(#[from] ClassifierError),
    #[error("outcome store: {0}")]
    Store(StoreError),
    /// Missing or wrong credentials (the message says what to send).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A request body over its limit (HTTP front end).
    #[error("body: over the maximum of {limit} bytes ({why})")]
    BodyTooLarge { limit: usize, why: &'static str },
    /// No model the request may use has an upstream configured.
    #[error("{0}")]
    NoUpstream(String),
    /// Calling the upstream models failed (HTTP gateway).
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// A bug (a panic in the encoder thread, a lost reply).
    #[error("internal: {0}")]
    Internal(String),
}

impl ServerError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError::NotFound {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The gRPC code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            ServerError::InvalidArgument { .. } | ServerError::PromptTooLarge { .. } => {
                Code::InvalidArgument
            }
            ServerError::NotFound { .. } => Code::NotFound,
            ServerError::Overloaded { .. }
            | ServerError::StoreBusy { .. }
            | ServerError::BudgetExhausted { .. } => Code::ResourceExhausted,
            ServerError::DeadlineExceeded => Code::DeadlineExceeded,
            ServerError::NotReady(_) => Code::FailedPrecondition,
            ServerError::ShuttingDown => Code::Unavailable,
            ServerError::Classifier(ClassifierError::InvalidInput(_)) => Code::InvalidArgument,
            ServerError::Unauthenticated(_) => Code::Unauthenticated,
            ServerError::BodyTooLarge { .. } => Code::ResourceExhausted,
            ServerError::NoUpstream(_) => Code::FailedPrecondition,
            ServerError::Upstream(e) => match e {
                UpstreamError::InvalidRequest(_) => Code::InvalidArgument,
                UpstreamError::NoUpstream { .. } => Code::FailedPrecondition,
                UpstreamError::AllFailed { .. }
                    if matches!(
                        e.last_class(),
                        Some(ErrorClass::Timeout | ErrorClass::Deadline)
                    ) =>
                {
                    Code::DeadlineExceeded
                }
                UpstreamError::AllFailed { .. } => Code::Unavailable,
                _ => Code::Internal,
            },
            ServerError::Classifier(_) | ServerError::Store(_) | ServerError::Internal(_) => {
                Code::Internal
            }
        }
    }
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownDecision(id) => ServerError::not_found(
                "decision_id",
                format!("no decision {}", crate::fields::quote(&id)),
            ),
            other => ServerError::Store(other),
        }
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}
