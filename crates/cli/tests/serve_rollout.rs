//! Shadow and canary rollout, promote and abort, and per-tenant budgets,
//! against the real `pointsman serve` (real encoder, real SQLite store)
//! over 127.0.0.1 (docs/ROLLOUT.md).

mod serve_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pointsman_server::pb;
use pointsman_server::pb::admin_client::AdminClient;
use pointsman_store::OutcomeStore;
use serve_support::*;
use tonic::Code;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts serve with the live artifact preferring `cheap` (both models
/// always succeed) unless `live_strong`, a candidate preferring `strong`
/// (cheap always fails) at `candidate.json`, and `extra` flags.
fn start(live_strong: bool, extra: &[&str], store: Option<PathBuf>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let router = dir.path().join("router.json");
    if live_strong {
        write_artifact_with_scores(&router, 0.0, 1.0);
    } else {
        write_artifact(&router);
    }
    write_artifact_with_scores(&dir.path().join("candidate.json"), 0.0, 1.0);
    let store = store.unwrap_or_else(|| dir.path().join("store.db"));
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--router",
        router.to_str().unwrap(),
        "--max-prompt-bytes",
        "4096",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for e in extra {
        args.push(e.replace("{dir}", dir.path().to_str().unwrap()));
    }
    Server::spawn(dir, args, store, router, catalog)
}

fn candidate(server: &Server) -> PathBuf {
    server.dir.path().join("candidate.json")
}

async fn admin(server: &Server) -> AdminClient<tonic::transport::Channel> {
    AdminClient::new(server.channel().await)
}

fn tenant_request(prompt: &str, tenant: Option<String>) -> pb::RouteRequest {
    pb::RouteRequest {
        prompt: prompt.into(),
        tenant,
        ..Default::default()
    }
}

/// Routes every request in batches; every item must succeed.
async fn route_all(server: &Server, requests: Vec<pb::RouteRequest>) -> Vec<pb::RouteResponse> {
    let mut c = server.client().await;
    let mut out = Vec::new();
    for chunk in requests.chunks(200) {
        let rs = c
            .route_batch(pb::RouteBatchRequest {
                requests: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        for item in rs.items {
            match item.result {
                Some(pb::route_batch_item::Result::Response(r)) => out.push(r),
                other => panic!("{other:?}"),
            }
        }
    }
    out
}

/// `pointsman_NAME{labels}` summed over the series whose labels contain
/// every one of `want` (0 when none).
fn metric_sum(server: &Server, name: &str, want: &[&str]) -> f64 {
    let text = metrics_text(server, Duration::from_secs(5)).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 4 standard errors of a binomial share: the bound the canary share is held to.
fn binomial_bound(p: f64, n: usize) -> f64 {
    4.0 * (p * (1.0 - p) / n as f64).sqrt()
}

/// Canary at 0.2: the share of requests the candidate decides matches 0.2
/// within 4 binomial standard errors, by tenant and (for requests without
/// a tenant) by request; a tenant always lands on the same arm; the arm
/// that decided is in the response, the store and the metrics, and each
/// row logs the other arm's decision beside it. Then a toy
/// simulated world reports outcomes, and the success rate and cost per
/// arm are read back from the metrics (docs/EVALUATION.md, "What the
/// canary then showed").
#[test]
fn canary_share_is_stable_by_tenant_and_within_binomial_error() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = start(
        false,
        &[
            "--candidate-router",
            "{dir}/candidate.json",
            "--rollout",
            "canary:0.2",
        ],
        None,
    );
    let rt = runtime(2);
    let (n_tenants, repeats, n_anonymous) = (500, 3, 500);
    let responses = rt.block_on(async {
        let mut requests = Vec::new();
        for r in 0..repeats {
            for t in 0..n_tenants {
                let prompt = PROMPTS[(t + r) % PROMPTS.len()];
                requests.push(tenant_request(prompt, Some(format!("tenant-{t}"))));
            }
        }
        for i in 0..n_anonymous {
            requests.push(tenant_request(PROMPTS[i % PROMPTS.len()], None));
        }
        route_all(&server, requests).await
    });
    // Per tenant: one arm across its repeats.
    let mut arm_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut canary_tenants, mut canary_anonymous) = (0usize, 0usize);
    for (i, r) in responses.iter().enumerate() {
        let v = r.versions.as_ref().unwrap();
        // The candidate prefers strong, the live artifact cheap.
        match v.arm.as_str() {
            "canary" => {
                assert_eq!(r.model, "strong", "{r:?}");
                assert!(v.router_artifact.starts_with("candidate.json@"), "{v:?}");
            }
            "live" => {
                assert_eq!(r.model, "cheap", "{r:?}");
                assert!(v.router_artifact.starts_with("router.json@"), "{v:?}");
            }
            other => panic!("arm {other:?}"),
        }
        if i < repeats * n_tenants {
            arm_of
                .entry(format!("tenant-{}", i % n_tenants))
                .or_default()
                .insert(v.arm.clone());
        } else if v.arm == "canary" {
            canary_anonymous += 1;
        }
    }
    for (t, arms) in &arm_of {
        assert_eq!(arms.len(), 1, "{t} landed on {arms:?}");
        if arms.contains("canary") {
            canary_tenants += 1;
        }
    }
    let p = 0.2;
    let share_t = canary_tenants as f64 / n_tenants as f64;
    let share_a = canary_anonymous as f64 / n_anonymous as f64;
    eprintln!(
        "canary share: {canary_tenants}/{n_tenants} tenants = {share_t:.3}, {canary_anonymous}/{n_anonymous} requests without a tenant = {share_a:.3} (bound ±{:.3})",
        binomial_bound(p, n_tenants)
    );
    assert!(
        (share_t - p).abs() <= binomial_bound(p, n_tenants),
        "{share_t}"
    );
    assert!(
        (share_a - p).abs() <= binomial_bound(p, n_anonymous),
        "{share_a}"
    );

    // The store logs the arm with each decision.
    let records = export_all(&server.store);
    assert_eq!(records.len(), responses.len());
    let canary_logged = records
        .iter()
        .filter(|r| r["versions"]["arm"] == "canary")
        .count();
    assert_eq!(
        canary_logged,
        canary_tenants * repeats + canary_anonymous,
        "logged arms match the answers"
    );
    assert_eq!(
        metric_sum(
            &server,
            "pointsman_artifact_routes_total",
            &["artifact=\"candidate\""]
        ),
        canary_logged as f64
    );
    // Each row also logs the other arm's decision (the `shadow` field),
    // so off-policy comparisons have both: a canary row the live
    // artifact's choice (cheap: both models always succeed for it), a
    // live row the candidate's (strong: cheap always fails for it).
    for r in &records {
        let s = &r["shadow"];
        let (artifact, model) = match r["versions"]["arm"].as_str() {
            Some("canary") => ("router.json@", "cheap"),
            _ => ("candidate.json@", "strong"),
        };
        assert!(
            s["artifact"].as_str().unwrap().starts_with(artifact),
            "{} row: {s}",
            r["versions"]["arm"]
        );
        assert_eq!(s["model"], model, "{s}");
        assert_ne!(s["model"], r["chosen_model"], "the other arm's choice");
        assert!(s["expected_cost_usd"].as_f64().unwrap() > 0.0, "{s}");
    }
    // The shadow metrics stay the candidate's: live-arm rows only.
    assert_eq!(
        metric_sum(&server, "pointsman_shadow_routes_total", &[]),
        (records.len() - canary_logged) as f64
    );

    // A toy simulated world: strong succeeds with P 0.9; cheap with P 0.3
    // on the first four prompts and 0.8 on the others. Outcomes are drawn
    // from it for the chosen model and reported with the catalog cost.
    let truth = |model: &str, prompt: usize| match (model, prompt < 4) {
        ("strong", _) => 0.9,
        (_, true) => 0.3,
        (_, false) => 0.8,
    };
    let mut seed = 42u64;
    let mut uniform = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let prompt_index = |i: usize| {
        if i < repeats * n_tenants {
            (i % n_tenants + i / n_tenants) % PROMPTS.len()
        } else {
            (i - repeats * n_tenants) % PROMPTS.len()
        }
    };
    let mut expected: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    rt.block_on(async {
        let mut c = server.client().await;
        for (i, r) in responses.iter().enumerate() {
            let p = truth(&r.model, prompt_index(i));
            let arm = if r.versions.as_ref().unwrap().arm == "canary" {
                "candidate"
            } else {
                "live"
            };
            let e = expected.entry(arm).or_default();
            e.0 += p;
            e.1 += 1;
            let score = if uniform() < p { 1.0 } else { 0.0 };
            c.report_outcome(pb::ReportOutcomeRequest {
                decision_id: r.decision_id.clone(),
                model: r.model.clone(),
                score,
                cost_usd: Some(r.candidates[0].expected_cost_usd),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    });
    eprintln!(
        "arm        decisions  success (reported)  success (truth)  mean cost USD (reported)"
    );
    for arm in ["live", "candidate"] {
        let label = format!("artifact=\"{arm}\"");
        let n = metric_sum(&server, "pointsman_artifact_outcomes_total", &[&label]);
        let score = metric_sum(&server, "pointsman_artifact_outcome_score_total", &[&label]);
        let cost = metric_sum(
            &server,
            "pointsman_artifact_reported_cost_usd_total",
            &[&label],
        );
        let (sum_p, count) = expected[arm];
        assert_eq!(n as usize, count, "{arm}: one outcome per decision");
        let (rate, truth_rate) = (score / n, sum_p / count as f64);
        eprintln!(
            "{arm:<10} {count:>9}  {rate:>18.3}  {truth_rate:>15.3}  {:>24.6}",
            cost / n
        );
        // The reported rate is a binomial draw around the truth's mean.
        assert!(
            (rate - truth_rate).abs() <= binomial_bound(truth_rate.clamp(0.05, 0.95), count),
            "{arm}: {rate} vs {truth_rate}"
        );
    }
}

/// Shadow: every logged decision carries the candidate's decision, the
/// live artifact still decides, and its choices are the ones it makes
/// once the candidate is dropped (Abort).
#[test]
fn shadow_logs_the_candidate_and_leaves_the_live_choice_alone() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = start(
        false,
        &[
            "--candidate-router",
            "{dir}/candidate.json",
            "--rollout",
            "shadow",
        ],
        None,
    );
    let rt = runtime(2);
    let requests: Vec<_> = PROMPTS
        .iter()
        .map(|p| tenant_request(p, Some("t".into())))
        .collect();
    let (with_shadow, without) = rt.block_on(async {
        let with_shadow = route_all(&server, requests.clone()).await;
        let status = admin(&server)
            .await
            .abort(pb::RolloutActionRequest {
                who: "test".into(),
                why: "compare without the candidate".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (status.mode.as_str(), status.candidate.as_str()),
            ("off", "")
        );
        (with_shadow, route_all(&server, requests).await)
    });
    let strip = |r: &pb::RouteResponse| {
        (
            r.model.clone(),
            r.fallbacks.clone(),
            r.candidates
                .iter()
                .map(|c| (c.model.clone(), c.p_success))
                .collect::<Vec<_>>(),
            r.versions.as_ref().unwrap().router_artifact.clone(),
        )
    };
    for (a, b) in with_shadow.iter().zip(&without) {
        assert_eq!(strip(a), strip(b), "the shadow changed the live decision");
        assert_eq!(a.model, "cheap");
        assert_eq!(a.versions.as_ref().unwrap().arm, "live");
        assert_eq!(b.versions.as_ref().unwrap().arm, "");
    }
    let records = export_all(&server.store);
    assert_eq!(records.len(), 2 * PROMPTS.len());
    let candidate_version = {
        let bytes = std::fs::read(candidate(&server)).unwrap();
        use sha2::Digest;
        format!(
            "candidate.json@{}",
            &hex::encode(sha2::Sha256::digest(&bytes))[..16]
        )
    };
    for r in &records[..PROMPTS.len()] {
        let s = &r["shadow"];
        assert_eq!(s["artifact"], candidate_version.as_str(), "{r}");
        assert_eq!(s["model"], "strong", "the candidate prefers strong: {r}");
        assert!(s["p_success"].as_f64().unwrap() > 0.5, "{s}");
        assert!(s["expected_cost_usd"].as_f64().unwrap() > 0.0, "{s}");
        assert_eq!(r["chosen_model"], "cheap");
    }
    for r in &records[PROMPTS.len()..] {
        assert!(r.get("shadow").is_none(), "no shadow after abort: {r}");
    }
    assert_eq!(
        metric_sum(
            &server,
            "pointsman_shadow_routes_total",
            &["model=\"strong\""]
        ),
        PROMPTS.len() as f64
    );
    assert_eq!(metric(&server, "pointsman_shadow_agreements_total"), 0.0);
}

/// Promote and abort through Admin calls and signals change what decides,
/// and each is recorded in the store's rollout_events.
#[test]
fn promote_and_abort_change_what_decides_and_are_recorded() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = start(false, &["--candidate-router", "{dir}/candidate.json"], None);
    let rt = runtime(2);
    let cand = candidate(&server).to_str().unwrap().to_string();
    rt.block_on(async {
        let mut a = admin(&server).await;
        let c = server.client().await;
        let route = || {
            let mut c = c.clone();
            async move {
                c.route(route_request(PROMPTS[0]))
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        // Shadow by default: the live artifact decides.
        let s = a
            .get_rollout(pb::GetRolloutRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.mode, "shadow");
        assert_eq!(route().await.model, "cheap");
        // Canary at 1.0: the candidate decides everything.
        let s = a
            .set_rollout_mode(pb::SetRolloutModeRequest {
                mode: "canary:1".into(),
                who: "test".into(),
                why: "all traffic".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.mode, "canary:1");
        let r = route().await;
        assert_eq!(
            (r.model.as_str(), r.versions.unwrap().arm.as_str()),
            ("strong", "canary")
        );
        // Abort: back to the live artifact.
        a.abort(pb::RolloutActionRequest {
            who: "test".into(),
            why: "bad".into(),
        })
        .await
        .unwrap();
        assert_eq!(route().await.model, "cheap");
        // Nothing to promote or abort now; a bad candidate names the field.
        let e = a
            .promote(pb::RolloutActionRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        let e = a
            .load_candidate(pb::LoadCandidateRequest {
                path: server.catalog.to_str().unwrap().into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with("path: "), "{}", e.message());
        let e = a
            .set_rollout_mode(pb::SetRolloutModeRequest {
                mode: "canary:2".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        // Load again, then promote with SIGUSR1.
        a.load_candidate(pb::LoadCandidateRequest {
            path: cand.clone(),
            mode: "shadow".into(),
            who: "test".into(),
            why: "second try".into(),
        })
        .await
        .unwrap();
        assert_eq!(route().await.model, "cheap");
        server.signal("-USR1");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let s = a
                .get_rollout(pb::GetRolloutRequest {})
                .await
                .unwrap()
                .into_inner();
            if s.mode == "off" {
                assert!(s.live.starts_with("candidate.json@"), "{s:?}");
                break;
            }
            assert!(Instant::now() < until, "SIGUSR1 did not promote: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = route().await;
        assert_eq!(r.model, "strong");
        let v = r.versions.unwrap();
        assert!(v.router_artifact.starts_with("candidate.json@"), "{v:?}");
        assert_eq!(v.arm, "");
        // A reload re-reads the promoted artifact, not the old --router.
        a.reload(pb::ReloadRequest {}).await.unwrap();
        assert_eq!(route().await.model, "strong");
        // Rollback undoes the reload, a second rollback... the reload's
        // previous state is the promoted one: still strong.
        a.rollback(pb::RollbackRequest {}).await.unwrap();
        assert_eq!(route().await.model, "strong");
    });
    let store = pointsman_store::SqliteStore::open(&server.store).unwrap();
    let events = store.rollout_events().unwrap();
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.who.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("load", "serve --candidate-router"),
            ("mode", "test"),
            ("abort", "test"),
            ("load", "test"),
            ("promote", "signal:SIGUSR1"),
        ]
    );
    let promote = &events[4];
    assert!(
        promote.from_version.starts_with("router.json@"),
        "{promote:?}"
    );
    assert!(
        promote.to_version.starts_with("candidate.json@"),
        "{promote:?}"
    );
    assert_eq!(events[2].why, "bad");
    assert_eq!(events[1].mode, "canary:1");
}

const TENANTS: &str = r#"
[tenants.capped]
budget_usd = 0.02
period = "day"
on_budget = "reject"

[tenants.thrifty]
budget_usd = 0.02
on_budget = "downgrade"

[tenants.open]
"#;

/// Budgets: a tenant over its budget is refused (RESOURCE_EXHAUSTED on
/// gRPC, 429 on HTTP, naming tenant and budget) or downgraded to the
/// cheapest model; other tenants are unaffected; a restart seeds the
/// spend from the store.
#[test]
fn budgets_reject_or_downgrade_and_leave_other_tenants_alone() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, TENANTS).unwrap();
    let store = dir.path().join("store.db");
    let flags = [
        "--tenants",
        tenants.to_str().unwrap(),
        "--http-listen",
        "127.0.0.1:0",
    ];
    let server = start(true, &flags, Some(store.clone()));
    let rt = runtime(2);
    // strong costs about 0.008 USD a call here: the third call of a
    // tenant passes 0.02 USD, so the fourth is over budget.
    let calls = 6;
    let (capped, thrifty, open) = rt.block_on(async {
        let c = server.client().await;
        let run = |tenant: &'static str| {
            let mut c = c.clone();
            async move {
                let mut out = Vec::new();
                for i in 0..calls {
                    out.push(
                        c.route(tenant_request(
                            PROMPTS[i % PROMPTS.len()],
                            Some(tenant.into()),
                        ))
                        .await
                        .map(|r| r.into_inner()),
                    );
                }
                out
            }
        };
        let capped = run("capped").await;
        let thrifty = run("thrifty").await;
        let open = run("open").await;
        (capped, thrifty, open)
    });
    // The first refused call is the first whose tenant had spent 0.02 USD.
    let first_over = capped
        .iter()
        .position(|r| r.is_err())
        .expect("a call was refused");
    let spent = |k: usize| -> f64 {
        capped[..k]
            .iter()
            .map(|r| r.as_ref().unwrap().candidates[0].expected_cost_usd)
            .sum()
    };
    assert!(first_over >= 2, "{first_over}");
    assert!(spent(first_over) >= 0.02, "{}", spent(first_over));
    assert!(spent(first_over - 1) < 0.02, "{}", spent(first_over - 1));
    for (i, r) in capped.iter().enumerate() {
        if i < first_over {
            assert_eq!(r.as_ref().unwrap().model, "strong", "call {i}");
        } else {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.code(), Code::ResourceExhausted, "call {i}: {e:?}");
            assert!(
                e.message().contains("tenant `capped`") && e.message().contains("0.02 USD per day"),
                "{}",
                e.message()
            );
        }
    }
    for (i, r) in thrifty.iter().enumerate() {
        let r = r.as_ref().unwrap();
        if i < first_over {
            assert_eq!(r.model, "strong", "call {i}");
        } else {
            assert_eq!(r.model, "cheap", "call {i}: downgraded");
            assert!(r.reason.contains("over its spend budget"), "{}", r.reason);
            assert_eq!(r.fallbacks, ["strong"]);
        }
    }
    for r in &open {
        assert_eq!(r.as_ref().unwrap().model, "strong", "no budget, unaffected");
    }
    // HTTP: 429 naming tenant and budget.
    let http = server.http.clone().unwrap();
    let (status, body) = http_post(
        &http,
        "/v1/route",
        r#"{"prompt": "hi there", "tenant": "capped"}"#,
    );
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("tenant `capped`") && body.contains("budget_exhausted"),
        "{body}"
    );
    let (status, body) = http_post(
        &http,
        "/v1/route",
        r#"{"prompt": "hi there", "tenant": "open"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(metric_sum(&server, "pointsman_budget_breaches_total", &["reject"]) >= 1.0);
    drop(server);

    // A restart on the same store counts this period's spend again.
    let server = start(true, &flags, Some(store));
    rt.block_on(async {
        let mut c = server.client().await;
        let e = c
            .route(tenant_request(PROMPTS[0], Some("capped".into())))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        let r = c
            .route(tenant_request(PROMPTS[0], Some("open".into())))
            .await
            .unwrap();
        assert_eq!(r.into_inner().model, "strong");
    });
}

/// A reported cost replaces the expected one in the tenant's spend
/// (docs/ROLLOUT.md, "Budgets"): an outcome for the chosen model with a
/// `cost_usd` over the budget makes the next call over budget; reported
/// again lower (last wins) it frees the budget; a cost reported for a model
/// the decision did not choose is not the tenant's spend. The store's
/// shared counter holds the same total after a sync.
#[test]
fn a_reported_cost_replaces_the_expected_one_in_the_budget() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        "[tenants.metered]\nbudget_usd = 0.05\non_budget = \"reject\"\n",
    )
    .unwrap();
    let store = dir.path().join("store.db");
    let flags = [
        "--tenants",
        tenants.to_str().unwrap(),
        "--spend-sync",
        "0.2",
    ];
    let server = start(true, &flags, Some(store.clone()));
    let rt = runtime(2);
    let report = |id: &str, model: &str, cost: f64| pb::ReportOutcomeRequest {
        decision_id: id.into(),
        model: model.into(),
        score: 1.0,
        cost_usd: Some(cost),
        ..Default::default()
    };
    let metered = |i: usize| tenant_request(PROMPTS[i % PROMPTS.len()], Some("metered".into()));
    let spent = rt.block_on(async {
        let mut c = server.client().await;
        // strong, about 0.008 USD expected: well under 0.05.
        let r1 = c.route(metered(0)).await.unwrap().into_inner();
        assert_eq!(r1.model, "strong");
        assert!(r1.candidates[0].expected_cost_usd < 0.02);
        // The call really cost 0.06 USD: over the budget.
        c.report_outcome(report(&r1.decision_id, "strong", 0.06))
            .await
            .unwrap();
        let e = c.route(metered(1)).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("0.060000 USD"), "{}", e.message());
        // Reported again, lower: the last report wins, the budget frees.
        c.report_outcome(report(&r1.decision_id, "strong", 0.001))
            .await
            .unwrap();
        let r2 = c.route(metered(2)).await.unwrap().into_inner();
        // Another model's cost on r2's prompt is not what r2 spent.
        c.report_outcome(report(&r2.decision_id, "cheap", 5.0))
            .await
            .unwrap();
        let r3 = c.route(metered(3)).await.unwrap().into_inner();
        0.001 + r2.candidates[0].expected_cost_usd + r3.candidates[0].expected_cost_usd
    });
    // The shared counter in the store, after a sync (0.2 s).
    let key = pointsman_store::SpendKey {
        tenant: "metered".into(),
        period: "day".into(),
        period_start_ms: {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            now - now % 86_400_000
        },
    };
    let s = pointsman_store::SqliteStore::open(&store).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let got = s.add_tenant_spend(&[(key.clone(), 0.0)]).unwrap()[0];
        if (got - spent).abs() < 1e-9 {
            break;
        }
        assert!(Instant::now() < until, "store counter {got}, want {spent}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bad tenants file stops serve at start with file, tenant and key
/// named; a bad one at reload is refused and the old one kept.
#[test]
fn bad_tenant_files_fail_with_the_field_named() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[tenants.acme]\ntarget = 1.5\n").unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG).unwrap();
    let router = dir.path().join("router.json");
    write_artifact(&router);
    let out = pointsman(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        dir.path().join("s.db").to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--router",
        router.to_str().unwrap(),
        "--tenants",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: tenant `acme`, key `target`: 1.5 is outside [0, 1]",
            bad.display()
        )),
        "{err}"
    );

    // Hot reload: a good file, then a bad one (the old one stays).
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, "[tenants.acme]\nallowed_models = [\"strong\"]\n").unwrap();
    let server = start(false, &["--tenants", tenants.to_str().unwrap()], None);
    let rt = runtime(2);
    rt.block_on(async {
        let mut c = server.client().await;
        let acme = || tenant_request(PROMPTS[1], Some("acme".into()));
        assert_eq!(c.route(acme()).await.unwrap().into_inner().model, "strong");
        std::fs::write(&tenants, "[tenants.acme]\nallowed_models = [\"gpt-9\"]\n").unwrap();
        let e = admin(&server)
            .await
            .reload(pb::ReloadRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(
            e.message()
                .contains("tenant `acme`, key `allowed_models[0]`: `gpt-9` is not in the catalog"),
            "{}",
            e.message()
        );
        assert_eq!(c.route(acme()).await.unwrap().into_inner().model, "strong");
        // A good edit takes effect on SIGHUP.
        std::fs::write(&tenants, "[tenants.acme]\nallowed_models = [\"cheap\"]\n").unwrap();
        server.signal("-HUP");
        let until = Instant::now() + Duration::from_secs(20);
        while c.route(acme()).await.unwrap().into_inner().model != "cheap" {
            assert!(Instant::now() < until, "SIGHUP did not reload the tenants");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// A blocking HTTP/1.1 POST of a JSON body: (status, body).
fn http_post(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// A tenant's `explore` rate replaces the server's `--explore` for its
/// decisions: 0 turns exploration off for it, 0.5 explores where the
/// server would not.
#[test]
fn a_tenants_exploration_rate_replaces_the_servers() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        "[tenants.curious]\nexplore = 0.5\n[tenants.steady]\nexplore = 0.0\n",
    )
    .unwrap();
    let server = start(
        false,
        &["--tenants", tenants.to_str().unwrap(), "--explore", "0.3"],
        None,
    );
    let rt = runtime(2);
    let n = 200;
    let explored = |tenant: &str| {
        let requests = (0..n)
            .map(|i| tenant_request(PROMPTS[i % PROMPTS.len()], Some(tenant.into())))
            .collect();
        let rs = rt.block_on(route_all(&server, requests));
        let explored = rs.iter().filter(|r| r.explored).count();
        for r in &rs {
            assert!(r.propensity > 0.0 && r.propensity <= 1.0, "{r:?}");
            if !r.explored && tenant == "steady" {
                assert_eq!(r.propensity, 1.0, "{r:?}");
            }
        }
        explored
    };
    let (curious, steady, server_rate) =
        (explored("curious"), explored("steady"), explored("other"));
    eprintln!("explored of {n}: curious (0.5) {curious}, steady (0.0) {steady}, no policy (--explore 0.3) {server_rate}");
    assert_eq!(steady, 0);
    assert!(curious > 0 && server_rate > 0);
    assert!(curious > server_rate, "{curious} vs {server_rate}");
}
