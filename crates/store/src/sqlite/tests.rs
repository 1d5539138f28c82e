//! Tests of the SQLite store (sqlite.rs).

use std::collections::BTreeMap;

use super::*;
use crate::LoggedCandidate;

fn decision(id: &str, prompt: Option<&str>) -> LoggedDecision {
    LoggedDecision {
        id: id.into(),
        time_ms: 1_700_000_000_000,
        embedding: vec![0.5, -1.25, 3.0],
        task: "code".into(),
        task_scores: BTreeMap::from([("code".into(), 0.9), ("math".into(), 0.1)]),
        difficulty: 0.25,
        model: "small".into(),
        candidates: vec![LoggedCandidate {
            model: "small".into(),
            p_success: 0.8,
            expected_cost_usd: 0.001,
        }],
        versions: BTreeMap::from([("catalog".into(), "abc".into())]),
        tenant: Some("team-a".into()),
        prompt: prompt.map(str::to_string),
    }
}

fn outcome(id: &str, model: &str, score: f64) -> LoggedOutcome {
    LoggedOutcome {
        decision_id: id.into(),
        model: model.into(),
        score,
        cost_usd: Some(0.002),
        input_tokens: Some(10),
        output_tokens: None,
        latency_ms: Some(120.0),
        time_ms: 1_700_000_000_500,
    }
}

fn all(store: &SqliteStore) -> Vec<DecisionWithOutcomes> {
    let mut v = Vec::new();
    store
        .export(&mut |d| {
            v.push(d);
            Ok(())
        })
        .unwrap();
    v
}

#[test]
fn concurrent_decisions_are_group_committed_and_each_caller_gets_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
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
    let reopened = SqliteStore::open(&path).unwrap();
    let ids: std::collections::BTreeSet<String> =
        all(&reopened).into_iter().map(|d| d.decision.id).collect();
    assert_eq!(ids.len(), 8 * 40 - 7, "every distinct id is durable, once");
    assert!(ids.contains("t7-d39") && ids.contains("t0-d5"));
}

#[test]
fn round_trips_decisions_and_outcomes_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/store.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.append_decision(&decision("d1", None)).unwrap();
        s.append_decision(&decision("d2", Some("hello"))).unwrap();
        assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
        assert_eq!(s.append_outcome(&outcome("d1", "big", 0.0)).unwrap(), 2);
    }
    let s = SqliteStore::open(&path).unwrap();
    let got = all(&s);
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

#[test]
fn unknown_and_duplicate_ids_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.append_decision(&decision("d1", None)).unwrap();
    assert!(matches!(
        s.append_decision(&decision("d1", None)),
        Err(StoreError::DuplicateDecision(_))
    ));
    assert!(matches!(
        s.append_outcome(&outcome("zz", "small", 1.0)),
        Err(StoreError::UnknownDecision(_))
    ));
    assert!(all(&s)[0].outcomes.is_empty());
}

#[test]
fn uses_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let c = s.lock();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2));
}

#[test]
fn exports_records_in_the_design_format() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.append_decision(&decision("d1", None)).unwrap();
    s.append_decision(&decision("d2", Some("Write a haiku")))
        .unwrap();
    assert_eq!(s.append_outcome(&outcome("d1", "small", 0.5)).unwrap(), 1);
    assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
    let got = all(&s);
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
#[test]
fn non_finite_numbers_are_refused_and_export_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
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
    let got = all(&store);
    assert_eq!(got.len(), 1);
    assert!(got[0].outcomes.is_empty());
}

// Issue 13, defect 8: RouteBatch wrote each row in its own transaction.
// A batch of decisions now goes in one; the WAL grows by one commit.
#[test]
fn a_batch_of_decisions_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let mut batch: Vec<LoggedDecision> =
        (0..20).map(|i| decision(&format!("b{i}"), None)).collect();
    batch[7].difficulty = f32::NAN;
    batch[9].id = "b3".into();
    let frames_before = wal_frames(&dir.path().join("s.db-wal"));
    let results = s.append_decisions(&batch);
    let frames_after = wal_frames(&dir.path().join("s.db-wal"));
    assert_eq!(results.len(), 20);
    assert!(matches!(results[7], Err(StoreError::Invalid(_))));
    assert!(matches!(results[9], Err(StoreError::DuplicateDecision(_))));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 18);
    assert_eq!(all(&s).len(), 18);
    // 18 small rows fit in a few pages: one transaction writes each page
    // once; a transaction per row would write >= 18 frames.
    let written = frames_after - frames_before;
    assert!(written < 10, "{written} WAL frames for one batch");
}

fn wal_frames(path: &Path) -> u64 {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(32);
    // 32-byte WAL header, then frames of 24 + page size (4096) bytes.
    len.saturating_sub(32) / (24 + 4096)
}

// Issue 13, defect 10: the same outcome twice was stored twice.
#[test]
fn a_repeated_outcome_replaces_the_earlier_one_and_candidates_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.append_decision(&decision("d1", None)).unwrap();
    assert_eq!(s.append_outcome(&outcome("d1", "small", 0.0)).unwrap(), 1);
    assert_eq!(s.append_outcome(&outcome("d1", "small", 1.0)).unwrap(), 1);
    assert_eq!(s.append_outcome(&outcome("d1", "big", 0.5)).unwrap(), 2);
    let got = all(&s);
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

