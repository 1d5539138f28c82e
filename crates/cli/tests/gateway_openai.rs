//! The HTTP gateway end to end with the official `openai` Python client
//! (from PyPI, in target/py-serve): `openai` → `pointsman serve
//! --http-listen` → tests/stub_upstream.py. The client-side checks (routing,
//! named models, each fallback case, streaming, mid-stream failure,
//! feedback, /v1/route, auth, every bad input) are in
//! gateway/openai_checks.py; this test then reads what was logged in the
//! store and the metrics.

mod gateway_support;
mod serve_support;

use std::process::Command;
use std::time::{Duration, Instant};

use gateway_support::*;
use serde_json::Value;
use serve_support::*;

fn record<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("decision {id} not in the export"))
}

fn calls(r: &Value) -> Vec<(String, String)> {
    r["calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["model"].as_str().unwrap().to_string(),
                        c["error_class"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn openai_client_routes_forwards_falls_back_and_outcomes_are_logged() {
    let stub = Stub::start();
    let server = start_gateway(&stub, &[]);
    let out = Command::new(venv_python())
        .arg(repo().join("crates/cli/tests/gateway/openai_checks.py"))
        .args([&gateway_url(&server), TOKEN, &stub.url()])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai checks failed");
    let ids: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let id = |k: &str| ids[k].as_str().unwrap().to_string();

    // Calls are logged just after each answer: wait until the last one is in.
    let until = Instant::now() + Duration::from_secs(20);
    let records = loop {
        let records = export_all(&server.store);
        let done = records
            .iter()
            .find(|r| r["id"] == id("all_failed"))
            .is_some_and(|r| calls(r).len() == 2);
        if done {
            break records;
        }
        assert!(Instant::now() < until, "calls never logged");
        std::thread::sleep(Duration::from_millis(100));
    };

    // Routed and answered: one ok call with usage-based tokens and cost;
    // feedback 0.9 took its tokens and cost from the call.
    let routed = record(&records, &id("routed"));
    assert_eq!(routed["chosen_model"], "ok");
    assert_eq!(calls(routed), [("ok".into(), "ok".into())]);
    let call = &routed["calls"][0];
    assert_eq!(call["status"], 200);
    assert_eq!(call["output_tokens"], 3);
    // prompt tokens: words of all messages ("be brief" + "route me: alpha").
    assert_eq!(call["input_tokens"], 5);
    let cost = call["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (5.0 * 1.0 + 3.0 * 2.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert!(call["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(routed["outcomes"]["ok"]["score"], 0.9);
    assert_eq!(routed["outcomes"]["ok"]["cost_usd"].as_f64(), Some(cost));

    // A named model is a decision for that model, logged unclassified
    // (no candidates, no embedding), with its call and its feedback.
    let named = record(&records, &id("named"));
    assert_eq!(named["chosen_model"], "strong");
    assert_eq!(named["candidates"].as_array().unwrap().len(), 0);
    assert_eq!(calls(named), [("strong".into(), "ok".into())]);
    assert_eq!(named["outcomes"]["strong"]["score"], 0.5);

    // Each fallback: the failed call is logged with its class and is a
    // failure outcome (score 0); the model that answered has no score
    // until feedback (fallback_rate got one: 1.0).
    for (faulty, class) in [
        ("rate", "rate_limited"),
        ("broken", "server"),
        ("reset", "connect"),
        ("slow", "timeout"),
    ] {
        let r = record(&records, &id(&format!("fallback_{faulty}")));
        assert_eq!(
            calls(r),
            [(faulty.into(), class.into()), ("ok".into(), "ok".into())],
            "{faulty}"
        );
        assert_eq!(r["outcomes"][faulty]["score"], 0.0, "{faulty}: {r}");
    }
    assert_eq!(
        record(&records, &id("fallback_rate"))["outcomes"]["ok"]["score"],
        1.0
    );
    assert!(record(&records, &id("fallback_broken"))["outcomes"]
        .get("ok")
        .is_none());

    // Streaming: time to first token and usage from the final chunk.
    let streamed = record(&records, &id("streamed"));
    assert_eq!(calls(streamed), [("ok".into(), "ok".into())]);
    assert!(streamed["calls"][0]["ttft_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(streamed["calls"][0]["output_tokens"], 4);

    // Mid-stream failure: no fallback, a failure outcome.
    let mid = record(&records, &id("midstream"));
    assert_eq!(calls(mid), [("mid".into(), "mid_stream".into())]);
    assert_eq!(mid["outcomes"]["mid"]["score"], 0.0);

    // Everything failed: both calls and both failure outcomes.
    let failed = record(&records, &id("all_failed"));
    assert_eq!(
        calls(failed),
        [
            ("rate".into(), "rate_limited".into()),
            ("broken".into(), "server".into())
        ]
    );
    assert_eq!(failed["outcomes"].as_object().unwrap().len(), 2);

    // Metrics: per-upstream requests by class, fallbacks, tokens, cost.
    let text = metrics_text(&server, Duration::from_secs(5)).unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
    };
    assert!(
        value(r#"pointsman_upstream_requests_total{class="rate_limited",model="rate"}"#) >= 3.0
    );
    assert!(value(r#"pointsman_upstream_fallbacks_total{model="reset"}"#) >= 1.0);
    assert!(value(r#"pointsman_upstream_tokens_total{kind="completion",model="ok"}"#) >= 3.0);
    assert!(value(r#"pointsman_upstream_cost_usd_total{model="ok"}"#) > 0.0);
    assert!(
        value(r#"pointsman_http_requests_total{route="/v1/chat/completions",status="200"}"#) >= 8.0
    );
    assert!(value(r#"pointsman_http_requests_total{route="/v1/models",status="401"}"#) >= 1.0);
}

/// One HTTP/1.1 request over a plain socket: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_with(addr, method, path, "", body);
    (status, body)
}

/// [`http`] with extra header lines (each ending in `\r\n`): (status,
/// head, body).
fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

#[test]
fn without_upstreams_routing_works_and_chat_is_503_and_open_listeners_are_refused() {
    // `serve` that must fail at start-up: its stderr.
    let refused = |extra: &[&str]| {
        let mut args = vec!["serve", "--router", "none", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let out = pointsman(&args);
        assert!(!out.status.success(), "{extra:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // Beyond loopback without TLS and a token: refused, naming the flag.
    let err = refused(&["--http-listen", "0.0.0.0:0"]);
    assert!(
        err.contains("--http-listen 0.0.0.0:0 is beyond loopback") && err.contains("--insecure"),
        "{err}"
    );
    // A bad upstreams file fails start-up, naming the field.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("upstreams.toml");
    std::fs::write(
        &bad,
        "[[upstream]]\nmodel = \"cheap\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nupstream_model = \"x\"\ntimeout_ms = 5\n",
    )
    .unwrap();
    let err = refused(&[
        "--http-listen",
        "127.0.0.1:0",
        "--upstreams",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("timeout_ms"), "{err}");

    let mut server = Server::start(Options {
        extra: vec!["--http-listen".into(), "127.0.0.1:0".into()],
        ..Options::default()
    });
    let addr = server.http.clone().expect("an http address");
    let (status, body) = http(&addr, "GET", "/v1/models", "");
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["pointsman", "pointsman/auto"]);
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/route",
        r#"{"prompt": "What is 2 + 2?"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["model"],
        "cheap"
    );
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/chat/completions",
        r#"{"model": "pointsman", "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "no_upstream"
    );
    // Both front ends drain on SIGTERM.
    server.signal("-TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn a_stream_in_flight_at_sigterm_is_finished_before_the_process_exits() {
    use std::io::{BufRead, BufReader, Write};
    let stub = Stub::start();
    let mut server = start_gateway(&stub, &["--drain-timeout", "10"]);
    let addr = server.http.clone().unwrap();
    let body = r#"{"model": "pause", "stream": true, "messages": [{"role": "user", "content": "finish me after the signal"}]}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut seen = String::new();
    // Read until the first event has arrived: the stream is in flight.
    while !seen.contains("data: ") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{seen}");
        seen += &line;
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    server.signal("-TERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the stream was cut: {rest}");
    assert!(rest.contains("signal"), "{rest}");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

/// A header's value from a response head.
fn header(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

#[test]
fn a_named_model_is_forwarded_without_an_encoder_pass_and_logged_unclassified() {
    let stub = Stub::start();
    let server = start_gateway(&stub, &[]);
    let addr = server.http.clone().unwrap();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let post = |path: &str, body: Value| http_with(&addr, "POST", path, &auth, &body.to_string());
    let chat = |model: &str, prompt: &str| {
        post(
            "/v1/chat/completions",
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]}),
        )
    };
    // Encoder passes and prompt-cache misses so far.
    let encoder = || {
        let text = metrics_text(&server, Duration::from_secs(5)).unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("pointsman_encoder_seconds_count "),
            value("pointsman_prompt_cache_misses_total "),
        )
    };

    let before = encoder();
    let mut named = Vec::new();
    for i in 0..4 {
        let prompt = format!("named prompt number {i}, never seen before");
        let (status, head, body) = chat("strong", &prompt);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&prompt), "{body}");
        assert_eq!(header(&head, "x-pointsman-model"), "strong");
        named.push(header(&head, "x-pointsman-decision-id"));
    }
    // Distinct prompts, yet no encoder pass and no prompt-cache lookup:
    // the named path never reached the encoder queue.
    assert_eq!(encoder(), before, "a named model went through the encoder");
    // The same counters move for routed requests (so the check above could fail).
    let mut routed = Vec::new();
    for i in 0..3 {
        let (status, head, body) =
            chat("pointsman", &format!("routed prompt {i}, new to the cache"));
        assert_eq!(status, 200, "{body}");
        routed.push(header(&head, "x-pointsman-decision-id"));
    }
    let after = encoder();
    assert!(after.0 > before.0, "{before:?} -> {after:?}");

    // Feedback works for a named model's decision (the model defaults to it).
    let (status, _, body) = post(
        "/v1/feedback",
        serde_json::json!({"decision_id": named[0], "score": 0.25}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["model"],
        "strong"
    );
    for id in &routed {
        let (status, _, body) = post(
            "/v1/feedback",
            serde_json::json!({"decision_id": id, "score": 1.0}),
        );
        assert_eq!(status, 200, "{body}");
    }

    // The decision row: unclassified, as docs/GATEWAY.md documents it.
    let until = Instant::now() + Duration::from_secs(20);
    let records = loop {
        let records = export_all(&server.store);
        if named
            .iter()
            .all(|id| !calls(record(&records, id)).is_empty())
        {
            break records;
        }
        assert!(Instant::now() < until, "calls never logged");
        std::thread::sleep(Duration::from_millis(100));
    };
    for id in &named {
        let r = record(&records, id);
        assert_eq!(r["chosen_model"], "strong");
        assert_eq!(r["embedding"], serde_json::json!([]), "{r}");
        assert_eq!(r["predicted_task"], "");
        assert_eq!(r["task_scores"], serde_json::json!({}));
        assert_eq!(r["candidates"], serde_json::json!([]));
        let versions: Vec<&String> = r["versions"].as_object().unwrap().keys().collect();
        assert_eq!(versions, ["catalog"]);
        assert_eq!(calls(r), [("strong".into(), "ok".into())]);
    }
    assert_eq!(
        record(&records, &named[0])["outcomes"]["strong"]["score"],
        0.25
    );
    // A routed decision is classified.
    assert_eq!(
        record(&records, &routed[0])["embedding"]
            .as_array()
            .unwrap()
            .len(),
        384
    );

    // Training from the store skips the unclassified row and says so.
    let out_dir = tempfile::tempdir().unwrap();
    let artifact = out_dir.path().join("router.json");
    let stderr = train_from_store(&server.store, &artifact, &[]);
    assert!(
        stderr.contains("skipped 1 decisions with outcomes but no embedding"),
        "{stderr}"
    );
    assert!(stderr.contains("fitted on 3 logged decisions"), "{stderr}");
}

/// A tenant's policy binds a named model as it binds a routed one: a model
/// outside the tenant's allowed models is refused (400 naming `model`), and
/// over budget a named model is refused (429) even when the tenant's action
/// is `downgrade`; a named request's expected cost counts against the
/// budget. Other tenants are unaffected.
#[test]
fn a_named_model_obeys_the_tenants_allowed_models_and_budget() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    // A budget far below one request's expected cost: the first request is
    // within it (nothing spent yet), the second is over.
    std::fs::write(
        &tenants,
        "[tenants.narrow]\nallowed_models = [\"ok\"]\n\n\
         [tenants.broke]\nbudget_usd = 1e-9\non_budget = \"downgrade\"\n",
    )
    .unwrap();
    let server = start_gateway(&stub, &["--tenants", tenants.to_str().unwrap()]);
    let addr = server.http.clone().unwrap();
    let chat = |tenant: &str, model: &str| {
        let auth = format!("Authorization: Bearer {TOKEN}\r\nx-pointsman-tenant: {tenant}\r\n");
        let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]});
        http_with(
            &addr,
            "POST",
            "/v1/chat/completions",
            &auth,
            &body.to_string(),
        )
    };

    let (status, _, body) = chat("narrow", "ok");
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = chat("narrow", "strong");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("model") && body.contains("narrow"), "{body}");
    // Another tenant may name it.
    let (status, _, body) = chat("other", "strong");
    assert_eq!(status, 200, "{body}");

    let (status, _, body) = chat("broke", "strong");
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = chat("broke", "strong");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("broke"), "{body}");
    let (status, _, body) = chat("other", "strong");
    assert_eq!(status, 200, "{body}");
}
