//! Forwarding one chat completion along the chain: each attempt, its class,
//! and the fallback rule (next model before the first byte, within the
//! request's total deadline).

use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::anthropic::{self, AnthropicStream};
use crate::config::UpstreamKind;
use crate::error::{ErrorClass, UpstreamError};
use crate::sse::{error_chain, ByteStream, Framing, PassThrough, SseScanner, UpstreamBody};
pub use crate::usage::Usage;
use crate::usage::UsageEnvelope;
use crate::Upstream;

/// The largest non-streaming answer (or error body) read from an upstream:
/// 16 MiB. A larger answer is `BadResponse`.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// One chat completion to forward.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// Catalog model names, in the order to try (the router's choice, then
    /// its fallback chain). A name that appears twice is tried once.
    pub chain: Vec<String>,
    /// The client's OpenAI chat-completions JSON body. `model` is replaced
    /// by each upstream's `upstream_model`; everything else passes through.
    /// With `stream: true`, `stream_options.include_usage` is set to true so
    /// that usage arrives in the last chunk.
    pub body: Map<String, Value>,
    /// Total deadline for all attempts (for a stream: until its first byte).
    pub deadline: Instant,
}

/// One try of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The catalog model name.
    pub model: String,
    /// `Ok` for the one that answered.
    pub class: ErrorClass,
    /// The upstream's HTTP status, if it answered with one.
    pub status: Option<u16>,
    /// From this attempt's start to its answer (a stream: its first byte) or
    /// failure.
    pub latency: Duration,
}

/// How a stream ended, sent when it ends or the client drops it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamSummary {
    /// From the last SSE event that carried a non-null `usage`.
    pub usage: Option<Usage>,
    /// From the call to `forward` to the end of the stream.
    pub latency: Duration,
    /// `Ok`, `MidStream` or `ClientGone`.
    pub class: ErrorClass,
}

/// An upstream's answer.
pub enum Forwarded {
    /// A whole answer: every non-streaming one, and a 4xx (not 429) answer to
    /// a streaming request (an upstream's error JSON, not SSE). `body` is the
    /// upstream's bytes, `model` in it left as the upstream wrote it.
    Complete {
        /// The catalog name that answered.
        model: String,
        status: u16,
        body: Bytes,
        usage: Option<Usage>,
        /// From the call to `forward` to the whole answer.
        latency: Duration,
        /// Every attempt, the answering one last.
        attempts: Vec<Attempt>,
    },
    /// A 2xx streaming answer: the upstream's SSE bytes, chunk by chunk.
    Stream {
        model: String,
        status: u16,
        /// From the call to `forward` to the first byte of the answer body.
        first_byte: Duration,
        body: ByteStream,
        attempts: Vec<Attempt>,
        /// Resolves when the stream ends or the client drops it.
        summary: oneshot::Receiver<StreamSummary>,
    },
}

impl Forwarded {
    /// The catalog name that answered.
    pub fn model(&self) -> &str {
        match self {
            Forwarded::Complete { model, .. } | Forwarded::Stream { model, .. } => model,
        }
    }

    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Forwarded::Complete { attempts, .. } | Forwarded::Stream { attempts, .. } => attempts,
        }
    }
}

impl fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Forwarded::Complete {
                model,
                status,
                body,
                usage,
                latency,
                attempts,
            } => f
                .debug_struct("Complete")
                .field("model", model)
                .field("status", status)
                .field("body_len", &body.len())
                .field("usage", usage)
                .field("latency", latency)
                .field("attempts", attempts)
                .finish(),
            Forwarded::Stream {
                model,
                status,
                first_byte,
                attempts,
                ..
            } => f
                .debug_struct("Stream")
                .field("model", model)
                .field("status", status)
                .field("first_byte", first_byte)
                .field("attempts", attempts)
                .finish_non_exhaustive(),
        }
    }
}

/// How one attempt ended.
pub(crate) enum AttemptEnd {
    Answered(Forwarded),
    Failed {
        class: ErrorClass,
        status: Option<u16>,
        body: Option<Bytes>,
    },
}

/// Whether the request asks for a stream, and the body made ready for it.
pub(crate) fn prepare_body(body: &mut Map<String, Value>) -> Result<bool, UpstreamError> {
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            return Err(UpstreamError::InvalidRequest(
                "field `stream` must be a boolean".into(),
            ))
        }
    };
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if options.is_null() {
            *options = Value::Object(Map::new());
        }
        let Value::Object(options) = options else {
            return Err(UpstreamError::InvalidRequest(
                "field `stream_options` must be an object".into(),
            ));
        };
        options.insert("include_usage".into(), Value::Bool(true));
    }
    Ok(stream)
}