// Issue 13, defect 11: corruption in the middle of the file was found
// only by the query that read it, and a read-only path said nothing of
// why.
#[test]
fn corruption_inside_the_file_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        for i in 0..400 {
            let mut d = decision(&format!("d{i}"), None);
            d.embedding = vec![0.25; 384];
            s.append_decision(&d).unwrap();
        }
        let c = s.lock();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40 * 4096, "{} bytes", bytes.len());
    // Scribble over a page in the middle (not the header page).
    let mid = (bytes.len() / 4096 / 2) * 4096;
    bytes[mid..mid + 4096].fill(0x5A);
    std::fs::write(&path, &bytes).unwrap();
    let e = SqliteStore::open(&path)
        .err()
        .expect("a corrupt store is refused")
        .to_string();
    assert!(e.contains("corrupt") || e.contains("malformed"), "{e}");
}

#[test]
fn a_read_only_store_says_why() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    SqliteStore::open(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let e = if std::fs::OpenOptions::new().write(true).open(&path).is_err() {
        SqliteStore::open(&path).err().expect("refused").to_string()
    } else {
        // Root (or CAP_DAC_OVERRIDE) ignores the mode bits, so opening
        // here would test nothing: open as `nobody` in a child process,
        // as a service account without write access would. The
        // directory must let nobody reach the file, so that the error
        // is about the file's mode.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        match open_as_nobody(&path) {
            Ok(e) => e,
            Err(why) => {
                eprintln!("SKIPPED a_read_only_store_says_why: running as root and {why}");
                return;
            }
        }
    };
    eprintln!("read-only store: {e}");
    assert!(e.contains("cannot open for writing"), "{e}");
    assert!(e.contains("Permission denied (os error 13)"), "{e}");
}

/// Set to a store path, turns `read_only_open_child` on.
const READ_ONLY_CHILD_ENV: &str = "POINTSMAN_READ_ONLY_STORE";

/// Runs `read_only_open_child` in this test binary as uid/gid 65534
/// (`setpriv`) and returns the error it printed. `Err` says why that
/// could not be done (no setpriv, or not allowed to change user).
fn open_as_nobody(path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "sqlite::tests::read_only_open_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(READ_ONLY_CHILD_ENV, path)
        .output()
        .map_err(|e| format!("setpriv cannot run ({e})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.starts_with("setpriv:") {
        return Err(format!("setpriv cannot drop to nobody: {}", stderr.trim()));
    }
    let printed = stdout
        .lines()
        .find_map(|l| l.split_once("open as nobody: "));
    match printed {
        Some((_, "ok")) => panic!("nobody opened a 0444 root-owned store for writing"),
        Some((_, e)) => Ok(e.to_string()),
        None => panic!("the child printed no result:\n{stdout}\n{stderr}"),
    }
}

// Not a test of its own: `a_read_only_store_says_why` runs it as
// nobody, with READ_ONLY_CHILD_ENV set to the store to open.
#[test]
#[ignore = "run as nobody by a_read_only_store_says_why"]
fn read_only_open_child() {
    let Ok(path) = std::env::var(READ_ONLY_CHILD_ENV) else {
        eprintln!("{READ_ONLY_CHILD_ENV} is not set (a_read_only_store_says_why runs this)");
        return;
    };
    // A line of its own: libtest may have started one.
    match SqliteStore::open(Path::new(&path)) {
        Ok(_) => println!("\nopen as nobody: ok"),
        Err(e) => println!("\nopen as nobody: {e}"),
    }
}

fn call(id: &str, model: &str, class: &str) -> LoggedCall {
    LoggedCall {
        decision_id: id.into(),
        model: model.into(),
        error_class: class.into(),
        status: Some(if class == "ok" { 200 } else { 500 }),
        latency_ms: 42.0,
        ttft_ms: Some(7.5),
        input_tokens: Some(11),
        output_tokens: Some(5),
        cost_usd: Some(0.0003),
        time_ms: 1_700_000_000_600,
    }
}

#[test]
fn gateway_calls_log_failures_and_feedback_completes_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.append_decision(&decision("d1", None)).unwrap();
    // "big" failed (automatic score-0 outcome), "small" answered.
    let mut failed = outcome("d1", "big", 0.0);
    failed.cost_usd = None;
    s.append_calls(
        &[call("d1", "big", "server"), call("d1", "small", "ok")],
        &[failed.clone()],
    )
    .unwrap();
    let got = all(&s);
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
    let r = all(&s)[0].to_record();
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
    assert_eq!(all(&s)[0].to_record().outcomes["small"].score, 0.75);
    // Unknown decision: refused, nothing written.
    assert!(matches!(
        s.append_calls(&[call("zz", "small", "ok")], &[]),
        Err(StoreError::UnknownDecision(_))
    ));
    assert_eq!(all(&s)[0].calls.len(), 3);
    // Non-finite numbers are refused like everywhere else.
    let mut bad = call("d1", "small", "ok");
    bad.latency_ms = f64::NAN;
    assert!(matches!(
        s.append_calls(&[bad], &[]),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn a_store_from_before_the_gateway_opens_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // The schema as it was before the `calls` table.
        let c = Connection::open(&path).unwrap();
        let old = BASELINE
            .split("-- Added with the HTTP gateway")
            .next()
            .unwrap();
        c.execute_batch(old).unwrap();
        c.execute(
            "INSERT INTO decisions (id, time_ms, model, task, difficulty, task_scores, candidates, versions, embedding)
             VALUES ('old', 1, 'small', 'code', 0.5, '{}', '[]', '{}', x'0000803f')",
            [],
        )
        .unwrap();
        let has_calls: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'calls'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_calls, 0);
    }
    let s = SqliteStore::open(&path).unwrap();
    s.append_outcome(&outcome("old", "small", 1.0)).unwrap();
    let got = all(&s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].decision.embedding, vec![1.0]);
    assert!(got[0].calls.is_empty());
    s.append_calls(&[call("old", "small", "ok")], &[]).unwrap();
    assert_eq!(all(&s)[0].calls.len(), 1);
}
