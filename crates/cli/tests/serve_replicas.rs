//! Many replicas, one PostgreSQL store (issue 15): two real `pointsman
//! serve` processes on one database. Outcomes are reported through the
//! replica that did not decide; one replica is killed with SIGKILL under
//! load and every acknowledged outcome must be in the store while the
//! other keeps serving; a router artifact published to the store reaches
//! both replicas, an invalid one reaches neither, and a rollback reaches
//! both.
//!
//! Needs a PostgreSQL server: run under scripts/with-postgres (scripts/test
//! does), which sets POINTSMAN_TEST_POSTGRES_URL. Without it the tests
//! print SKIPPED and pass, unless POINTSMAN_REQUIRE_POSTGRES=1.

mod serve_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pointsman_server::pb;
use serve_support::*;

/// A new database on the test server, or None (SKIPPED) without one.
fn database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("POINTSMAN_TEST_POSTGRES_URL") else {
        assert_ne!(
            std::env::var("POINTSMAN_REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "POINTSMAN_REQUIRE_POSTGRES=1 but POINTSMAN_TEST_POSTGRES_URL is not set: run under scripts/with-postgres"
        );
        eprintln!("SKIPPED {test}: POINTSMAN_TEST_POSTGRES_URL is not set (run under scripts/with-postgres)");
        return None;
    };
    let name = format!("cli_{}_{test}", std::process::id());
    Some(pointsman_store::PostgresStore::create_database(&admin, &name).unwrap())
}

/// One replica on the store at `url`, polling for published artifacts
/// every 0.2 s.
fn replica(url: &str) -> Server {
    Server::start_with_store(
        Options {
            extra: vec!["--publish-poll".into(), "0.2".into()],
            ..Default::default()
        },
        Some(PathBuf::from(url)),
    )
}

fn report(id: &str, model: &str, score: f64) -> pb::ReportOutcomeRequest {
    pb::ReportOutcomeRequest {
        decision_id: id.into(),
        model: model.into(),
        score,
        ..Default::default()
    }
}

