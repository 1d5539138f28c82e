//! The retraining loop end to end, hot reload under load, rollback, and
//! bearer-token auth, against the real `pointsman serve` over 127.0.0.1.

mod serve_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pointsman_server::pb;
use serve_support::*;
use tonic::Code;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Route prompts, report that `cheap` fails and `strong` succeeds, export,
/// retrain from the store, reload with SIGHUP while clients keep routing
/// (none may fail), see the routing move to `strong`, then roll back.
#[test]
fn outcomes_retrain_reload_under_load_changes_routing_and_rolls_back() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = Server::start(Options::default());
    let rt = runtime(4);
    rt.block_on(async {
        let mut c = server.client().await;
        for round in 0..4 {
            let rs = c
                .route_batch(pb::RouteBatchRequest {
                    requests: PROMPTS.iter().map(|p| route_request(p)).collect(),
                })
                .await
                .unwrap()
                .into_inner();
            for item in rs.items {
                let Some(pb::route_batch_item::Result::Response(r)) = item.result else {
                    panic!("{item:?}")
                };
                assert_eq!(
                    r.model, "cheap",
                    "round {round}: the first artifact prefers cheap"
                );
                for (model, score) in [("cheap", 0.0), ("strong", 1.0)] {
                    c.report_outcome(pb::ReportOutcomeRequest {
                        decision_id: r.decision_id.clone(),
                        model: model.into(),
                        score,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                }
            }
        }
    });

    // Export: one record per decision, outcomes keyed by model.
    let lines = export_with_outcomes(&server.store);
    assert_eq!(lines.len(), 4 * PROMPTS.len());
    assert!(
        lines
            .iter()
            .all(|l| l["outcomes"]["cheap"]["score"] == 0.0
                && l["outcomes"]["strong"]["score"] == 1.0)
    );

    // Retrain into a new artifact, then copy it over the served path (atomic rename).
    let new = server.dir.path().join("router-v2.json");
    train_from_store(&server.store, &new, &["--rank", "0", "--epochs", "150"]);
    // The logged costs reach the fit: a cost model and the target table.
    let artifact: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&new).unwrap()).unwrap();
    assert!(artifact["cost"]["mean_cost_usd"][0].as_f64().unwrap() > 0.0);
    assert!(!artifact["target_table"]["points"]
        .as_array()
        .unwrap()
        .is_empty());
    let tmp = server.dir.path().join("router.json.tmp");
    std::fs::copy(&new, &tmp).unwrap();
    std::fs::rename(&tmp, &server.router).unwrap();

    rt.block_on(async {
        // Clients keep routing across the reload; every call must succeed.
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        #[allow(clippy::needless_range_loop)] // i also seeds which prompt each client sends
        for i in 0..6 {
            let mut c = server.client().await;
            let stop = stop.clone();
            load.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .route(route_request(PROMPTS[i]))
                        .await
                        .expect("no request fails during a reload");
                    assert!(r.into_inner().versions.unwrap().generation >= 1);
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.signal("-HUP");
        let mut c = server.client().await;
        let until = Instant::now() + Duration::from_secs(10);
        let r = loop {
            let r = c
                .route(route_request(PROMPTS[1]))
                .await
                .unwrap()
                .into_inner();
            if r.versions.as_ref().unwrap().generation == 2 || Instant::now() > until {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        for t in load {
            assert!(t.await.unwrap() > 0);
        }
        assert_eq!(
            r.versions.as_ref().unwrap().generation,
            2,
            "SIGHUP reloaded the artifact"
        );
        for p in PROMPTS {
            let r = c.route(route_request(p)).await.unwrap().into_inner();
            assert_eq!(
                r.model, "strong",
                "after retraining on the outcomes: {p}: {:?}",
                r.candidates
            );
            let cheap = r.candidates.iter().find(|c| c.model == "cheap").unwrap();
            assert!(cheap.p_success < 0.5, "{:?}", r.candidates);
        }

        // Roll back to the first artifact: cheap again.
        let mut admin = pb::admin_client::AdminClient::new(server.channel().await);
        let v = admin
            .rollback(pb::RollbackRequest {})
            .await
            .unwrap()
            .into_inner()
            .versions
            .unwrap();
        assert_eq!(v.generation, 1);
        assert_eq!(
            c.route(route_request(PROMPTS[1]))
                .await
                .unwrap()
                .into_inner()
                .model,
            "cheap"
        );
        // A reload that fails (broken artifact) keeps the current state.
        std::fs::write(&server.router, "{ not json").unwrap();
        let e = admin.reload(pb::ReloadRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("router.json"), "{e:?}");
        assert_eq!(
            c.route(route_request(PROMPTS[1]))
                .await
                .unwrap()
                .into_inner()
                .model,
            "cheap"
        );
    });
}

#[test]
fn bearer_token_guards_the_api_but_not_health() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let server = Server::start(Options {
        artifact: true,
        extra: vec!["--auth-token-file".into(), token.display().to_string()],
    });
    runtime(4).block_on(async {
        let mut c = server.client().await;
        let e = c
            .classify(pb::ClassifyRequest {
                prompt: PROMPTS[0].into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let mut req = tonic::Request::new(pb::ClassifyRequest {
            prompt: PROMPTS[0].into(),
        });
        req.metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(
            c.classify(req).await.unwrap_err().code(),
            Code::Unauthenticated
        );
        let mut req = tonic::Request::new(pb::ClassifyRequest {
            prompt: PROMPTS[0].into(),
        });
        req.metadata_mut()
            .insert("authorization", "Bearer s3cret-token".parse().unwrap());
        c.classify(req).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
    });
}

#[test]
fn tls_serves_with_a_certificate_from_a_test_ca() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    // A CA and a leaf for 127.0.0.1 signed by it (rustls refuses a CA certificate used as the server's).
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem 2>/dev/null
"#;
    let ok = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir.path())
        .output()
        .expect("openssl makes the test certificates");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ca = dir.path().join("ca.pem");
    let server = Server::start(Options {
        artifact: true,
        extra: vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            // The HTTP gateway serves the same certificate.
            "--http-listen".into(),
            "127.0.0.1:0".into(),
        ],
    });
    let https = |url: &str| {
        let check = format!(
            "import ssl, urllib.request; ctx = ssl.create_default_context(cafile={:?}); print(urllib.request.urlopen({url:?}, context=ctx).read().decode())",
            ca.display().to_string()
        );
        std::process::Command::new("python3")
            .args(["-c", &check])
            .output()
            .unwrap()
    };
    let http_addr = server.http.clone().unwrap();
    let out = https(&format!("https://{http_addr}/v1/models"));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pointsman/auto"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP to the TLS port gets no answer.
    let out = https(&format!("http://{http_addr}/v1/models"));
    assert!(!out.status.success());
    runtime(4).block_on(async {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig};
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", server.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = pb::router_client::RouterClient::new(channel);
        let r = c
            .route(route_request(PROMPTS[2]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.model, "cheap");
        // Plaintext to a TLS port fails.
        let plain = Channel::from_shared(server.url()).unwrap().connect().await;
        if let Ok(ch) = plain {
            assert!(pb::router_client::RouterClient::new(ch)
                .route(route_request(PROMPTS[2]))
                .await
                .is_err());
        }
    });
}
