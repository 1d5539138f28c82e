//! The stub upstream the gateway benches share (crates/upstream's
//! forward_overhead and benches/gateway_overhead.rs): an in-process axum
//! server speaking the OpenAI wire format that answers at once, so what a
//! bench measures is the path to it, not the model.

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{json, Value};

/// A fixed chat completion, as an upstream would send it.
pub fn completion() -> Bytes {
    let text = "The capital of France is Paris. ".repeat(8);
    Bytes::from(
        json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 64, "total_tokens": 84},
        })
        .to_string(),
    )
}

/// A fixed stream: a role chunk, 16 content chunks, a usage chunk, `[DONE]`.
pub fn chunks() -> Vec<Bytes> {
    let chunk = |delta: Value, usage: Value| {
        let event = json!({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "bench-model",
            "choices": if delta.is_null() { json!([]) } else { json!([{"index": 0, "delta": delta, "finish_reason": null}]) },
            "usage": usage,
        });
        Bytes::from(format!("data: {event}\n\n"))
    };
    let mut all = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    all.extend((0..16).map(|i| chunk(json!({"content": format!(" word{i}")}), Value::Null)));
    all.push(chunk(
        Value::Null,
        json!({"prompt_tokens": 20, "completion_tokens": 16}),
    ));
    all.push(Bytes::from_static(b"data: [DONE]\n\n"));
    all
}

/// The stub: reads the request as JSON (as any upstream must), answers
/// the fixed completion or stream at once.
pub async fn stub(body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    if request["stream"] == true {
        let stream = futures_util::stream::iter(chunks().into_iter().map(Ok::<_, std::io::Error>));
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    } else {
        Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(completion()))
            .unwrap()
    }
}

/// Starts the stub on 127.0.0.1 port 0; its base URL (`.../v1`).
pub async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // As real servers do: without TCP_NODELAY a stream's first chunk can
    // wait behind its headers (Nagle).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/v1/chat/completions", post(stub));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}/v1")
}
