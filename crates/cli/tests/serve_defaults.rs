//! `pointsman serve` with no routing flags routes out of the box: it loads
//! the shipped catalog and router artifact, creates the store (and its
//! folder) at the default path, and says what it loaded. Only the listen port
//! (0, so tests never collide) and where the store lives are moved.

mod serve_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serve_support::*;

/// The model names of the shipped default catalog, read from the file itself.
fn shipped_models() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("models/catalogs/routerbench.toml")).unwrap();
    pointsman_router::Catalog::from_toml_str(&text)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Starts `pointsman serve --listen 127.0.0.1:0` from the repository root
/// with `env` set; returns the child, its gRPC address and its stderr lines
/// up to the bound-address line.
fn start_with_env(env: &[(&str, &std::path::Path)]) -> (std::process::Child, String, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pointsman"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(repo())
        .env_remove("POINTSMAN_STORE")
        .env_remove("XDG_STATE_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = etx.send(line);
        }
    });
    let bound = read_bound(child.stdout.take().unwrap());
    let addr = bound["grpc"].as_str().unwrap().to_string();
    // serve writes the start-up line before it binds; collect stderr until
    // it has come (or 10 s have passed: the test then fails naming the lines).
    let mut lines = Vec::new();
    while let Ok(line) = erx.recv_timeout(Duration::from_secs(10)) {
        let done = line.starts_with("pointsman: catalog ");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, addr, lines)
}

fn route_once(addr: &str) -> pointsman_server::pb::RouteResponse {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut c = pointsman_server::pb::router_client::RouterClient::connect(format!(
                "http://{addr}"
            ))
            .await
            .unwrap();
            c.route(route_request("Prove that sqrt(2) is irrational"))
                .await
                .expect("Route answers with no routing flags")
                .into_inner()
        })
}

#[test]
fn serve_with_no_routing_flags_routes_with_the_shipped_catalog_and_artifact() {
    let state = tempfile::tempdir().unwrap();
    let (mut child, addr, stderr) = start_with_env(&[("XDG_STATE_HOME", state.path())]);
    let decision = route_once(&addr);
    let _ = child.kill();
    let _ = child.wait();

    let models = shipped_models();
    assert!(
        models.contains(&decision.model),
        "{} is not in the shipped catalog {models:?}",
        decision.model
    );
    assert!(!decision.decision_id.is_empty());
    // The default encoder is multilingual-e5-small: the decision names the
    // version of its heads (crates/cli/src/paths.rs, docs/EVALUATION.md).
    let e5_heads: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("models/heads-e5/task-difficulty.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        decision.versions.as_ref().map(|v| v.heads.as_str()),
        e5_heads["version"].as_str(),
        "the default heads are models/heads-e5's"
    );
    // The default store path: $XDG_STATE_HOME/pointsman/outcomes.db, folder created.
    let store = state.path().join("pointsman/outcomes.db");
    assert!(store.exists(), "no store at {}", store.display());
    // It says what it loaded.
    let loaded = stderr
        .iter()
        .find(|l| l.starts_with("pointsman: catalog "))
        .unwrap_or_else(|| panic!("no start-up line naming what was loaded in {stderr:?}"));
    assert!(
        loaded.contains("models/catalogs/routerbench.toml"),
        "{loaded}"
    );
    assert!(
        loaded.contains("models/router/routerbench-e5.json"),
        "{loaded}"
    );
    assert!(loaded.contains(&store.display().to_string()), "{loaded}");
    // The decision was logged in that store.
    assert!(export_all(&store)
        .iter()
        .any(|r| r["id"] == decision.decision_id.as_str()));
}

#[test]
fn pointsman_store_env_moves_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nested/folder/outcomes.db");
    let (mut child, addr, _) = start_with_env(&[("POINTSMAN_STORE", &store)]);
    let decision = route_once(&addr);
    let _ = child.kill();
    let _ = child.wait();
    assert!(shipped_models().contains(&decision.model));
    assert!(store.exists(), "no store at {}", store.display());
}
