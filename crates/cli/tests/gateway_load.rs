//! A bounded load test of the HTTP gateway: 64 concurrent streaming
//! clients (the official `openai` AsyncOpenAI, gateway/load.py), three
//! rounds of 64 x 4 requests. Every request ends complete or with a clean
//! error, no answer reaches the wrong client (the stub echoes each
//! client's own prompt), and the server's RSS after the third round is
//! within RSS_GROWTH_MB of its RSS after the first (warm-up) round.

mod gateway_support;
mod serve_support;

use std::process::Command;

use gateway_support::*;
use serde_json::Value;
use serve_support::*;

const CLIENTS: usize = 64;
const REQUESTS: usize = 4;
/// Allowed RSS growth between the warm-up round and the last one.
const RSS_GROWTH_MB: f64 = 32.0;

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

fn round(server: &Server) -> Value {
    let out = Command::new(venv_python())
        .arg(repo().join("crates/cli/tests/gateway/load.py"))
        .args([
            &gateway_url(server),
            TOKEN,
            &CLIENTS.to_string(),
            &REQUESTS.to_string(),
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "load.py failed");
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn sixty_four_streaming_clients_get_their_own_answers_and_memory_stays_flat() {
    let stub = Stub::start();
    let server = start_gateway(&stub, &[]);
    let pid = server.child.id();
    let mut rss = Vec::new();
    for _ in 0..3 {
        let t = round(&server);
        let n = |k: &str| t[k].as_u64().unwrap() as usize;
        assert_eq!(n("wrong"), 0, "an answer went to the wrong client: {t}");
        assert_eq!(n("incomplete"), 0, "a stream ended without an error: {t}");
        assert_eq!(n("complete") + n("clean_errors"), CLIENTS * REQUESTS, "{t}");
        // Clean errors are allowed (e.g. 429 when the encoder queue is
        // full), but most requests must get through.
        assert!(n("complete") >= CLIENTS * REQUESTS * 9 / 10, "{t}");
        // Every connection is closed once the clients are gone.
        wait_for_metric(&server, "pointsman_http_connections", |v| v == 0.0);
        rss.push(rss_mb(pid));
    }
    eprintln!("gateway load: RSS after each round {rss:.1?} MB");
    assert!(
        rss[2] - rss[0] < RSS_GROWTH_MB,
        "RSS grew from {:.1} to {:.1} MB",
        rss[0],
        rss[2]
    );
}
