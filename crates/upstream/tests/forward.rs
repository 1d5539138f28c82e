//! `Upstreams::forward` against the Python stub upstream: answers, each
//! fallback case, what does not fall back, deadlines.

mod support;

use std::time::{Duration, Instant};

use pointsman_upstream::{ErrorClass, UpstreamError, Usage};
use serde_json::Value;
use support::{chat_body, classes, complete, request, upstreams, Stub};

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn answers_and_passes_the_body_through_with_the_upstream_model() {
    let stub = Stub::start();
    let ups = upstreams(vec![stub.upstream("gpt-4o", "stub-ok")]);
    let mut body = chat_body("what is two plus two", false);
    body.insert("user".into(), "client-7".into());

    let (model, status, answer, usage, attempts) = complete(
        ups.forward(request(&["gpt-4o"], body, WITHIN))
            .await
            .unwrap(),
    );

    assert_eq!((model.as_str(), status), ("gpt-4o", 200));
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "what is two plus two"
    );
    // "You answer briefly." + the question: 3 + 5 words; the answer echoes 5.
    assert_eq!(
        usage,
        Some(Usage {
            prompt_tokens: 8,
            completion_tokens: 5
        })
    );
    assert_eq!(classes(&attempts), [("gpt-4o", ErrorClass::Ok)]);
    let sent = &stub.stats().await["last_request"]["stub-ok"];
    assert_eq!(sent["model"], "stub-ok", "model replaced by upstream_model");
    assert_eq!(sent["user"], "client-7", "other fields pass through");
    assert_eq!(sent["temperature"], 0.25);
    assert!(
        sent.get("stream_options").is_none(),
        "no stream options when not streaming"
    );
    assert_eq!(
        stub.stats().await["auth"]["stub-ok"],
        Value::Null,
        "no key, no Authorization"
    );
}

/// Each failure before the first byte moves to the next model of the chain.
#[tokio::test]
async fn falls_back_on_429_500_reset_timeout_garbage_and_refused_connections() {
    let stub = Stub::start();
    // A port nothing listens on: bound, then closed.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut slow = stub.upstream("slow", "stub-slow-3000");
    slow.first_byte_timeout = Duration::from_millis(300);
    let refused = pointsman_upstream::UpstreamConfig::openai(
        "refused",
        &format!("http://127.0.0.1:{closed_port}/v1"),
        "stub-ok",
    )
    .unwrap();
    let ups = upstreams(vec![
        stub.upstream("limited", "stub-429"),
        stub.upstream("broken", "stub-500"),
        stub.upstream("reset", "stub-reset"),
        stub.upstream("garbage", "stub-garbage"),
        slow,
        refused,
        stub.upstream("good", "stub-ok"),
    ]);
    for (first, class) in [
        ("limited", ErrorClass::RateLimited),
        ("broken", ErrorClass::Server),
        ("reset", ErrorClass::Connect),
        ("garbage", ErrorClass::BadResponse),
        ("slow", ErrorClass::Timeout),
        ("refused", ErrorClass::Connect),
    ] {
        let req = request(&[first, "good"], chat_body("hello", false), WITHIN);
        let (model, status, answer, _, attempts) = complete(ups.forward(req).await.unwrap());
        assert_eq!((model.as_str(), status), ("good", 200), "after {first}");
        assert_eq!(answer["choices"][0]["message"]["content"], "hello");
        assert_eq!(
            classes(&attempts),
            [(first, class), ("good", ErrorClass::Ok)],
            "after {first}"
        );
    }
    let stats = stub.stats().await;
    for stub_model in [
        "stub-429",
        "stub-500",
        "stub-reset",
        "stub-garbage",
        "stub-slow-3000",
    ] {
        assert_eq!(stats["requests"][stub_model], 1, "{stub_model} tried once");
    }
    assert_eq!(
        stats["requests"]["stub-ok"], 6,
        "the fallback answered every time"
    );
}

