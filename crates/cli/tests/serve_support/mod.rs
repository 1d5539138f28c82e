//! Starts the real `pointsman serve` on 127.0.0.1 (port 0) with the real
//! encoder and heads, a two-model catalog and a synthetic router artifact.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pointsman_router::{fit, TrainConfig, TrainingRow};
use pointsman_server::pb::router_client::RouterClient;
use tonic::transport::Channel;

/// A multi-threaded tokio runtime with `workers` threads for a test's clients.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub const CATALOG: &str = r#"default_target = 0.8

[[models]]
name = "cheap"
input_usd_per_mtok = 0.2
output_usd_per_mtok = 0.2
context_window = 32000
latency_ms = 300

[[models]]
name = "strong"
input_usd_per_mtok = 10.0
output_usd_per_mtok = 30.0
context_window = 128000
latency_ms = 2000
"#;

/// A router artifact in which both models always succeed, so the target
/// policy picks `cheap` (384-d embeddings, empty encoder id = any encoder).
pub fn write_artifact(path: &Path) {
    write_artifact_with_scores(path, 1.0, 1.0);
}

/// A router artifact fitted on 40 prompts where `cheap` always scores
/// `cheap_score` and `strong` always `strong_score`.
pub fn write_artifact_with_scores(path: &Path, cheap_score: f32, strong_score: f32) {
    write_artifact_for(path, &[("cheap", cheap_score), ("strong", strong_score)]);
}

/// A router artifact fitted on 40 random 384-d prompts where each named
/// model always gets its score (empty encoder id = any encoder).
pub fn write_artifact_for(path: &Path, models: &[(&str, f32)]) {
    let tasks: Vec<String> = ["code", "math", "chat"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut seed = 7u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let rows: Vec<TrainingRow> = (0..40)
        .map(|_| TrainingRow {
            embedding: (0..384).map(|_| rnd()).collect(),
            task_scores: vec![1.0 / 3.0; 3],
            outcomes: models.iter().enumerate().map(|(i, m)| (i, m.1)).collect(),
            head_outputs: Vec::new(),
        })
        .collect();
    let cfg = TrainConfig {
        rank: 0,
        epochs: 150,
        ..Default::default()
    };
    let names = models.iter().map(|m| m.0.to_string()).collect();
    let model = fit(names, tasks, &rows, &cfg, "").unwrap();
    std::fs::write(path, model.to_json()).unwrap();
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The HTTP gateway's address (with `--http-listen`).
    pub http: Option<String>,
    pub metrics: Option<String>,
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub router: PathBuf,
    pub catalog: PathBuf,
}

pub struct Options {
    pub artifact: bool,
    pub extra: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            artifact: true,
            extra: vec![],
        }
    }
}

impl Server {
    pub fn start(opts: Options) -> Server {
        Server::start_with_store(opts, None)
    }

