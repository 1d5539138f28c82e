//! The gateway's end-to-end rig: the Python stub upstream
//! (tests/stub_upstream.py), a catalog whose models map to the stub's fault
//! modes, and the real `pointsman serve --http-listen --upstreams`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::serve_support::{repo, Server};

/// Catalog models → stub behaviour. The faulty models are cheaper than
/// `ok`, so a decision among `[faulty, ok]` tries the faulty one first.
pub const MODELS: [(&str, f64, Option<&str>); 11] = [
    ("ok", 1.0, Some("stub-ok")),
    ("strong", 10.0, Some("stub-ok")),
    ("rate", 0.1, Some("stub-429")),
    ("broken", 0.1, Some("stub-500")),
    ("reset", 0.1, Some("stub-reset")),
    ("slow", 0.1, Some("stub-slow-3000")),
    // Two chunks, then silence past the upstream's idle timeout (300 ms
    // below): a failure after the first byte. (stub-midstream's reset can
    // reach the gateway before the chunks it follows: Linux drops unread
    // data on RST, so the failure may look like one before the first byte.)
    ("mid", 0.1, Some("stub-stall-5000")),
    ("bad", 0.1, Some("stub-400")),
    ("unconfigured", 0.05, None),
    ("spare", 20.0, Some("stub-ok")),
    // Two chunks, then the rest 1.5 s later (within the idle timeout).
    ("pause", 30.0, Some("stub-stall-1500")),
];

pub const TOKEN: &str = "gateway-test-token";

#[path = "../../../upstream/tests/support/stub_process.rs"]
mod stub_process;
/// tests/stub_upstream.py, launched as the upstream crate's tests launch it.
pub use stub_process::StubProcess as Stub;

fn catalog_toml() -> String {
    let mut s = String::from("default_target = 0.8\n");
    for (name, price, _) in MODELS {
        s += &format!(
            "\n[[models]]\nname = \"{name}\"\ninput_usd_per_mtok = {price}\noutput_usd_per_mtok = {}\ncontext_window = 32000\nlatency_ms = 300\n",
            price * 2.0
        );
    }
    s
}

fn upstreams_toml(stub: &Stub) -> String {
    let mut s = String::new();
    for (name, _, upstream) in MODELS {
        let Some(upstream) = upstream else { continue };
        s += &format!(
            "[[upstream]]\nmodel = \"{name}\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\nupstream_model = \"{upstream}\"\nconnect_timeout_ms = 1000\nfirst_byte_timeout_ms = 500\nidle_timeout_ms = {}\n\n",
            stub.url(),
            if name == "mid" { 300 } else { 5000 }
        );
    }
    s
}

/// An artifact in which every model always succeeds (so the target policy
/// picks the cheapest allowed model).
fn write_artifact(path: &Path) {
    let models: Vec<(&str, f32)> = MODELS.iter().map(|m| (m.0, 1.0)).collect();
    crate::serve_support::write_artifact_for(path, &models);
}

/// `pointsman serve` with gRPC, HTTP and metrics on port 0, a bearer
/// token, and upstreams for every model but `unconfigured`.
pub fn start_gateway(stub: &Stub, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, catalog_toml()).unwrap();
    let router = dir.path().join("router.json");
    write_artifact(&router);
    let ups = dir.path().join("upstreams.toml");
    std::fs::write(&ups, upstreams_toml(stub)).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let store = dir.path().join("store.db");
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--router",
        router.to_str().unwrap(),
        "--upstreams",
        ups.to_str().unwrap(),
        "--auth-token-file",
        token.to_str().unwrap(),
        "--max-prompt-bytes",
        "4096",
        "--max-batch-request",
        "4",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = Server::spawn(dir, args, store, router, catalog);
    assert!(server.http.is_some(), "serve printed no http address");
    server
}

pub fn gateway_url(server: &Server) -> String {
    format!("http://{}", server.http.as_ref().unwrap())
}

pub fn venv_python() -> PathBuf {
    let p = repo().join("target/py-serve/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it creates the venv target/py-serve with examples/python/requirements.txt, openai included)",
        p.display()
    );
    p
}