/// The timer an attempt's wait runs against, and the class when it fires.
struct Window {
    until: Instant,
    class: ErrorClass,
}

impl Window {
    fn new(from: Instant, timeout: Duration, deadline: Instant) -> Window {
        let own = from + timeout;
        if deadline <= own {
            Window {
                until: deadline,
                class: ErrorClass::Deadline,
            }
        } else {
            Window {
                until: own,
                class: ErrorClass::Timeout,
            }
        }
    }

    async fn run<T>(&self, future: impl std::future::Future<Output = T>) -> Result<T, ErrorClass> {
        tokio::time::timeout_at(self.until.into(), future)
            .await
            .map_err(|_| self.class)
    }
}

fn transport_class(e: &reqwest::Error) -> ErrorClass {
    if e.is_timeout() && !e.is_connect() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Connect
    }
}

fn failed(class: ErrorClass, status: Option<u16>, body: Option<Bytes>) -> AttemptEnd {
    AttemptEnd::Failed {
        class,
        status,
        body,
    }
}

/// One attempt against one upstream. `started` is when `forward` was called.
pub(crate) async fn attempt(
    upstream: &Upstream,
    body: &mut Map<String, Value>,
    stream: bool,
    deadline: Instant,
    started: Instant,
) -> AttemptEnd {
    let config = &upstream.config;
    let attempt_started = Instant::now();
    let payload = match config.kind {
        UpstreamKind::OpenAi => {
            body.insert("model".into(), Value::String(config.upstream_model.clone()));
            serde_json::to_vec(body).map_err(|e| e.to_string())
        }
        UpstreamKind::Anthropic => anthropic::request(body, &config.upstream_model, stream),
    };
    let payload = match payload {
        Ok(payload) => payload,
        // The request cannot be said in this upstream's wire format: a
        // client error, answered as an upstream's 400 would be.
        Err(message) => {
            let error = serde_json::json!({"error": {
                "message": format!("upstream `{}`: {message}", config.model),
                "type": "invalid_request_error", "param": null, "code": null,
            }});
            return AttemptEnd::Answered(Forwarded::Complete {
                model: config.model.clone(),
                status: 400,
                body: Bytes::from(error.to_string()),
                usage: None,
                latency: started.elapsed(),
                attempts: vec![Attempt {
                    model: config.model.clone(),
                    class: ErrorClass::Client,
                    status: None,
                    latency: attempt_started.elapsed(),
                }],
            });
        }
    };
    let mut request = upstream
        .client
        .post(upstream.url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        )
        .body(payload);
    match (config.kind, &config.api_key) {
        (UpstreamKind::OpenAi, Some(key)) => request = request.bearer_auth(key.expose()),
        (UpstreamKind::OpenAi, None) => {}
        (UpstreamKind::Anthropic, key) => {
            request = request.header("anthropic-version", anthropic::API_VERSION);
            if let Some(key) = key {
                request = request.header("x-api-key", key.expose());
            }
        }
    }

    // Until the first byte of the body: the upstream's first-byte timeout,
    // or the request's deadline if that comes first.
    let first_byte = Window::new(attempt_started, config.first_byte_timeout, deadline);
    let response = match first_byte.run(request.send()).await {
        Err(class) => return failed(class, None, None),
        Ok(Err(e)) => {
            tracing::info!(model = %config.model, error = %error_chain(&e), "upstream request failed");
            return failed(transport_class(&e), None, None);
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let code = status.as_u16();
    let mut upstream_body: UpstreamBody = Box::pin(response.bytes_stream());

    if !status.is_success() {
        // An error answer is read whole (bounded) so the front end can pass
        // it on (4xx) or report it (429/5xx after every fallback failed).
        let error_body = read_whole(
            &mut upstream_body,
            None,
            &first_byte,
            config.idle_timeout,
            deadline,
        )
        .await
        .ok()
        .map(|b| match config.kind {
            UpstreamKind::OpenAi => b,
            UpstreamKind::Anthropic => anthropic::error_body(b),
        });
        let class = match code {
            429 => ErrorClass::RateLimited,
            500..=599 => ErrorClass::Server,
            400..=499 => ErrorClass::Client,
            _ => ErrorClass::BadResponse,
        };
        if class == ErrorClass::Client {
            let attempt = Attempt {
                model: config.model.clone(),
                class,
                status: Some(code),
                latency: attempt_started.elapsed(),
            };
            return AttemptEnd::Answered(Forwarded::Complete {
                model: config.model.clone(),
                status: code,
                body: error_body.unwrap_or_default(),
                usage: None,
                latency: started.elapsed(),
                attempts: vec![attempt],
            });
        }
        return failed(class, Some(code), error_body);
    }

    let first = match first_byte.run(next_chunk(&mut upstream_body)).await {
        Err(class) => return failed(class, Some(code), None),
        Ok(Some(Err(e))) => return failed(transport_class(&e), Some(code), None),
        Ok(None) => return failed(ErrorClass::BadResponse, Some(code), None),
        Ok(Some(Ok(first))) => first,
    };
    let attempt = Attempt {
        model: config.model.clone(),
        class: ErrorClass::Ok,
        status: Some(code),
        latency: attempt_started.elapsed(),
    };

    if stream {
        let (sender, summary) = oneshot::channel();
        let framing: Box<dyn Framing> = match config.kind {
            UpstreamKind::OpenAi => Box::new(SseScanner::default()),
            UpstreamKind::Anthropic => Box::new(AnthropicStream::default()),
        };
        let body = PassThrough::new(
            config.model.clone(),
            first,
            upstream_body,
            framing,
            config.idle_timeout,
            started,
            sender,
        );
        return AttemptEnd::Answered(Forwarded::Stream {
            model: config.model.clone(),
            status: code,
            first_byte: started.elapsed(),
            body: Box::pin(body),
            attempts: vec![attempt],
            summary,
        });
    }

    // Nothing has reached the client until the answer is whole, so a failure
    // anywhere in it still falls back.
    let whole = match read_whole(
        &mut upstream_body,
        Some(first),
        &first_byte,
        config.idle_timeout,
        deadline,
    )
    .await
    {
        Ok(whole) => whole,
        Err(class) => return failed(class, Some(code), None),
    };
    let answer = match config.kind {
        UpstreamKind::OpenAi => serde_json::from_slice::<UsageEnvelope>(&whole)
            .map(|envelope| (whole.clone(), envelope.usage))
            .map_err(|e| e.to_string()),
        UpstreamKind::Anthropic => anthropic::response(&whole),
    };
    let (whole, usage) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            tracing::info!(model = %config.model, error = %e, "upstream answer is not what its kind promises");
            return failed(ErrorClass::BadResponse, Some(code), Some(whole));
        }
    };
    let attempt = Attempt {
        latency: attempt_started.elapsed(),
        ..attempt
    };
    AttemptEnd::Answered(Forwarded::Complete {
        model: config.model.clone(),
        status: code,
        body: whole,
        usage,
        latency: started.elapsed(),
        attempts: vec![attempt],
    })
}

