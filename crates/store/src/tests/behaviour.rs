//! What every backend promises, run against each (SQLite always,
//! PostgreSQL when scripts/with-postgres gives a server): one function per
//! behaviour, taking the backend, instantiated per backend at the bottom.

use std::sync::Arc;

use super::{all, call, decision, outcome, Backend};
use crate::{LoggedDecision, OutcomeStore, StoreError};

fn concurrent_decisions_are_group_committed_and_each_caller_gets_its_result(b: &dyn Backend) {
    let store: Arc<dyn OutcomeStore> = Arc::from(b.open());
    // 8 threads × 40 decisions; every thread also re-logs one id that
    // thread 0 logs, so some batches mix new rows and duplicates.
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut dup_errors = 0;
                for i in 0..40 {
                    let id = if t > 0 && i == 20 {
                        "t0-d5".to_string()
                    } else {
                        format!("t{t}-d{i}")
                    };
                    match store.append_decision(&decision(&id, None)) {
                        Ok(()) => {}
                        Err(StoreError::DuplicateDecision(d)) => {
                            assert_eq!(d, "t0-d5");
                            dup_errors += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                dup_errors
            })
        })
        .collect();
    let dups: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Thread 0 may log t0-d5 before or after some of the others try it:
    // exactly one of the 8 attempts wins.
    assert_eq!(dups, 7);
    drop(store);
    let reopened = b.open();
    let ids: std::collections::BTreeSet<String> = all(reopened.as_ref())
        .into_iter()
        .map(|d| d.decision.id)
        .collect();
    assert_eq!(ids.len(), 8 * 40 - 7, "every distinct id is durable, once");
    assert!(ids.contains("t7-d39") && ids.contains("t0-d5"));
}

fn round_trips_decisions_and_outcomes_across_reopen(b: &dyn Backend) {
    {
        let s = b.open();
        s.append_decision(&decision("d1", None)).unwrap();
        s.append_decision(&decision("d2", Some("hello"))).unwrap();
        assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
        assert_eq!(s.append_outcome(&outcome("d1", "big", 0.0)).unwrap(), 2);
    }
    let s = b.open();
    let got = all(s.as_ref());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].decision, decision("d1", None));
    assert_eq!(
        got[0].outcomes,
        vec![outcome("d1", "small", 1.0), outcome("d1", "big", 0.0)]
    );
    assert!(got[1].outcomes.is_empty());
    assert!(s.has_decision("d2").unwrap());
    assert!(!s.has_decision("nope").unwrap());
}

fn unknown_and_duplicate_ids_are_typed_errors(b: &dyn Backend) {
    let s = b.open();
    s.append_decision(&decision("d1", None)).unwrap();
    assert!(matches!(
        s.append_decision(&decision("d1", None)),
        Err(StoreError::DuplicateDecision(_))
    ));
    assert!(matches!(
        s.append_outcome(&outcome("zz", "small", 1.0)),
        Err(StoreError::UnknownDecision(_))
    ));
    assert!(all(s.as_ref())[0].outcomes.is_empty());
}

fn exports_records_in_the_design_format(b: &dyn Backend) {
    let s = b.open();
    s.append_decision(&decision("d1", None)).unwrap();
    s.append_decision(&decision("d2", Some("Write a haiku")))
        .unwrap();
    assert_eq!(s.append_outcome(&outcome("d1", "small", 0.5)).unwrap(), 1);
    assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
    let got = all(s.as_ref());
    assert_eq!(
        got[0].outcomes,
        vec![outcome("d1", "small", 1.0)],
        "the store keeps the last report only"
    );
    let r = got[0].to_record();
    assert_eq!(r.prompt, crate::PROMPT_NOT_STORED);
    assert_eq!(r.outcomes.len(), 1);
    assert_eq!(
        r.outcomes["small"].score, 1.0,
        "a later report replaces an earlier one"
    );
    assert_eq!(r.extra["prompt_stored"], false);
    assert_eq!(r.extra["embedding"].as_array().unwrap().len(), 3);
    // The line parses back as a valid record.
    let back = pointsman_records::Record::parse_line(&r.to_line(), 1).unwrap();
    assert_eq!(back.id, "d1");
    assert_eq!(got[1].to_record().prompt, "Write a haiku");
}

