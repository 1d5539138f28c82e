//! `pointsman serve` end to end: the real binary, the real encoder, a Rust
//! tonic client over 127.0.0.1. Tests run one at a time (each starts its own
//! server; the machine has few cores).

mod serve_support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pointsman_server::pb;
use serve_support::*;
use tonic::Code;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, field: &str) {
    let s = r.expect_err("expected an error");
    assert_eq!(s.code(), code, "{s:?}");
    assert!(
        s.message().contains(field),
        "message {:?} should name `{field}`",
        s.message()
    );
}

#[test]
fn health_reflection_classify_route_report_and_bad_inputs() {
    let _g = serial();
    let server = Server::start(Options::default());
    runtime(4).block_on(async {
        // Health.
        let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
        let h = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            h.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let h = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "pointsman.v1.Router".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            h.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // Reflection, v1 and v1alpha.
        use tonic_reflection::pb::{v1, v1alpha};
        let mut r1 =
            v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
        let req = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut stream = r1
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            resp.message_response
        else {
            panic!("{resp:?}")
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "pointsman.v1.Router",
            "pointsman.v1.Admin",
            "grpc.health.v1.Health",
        ] {
            assert!(names.contains(&want), "v1 lists {names:?}");
        }
        let mut ra =
            v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
        let req = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "pointsman.v1.Router".into(),
                ),
            ),
        };
        let mut stream = ra
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(fd)) =
            resp.message_response
        else {
            panic!("{resp:?}")
        };
        assert!(!fd.file_descriptor_proto.is_empty());

        let mut c = server.client().await;
        // Classify.
        let cl = c
            .classify(pb::ClassifyRequest {
                prompt: PROMPTS[0].into(),
            })
            .await
            .unwrap()
            .into_inner();
        let k = cl.classification.unwrap();
        let sum: f32 = k.task_scores.values().sum();
        assert!((sum - 1.0).abs() < 1e-3, "{sum}");
        assert_eq!(k.task, "code");
        assert!((0.0..=1.0).contains(&k.difficulty));
        assert!(!cl.heads_version.is_empty());

        // Route.
        let r = c
            .route(route_request(PROMPTS[1]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.model, "cheap",
            "both models always succeed in the artifact, so the cheaper one: {r:?}"
        );
        assert_eq!(r.fallbacks, ["strong"]);
        assert_eq!(r.candidates.len(), 2);
        assert!(r
            .candidates
            .iter()
            .all(|c| (0.0..=1.0).contains(&c.p_success) && c.expected_cost_usd > 0.0));
        assert!(r.candidates[0].expected_cost_usd < r.candidates[1].expected_cost_usd);
        // Both catalog models are candidates here: the router's difficulty
        // is 1 − their mean P.
        let mean_p = r.candidates.iter().map(|c| c.p_success).sum::<f64>() / 2.0;
        assert!(mean_p < 1.0 && r.typical_failure > 0.0, "{r:?}");
        assert!(
            (r.typical_failure - (1.0 - mean_p)).abs() < 1e-9,
            "{} vs {}",
            r.typical_failure,
            1.0 - mean_p
        );
        let v = r.versions.clone().unwrap();
        assert_eq!(v.generation, 1);
        assert!(v.router_artifact.starts_with("router.json@"), "{v:?}");
        assert_eq!(r.target, Some(0.8));
        // Constraints: only the strong model allowed.
        let mut req = route_request(PROMPTS[1]);
        req.constraints = Some(pb::Constraints {
            allowed_models: vec!["strong".into()],
            ..Default::default()
        });
        let r2 = c.route(req).await.unwrap().into_inner();
        assert_eq!(r2.model, "strong");
        assert!(r2.excluded.contains_key("cheap"));
        // A property of the prompt, not of the request's allowed models.
        assert_eq!(r2.typical_failure, r.typical_failure);

        // ReportOutcome.
        let rep = |id: &str, model: &str, score: f64| pb::ReportOutcomeRequest {
            decision_id: id.into(),
            model: model.into(),
            score,
            latency_ms: Some(800.0),
            ..Default::default()
        };
        let a = c
            .report_outcome(rep(&r.decision_id, "cheap", 1.0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.outcomes_for_decision, 1);
        let a = c
            .report_outcome(rep(&r.decision_id, "strong", 0.5))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.outcomes_for_decision, 2);

        // Catalog.
        let cat = c
            .get_catalog(pb::GetCatalogRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            cat.models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["cheap", "strong"]
        );
        assert_eq!(cat.default_target, 0.8);
        assert_eq!(cat.models[0].fitted_outcomes, 40);

        // Batch: one good, one bad item.
        let b = c
            .route_batch(pb::RouteBatchRequest {
                requests: vec![route_request(PROMPTS[2]), route_request("  ")],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(
            b.items[0].result,
            Some(pb::route_batch_item::Result::Response(_))
        ));
        let Some(pb::route_batch_item::Result::Error(e)) = &b.items[1].result else {
            panic!("{b:?}")
        };
        assert_eq!(
            (e.code, e.message.starts_with("requests[1].prompt")),
            (Code::InvalidArgument as i32, true),
            "{e:?}"
        );

        // Every bad input names its field.
        assert_status(
            c.route(route_request("")).await,
            Code::InvalidArgument,
            "prompt",
        );
        assert_status(
            c.classify(pb::ClassifyRequest {
                prompt: " \n".into(),
            })
            .await,
            Code::InvalidArgument,
            "prompt",
        );
        assert_status(
            c.route(route_request(&"x".repeat(5000))).await,
            Code::InvalidArgument,
            "prompt",
        );
        assert_status(
            c.classify(pb::ClassifyRequest {
                prompt: "y".repeat(5000),
            })
            .await,
            Code::InvalidArgument,
            "prompt",
        );
        let mut t = route_request(PROMPTS[0]);
        t.target = Some(1.5);
        assert_status(c.route(t).await, Code::InvalidArgument, "target");
        let mut t = route_request(PROMPTS[0]);
        t.target = Some(-0.1);
        assert_status(c.route(t).await, Code::InvalidArgument, "target");
        let mut t = route_request(PROMPTS[0]);
        t.constraints = Some(pb::Constraints {
            allowed_models: vec!["gpt-9".into()],
            ..Default::default()
        });
        assert_status(
            c.route(t).await,
            Code::InvalidArgument,
            "constraints.allowed_models[0]",
        );
        assert_status(
            c.report_outcome(rep("no-such-decision", "cheap", 1.0))
                .await,
            Code::NotFound,
            "decision_id",
        );
        assert_status(
            c.report_outcome(rep(&r.decision_id, "gpt-9", 1.0)).await,
            Code::NotFound,
            "model",
        );
        assert_status(
            c.report_outcome(rep(&r.decision_id, "cheap", 1.5)).await,
            Code::InvalidArgument,
            "score",
        );
        assert_status(
            c.report_outcome(rep(&r.decision_id, "cheap", -0.5)).await,
            Code::InvalidArgument,
            "score",
        );
        assert_status(
            c.report_outcome(rep("", "cheap", 1.0)).await,
            Code::InvalidArgument,
            "decision_id",
        );

        // A deadline that has already passed by the server's reckoning: the
        // server stops 5 ms early (DEADLINE_MARGIN in grpc.rs), so any timeout
        // under 5 ms is due on arrival. 4 ms, not 1: tonic's client enforces
        // the same timeout and answers CANCELLED itself when the round trip
        // takes longer (it did at 1 ms on a loaded 2-core machine).
        let mut req = tonic::Request::new(route_request(PROMPTS[3]));
        req.set_timeout(Duration::from_millis(4));
        assert_status(c.route(req).await, Code::DeadlineExceeded, "deadline");

        // Still serving after all that.
        c.classify(pb::ClassifyRequest {
            prompt: PROMPTS[4].into(),
        })
        .await
        .unwrap();

        // Metrics.
        let body = http_get(server.metrics.as_deref().unwrap(), "/metrics").await;
        for want in [
            "pointsman_requests_total{code=\"Ok\",method=\"Route\"}",
            "pointsman_requests_total{code=\"InvalidArgument\",method=\"Route\"}",
            "pointsman_request_duration_seconds_bucket",
            "pointsman_batch_size_bucket",
            "pointsman_queue_depth",
            "pointsman_routes_total{model=\"cheap\"}",
            "pointsman_cost_saved_usd_total",
            "pointsman_typical_failure_bucket{le=\"0.05\"}",
        ] {
            assert!(body.contains(want), "metrics lack {want}:\n{body}");
        }
        // Every decision is observed once: each successful Route (counted
        // by pointsman_requests_total{code="Ok",method="Route"}) and each
        // answered item of the RouteBatch above.
        let value = |name: &str| -> f64 {
            body.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or_else(|| panic!("no {name} in\n{body}"))
                .parse()
                .unwrap()
        };
        let routed = value("pointsman_requests_total{code=\"Ok\",method=\"Route\"}");
        assert!(routed >= 2.0, "{routed}");
        assert_eq!(value("pointsman_typical_failure_count"), routed + 1.0);
        assert!(value("pointsman_typical_failure_sum") > 0.0);
    });
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

