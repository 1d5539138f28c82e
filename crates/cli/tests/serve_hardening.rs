//! What misbehaving clients, signals and limits do to `pointsman serve`
//! (issue 13): the real binary and encoder, raw TCP and raw HTTP/2 clients
//! where tonic's client would not misbehave. One test at a time.

mod serve_support;

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pointsman_server::pb;
use serve_support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn start(extra: &[&str]) -> Server {
    Server::start(Options {
        artifact: true,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    })
}

// Defect 1: an idle socket and a stalled upload kept the process alive
// forever after SIGTERM. Now the drain ends at --drain-timeout.
#[test]
fn sigterm_exits_at_the_drain_deadline_despite_idle_and_stalled_connections() {
    let _g = serial();
    let mut server = start(&["--drain-timeout", "1"]);
    let rt = runtime(2);
    let _idle = std::net::TcpStream::connect(&server.addr).unwrap();
    let _stalled = rt
        .block_on(stalled_upload(&server.addr, PROMPTS[0]))
        .unwrap();
    wait_for_metric(&server, "pointsman_requests_in_flight", |v| v == 1.0);

    let t0 = Instant::now();
    server.signal("-TERM");
    let code = server.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "exits 0 after the drain deadline");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "exited after {took:?}; the deadline is 1 s"
    );
}

// Defect 1: a second SIGTERM during the drain was ignored. Now it exits at
// once (code 130), long before a 60 s drain deadline.
#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let _g = serial();
    let mut server = start(&["--drain-timeout", "60"]);
    let rt = runtime(2);
    let _stalled = rt
        .block_on(stalled_upload(&server.addr, PROMPTS[1]))
        .unwrap();
    wait_for_metric(&server, "pointsman_requests_in_flight", |v| v == 1.0);

    server.signal("-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the first signal only starts the drain"
    );
    let t0 = Instant::now();
    server.signal("-INT");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(130));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

// Defect 13b: a call known (by the in-flight gauge) to be in flight when
// SIGTERM arrives is answered OK, then the process exits 0. No sleeps that
// hope for the right interleaving: the call cannot finish before the
// signal, because half its body is sent only after it.
#[test]
fn a_call_in_flight_at_sigterm_is_answered_then_the_process_exits() {
    let _g = serial();
    let mut server = start(&["--drain-timeout", "30"]);
    let rt = runtime(2);
    let (resp, mut send, rest) = rt
        .block_on(stalled_upload(&server.addr, PROMPTS[2]))
        .unwrap();
    wait_for_metric(&server, "pointsman_requests_in_flight", |v| v == 1.0);

    server.signal("-TERM");
    // Health now says NOT_SERVING and the listener is closed, but the call
    // in flight goes on.
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&server.addr).is_ok() {
        assert!(
            Instant::now() < until,
            "the listener stays open after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.child.try_wait().unwrap().is_none());
    send.send_data(rest, true).unwrap();
    let (status, body) = rt.block_on(grpc_finish(resp)).unwrap();
    assert_eq!(status, "0", "the call in flight is answered OK");
    let answer: pb::ClassifyResponse = prost::Message::decode(&body[5..]).unwrap();
    assert!(!answer.classification.unwrap().task.is_empty());
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Reads until the server closes the connection; None if it stays open.
fn closed_within(mut s: std::net::TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(_) => return Some(t0.elapsed()),
        }
    }
}

// Defect 2: idle connections were never closed, and nothing bounded them.
// Now each closes after --idle-timeout, and a client beyond
// --max-connections waits for a slot instead of being lost.
#[test]
fn idle_connections_are_closed_and_connections_are_bounded() {
    let _g = serial();
    let server = start(&["--max-connections", "4", "--idle-timeout", "1"]);
    let idle: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(&server.addr).unwrap())
        .collect();
    let rt = runtime(2);
    // A fifth client: its connection waits in the backlog until an idle
    // one is closed, then it is served.
    let routed = rt.block_on(async {
        let mut c = server.client().await;
        c.route(route_request(PROMPTS[3])).await
    });
    assert!(routed.is_ok(), "{routed:?}");
    for s in idle {
        let took = closed_within(s, Duration::from_secs(5));
        assert!(took.is_some(), "an idle connection stayed open");
    }
    assert!(metric(&server, "pointsman_connections") <= 4.0);
}

