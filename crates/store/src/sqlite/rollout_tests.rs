//! Tests of the rollout additions: the `shadow` column and its migration,
//! `rollout_events`, decision metadata and per-tenant spend.

use std::collections::BTreeMap;

use super::*;
use crate::{LoggedCandidate, ShadowDecision};

fn decision(id: &str, tenant: Option<&str>, time_ms: i64, cost: f64) -> LoggedDecision {
    LoggedDecision {
        id: id.into(),
        time_ms,
        embedding: vec![0.5],
        task: "code".into(),
        task_scores: BTreeMap::new(),
        difficulty: 0.25,
        model: "small".into(),
        candidates: vec![
            LoggedCandidate {
                model: "small".into(),
                p_success: 0.8,
                expected_cost_usd: cost,
            },
            LoggedCandidate {
                model: "large".into(),
                p_success: 0.9,
                expected_cost_usd: 100.0,
            },
        ],
        versions: BTreeMap::from([("router_artifact".into(), "a@1".into())]),
        tenant: tenant.map(str::to_string),
        prompt: None,
        propensity: 1.0,
        explored: false,
        shadow: None,
    }
}

#[test]
fn shadow_round_trips_and_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let mut d = decision("a", None, 1, 0.01);
    d.shadow = Some(ShadowDecision {
        artifact: "cand.json@ff".into(),
        model: "large".into(),
        p_success: 0.9,
        expected_cost_usd: 100.0,
    });
    s.append_decision(&d).unwrap();
    s.append_decision(&decision("b", None, 2, 0.01)).unwrap();
    let mut got = Vec::new();
    s.export(&mut |r| {
        got.push(r);
        Ok(())
    })
    .unwrap();
    assert_eq!(got[0].decision, d);
    assert_eq!(got[1].decision.shadow, None);
    let rec = got[0].to_record();
    assert_eq!(rec.extra["shadow"]["model"], "large");
    assert_eq!(rec.extra["shadow"]["artifact"], "cand.json@ff");
    assert!(!got[1].to_record().extra.contains_key("shadow"));
}

#[test]
fn a_store_without_the_shadow_column_gains_it_once_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.append_decision(&decision("old", None, 1, 0.01)).unwrap();
    }
    {
        // As a store written before the rollout change: no shadow column,
        // no spend counters, and (since versioned migrations) schema
        // version 2.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "ALTER TABLE decisions DROP COLUMN shadow; DROP TABLE rollout_events; DROP TABLE tenant_spend; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    for _ in 0..2 {
        // Twice: the migration is idempotent.
        let s = SqliteStore::open(&path).unwrap();
        let mut n = 0;
        s.export(&mut |r| {
            assert_eq!(r.decision.id, "old");
            assert_eq!(r.decision.shadow, None);
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert!(s.rollout_events().unwrap().is_empty());
    }
}

#[test]
fn rollout_events_are_kept_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let event = |action: &str, t: i64| RolloutEvent {
        time_ms: t,
        action: action.into(),
        from_version: "live@1".into(),
        to_version: "cand@2".into(),
        mode: "canary:0.1".into(),
        who: "ops".into(),
        why: "test".into(),
    };
    {
        let s = SqliteStore::open(&path).unwrap();
        s.append_rollout_event(&event("load", 1)).unwrap();
        s.append_rollout_event(&event("promote", 2)).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.rollout_events().unwrap(),
        vec![event("load", 1), event("promote", 2)]
    );
}

#[test]
fn decision_meta_and_tenant_spend() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.append_decision(&decision("a", Some("free"), 100, 0.25))
        .unwrap();
    s.append_decision(&decision("b", Some("free"), 200, 0.5))
        .unwrap();
    s.append_decision(&decision("c", Some("paid"), 200, 7.0))
        .unwrap();
    s.append_decision(&decision("d", None, 200, 9.0)).unwrap();
    let m = s.decision_meta("a").unwrap().unwrap();
    assert_eq!(m.tenant.as_deref(), Some("free"));
    assert_eq!(m.model, "small");
    assert_eq!(m.versions["router_artifact"], "a@1");
    assert_eq!(s.decision_meta("nope").unwrap(), None);
    // Only the chosen (first) candidate's cost counts, from `since` on.
    assert_eq!(s.tenant_expected_spend("free", 0).unwrap(), 0.75);
    assert_eq!(s.tenant_expected_spend("free", 150).unwrap(), 0.5);
    assert_eq!(s.tenant_expected_spend("paid", 0).unwrap(), 7.0);
    assert_eq!(s.tenant_expected_spend("nobody", 0).unwrap(), 0.0);
}
