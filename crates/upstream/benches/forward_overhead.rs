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

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::StreamExt;
use pointsman_upstream::{ForwardRequest, Forwarded, UpstreamConfig, Upstreams};
use serde_json::{json, Map, Value};
use tokio::runtime::Runtime;

// Shared with benches/gateway_overhead.rs (the workspace's benches/).
#[path = "../../../benches/stub_upstream.rs"]
mod stub_upstream;

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
    let base_url = rt.block_on(stub_upstream::start());
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