// Defect 2: with file descriptors exhausted the accept loop spun at 100%
// CPU. With a 64-descriptor limit and 100 idle sockets it now backs off
// (and idle sockets are closed, so Route and /metrics recover).
#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let router = dir.path().join("router.json");
    write_artifact(&router);
    let store = dir.path().join("store.db");
    let bin = env!("CARGO_BIN_EXE_pointsman").to_string();
    let args: Vec<String> = [
        "--nofile=64:64",
        "--",
        &bin,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--store",
        &store.display().to_string(),
        "--catalog",
        &catalog.display().to_string(),
        "--router",
        &router.display().to_string(),
        "--max-connections",
        "1000",
        "--idle-timeout",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Server::spawn_program("prlimit", dir, args, store, router, catalog);
    let pid = server.child.id();
    let idle: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&server.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // utime and stime, fields 14 and 15 (1-based, counting pid and comm).
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    let before = cpu(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu(pid) - before;
    assert!(
        used < 0.5,
        "the server used {used:.2} s of CPU in 2 s while out of descriptors"
    );
    drop(idle);
    let rt = runtime(2);
    let routed = rt.block_on(async {
        let mut c = server.client().await;
        c.route(route_request(PROMPTS[4])).await
    });
    assert!(routed.is_ok(), "{routed:?}");
    assert!(metrics_text(&server, Duration::from_secs(5)).is_some());
}

// Defect 4: every method accepted 16.8 MB messages (a 4 MB floor whatever
// the flags). The decode limit is now sized from --max-prompt-bytes and
// --max-batch-request, and one connection may open only
// --max-concurrent-streams streams.
#[test]
fn decode_limit_follows_the_flags_and_streams_per_connection_are_bounded() {
    let _g = serial();
    let server = start(&["--max-batch-request", "4", "--max-concurrent-streams", "16"]);
    let rt = runtime(2);
    rt.block_on(async {
        let mut c = server.client().await;
        // 4 items of 4 KB (--max-prompt-bytes 4096) fit easily in 200 KB.
        let e = c
            .classify(pb::ClassifyRequest {
                prompt: "x ".repeat(100_000),
            })
            .await
            .unwrap_err();
        // tonic answers an oversized message OUT_OF_RANGE, before buffering it.
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
        assert!(e.message().contains("too large"), "{}", e.message());
        // The server's SETTINGS arrive with its first answer.
        let mut h2 = h2_connect(&server.addr).await;
        let (resp, mut send) = h2
            .send_request(grpc_head(&server.addr, CLASSIFY), false)
            .unwrap();
        send.send_data(
            grpc_frame(&pb::ClassifyRequest {
                prompt: PROMPTS[7].into(),
            }),
            true,
        )
        .unwrap();
        assert_eq!(grpc_finish(resp).await.unwrap().0, "0");
        assert_eq!(h2.current_max_send_streams(), 16);
    });
}

fn bad_artifact(server: &Server) {
    let text = std::fs::read_to_string(&server.router).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["ability"][1][0] = serde_json::json!(1e39);
    std::fs::write(&server.router, v.to_string()).unwrap();
}

// Defect 3: an artifact with non-finite values was accepted and every
// Route then answered p_success NaN. Now it is refused at start-up (with
// the path and the field) and at reload (the running state is kept).
#[test]
fn an_artifact_with_non_finite_values_is_refused_at_start_and_reload() {
    let _g = serial();
    let server = start(&[]);
    bad_artifact(&server);
    let rt = runtime(2);
    rt.block_on(async {
        let mut admin = pb::admin_client::AdminClient::new(server.channel().await);
        let e = admin.reload(pb::ReloadRequest {}).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("ability[1][0]"), "{}", e.message());
        let r = server
            .client()
            .await
            .route(route_request(PROMPTS[0]))
            .await
            .unwrap()
            .into_inner();
        assert!(r.candidates.iter().all(|c| c.p_success.is_finite()));
    });
    let out = pointsman(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &server.dir.path().join("other.db").display().to_string(),
        "--catalog",
        &server.catalog.display().to_string(),
        "--router",
        &server.router.display().to_string(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router.json") && err.contains("ability[1][0]"),
        "{err}"
    );
}

// Defect 5: a 4 MB tenant was stored verbatim and long names were echoed
// whole in errors (which then exceeded the metadata limit).
#[test]
fn string_fields_are_bounded_and_errors_quote_little() {
    let _g = serial();
    let server = start(&[]);
    let rt = runtime(2);
    rt.block_on(async {
        let mut c = server.client().await;
        let mut r = route_request(PROMPTS[0]);
        r.tenant = Some("t".repeat(300));
        let e = c.route(r).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("tenant:"), "{}", e.message());

        let mut r = route_request(PROMPTS[0]);
        r.constraints = Some(pb::Constraints {
            allowed_models: vec!["m".repeat(200)],
            ..Default::default()
        });
        let e = c.route(r).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 400, "{}", e.message());
        assert!(e.message().contains("allowed_models[0]"));

        let e = c
            .report_outcome(pb::ReportOutcomeRequest {
                decision_id: "d".repeat(100_000),
                model: "cheap".into(),
                score: 1.0,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with("decision_id:") && e.message().len() < 400);

        let e = c
            .report_outcome(pb::ReportOutcomeRequest {
                decision_id: "no-such-decision-".repeat(7),
                model: "cheap".into(),
                score: 1.0,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains('…'), "{}", e.message());
    });
}

// Defect 10: after a reload that dropped a model, an outcome for it on a
// decision that considered it answered NOT_FOUND; the same outcome twice
// was stored twice.
#[test]
fn outcomes_for_a_decisions_own_candidates_survive_a_reload_and_repeats_replace() {
    let _g = serial();
    let server = start(&[]);
    let rt = runtime(2);
    let id = rt.block_on(async {
        let mut c = server.client().await;
        let r = c
            .route(route_request(PROMPTS[1]))
            .await
            .unwrap()
            .into_inner();
        assert!(r.candidates.iter().any(|c| c.model == "strong"));
        let only_cheap = CATALOG
            .split("[[models]]\nname = \"strong\"")
            .next()
            .unwrap();
        std::fs::write(&server.catalog, only_cheap).unwrap();
        let mut admin = pb::admin_client::AdminClient::new(server.channel().await);
        admin.reload(pb::ReloadRequest {}).await.unwrap();
        let report = |model: &str, score: f64| pb::ReportOutcomeRequest {
            decision_id: r.decision_id.clone(),
            model: model.into(),
            score,
            ..Default::default()
        };
        let n = c
            .report_outcome(report("strong", 0.0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.outcomes_for_decision, 1);
        let n = c
            .report_outcome(report("strong", 1.0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(n.outcomes_for_decision, 1, "a repeat replaces, last wins");
        let e = c
            .report_outcome(report("never-heard-of", 1.0))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        r.decision_id
    });
    let line = &export_with_outcomes(&server.store)[0];
    assert_eq!(line["id"], id);
    assert_eq!(line["outcomes"]["strong"]["score"], 1.0);
}

// Defect 9: a blank token turned auth off; the scheme was case-sensitive;
// serving beyond loopback without TLS and auth was only a warning.
#[test]
fn auth_blank_tokens_fail_start_up_scheme_is_case_insensitive_and_open_listeners_need_insecure() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let base = |listen: &str| -> Vec<String> {
        [
            "serve",
            "--listen",
            listen,
            "--store",
            &dir.path().join("s.db").display().to_string(),
            "--catalog",
            &catalog.display().to_string(),
            "--router",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>, token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"));
        cmd.args(&args).current_dir(repo());
        match token {
            Some(t) => cmd.env("POINTSMAN_AUTH_TOKEN", t),
            None => cmd.env_remove("POINTSMAN_AUTH_TOKEN"),
        };
        cmd.output().unwrap()
    };
    let out = run(base("127.0.0.1:0"), Some("   "));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("POINTSMAN_AUTH_TOKEN is set but blank"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(base("0.0.0.0:0"), None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("beyond loopback") && err.contains("--insecure"),
        "{err}"
    );
    let mut args = base("127.0.0.1:0");
    args.extend(["--metrics-listen".to_string(), "0.0.0.0:0".to_string()]);
    let out = run(args, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-listen"));

    // The env token is trimmed; any case of "Bearer" works.
    let server = start_with_env_token("  s3cret \n");
    let rt = runtime(2);
    rt.block_on(async {
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let mut req = tonic::Request::new(pb::ClassifyRequest {
                prompt: PROMPTS[0].into(),
            });
            req.metadata_mut()
                .insert("authorization", format!("{scheme} s3cret").parse().unwrap());
            let r = server.client().await.classify(req).await;
            assert!(r.is_ok(), "{scheme}: {r:?}");
        }
        let mut req = tonic::Request::new(pb::ClassifyRequest {
            prompt: PROMPTS[0].into(),
        });
        req.metadata_mut()
            .insert("authorization", "Bearer  s3cret!".parse().unwrap());
        let e = server.client().await.classify(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    });
}

fn start_with_env_token(token: &str) -> Server {
    std::env::set_var("POINTSMAN_AUTH_TOKEN", token);
    let s = start(&[]);
    std::env::remove_var("POINTSMAN_AUTH_TOKEN");
    s
}

// Defect 11: an overflowing grpc-timeout panicked the handler;
// undecodable protobuf answered INTERNAL; a zero-width prompt was accepted;
// an emptied store file started with no warning.
#[test]
fn small_defects_overflowing_timeout_garbage_body_invisible_prompt() {
    let _g = serial();
    let server = start(&[]);
    let rt = runtime(2);
    rt.block_on(async {
        let mut h2 = h2_connect(&server.addr).await;
        let mut head = grpc_head(&server.addr, CLASSIFY);
        head.headers_mut()
            .insert("grpc-timeout", "18446744073709551615S".parse().unwrap());
        let (resp, mut send) = h2.send_request(head, false).unwrap();
        send.send_data(
            grpc_frame(&pb::ClassifyRequest {
                prompt: PROMPTS[5].into(),
            }),
            true,
        )
        .unwrap();
        let (status, _) = grpc_finish(resp).await.unwrap();
        assert_eq!(status, "0", "a huge grpc-timeout is no deadline");

        let (resp, mut send) = h2
            .send_request(grpc_head(&server.addr, CLASSIFY), false)
            .unwrap();
        let garbage: &[u8] = &[0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        send.send_data(bytes::Bytes::from_static(garbage), true)
            .unwrap();
        let (status, _) = grpc_finish(resp).await.unwrap();
        assert_eq!(status, "3", "undecodable protobuf is INVALID_ARGUMENT");

        let e = server
            .client()
            .await
            .classify(pb::ClassifyRequest {
                prompt: "\u{200B}\u{200C}\u{FEFF}\u{2060}".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("prompt:"), "{}", e.message());
    });
    // The server survived all of it.
    rt.block_on(async {
        server
            .client()
            .await
            .route(route_request(PROMPTS[6]))
            .await
            .unwrap();
    });
}

#[test]
fn an_emptied_store_file_is_warned_about() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    std::fs::write(&store, b"").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--router",
            "none",
            "--store",
        ])
        .arg(&store)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("serving gRPC") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("is an empty file (0 bytes)"), "{seen}");
}
