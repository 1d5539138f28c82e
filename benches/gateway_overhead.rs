//! End-to-end gateway overhead: the latency `pointsman serve --http-listen`
//! adds over calling the upstream directly. An in-process axum stub speaks
//! the OpenAI wire format (a fixed chat completion with usage; a stream of
//! 18 SSE chunks, a usage chunk and `[DONE]`; TCP_NODELAY, as
//! crates/upstream/benches/forward_overhead.rs). Every catalog model of
//! models/catalogs/routerbench.toml is pointed at it in an upstreams TOML,
//! and the real release `pointsman serve` runs with it (real encoder,
//! router artifact, SQLite store in a temporary directory).
//!
//! Paths, each timed with reqwest over loopback, one client (and
//! connection pool) per concurrent task:
//! - `direct`: the stub itself;
//! - `named`: the gateway with a catalog model name: forwarded with no
//!   encoder pass (the decision is logged unclassified), so `distinct` and
//!   `repeated` should cost the same and the encoder column reads `none`;
//! - `routed`: `model: "pointsman"` (encoder pass + decision + forwarding);
//! - `POST /v1/route`: the routing decision alone, over the same HTTP front
//!   end (no upstream call).
//!
//! Each gateway path runs twice: `distinct` (a new prompt every request, so
//! the prompt cache never answers and every request pays the encoder) and
//! `repeated` (one prompt throughout: after the first request the server's
//! prompt cache answers, so what remains is the decision, logging and
//! forwarding).
//!
//! Modes: the whole non-streaming answer, and a stream's time to first
//! byte (the rest of the stream is read, untimed). Clients: 1 and 16.
//! Prints p50 and p99 per case with the number of timed samples and how
//! many of them are at or above the p99 (what the p99 rests on: about 1 in
//! 100), the added latency against `direct`, and the server's mean encoder
//! pass (from its /metrics) during each row.
//!
//! ```sh
//! cargo bench --locked -p pointsman-cli --bench gateway_overhead
//! cargo bench --locked -p pointsman-cli --bench gateway_overhead -- --requests 2000 --warmup 100
//! ```
//!
//! Not run by `cargo test` (`test = false`; and without cargo bench's
//! `--bench` flag it only prints how to run it).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};

mod bench_args;
mod serve_process;
use bench_args::Flags;
mod stub_upstream;
use serve_process::{percentile, repo, ServeProcess};

/// The catalog's model names (`name = "..."` lines of its `[[models]]`).
fn catalog_models() -> Vec<String> {
    let catalog = std::fs::read_to_string(repo().join("models/catalogs/routerbench.toml"))
        .expect("models/catalogs/routerbench.toml");
    let names: Vec<String> = catalog
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_string)
        .collect();
    assert!(!names.is_empty(), "no model names in the catalog");
    names
}

/// An `[[upstream]]` per catalog model, all at the stub.
fn upstreams_toml(models: &[String], base_url: &str) -> String {
    models
        .iter()
        .map(|m| {
            format!(
                "[[upstream]]\nmodel = \"{m}\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\nupstream_model = \"{m}\"\n\n"
            )
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Path {
    Direct,
    NamedDistinct,
    NamedRepeated,
    RoutedDistinct,
    RoutedRepeated,
    RouteDistinct,
    RouteRepeated,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::NamedDistinct => "named, distinct",
            Path::NamedRepeated => "named, repeated",
            Path::RoutedDistinct => "routed, distinct",
            Path::RoutedRepeated => "routed, repeated",
            Path::RouteDistinct => "POST /v1/route, distinct",
            Path::RouteRepeated => "POST /v1/route, repeated",
        }
    }

    /// One prompt for every request (a prompt-cache hit after the first).
    fn repeated(self) -> bool {
        matches!(
            self,
            Path::NamedRepeated | Path::RoutedRepeated | Path::RouteRepeated
        )
    }

    fn route_only(self) -> bool {
        matches!(self, Path::RouteDistinct | Path::RouteRepeated)
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// The whole non-streaming answer.
    Complete,
    /// A stream's first body chunk.
    FirstByte,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Complete => "complete",
            Mode::FirstByte => "first byte",
        }
    }
}

