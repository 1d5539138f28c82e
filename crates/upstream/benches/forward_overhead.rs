//! Gateway forwarding overhead: `Upstreams::forward` against a bare reqwest
//! call to the same in-process axum stub upstream, for a whole answer and
//! for a stream's time to first byte, at 1 and 16 concurrent clients.
//!
//! Criterion measures the mean latency per request (each of `clients` tasks
//! runs its share of the iterations; the time reported is the summed
//! per-request latency divided by the client count). A second pass then
//! times 2000 requests per case one by one and prints p50 and p99, since
//! criterion does not report per-request percentiles.
//!
//! `cargo bench -p pointsman-upstream --bench forward_overhead`

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::StreamExt;
use pointsman_upstream::{ForwardRequest, Forwarded, UpstreamConfig, Upstreams};
use serde_json::{json, Map, Value};
use tokio::runtime::Runtime;

/// A fixed chat completion, as an upstream would send it.
fn completion() -> Bytes {
    let text = "The capital of France is Paris. ".repeat(8);
    Bytes::from(
        json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 64, "total_tokens": 184},
        })
        .to_string(),
    )
}

/// A fixed stream: 16 content chunks, a usage chunk, `[DONE]`.
fn chunks() -> Vec<Bytes> {
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
        json!({"prompt_tokens": 120, "completion_tokens": 16}),
    ));
    all.push(Bytes::from_static(b"data: [DONE]\n\n"));
    all
}

/// The stub: reads the request as JSON (as any upstream must), answers
/// the fixed completion or stream at once.
async fn stub(body: Bytes) -> Response {
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

/// A chat body with a ~1 KB prompt.
fn chat_body(stream: bool) -> Map<String, Value> {
    let prompt = "Summarise the following paragraph in one sentence. ".repeat(20);
    json!({
        "model": "pointsman",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.2,
        "stream": stream,
    })
    .as_object()
    .unwrap()
    .clone()
}

#[derive(Clone, Copy)]
enum Path {
    Direct,
    Gateway,
}

#[derive(Clone, Copy)]
enum Mode {
    /// The whole non-streaming answer.
    Complete,
    /// A stream's first chunk (the rest is read, untimed, so connections
    /// are reused as in real traffic).
    FirstByte,
}

#[derive(Clone)]
struct Setup {
    url: String,
    direct: reqwest::Client,
    upstreams: Upstreams,
}

/// One request; the latency measured for its mode.
async fn one(setup: &Setup, path: Path, mode: Mode) -> Duration {
    let stream = matches!(mode, Mode::FirstByte);
    let started = Instant::now();
    match path {
        Path::Direct => {
            // What a client calling the upstream itself sends: the body with
            // the upstream's model (and, streaming, include_usage).
            let mut body = chat_body(stream);
            body.insert("model".into(), "bench-model".into());
            if stream {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
            let response = setup
                .direct
                .post(&setup.url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            if stream {
                let mut body = response.bytes_stream();
                body.next().await.unwrap().unwrap();
                let latency = started.elapsed();
                while body.next().await.is_some() {}
                latency
            } else {
                let whole = response.bytes().await.unwrap();
                let _: Value = serde_json::from_slice(&whole).unwrap();
                started.elapsed()
            }
        }
        Path::Gateway => {
            let request = ForwardRequest {
                chain: vec!["bench".into()],
                body: chat_body(stream),
                deadline: Instant::now() + Duration::from_secs(10),
            };
            match setup.upstreams.forward(request).await.unwrap() {
                Forwarded::Complete { status, .. } => {
                    assert_eq!(status, 200);
                    started.elapsed()
                }
                Forwarded::Stream {
                    mut body, summary, ..
                } => {
                    body.next().await.unwrap().unwrap();
                    let latency = started.elapsed();
                    while body.next().await.is_some() {}
                    summary.await.unwrap();
                    latency
                }
            }
        }
    }
}

/// `clients` tasks, `per_client` requests each; every request's latency.
async fn run(
    setup: &Setup,
    path: Path,
    mode: Mode,
    clients: usize,
    per_client: u64,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let setup = setup.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client as usize);
                for _ in 0..per_client {
                    latencies.push(one(&setup, path, mode).await);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

fn start(rt: &Runtime) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    // As real servers do: without TCP_NODELAY a stream's first chunk can
    // wait behind its headers (Nagle), for both paths alike.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/v1/chat/completions", post(stub));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let upstreams = Upstreams::from_configs(vec![UpstreamConfig::openai(
        "bench",
        &base_url,
        "bench-model",
    )
    .unwrap()])
    .unwrap();
    Setup {
        url: format!("{base_url}/chat/completions"),
        direct: reqwest::Client::new(),
        upstreams,
    }
}

const CASES: [(&str, Mode); 2] = [
    ("complete", Mode::Complete),
    ("first_byte", Mode::FirstByte),
];
const PATHS: [(&str, Path); 2] = [("direct", Path::Direct), ("gateway", Path::Gateway)];
const CLIENTS: [usize; 2] = [1, 16];

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = start(&rt);
    for (case, mode) in CASES {
        let mut group = c.benchmark_group(format!("forward_overhead/{case}"));
        group
            .measurement_time(Duration::from_secs(4))
            .sample_size(30);
        for clients in CLIENTS {
            for (name, path) in PATHS {
                group.bench_function(format!("{name}/{clients}"), |b| {
                    b.iter_custom(|iters| {
                        let per_client = iters.div_ceil(clients as u64);
                        let latencies = rt.block_on(run(&setup, path, mode, clients, per_client));
                        let sum: Duration = latencies.iter().sum();
                        // Mean per-request latency, times iters.
                        sum / latencies.len() as u32 * iters as u32
                    })
                });
            }
        }
        group.finish();
    }

    println!("\nPer-request percentiles (2000 requests per case, after a 200-request warm-up):");
    println!("| case | clients | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | added p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (case, mode) in CASES {
        for clients in CLIENTS {
            let mut stats = Vec::new();
            for (_, path) in PATHS {
                rt.block_on(run(&setup, path, mode, clients, 200 / clients as u64));
                let mut latencies =
                    rt.block_on(run(&setup, path, mode, clients, 2000 / clients as u64));
                latencies.sort();
                let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
                stats.push((at(0.5), at(0.99)));
            }
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            let (d50, d99) = stats[0];
            let (g50, g99) = stats[1];
            println!(
                "| {case} | {clients} | {:.0} µs | {:.0} µs | {:+.0} µs | {:.0} µs | {:.0} µs | {:+.0} µs |",
                us(d50),
                us(g50),
                us(g50) - us(d50),
                us(d99),
                us(g99),
                us(g99) - us(d99)
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