// Issue 13, defect 3: NaN used to be stored as NULL, after which every
// export failed ("invalid type: null, expected f64").
fn non_finite_numbers_are_refused_and_export_keeps_working(b: &dyn Backend) {
    let store = b.open();
    let mut d = decision("nan", None);
    d.candidates[0].p_success = f64::NAN;
    let e = store.append_decision(&d).unwrap_err();
    assert!(
        e.to_string().contains("candidates[0].p_success is NaN"),
        "{e}"
    );
    let mut d = decision("inf", None);
    d.embedding[1] = f32::INFINITY;
    assert!(matches!(
        store.append_decision(&d),
        Err(StoreError::Invalid(_))
    ));
    store.append_decision(&decision("ok", None)).unwrap();
    let mut o = outcome("ok", "small", 0.5);
    o.latency_ms = Some(f64::NAN);
    assert!(matches!(
        store.append_outcome(&o),
        Err(StoreError::Invalid(_))
    ));
    let mut o = outcome("ok", "small", f64::NAN);
    o.latency_ms = None;
    assert!(matches!(
        store.append_outcome(&o),
        Err(StoreError::Invalid(_))
    ));
    let mut d = decision("big", None);
    d.tenant = Some("t".repeat(crate::check::MAX_NAME_BYTES + 1));
    assert!(matches!(
        store.append_decision(&d),
        Err(StoreError::Invalid(_))
    ));
    let got = all(store.as_ref());
    assert_eq!(got.len(), 1);
    assert!(got[0].outcomes.is_empty());
}

/// A RouteBatch's decisions: one result per row, a refused or duplicate
/// row failing alone (that the batch is one transaction is checked per
/// backend: sqlite/tests.rs counts WAL frames, postgres/tests.rs xmins).
fn a_batch_of_decisions_gets_one_result_per_row(b: &dyn Backend) {
    let s = b.open();
    let batch = mixed_batch();
    let results = s.append_decisions(&batch);
    assert_eq!(results.len(), 20);
    assert!(matches!(results[7], Err(StoreError::Invalid(_))));
    assert!(matches!(results[9], Err(StoreError::DuplicateDecision(_))));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 18);
    assert_eq!(all(s.as_ref()).len(), 18);
}

/// 20 decisions, one with a NaN (index 7) and one repeating index 3's id
/// (index 9).
pub(crate) fn mixed_batch() -> Vec<LoggedDecision> {
    let mut batch: Vec<LoggedDecision> =
        (0..20).map(|i| decision(&format!("b{i}"), None)).collect();
    batch[7].difficulty = f32::NAN;
    batch[9].id = "b3".into();
    batch
}

// Issue 13, defect 10: the same outcome twice was stored twice.
fn a_repeated_outcome_replaces_the_earlier_one_and_candidates_are_known(b: &dyn Backend) {
    let s = b.open();
    s.append_decision(&decision("d1", None)).unwrap();
    assert_eq!(s.append_outcome(&outcome("d1", "small", 0.0)).unwrap(), 1);
    assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
    assert_eq!(s.append_outcome(&outcome("d1", "big", 0.5)).unwrap(), 2);
    let got = all(s.as_ref());
    assert_eq!(
        got[0].outcomes,
        vec![outcome("d1", "small", 1.0), outcome("d1", "big", 0.5)]
    );
    assert_eq!(
        s.decision_models("d1").unwrap(),
        Some(vec!["small".to_string()])
    );
    assert_eq!(s.decision_models("nope").unwrap(), None);
}