struct Target {
    stub: String,
    gateway: String,
    named_model: String,
}

/// A short prompt (~20 encoder tokens), distinct for each `i`.
fn prompt(i: usize) -> String {
    format!("Request {i}: which city is the capital of France, and why was it chosen?")
}

/// One request; its latency in ms for the mode.
async fn one(client: &reqwest::Client, t: &Target, path: Path, mode: Mode, i: usize) -> f64 {
    let stream = mode == Mode::FirstByte;
    let text = prompt(if path.repeated() { 0 } else { i });
    let (url, body) = match path {
        Path::RouteDistinct | Path::RouteRepeated => {
            (format!("{}/route", t.gateway), json!({"prompt": text}))
        }
        _ => {
            let (url, model) = match path {
                Path::Direct => (
                    format!("{}/chat/completions", t.stub),
                    t.named_model.as_str(),
                ),
                Path::NamedDistinct | Path::NamedRepeated => (
                    format!("{}/chat/completions", t.gateway),
                    t.named_model.as_str(),
                ),
                _ => (format!("{}/chat/completions", t.gateway), "pointsman"),
            };
            let mut body = json!({
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "temperature": 0.2,
                "stream": stream,
            });
            // What the gateway asks a streaming upstream for; a direct
            // client wanting usage sends the same.
            if stream && path == Path::Direct {
                body["stream_options"] = json!({"include_usage": true});
            }
            (url, body)
        }
    };
    let body = serde_json::to_vec(&body).unwrap();
    let started = Instant::now();
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} request: {e}", path.name()));
    let status = response.status();
    assert!(status.is_success(), "{}: HTTP {status}", path.name());
    if path != Path::Direct {
        assert!(
            response.headers().contains_key("x-pointsman-decision-id") || path.route_only(),
            "the gateway's answer has no x-pointsman-decision-id"
        );
    }
    if stream {
        let mut body = response.bytes_stream();
        let mut whole = body.next().await.unwrap().unwrap().to_vec();
        let latency = started.elapsed();
        while let Some(chunk) = body.next().await {
            whole.extend_from_slice(&chunk.unwrap());
        }
        // The whole stream arrived and ended as the stub ends it.
        assert!(
            whole.ends_with(b"data: [DONE]\n\n"),
            "{}: the stream did not end with [DONE]",
            path.name()
        );
        latency.as_secs_f64() * 1e3
    } else {
        let whole = response.bytes().await.unwrap();
        let _: Value = serde_json::from_slice(&whole).expect("a JSON answer");
        started.elapsed().as_secs_f64() * 1e3
    }
}

/// `clients` tasks in a closed loop sharing `requests` requests, numbered
/// from `first` (so distinct prompts never repeat across cases); every
/// request's latency in ms.
async fn run(
    target: &Arc<Target>,
    path: Path,
    mode: Mode,
    clients: usize,
    requests: usize,
    first: usize,
) -> Vec<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .build()
                    .unwrap();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    latencies.push(one(&client, &target, path, mode, first + i).await);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    all
}

/// Sum and count of a Prometheus histogram on the server's /metrics.
fn histogram(metrics: &str, name: &str) -> Option<(f64, f64)> {
    let mut s = std::net::TcpStream::connect(metrics).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let sample = |key: String| {
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((
        sample(format!("{name}_sum "))?,
        sample(format!("{name}_count "))?,
    ))
}

struct Opts {
    requests: usize,
    warmup: usize,
}

fn usage() -> &'static str {
    "cargo bench --locked -p pointsman-cli --bench gateway_overhead -- [--requests 1000] [--warmup 100] [--server-arg ARG]..."
}

