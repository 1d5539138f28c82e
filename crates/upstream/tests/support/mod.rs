//! The Python stub upstream (tests/stub_upstream.py) as a child process, and
//! helpers to configure upstreams against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use pointsman_upstream::{ForwardRequest, UpstreamConfig, Upstreams};
use serde_json::{json, Map, Value};

/// A running stub; killed on drop (and it exits by itself when its stdin,
/// held here, closes: a test that panics leaves nothing behind).
pub struct Stub {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
}

impl Stub {
    pub fn start() -> Stub {
        let script = repo_root().join("tests/stub_upstream.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg("--exit-on-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("stub said {line:?}, not LISTENING <port>"))
            .parse()
            .unwrap();
        Stub {
            child,
            _stdin: stdin,
            port,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// An upstream for catalog `model` whose stub behaviour is `stub_model`.
    pub fn upstream(&self, model: &str, stub_model: &str) -> UpstreamConfig {
        UpstreamConfig::openai(model, &self.base_url(), stub_model).unwrap()
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Value {
        let text = http_client()
            .get(format!("http://127.0.0.1:{}/stats", self.port))
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

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `python3`, or `$PYTHON` where set.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
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