/// Stateless replicas: a decision logged through one handle (replica)
/// takes outcomes, calls and lookups through another, and concurrent
/// reports for one model from both leave one outcome (last wins).
fn another_handle_on_the_store_completes_a_decision(b: &dyn Backend) {
    let a: Arc<dyn OutcomeStore> = Arc::from(b.open());
    let other: Arc<dyn OutcomeStore> = Arc::from(b.open());
    a.append_decision(&decision("d1", None)).unwrap();
    assert!(other.has_decision("d1").unwrap());
    assert_eq!(
        other.decision_models("d1").unwrap(),
        Some(vec!["small".to_string()])
    );
    other
        .append_calls(&[call("d1", "small", "ok")], &[])
        .unwrap();
    assert_eq!(a.answered_model("d1").unwrap().as_deref(), Some("small"));
    let writers: Vec<_> = [a.clone(), other.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, s)| {
            std::thread::spawn(move || {
                for i in 0..25 {
                    s.append_outcome(&outcome("d1", "small", (w * 25 + i) as f64 / 50.0))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let got = all(a.as_ref());
    assert_eq!(got[0].outcomes.len(), 1, "{:?}", got[0].outcomes);
}

/// Export reads every decision with its own outcomes, past any paging.
fn export_reads_a_large_store_in_order(b: &dyn Backend) {
    let s = b.open();
    let batch: Vec<LoggedDecision> = (0..1200)
        .map(|i| decision(&format!("d{i:05}"), None))
        .collect();
    assert!(s.append_decisions(&batch).iter().all(|r| r.is_ok()));
    for i in (0..1200).step_by(7) {
        s.append_outcome(&outcome(&format!("d{i:05}"), "small", 1.0))
            .unwrap();
    }
    let got = all(s.as_ref());
    assert_eq!(got.len(), 1200);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.decision.id, format!("d{i:05}"));
        assert_eq!(d.outcomes.len(), usize::from(i % 7 == 0), "{i}");
        if let Some(o) = d.outcomes.first() {
            assert_eq!(o.decision_id, d.decision.id);
        }
    }
}

fn gateway_calls_log_failures_and_feedback_completes_the_outcome(b: &dyn Backend) {
    let s = b.open();
    s.append_decision(&decision("d1", None)).unwrap();
    // "big" failed (automatic score-0 outcome), "small" answered.
    let mut failed = outcome("d1", "big", 0.0);
    failed.cost_usd = None;
    s.append_calls(
        &[call("d1", "big", "server"), call("d1", "small", "ok")],
        &[failed.clone()],
    )
    .unwrap();
    let got = all(s.as_ref());
    assert_eq!(got[0].calls.len(), 2);
    assert_eq!(got[0].calls[1], call("d1", "small", "ok"));
    assert_eq!(got[0].outcomes, vec![failed.clone()]);
    assert_eq!(s.answered_model("d1").unwrap().as_deref(), Some("small"));
    assert_eq!(s.answered_model("zz").unwrap(), None);
    // Feedback for the model that answered: its outcome takes the
    // call's tokens and cost, which the feedback did not give.
    let mut fb = outcome("d1", "small", 0.75);
    fb.cost_usd = None;
    fb.latency_ms = None;
    assert_eq!(s.append_outcome(&fb).unwrap(), 2);
    let r = all(s.as_ref())[0].to_record();
    let small = &r.outcomes["small"];
    assert_eq!(small.score, 0.75);
    assert_eq!(small.cost_usd, Some(0.0003));
    assert_eq!(small.output_tokens, Some(5));
    assert_eq!(small.latency_ms, Some(42.0));
    assert_eq!(r.outcomes["big"].score, 0.0);
    assert_eq!(r.extra["calls"].as_array().unwrap().len(), 2);
    assert_eq!(r.extra["calls"][0]["error_class"], "server");
    // An automatic failure never replaces feedback already there.
    s.append_calls(
        &[call("d1", "small", "mid_stream")],
        &[outcome("d1", "small", 0.0)],
    )
    .unwrap();
    assert_eq!(all(s.as_ref())[0].to_record().outcomes["small"].score, 0.75);
    // Unknown decision: refused, nothing written.
    assert!(matches!(
        s.append_calls(&[call("zz", "small", "ok")], &[]),
        Err(StoreError::UnknownDecision(_))
    ));
    assert_eq!(all(s.as_ref())[0].calls.len(), 3);
    // Non-finite numbers are refused like everywhere else.
    let mut bad = call("d1", "small", "ok");
    bad.latency_ms = f64::NAN;
    assert!(matches!(
        s.append_calls(&[bad], &[]),
        Err(StoreError::Invalid(_))
    ));
}

fn published_artifacts_are_versioned_and_rollback_reactivates(b: &dyn Backend) {
    let s = b.open();
    assert_eq!(s.active_artifact().unwrap(), None);
    assert!(s.artifact_versions().unwrap().is_empty());
    let v1 = s
        .publish_artifact(b"{\"v\":1}", None, Some("first"))
        .unwrap();
    let v2 = s
        .publish_artifact(b"{\"v\":2}", Some(b"[models]"), None)
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v1.sha256, crate::artifact_sha256(b"{\"v\":1}", None));
    assert_ne!(
        v2.sha256,
        crate::artifact_sha256(b"{\"v\":2}", None),
        "the catalog is part of the hash"
    );
    let active = s.active_artifact().unwrap().unwrap();
    assert_eq!(active.version, 2);
    let loaded = s.load_artifact(2).unwrap().unwrap();
    assert_eq!(loaded.router, b"{\"v\":2}");
    assert_eq!(loaded.catalog.as_deref(), Some(&b"[models]"[..]));
    assert!(loaded.info.active && loaded.info.has_catalog);
    // Rollback: version 1 again, with a new activation seq so replicas
    // that served it before still notice.
    let back = s.activate_artifact(1).unwrap();
    assert!(back.active);
    assert_eq!(back.note.as_deref(), Some("first"));
    let now = s.active_artifact().unwrap().unwrap();
    assert_eq!(now.version, 1);
    assert!(now.seq > active.seq);
    let listed = s.artifact_versions().unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|v| (v.version, v.active))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, false)]
    );
    assert!(matches!(
        s.activate_artifact(9),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.load_artifact(9).unwrap(), None);
    assert!(matches!(
        s.publish_artifact(b"", None, None),
        Err(StoreError::Invalid(_))
    ));
    // Another handle (a replica) sees the same active version.
    assert_eq!(b.open().active_artifact().unwrap(), Some(now));
}