fn parse_args() -> Result<Option<(Opts, Vec<String>)>, String> {
    let mut o = Opts {
        requests: 1000,
        warmup: 100,
    };
    let mut server_args = Vec::new();
    let mut bench = false;
    let mut flags = Flags::from_env();
    while let Some((a, flag)) = flags.next_flag() {
        let count = |name: &str, v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: `{v}` is not a count"))
        };
        match flag.as_str() {
            "--bench" => bench = true,
            "--requests" => o.requests = count("--requests", flags.value("--requests")?)?.max(1),
            "--warmup" => o.warmup = count("--warmup", flags.value("--warmup")?)?,
            "--server-arg" => server_args.push(flags.value("--server-arg")?),
            "-h" | "--help" => return Err(usage().into()),
            _ if !bench && !a.starts_with("--") => {}
            _ => return Err(format!("unknown argument `{a}`\n{}", usage())),
        }
    }
    Ok(bench.then_some((o, server_args)))
}

fn main() {
    let not_run = format!(
        "gateway_overhead: a bench, not a test; run it with {}",
        usage()
    );
    let Some((opts, server_args)) = bench_args::options_or_exit(parse_args(), &not_run) else {
        return;
    };
    // reqwest is built without a default TLS provider (see the workspace
    // Cargo.toml); loopback HTTP needs none, but the client builder wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stub = runtime.block_on(stub_upstream::start());
    let models = catalog_models();
    let server = ServeProcess::start(&server_args, |dir| {
        let file = dir.join("upstreams.toml");
        std::fs::write(&file, upstreams_toml(&models, &stub)).unwrap();
        vec![
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--upstreams".into(),
            file.to_str().unwrap().into(),
        ]
    });
    let metrics = server.addr("metrics");
    let target = Arc::new(Target {
        stub,
        gateway: format!("http://{}/v1", server.addr("http")),
        named_model: models[0].clone(),
    });
    eprintln!(
        "gateway on {}, stub at {}, {} requests per case after {} untimed",
        target.gateway, target.stub, opts.requests, opts.warmup
    );

    let mut cases: Vec<(Mode, usize, Path)> = Vec::new();
    for mode in [Mode::Complete, Mode::FirstByte] {
        for clients in [1, 16] {
            for path in [
                Path::Direct,
                Path::NamedDistinct,
                Path::NamedRepeated,
                Path::RoutedDistinct,
                Path::RoutedRepeated,
            ] {
                cases.push((mode, clients, path));
            }
        }
    }
    for clients in [1, 16] {
        for path in [Path::RouteDistinct, Path::RouteRepeated] {
            cases.push((Mode::Complete, clients, path));
        }
    }

    println!("| mode | clients | path | samples | p50 ms | p99 ms | samples >= p99 | added p50 ms | added p99 ms | mean encoder pass ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut first = 1; // prompt(0) is the repeated one.
    let mut direct = (f64::NAN, f64::NAN);
    for (mode, clients, path) in cases {
        runtime.block_on(run(&target, path, mode, clients, opts.warmup, first));
        first += opts.warmup;
        let before = histogram(&metrics, "pointsman_encoder_seconds");
        let lat = runtime.block_on(run(&target, path, mode, clients, opts.requests, first));
        first += opts.requests;
        let encoder = match (histogram(&metrics, "pointsman_encoder_seconds"), before) {
            (Some((s1, c1)), Some((s0, c0))) if c1 > c0 => {
                format!("{:.2} ({} passes)", (s1 - s0) / (c1 - c0) * 1e3, c1 - c0)
            }
            (Some(_), Some(_)) => "none".to_string(),
            _ => "?".to_string(),
        };
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        if path == Path::Direct {
            direct = (p50, p99);
        }
        let added = |x: f64, d: f64| {
            if path == Path::Direct || path.route_only() {
                "".to_string()
            } else {
                format!("{:+.3}", x - d)
            }
        };
        let tail = lat.iter().filter(|&&x| x >= p99).count();
        println!(
            "| {} | {clients} | {} | {} | {p50:.3} | {p99:.3} | {tail} | {} | {} | {encoder} |",
            mode.name(),
            path.name(),
            lat.len(),
            added(p50, direct.0),
            added(p99, direct.1),
        );
    }
    drop(server);
}