async fn next_chunk(body: &mut UpstreamBody) -> Option<reqwest::Result<Bytes>> {
    loop {
        match body.next().await {
            Some(Ok(bytes)) if bytes.is_empty() => continue,
            other => return other,
        }
    }
}

/// Reads the rest of a body: the first chunk within `first_byte` (unless
/// already read), each next one within `idle_timeout` and the deadline, at
/// most [`MAX_RESPONSE_BYTES`] in all.
async fn read_whole(
    body: &mut UpstreamBody,
    first: Option<Bytes>,
    first_byte: &Window,
    idle_timeout: Duration,
    deadline: Instant,
) -> Result<Bytes, ErrorClass> {
    let mut whole = BytesMut::new();
    let mut waiting_first = first.is_none();
    if let Some(first) = first {
        whole.extend_from_slice(&first);
    }
    loop {
        let window = if waiting_first {
            Window {
                until: first_byte.until,
                class: first_byte.class,
            }
        } else {
            Window::new(Instant::now(), idle_timeout, deadline)
        };
        match window.run(body.next()).await? {
            None => return Ok(whole.freeze()),
            Some(Err(e)) => return Err(transport_class(&e)),
            Some(Ok(bytes)) => {
                waiting_first = false;
                if whole.len() + bytes.len() > MAX_RESPONSE_BYTES {
                    return Err(ErrorClass::BadResponse);
                }
                whole.extend_from_slice(&bytes);
            }
        }
    }
}