/// The rollout and exploration additions (merged from their branches):
/// propensity, explored and shadow round-trip, rollout events, decision
/// metadata and per-tenant spend.
fn rollout_and_exploration_fields_round_trip(b: &dyn Backend) {
    let s = b.open();
    let mut d = decision("x1", None);
    d.propensity = 0.0125;
    d.explored = true;
    d.shadow = Some(crate::ShadowDecision {
        artifact: "cand@1".into(),
        model: "big".into(),
        p_success: 0.5,
        expected_cost_usd: 0.25,
    });
    s.append_decisions(&[d.clone(), decision("x2", None)])
        .into_iter()
        .for_each(|r| r.unwrap());
    let got = all(s.as_ref());
    assert_eq!(got[0].decision, d);
    assert_eq!(got[1].decision.propensity, 1.0);
    let e = crate::RolloutEvent {
        time_ms: 5,
        action: "load".into(),
        from_version: "a@1".into(),
        to_version: "b@2".into(),
        mode: "shadow".into(),
        who: "test".into(),
        why: "because".into(),
    };
    s.append_rollout_event(&e).unwrap();
    assert_eq!(s.rollout_events().unwrap(), vec![e]);
    let meta = s.decision_meta("x1").unwrap().unwrap();
    assert_eq!(
        (meta.model.as_str(), meta.tenant.as_deref()),
        ("small", Some("team-a"))
    );
    assert_eq!(s.decision_meta("nope").unwrap(), None);
    // Two decisions of team-a at 0.001 each (the first candidate's cost).
    let spend = s.tenant_expected_spend("team-a", 0).unwrap();
    assert!((spend - 0.002).abs() < 1e-12, "{spend}");
    assert_eq!(s.tenant_expected_spend("team-a", i64::MAX).unwrap(), 0.0);
}

