//! The Python stub upstream (tests/stub_upstream.py) as a child process, and
//! helpers to configure upstreams against it.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use pointsman_upstream::{
    Attempt, ByteStream, ErrorClass, ForwardRequest, Forwarded, StreamSummary, UpstreamConfig,
    Upstreams, Usage,
};
use serde_json::{json, Map, Value};
use stub_process::StubProcess;
use tokio::sync::oneshot;

mod stub_process;

/// The stub upstream: a [`StubProcess`] with helpers for these tests.
pub struct Stub(StubProcess);

impl std::ops::Deref for Stub {
    type Target = StubProcess;
    fn deref(&self) -> &StubProcess {
        &self.0
    }
}

impl Stub {
    pub fn start() -> Stub {
        Stub(StubProcess::start())
    }

    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// An upstream for catalog `model` whose stub behaviour is `stub_model`.
    pub fn upstream(&self, model: &str, stub_model: &str) -> UpstreamConfig {
        UpstreamConfig::openai(model, &self.base_url(), stub_model).unwrap()
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Value {
        let text = http_client()
            .get(format!("{}/stats", self.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// How many requests the stub got for `stub_model`.
    pub async fn requests(&self, stub_model: &str) -> u64 {
        self.stats().await["requests"][stub_model]
            .as_u64()
            .unwrap_or(0)
    }
}

pub fn upstreams(configs: Vec<UpstreamConfig>) -> Upstreams {
    Upstreams::from_configs(configs).unwrap()
}

/// A chat-completions body asking `text` as the user.
pub fn chat_body(text: &str, stream: bool) -> Map<String, Value> {
    let body = json!({
        "model": "pointsman",
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": text},
        ],
        "temperature": 0.25,
        "stream": stream,
    });
    body.as_object().unwrap().clone()
}

pub fn request(chain: &[&str], body: Map<String, Value>, within: Duration) -> ForwardRequest {
    ForwardRequest {
        chain: chain.iter().map(|m| m.to_string()).collect(),
        body,
        deadline: Instant::now() + within,
    }
}

/// A plain reqwest client (for direct calls to the stub). reqwest is built
/// without a default crypto provider, so ring is installed first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A whole answer: model, status, body as JSON, usage, attempts.
pub type Answer = (String, u16, Value, Option<Usage>, Vec<Attempt>);

pub fn complete(forwarded: Forwarded) -> Answer {
    match forwarded {
        Forwarded::Complete {
            model,
            status,
            body,
            usage,
            attempts,
            ..
        } => (
            model,
            status,
            serde_json::from_slice(&body).unwrap(),
            usage,
            attempts,
        ),
        other => panic!("expected a complete answer, got {other:?}"),
    }
}

/// (model, class) of each attempt.
pub fn classes(attempts: &[Attempt]) -> Vec<(&str, ErrorClass)> {
    attempts
        .iter()
        .map(|a| (a.model.as_str(), a.class))
        .collect()
}

/// A streamed answer's parts, its status checked to be 200.
pub struct Streamed {
    pub model: String,
    pub attempts: Vec<Attempt>,
    pub body: ByteStream,
    pub summary: oneshot::Receiver<StreamSummary>,
}

pub fn streamed(forwarded: Forwarded) -> Streamed {
    match forwarded {
        Forwarded::Stream {
            model,
            status,
            first_byte,
            body,
            attempts,
            summary,
        } => {
            assert_eq!(status, 200);
            assert!(first_byte > Duration::ZERO);
            Streamed {
                model,
                attempts,
                body,
                summary,
            }
        }
        other => panic!("expected a stream, got {other:?}"),
    }
}

/// Every byte of a stream.
pub async fn collect(mut body: ByteStream) -> Bytes {
    let mut all = Vec::new();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    Bytes::from(all)
}

/// The `data:` payloads of an SSE text (each event a single `data:` line).
pub fn events(bytes: &[u8]) -> Vec<String> {
    std::str::from_utf8(bytes)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_string()
        })
        .collect()
}

/// The answer text: every chunk's `delta.content`, in order.
pub fn content(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