#[tokio::test]
async fn a_400_is_returned_as_is_without_falling_back() {
    let stub = Stub::start();
    let ups = upstreams(vec![
        stub.upstream("picky", "stub-400"),
        stub.upstream("good", "stub-ok"),
    ]);
    let req = request(&["picky", "good"], chat_body("hello", false), WITHIN);
    let (model, status, answer, usage, attempts) = complete(ups.forward(req).await.unwrap());
    assert_eq!((model.as_str(), status), ("picky", 400));
    assert_eq!(answer["error"]["message"], "Invalid request (stub)");
    assert_eq!(usage, None);
    assert_eq!(classes(&attempts), [("picky", ErrorClass::Client)]);
    assert_eq!(stub.requests("stub-ok").await, 0, "no fallback after a 400");
}

#[tokio::test]
async fn every_upstream_failing_is_all_failed_with_every_attempt() {
    let stub = Stub::start();
    let ups = upstreams(vec![
        stub.upstream("limited", "stub-429"),
        stub.upstream("reset", "stub-reset"),
        stub.upstream("broken", "stub-500"),
    ]);
    let req = request(
        &["limited", "unconfigured", "reset", "broken", "limited"],
        chat_body("hello", false),
        WITHIN,
    );
    let error = ups.forward(req).await.unwrap_err();
    let UpstreamError::AllFailed {
        attempts,
        last_status,
        last_body,
    } = &error
    else {
        panic!("expected AllFailed, got {error:?}");
    };
    let got: Vec<_> = attempts
        .iter()
        .map(|a| (a.model.as_str(), a.class, a.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("limited", ErrorClass::RateLimited, Some(429)),
            ("unconfigured", ErrorClass::NotConfigured, None),
            ("reset", ErrorClass::Connect, None),
            ("broken", ErrorClass::Server, Some(500)),
        ],
        "a model twice in the chain is tried once"
    );
    assert_eq!(*last_status, Some(500));
    let last: Value = serde_json::from_slice(last_body.as_ref().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert_eq!(error.last_class(), Some(ErrorClass::Server));
    assert_eq!(stub.requests("stub-429").await, 1);
}

#[tokio::test]
async fn the_total_deadline_stops_the_attempt_and_the_chain() {
    let stub = Stub::start();
    // Its own first-byte timeout (30 s default) is not what stops it.
    let ups = upstreams(vec![
        stub.upstream("slow", "stub-slow-5000"),
        stub.upstream("good", "stub-ok"),
    ]);
    let started = Instant::now();
    let req = request(
        &["slow", "good"],
        chat_body("hello", false),
        Duration::from_millis(400),
    );
    let error = ups.forward(req).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "returned before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "deadline not respected: {elapsed:?}"
    );
    let UpstreamError::AllFailed { attempts, .. } = &error else {
        panic!("expected AllFailed, got {error:?}");
    };
    let got: Vec<_> = attempts
        .iter()
        .map(|a| (a.model.as_str(), a.class))
        .collect();
    assert_eq!(
        got,
        vec![("slow", ErrorClass::Deadline)],
        "the chain stops at the deadline"
    );
    assert_eq!(
        stub.requests("stub-ok").await,
        0,
        "nothing is sent past the deadline"
    );
}

#[tokio::test]
async fn a_chain_with_no_configured_model_is_no_upstream() {
    let stub = Stub::start();
    let ups = upstreams(vec![stub.upstream("good", "stub-ok")]);
    let error = ups
        .forward(request(&["a", "b"], chat_body("hello", false), WITHIN))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, UpstreamError::NoUpstream { chain } if chain == &["a".to_string(), "b".to_string()]),
        "{error:?}"
    );
    let error = ups
        .forward(request(&[], chat_body("hello", false), WITHIN))
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::NoUpstream { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_non_boolean_stream_field_is_an_invalid_request() {
    let stub = Stub::start();
    let ups = upstreams(vec![stub.upstream("good", "stub-ok")]);
    let mut body = chat_body("hello", false);
    body.insert("stream".into(), "yes".into());
    let error = ups
        .forward(request(&["good"], body, WITHIN))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, UpstreamError::InvalidRequest(m) if m.contains("`stream`")),
        "{error:?}"
    );
    assert_eq!(stub.requests("stub-ok").await, 0);
}