/// The shared spend counters: deltas from two handles (two replicas) add
/// up, a zero delta reads, kinds of period do not share a count, a
/// non-finite delta is refused whole; reconcile raises a counter to the
/// logged spend (reported cost where an outcome of the chosen model
/// reports one, else expected) and never lowers it.
fn tenant_spend_counters_add_across_handles_and_reconcile(b: &dyn Backend) {
    let key = |tenant: &str, period: &str, start: i64| crate::SpendKey {
        tenant: tenant.into(),
        period: period.into(),
        period_start_ms: start,
    };
    let (day, hour, other) = (
        key("team-a", "day", 0),
        key("team-a", "hour", 0),
        key("b", "day", 0),
    );
    let one = b.open();
    let two = b.open();
    assert_eq!(
        one.add_tenant_spend(&[(day.clone(), 0.5), (other.clone(), 0.0)])
            .unwrap(),
        vec![0.5, 0.0]
    );
    assert_eq!(
        two.add_tenant_spend(&[(day.clone(), 0.25)]).unwrap(),
        vec![0.75]
    );
    assert_eq!(
        one.add_tenant_spend(&[(hour.clone(), 0.0), (day.clone(), 0.0)])
            .unwrap(),
        vec![0.0, 0.75]
    );
    assert_eq!(
        two.add_tenant_spend(&[(day.clone(), -0.25)]).unwrap(),
        vec![0.5]
    );
    assert!(matches!(
        one.add_tenant_spend(&[(other.clone(), 1.0), (day.clone(), f64::NAN)]),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        one.add_tenant_spend(&[(other.clone(), 0.0), (day.clone(), 0.0)])
            .unwrap(),
        vec![0.0, 0.5]
    );
    // Logged spend: two team-a decisions at 0.001 expected; the first's
    // chosen model (small) reports 0.002, another model's cost is not
    // the tenant's spend on that decision.
    one.append_decision(&decision("s1", None)).unwrap();
    one.append_decision(&decision("s2", None)).unwrap();
    one.append_outcome(&outcome("s1", "small", 1.0)).unwrap();
    let mut big = outcome("s2", "big", 1.0);
    big.cost_usd = Some(5.0);
    one.append_outcome(&big).unwrap();
    let meta = two.decision_meta("s1").unwrap().unwrap();
    assert_eq!(meta.time_ms, 1_700_000_000_000);
    assert_eq!(meta.expected_cost_usd, Some(0.001));
    assert_eq!(meta.reported_cost_usd, Some(0.002));
    assert_eq!(
        two.decision_meta("s2").unwrap().unwrap().reported_cost_usd,
        None
    );
    let fresh = key("team-a", "month", 0);
    let late = key("team-a", "month", 1_800_000_000_000);
    let got = two
        .reconcile_tenant_spend(&[fresh.clone(), day.clone(), late.clone()])
        .unwrap();
    assert!((got[0] - 0.003).abs() < 1e-12, "{got:?}");
    assert_eq!(got[1], 0.5, "a counter above the logged spend is kept");
    assert_eq!(got[2], 0.0);
    let again = one.add_tenant_spend(&[(fresh, 0.0)]).unwrap();
    assert!((again[0] - 0.003).abs() < 1e-12, "{again:?}");
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(&crate::tests::sqlite());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(b) = crate::tests::postgres(stringify!($test)) {
                        super::$test(&b);
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    concurrent_decisions_are_group_committed_and_each_caller_gets_its_result,
    round_trips_decisions_and_outcomes_across_reopen,
    unknown_and_duplicate_ids_are_typed_errors,
    exports_records_in_the_design_format,
    non_finite_numbers_are_refused_and_export_keeps_working,
    a_batch_of_decisions_gets_one_result_per_row,
    a_repeated_outcome_replaces_the_earlier_one_and_candidates_are_known,
    another_handle_on_the_store_completes_a_decision,
    export_reads_a_large_store_in_order,
    gateway_calls_log_failures_and_feedback_completes_the_outcome,
    published_artifacts_are_versioned_and_rollback_reactivates,
    rollout_and_exploration_fields_round_trip,
    tenant_spend_counters_add_across_handles_and_reconcile,
);