#[test]
fn outcomes_cross_replicas_and_survive_a_replica_killed_under_load() {
    let Some(url) = database("replicas_kill") else {
        return;
    };
    let mut a = replica(&url);
    let b = replica(&url);
    let rt = runtime(2);
    // (decision id, model, score) of every outcome a replica acknowledged.
    let acked: Arc<Mutex<Vec<(String, String, f64)>>> = Arc::default();
    let routed = Arc::new(AtomicUsize::new(0));
    let killed = rt.block_on(async {
        let ca = a.client().await;
        let cb = b.client().await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..8usize {
            let (mut ca, mut cb) = (ca.clone(), cb.clone());
            let (acked, routed, stop) = (acked.clone(), routed.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    // Decide on one replica, report through the other.
                    let (decide, other) = if (t + i).is_multiple_of(2) {
                        (&mut ca, &mut cb)
                    } else {
                        (&mut cb, &mut ca)
                    };
                    let prompt = format!("{} (task {t}, call {i})", PROMPTS[i % PROMPTS.len()]);
                    let Ok(r) = decide.route(route_request(&prompt)).await else {
                        continue;
                    };
                    let r = r.into_inner();
                    routed.fetch_add(1, Ordering::SeqCst);
                    let score = ((t * 1000 + i) % 97) as f64 / 96.0;
                    let rep = report(&r.decision_id, &r.model, score);
                    // Once the other replica is dead, the client retries
                    // on the one that answered (as behind a balancer).
                    let reported = match other.report_outcome(rep.clone()).await {
                        Ok(_) => true,
                        Err(_) => decide.report_outcome(rep).await.is_ok(),
                    };
                    if reported {
                        acked.lock().unwrap().push((r.decision_id, r.model, score));
                    }
                }
            }));
        }
        // Let both replicas take load, then kill A mid-run.
        let until = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < 80 {
            assert!(Instant::now() < until, "no load got through");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.signal("-KILL");
        let killed_at = acked.lock().unwrap().len();
        // Half of the calls still go to the dead replica and fail; the
        // others must keep getting through B (their outcomes reported
        // there too, once A does not answer).
        let until = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < killed_at + 80 {
            assert!(
                Instant::now() < until,
                "B stopped serving after A was killed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        killed_at
    });
    assert!(a.wait_exit(Duration::from_secs(5)).is_some());
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "routed {}, outcomes acknowledged {} ({} before the kill)",
        routed.load(Ordering::SeqCst),
        acked.len(),
        killed
    );
    // B alone: route and report, all on B, every call answered.
    rt.block_on(async {
        let mut cb = b.client().await;
        for p in PROMPTS {
            let r = cb.route(route_request(p)).await.unwrap().into_inner();
            cb.report_outcome(report(&r.decision_id, &r.model, 1.0))
                .await
                .unwrap();
        }
    });
    // Every acknowledged outcome is in the store, with its score.
    let records = export_all(Path::new(&url));
    // Scores to 1e-9: serde_json's default float parsing (no
    // float_roundtrip feature) may be one ulp off the printed value.
    let key = |s: f64| (s * 1e9).round() as i64;
    let stored: BTreeSet<(String, String, i64)> = records
        .iter()
        .flat_map(|r| {
            let id = r["id"].as_str().unwrap().to_string();
            // A decision without outcomes has no `outcomes` field.
            r["outcomes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(move |(m, o)| (id.clone(), m.clone(), key(o["score"].as_f64().unwrap())))
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, m, s)| !stored.contains(&(id.clone(), m.clone(), key(*s))))
        .collect();
    for (id, _, _) in missing.iter().take(5) {
        let r = records.iter().find(|r| r["id"] == id.as_str());
        eprintln!("missing {id}: stored as {:?}", r.map(|r| &r["outcomes"]));
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged outcomes not in the store: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(records.len() >= acked.len() + PROMPTS.len());
}

/// The published version counter with this result label.
fn published(server: &Server, result: &str) -> f64 {
    let text = metrics_text(server, Duration::from_secs(5)).expect("metrics answer");
    let key = format!("pointsman_published_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `server` routes to `model` with a published artifact
/// version `store-v{version}`.
fn wait_for_route(rt: &tokio::runtime::Runtime, server: &Server, model: &str, version: i64) {
    let want = format!("store-v{version}@");
    rt.block_on(async {
        let mut c = server.client().await;
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let r = c
                .route(route_request(PROMPTS[0]))
                .await
                .unwrap()
                .into_inner();
            let served = r.versions.map(|v| v.router_artifact).unwrap_or_default();
            if r.model == model && served.starts_with(&want) {
                return;
            }
            assert!(
                Instant::now() < until,
                "{} still routes to {} with {served}, not {model} with {want}",
                server.addr,
                r.model
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn publish(url: &str, router: &Path) -> i64 {
    let out = pointsman(&[
        "store",
        "publish",
        "--store",
        url,
        "--router",
        router.to_str().unwrap(),
        "--note",
        "test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["version"].as_i64().unwrap()
}

#[test]
fn a_published_artifact_and_a_rollback_reach_every_replica() {
    let Some(url) = database("replicas_publish") else {
        return;
    };
    let a = replica(&url);
    let b = replica(&url);
    let rt = runtime(2);
    let dir = tempfile::tempdir().unwrap();
    // The artifact the replicas start with: both models always succeed, so
    // both route to `cheap`.
    // v1: only `strong` succeeds.
    let strong = dir.path().join("strong.json");
    write_artifact_with_scores(&strong, 0.0, 1.0);
    let v1 = publish(&url, &strong);
    for s in [&a, &b] {
        wait_for_route(&rt, s, "strong", v1);
    }
    // v2: fitted for another encoder. Each replica refuses it, keeps v1
    // and counts it.
    let foreign = dir.path().join("foreign.json");
    write_artifact_with_scores(&foreign, 1.0, 0.0);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&foreign).unwrap()).unwrap();
    json["encoder_id"] = "some-other-encoder@0000".into();
    std::fs::write(&foreign, json.to_string()).unwrap();
    let v2 = publish(&url, &foreign);
    for s in [&a, &b] {
        let until = Instant::now() + Duration::from_secs(20);
        while published(s, "invalid") < 1.0 {
            assert!(Instant::now() < until, "{} never tried v{v2}", s.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for_route(&rt, s, "strong", v1);
    }
    // v3: only `cheap` succeeds; then roll the fleet back to v1.
    let cheap = dir.path().join("cheap.json");
    write_artifact_with_scores(&cheap, 1.0, 0.0);
    let v3 = publish(&url, &cheap);
    for s in [&a, &b] {
        wait_for_route(&rt, s, "cheap", v3);
    }
    let out = pointsman(&[
        "store",
        "activate",
        "--store",
        &url,
        "--version",
        &v1.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [&a, &b] {
        wait_for_route(&rt, s, "strong", v1);
        assert_eq!(metric(s, "pointsman_published_version"), v1 as f64);
    }
    // A replica started now serves the active version from its first call.
    let c = replica(&url);
    rt.block_on(async {
        let r = c
            .client()
            .await
            .route(route_request(PROMPTS[1]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.model, "strong");
        assert!(r
            .versions
            .unwrap()
            .router_artifact
            .starts_with(&format!("store-v{v1}@")));
    });
    // The versions list says which is active.
    let out = pointsman(&["store", "versions", "--store", &url]);
    let active: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["active"] == true)
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(active, vec![v1]);
}

/// `pointsman_NAME{...}` summed over its series (0 when none).
fn metric_total(server: &Server, name: &str) -> f64 {
    let text = metrics_text(server, Duration::from_secs(5)).expect("metrics answer");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Budgets across replicas (docs/ROLLOUT.md, "Budgets across replicas"):
/// a tenant whose budget is crossed by the sum of two replicas' traffic,
/// though by neither replica's alone, is refused on both once the spend
/// counters have synced through the shared store (`--spend-sync 0.3`).
#[test]
fn a_budget_crossed_by_two_replicas_together_applies_on_both_after_a_sync() {
    let Some(url) = database("replicas_budget") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    // Each call below costs about 0.004 USD (20,000 expected output tokens
    // of `cheap` at 0.2 USD per million): 5 calls a replica, 0.02 USD, stay
    // under the budget; both replicas' 10 calls, 0.04 USD, cross it.
    std::fs::write(
        &tenants,
        "[tenants.shared]\nbudget_usd = 0.03\non_budget = \"reject\"\n",
    )
    .unwrap();
    let start = || {
        Server::start_with_store(
            Options {
                extra: vec![
                    "--tenants".into(),
                    tenants.to_str().unwrap().into(),
                    "--spend-sync".into(),
                    "0.3".into(),
                ],
                ..Default::default()
            },
            Some(PathBuf::from(&url)),
        )
    };
    let (a, b) = (start(), start());
    let request = |i: usize| pb::RouteRequest {
        prompt: PROMPTS[i % PROMPTS.len()].into(),
        tenant: Some("shared".into()),
        expected_output_tokens: Some(20_000),
        ..Default::default()
    };
    let rt = runtime(2);
    rt.block_on(async {
        let mut ca = a.client().await;
        let mut cb = b.client().await;
        // Alternate the replicas: a call may already be refused if a sync
        // showed the other's spend, but only once the sum crossed the budget.
        let (mut own_a, mut own_b) = (0.0, 0.0);
        for i in 0..10 {
            let (c, own) = if i % 2 == 0 {
                (&mut ca, &mut own_a)
            } else {
                (&mut cb, &mut own_b)
            };
            match c.route(request(i)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    assert_eq!(r.model, "cheap");
                    *own += r.candidates[0].expected_cost_usd;
                }
                Err(e) => {
                    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                    assert!(own_a + own_b >= 0.03, "refused at call {i} under budget");
                }
            }
        }
        eprintln!("own spend: replica A {own_a:.6} USD, replica B {own_b:.6} USD, budget 0.03");
        assert!(own_a < 0.03 && own_b < 0.03, "{own_a} {own_b}");
        assert!(own_a + own_b >= 0.03, "{own_a} + {own_b}");
        // Past the sync interval (0.3 s) with margin: both refuse.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for (name, c) in [("A", &mut ca), ("B", &mut cb)] {
            let e = c.route(request(0)).await.unwrap_err();
            assert_eq!(
                e.code(),
                tonic::Code::ResourceExhausted,
                "replica {name}: {e:?}"
            );
            assert!(
                e.message().contains("tenant `shared`") && e.message().contains("0.03 USD per day"),
                "replica {name}: {}",
                e.message()
            );
        }
        // Other tenants are unaffected.
        let r = ca
            .route(route_request(PROMPTS[0]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.model, "cheap");
    });
    for s in [&a, &b] {
        assert!(metric_total(s, "pointsman_spend_syncs_total") >= 1.0);
        let text = metrics_text(s, Duration::from_secs(5)).unwrap();
        assert!(
            !text.contains("pointsman_spend_syncs_total{result=\"error\"}"),
            "no sync failed"
        );
    }
}

/// `--candidate-router` at start-up records a rollout event in the store;
/// on PostgreSQL that call must run off the async runtime (the client
/// blocks on a runtime of its own and panics inside another).
#[test]
fn a_start_up_candidate_is_recorded_in_postgres() {
    let Some(url) = database("replicas_candidate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate.json");
    write_artifact_with_scores(&candidate, 0.0, 1.0);
    let server = Server::start_with_store(
        Options {
            extra: vec![
                "--candidate-router".into(),
                candidate.to_str().unwrap().into(),
                "--rollout".into(),
                "shadow".into(),
            ],
            ..Default::default()
        },
        Some(PathBuf::from(&url)),
    );
    let rt = runtime(1);
    let r = rt.block_on(async {
        let mut c = server.client().await;
        c.route(route_request(PROMPTS[0]))
            .await
            .unwrap()
            .into_inner()
    });
    assert!(!r.model.is_empty());
    let store = pointsman_store::open_store(&url).unwrap();
    let events = store.rollout_events().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "load" && e.who == "serve --candidate-router"),
        "{events:?}"
    );
}