#[test]
fn route_without_artifact_is_failed_precondition_but_classify_works() {
    let _g = serial();
    let server = Server::start(Options {
        artifact: false,
        extra: vec![],
    });
    runtime(4).block_on(async {
        let mut c = server.client().await;
        assert_status(
            c.route(route_request(PROMPTS[0])).await,
            Code::FailedPrecondition,
            "router artifact",
        );
        c.classify(pb::ClassifyRequest {
            prompt: PROMPTS[0].into(),
        })
        .await
        .unwrap();
    });
}

#[test]
fn acknowledged_outcomes_survive_kill_9() {
    let _g = serial();
    let mut server = Server::start(Options::default());
    let n = 12;
    let ids = runtime(4).block_on(async {
        let mut c = server.client().await;
        let mut ids = Vec::new();
        for i in 0..n {
            let r = c
                .route(route_request(PROMPTS[i % PROMPTS.len()]))
                .await
                .unwrap()
                .into_inner();
            let ack = c
                .report_outcome(pb::ReportOutcomeRequest {
                    decision_id: r.decision_id.clone(),
                    model: r.model.clone(),
                    score: (i % 2) as f64,
                    cost_usd: Some(0.001),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(ack.into_inner().outcomes_for_decision, 1);
            ids.push(r.decision_id);
        }
        ids
    });
    // No graceful anything: SIGKILL right after the last acknowledgement.
    server.signal("-9");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let lines = export_with_outcomes(&server.store);
    assert_eq!(lines.len(), n);
    for (i, (line, id)) in lines.iter().zip(&ids).enumerate() {
        assert_eq!(line["id"], id.as_str());
        let outcomes = line["outcomes"].as_object().unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            outcomes.values().next().unwrap()["score"].as_f64(),
            Some((i % 2) as f64)
        );
        assert_eq!(
            line["prompt"], "[prompt not stored]",
            "prompts are not stored by default"
        );
        assert_eq!(line["embedding"].as_array().unwrap().len(), 384);
    }
}

#[test]
fn prompts_are_stored_only_when_asked() {
    let _g = serial();
    let server = Server::start(Options {
        artifact: true,
        extra: vec!["--store-prompts".into()],
    });
    runtime(4).block_on(async {
        let mut c = server.client().await;
        let r = c
            .route(route_request(PROMPTS[5]))
            .await
            .unwrap()
            .into_inner();
        c.report_outcome(pb::ReportOutcomeRequest {
            decision_id: r.decision_id,
            model: r.model,
            score: 1.0,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let line = &export_with_outcomes(&server.store)[0];
    assert_eq!(line["prompt"], PROMPTS[5]);
}

#[test]
fn bounded_load_ends_ok_or_resource_exhausted_then_sigterm_drains() {
    let _g = serial();
    // A tiny queue so a fixed crowd of clients overflows it; no prompt
    // cache, or the clients' repeated prompts would never reach the queue.
    let extra = [
        "--queue-capacity",
        "4",
        "--max-batch",
        "4",
        "--max-wait-ms",
        "2",
        "--prompt-cache",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let mut server = Server::start(Options {
        artifact: true,
        extra,
    });
    let (ok, exhausted, other) = runtime(4).block_on(async {
        let clients = 24;
        let until = Instant::now() + Duration::from_secs(4);
        let mut tasks = Vec::new();
        for i in 0..clients {
            let mut c = server.client().await;
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut ex, mut other) = (0, 0, Vec::new());
                while Instant::now() < until {
                    match c.route(route_request(PROMPTS[i % PROMPTS.len()])).await {
                        Ok(_) => ok += 1,
                        Err(s) if s.code() == Code::ResourceExhausted => ex += 1,
                        Err(s) => other.push(s),
                    }
                }
                (ok, ex, other)
            }));
        }
        let mut sum = (0, 0, Vec::new());
        for t in tasks {
            let (a, b, c) = t.await.unwrap();
            sum.0 += a;
            sum.1 += b;
            sum.2.extend(c);
        }
        sum
    });
    assert!(
        other.is_empty(),
        "every request must end OK or RESOURCE_EXHAUSTED: {other:?}"
    );
    assert!(ok > 0 && exhausted > 0, "ok {ok}, exhausted {exhausted}");

    // SIGTERM after the load: the process exits 0. That a call in flight
    // at SIGTERM is answered is tested deterministically in
    // serve_hardening.rs (a_call_in_flight_at_sigterm_is_answered_...).
    server.signal("-TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
}