    /// [`Server::start`] with the store at `store` (default: in the
    /// server's temporary directory).
    pub fn start_with_store(opts: Options, store: Option<PathBuf>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("catalog.toml");
        std::fs::write(&catalog, CATALOG).unwrap();
        let router = dir.path().join("router.json");
        let store = store.unwrap_or_else(|| dir.path().join("store.db"));
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--store".into(),
            store.display().to_string(),
            "--catalog".into(),
            catalog.display().to_string(),
            "--max-prompt-bytes".into(),
            "4096".into(),
        ];
        if opts.artifact {
            write_artifact(&router);
            args.push("--router".into());
            args.push(router.display().to_string());
        } else {
            // Without a router flag serve loads the shipped artifact.
            args.push("--router".into());
            args.push("none".into());
        }
        args.extend(opts.extra);
        Server::spawn(dir, args, store, router, catalog)
    }

    pub fn spawn(
        dir: tempfile::TempDir,
        args: Vec<String>,
        store: PathBuf,
        router: PathBuf,
        catalog: PathBuf,
    ) -> Server {
        Server::spawn_program(
            env!("CARGO_BIN_EXE_pointsman"),
            dir,
            args,
            store,
            router,
            catalog,
        )
    }

    /// [`Server::spawn`] through another program (e.g. `prlimit ... -- pointsman`).
    pub fn spawn_program(
        program: &str,
        dir: tempfile::TempDir,
        args: Vec<String>,
        store: PathBuf,
        router: PathBuf,
        catalog: PathBuf,
    ) -> Server {
        let mut child = Command::new(program)
            .args(&args)
            .current_dir(repo())
            .env("POINTSMAN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let bound = read_bound(child.stdout.take().unwrap());
        let addr = bound["grpc"].as_str().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let metrics = bound["metrics"].as_str().map(str::to_string);
        let http = bound["http"].as_str().map(str::to_string);
        Server {
            child,
            addr,
            http,
            metrics,
            dir,
            store,
            router,
            catalog,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> RouterClient<Channel> {
        RouterClient::new(self.channel().await)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod bound;
pub use bound::read_bound_within;

/// The first stdout line of `serve`: the JSON object of the addresses it
/// bound (`{"grpc": ..., "metrics": ...}`), within 60 s.
pub fn read_bound(stdout: std::process::ChildStdout) -> serde_json::Value {
    read_bound_within(stdout, Duration::from_secs(60))
}

/// Runs the CLI to completion.
pub fn pointsman(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

pub fn route_request(prompt: &str) -> pointsman_server::pb::RouteRequest {
    pointsman_server::pb::RouteRequest {
        prompt: prompt.into(),
        ..Default::default()
    }
}

pub const PROMPTS: [&str; 8] = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the capital of Australia?",
    "Solve for x: 3x + 7 = 22.",
    "Translate 'good morning' into French.",
    "Summarise the plot of Hamlet in two sentences.",
    "Write a haiku about autumn rain.",
    "Extract all email addresses from this text: bob@example.com, alice@example.org.",
    "Give me five ideas for a birthday party.",
];

/// A blocking `GET` of the metrics endpoint; None if it does not answer
/// within `within`.
pub fn metrics_text(server: &Server, within: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let addr = server
        .metrics
        .as_ref()
        .expect("started with --metrics-listen");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// The value of an unlabelled metric (e.g. `pointsman_requests_in_flight`).
pub fn metric(server: &Server, name: &str) -> f64 {
    let text = metrics_text(server, Duration::from_secs(5)).expect("metrics answer");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

/// Polls `metric` until `ok` holds; panics after 20 s.
pub fn wait_for_metric(server: &Server, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(server, name);
        if ok(v) {
            return v;
        }
        assert!(Instant::now() < until, "{name} stayed at {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A gRPC message with its 5-byte length prefix.
pub fn grpc_frame(msg: &impl prost::Message) -> bytes::Bytes {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.into()
}

/// A raw HTTP/2 connection (h2), for clients that misbehave on purpose.
pub async fn h2_connect(addr: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.unwrap()
}

pub const CLASSIFY: &str = "pointsman.v1.Router/Classify";

/// Opens a Classify call on a new connection and sends only the first half
/// of its body: the server holds the call in flight, waiting for the rest
/// (returned, for a test that finishes the call).
pub async fn stalled_upload(
    addr: &str,
    prompt: &str,
) -> Result<
    (
        h2::client::ResponseFuture,
        h2::SendStream<bytes::Bytes>,
        bytes::Bytes,
    ),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (h2, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut h2 = h2.ready().await?;
    let frame = grpc_frame(&pointsman_server::pb::ClassifyRequest {
        prompt: prompt.into(),
    });
    let (resp, mut send) = h2.send_request(grpc_head(addr, CLASSIFY), false)?;
    let half = frame.len() / 2;
    send.send_data(frame.slice(..half), false)?;
    Ok((resp, send, frame.slice(half..)))
}

/// The headers of a gRPC call to `method` (e.g. `pointsman.v1.Router/Classify`).
pub fn grpc_head(addr: &str, method: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// Reads a gRPC response to the end: (grpc-status, body bytes).
pub async fn grpc_finish(resp: h2::client::ResponseFuture) -> Result<(String, Vec<u8>), h2::Error> {
    let resp = resp.await?;
    let status_in_head = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?;
    let status = status_in_head
        .or_else(|| {
            trailers
                .as_ref()?
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .unwrap_or_default();
    Ok((status, bytes))
}

/// `store export --all` as JSON records.
pub fn export_all(store: &Path) -> Vec<serde_json::Value> {
    export(store, &["--all"])
}

/// `pointsman store export`: the decisions that have outcomes.
pub fn export_with_outcomes(store: &Path) -> Vec<serde_json::Value> {
    export(store, &[])
}

/// `pointsman train router --from-store STORE --out OUT` plus `extra`:
/// asserts that it succeeded and returns its stderr (what it reported).
pub fn train_from_store(store: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "router",
        "--from-store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = pointsman(&args);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{stderr}");
    stderr
}

fn export(store: &Path, flags: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["store", "export", "--store", store.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = pointsman(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
