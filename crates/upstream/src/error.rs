//! The layer's one error enum and the classes of a failed attempt.

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::forward::Attempt;

/// Why an attempt ended, as logged in the outcome store and counted in
/// metrics. [`ErrorClass::as_str`] gives a stable snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The upstream answered (2xx), and a stream ended with `data: [DONE]`.
    Ok,
    /// The model is in the chain but has no upstream in the config: skipped.
    NotConfigured,
    /// The TCP/TLS connection failed (refused, reset before any answer,
    /// connect timeout, DNS).
    Connect,
    /// No first byte within the upstream's `first_byte_timeout_ms`.
    Timeout,
    /// HTTP 429 before the first byte.
    RateLimited,
    /// HTTP 5xx before the first byte.
    Server,
    /// HTTP 4xx other than 429: the request is wrong, returned as is.
    Client,
    /// The upstream failed after the first byte of a stream (reset, stall
    /// past `idle_timeout_ms`, or the stream ended without `data: [DONE]`).
    MidStream,
    /// The request's total deadline passed during this attempt.
    Deadline,
    /// The client went away (dropped the stream) before it ended.
    ClientGone,
    /// A 2xx answer that is not what the wire format promises (not JSON, a
    /// body over the size limit, an empty stream, a 3xx).
    BadResponse,
}

impl ErrorClass {
    /// Every class, for metrics that pre-register their label values.
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::Ok,
        ErrorClass::NotConfigured,
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::RateLimited,
        ErrorClass::Server,
        ErrorClass::Client,
        ErrorClass::MidStream,
        ErrorClass::Deadline,
        ErrorClass::ClientGone,
        ErrorClass::BadResponse,
    ];

    /// The stable snake_case name (outcome store, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Ok => "ok",
            ErrorClass::NotConfigured => "not_configured",
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Server => "server",
            ErrorClass::Client => "client",
            ErrorClass::MidStream => "mid_stream",
            ErrorClass::Deadline => "deadline",
            ErrorClass::ClientGone => "client_gone",
            ErrorClass::BadResponse => "bad_response",
        }
    }

    /// Whether the next model of the chain is tried after an attempt that
    /// ended with this class (before the first byte reached the client).
    pub fn falls_back(self) -> bool {
        matches!(
            self,
            ErrorClass::NotConfigured
                | ErrorClass::Connect
                | ErrorClass::Timeout
                | ErrorClass::RateLimited
                | ErrorClass::Server
                | ErrorClass::BadResponse
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The upstream layer's errors. The front end maps them to HTTP statuses in
/// one place (e.g. `AllFailed` whose last class is `Timeout`/`Deadline` →
/// 504, `RateLimited` → 429 or 503, otherwise 502; `NoUpstream` → 404/400).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream config is wrong: `message` names the upstream and the
    /// field (never a key).
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// Every model of the chain was tried (or skipped) and none answered.
    #[error("every upstream failed: {}", describe_attempts(attempts))]
    AllFailed {
        /// Every attempt, in order, with its class.
        attempts: Vec<Attempt>,
        /// The last HTTP status an upstream answered with, if any did.
        last_status: Option<u16>,
        /// That answer's body (an upstream's error JSON), if any.
        last_body: Option<Bytes>,
    },
    /// No model of the chain has an upstream configured.
    #[error("no upstream is configured for any of {chain:?}")]
    NoUpstream { chain: Vec<String> },
    /// The request body cannot be forwarded (e.g. `stream` is not a bool).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The HTTP client could not be built (TLS roots, provider).
    #[error("building the HTTP client: {0}")]
    HttpClient(String),
}

impl UpstreamError {
    /// The class of the last attempt of `AllFailed` (what decides 502/503/504).
    pub fn last_class(&self) -> Option<ErrorClass> {
        match self {
            UpstreamError::AllFailed { attempts, .. } => attempts.last().map(|a| a.class),
            _ => None,
        }
    }
}

fn describe_attempts(attempts: &[Attempt]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|a| match a.status {
            Some(status) => format!("{}: {} ({status})", a.model, a.class),
            None => format!("{}: {}", a.model, a.class),
        })
        .collect();
    parts.join(", ")
}
