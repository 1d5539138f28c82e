//! Streaming through `Upstreams::forward`: byte-for-byte pass-through, usage
//! in the summary, fallback before the first byte, and the error event after
//! it.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use pointsman_upstream::{ErrorClass, Forwarded, Usage};
use serde_json::{json, Value};
use support::{
    chat_body, classes, collect, content, events, http_client, request, streamed, upstreams, Stub,
};

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn streams_byte_for_byte_with_usage_in_the_summary() {
    let stub = Stub::start();
    let ups = upstreams(vec![stub.upstream("gpt-4o", "stub-ok")]);
    let text = "stream me these five words";
    let mut body = chat_body(text, true);
    body.insert(
        "stream_options".into(),
        json!({"continuous_usage_stats": false}),
    );

    let got = streamed(
        ups.forward(request(&["gpt-4o"], body.clone(), WITHIN))
            .await
            .unwrap(),
    );
    assert_eq!(got.model, "gpt-4o");
    assert_eq!(classes(&got.attempts), [("gpt-4o", ErrorClass::Ok)]);
    let forwarded = collect(got.body).await;
    let summary = got.summary.await.unwrap();

    // What the stub sends for the request the gateway sent, asked directly.
    let sent = stub.stats().await["last_request"]["stub-ok"].clone();
    assert_eq!(
        sent["stream_options"],
        json!({"continuous_usage_stats": false, "include_usage": true})
    );
    let direct = http_client()
        .post(format!("{}/chat/completions", stub.base_url()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&sent).unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        forwarded, direct,
        "the stream is passed through byte for byte"
    );

    let payloads = events(&forwarded);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let content = content(&payloads);
    assert_eq!(content, text);
    assert_eq!(summary.class, ErrorClass::Ok);
    assert_eq!(
        summary.usage,
        Some(Usage {
            prompt_tokens: 8,
            completion_tokens: 5
        })
    );
}

#[tokio::test]
async fn falls_back_before_the_first_byte_of_a_stream() {
    let stub = Stub::start();
    let ups = upstreams(vec![
        stub.upstream("limited", "stub-429"),
        stub.upstream("good", "stub-ok"),
    ]);
    let got = streamed(
        ups.forward(request(&["limited", "good"], chat_body("hi", true), WITHIN))
            .await
            .unwrap(),
    );
    assert_eq!(got.model, "good");
    assert_eq!(
        classes(&got.attempts),
        [
            ("limited", ErrorClass::RateLimited),
            ("good", ErrorClass::Ok)
        ]
    );
    let payloads = events(&collect(got.body).await);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert_eq!(got.summary.await.unwrap().class, ErrorClass::Ok);
}

/// After the first byte there is no fallback: the stream ends with one
/// OpenAI-style error event and the summary says `MidStream`.
async fn assert_mid_stream_failure(
    stub_model: &str,
    idle_timeout: Option<Duration>,
    says: &str,
    usage: Option<Usage>,
) {
    let stub = Stub::start();
    let mut failing = stub.upstream("failing", stub_model);
    if let Some(idle) = idle_timeout {
        failing.idle_timeout = idle;
    }
    let ups = upstreams(vec![failing, stub.upstream("good", "stub-ok")]);
    let got = streamed(
        ups.forward(request(
            &["failing", "good"],
            chat_body("one two three", true),
            WITHIN,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(got.model, "failing");
    let payloads = events(&collect(got.body).await);
    let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "mid_stream", "{stub_model}: {last}");
    assert_eq!(last["error"]["type"], "upstream_error");
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{stub_model}: {message}");
    assert!(
        payloads.len() >= 2,
        "{stub_model}: the chunks before the failure went through"
    );
    assert!(!payloads.iter().any(|p| p == "[DONE]"));
    let summary = got.summary.await.unwrap();
    assert_eq!(summary.class, ErrorClass::MidStream, "{stub_model}");
    assert_eq!(summary.usage, usage, "{stub_model}");
    assert_eq!(
        stub.requests("stub-ok").await,
        0,
        "{stub_model}: no fallback after the first byte"
    );
}

#[tokio::test]
async fn a_reset_mid_stream_ends_with_an_error_event() {
    assert_mid_stream_failure("stub-midstream", None, "failed mid-stream", None).await;
}

#[tokio::test]
async fn a_stall_past_the_idle_timeout_ends_with_an_error_event() {
    assert_mid_stream_failure(
        "stub-stall-3000",
        Some(Duration::from_millis(300)),
        "idle_timeout_ms",
        None,
    )
    .await;
}

#[tokio::test]
async fn a_stream_without_done_ends_with_an_error_event() {
    assert_mid_stream_failure(
        "stub-nodone",
        None,
        "without `data: [DONE]`",
        // The usage chunk came before the missing [DONE].
        Some(Usage {
            prompt_tokens: 6,
            completion_tokens: 3,
        }),
    )
    .await;
}

#[tokio::test]
async fn a_client_dropping_the_stream_is_client_gone() {
    let stub = Stub::start();
    let ups = upstreams(vec![stub.upstream("stalling", "stub-stall-5000")]);
    let mut got = streamed(
        ups.forward(request(
            &["stalling"],
            chat_body("one two three", true),
            WITHIN,
        ))
        .await
        .unwrap(),
    );
    let first = got.body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(got.body);
    let summary = tokio::time::timeout(Duration::from_secs(2), got.summary)
        .await
        .expect("the summary comes when the client drops the stream")
        .unwrap();
    assert_eq!(summary.class, ErrorClass::ClientGone);
}

#[tokio::test]
async fn a_400_to_a_stream_request_is_a_complete_answer() {
    let stub = Stub::start();
    let ups = upstreams(vec![
        stub.upstream("picky", "stub-400"),
        stub.upstream("good", "stub-ok"),
    ]);
    match ups
        .forward(request(&["picky", "good"], chat_body("hi", true), WITHIN))
        .await
        .unwrap()
    {
        Forwarded::Complete { status, body, .. } => {
            assert_eq!(status, 400);
            let error: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(error["error"]["type"], "invalid_request_error");
        }
        other => panic!("expected the 400 as a complete answer, got {other:?}"),
    }
    assert_eq!(stub.requests("stub-ok").await, 0);
}

/// 64 concurrent streams through one `Upstreams` (one connection pool):
/// every one ends complete, with its own answer (the stub echoes the
/// prompt) and its own usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_each_get_their_own_answer() {
    let stub = Stub::start();
    let ups = upstreams(vec![stub.upstream("gpt-4o", "stub-ok")]);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let ups = ups.clone();
            tokio::spawn(async move {
                let words = i % 7 + 1;
                let text = (0..words)
                    .map(|w| format!("client{i}-word{w}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let got = streamed(
                    ups.forward(request(&["gpt-4o"], chat_body(&text, true), WITHIN))
                        .await
                        .unwrap(),
                );
                let payloads = events(&collect(got.body).await);
                assert_eq!(payloads.last().unwrap(), "[DONE]", "client {i}");
                let content = content(&payloads);
                assert_eq!(content, text, "client {i} got another client's answer");
                let summary = got.summary.await.unwrap();
                assert_eq!(summary.class, ErrorClass::Ok);
                assert_eq!(
                    summary.usage.unwrap().completion_tokens,
                    words as u64,
                    "client {i}"
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(stub.requests("stub-ok").await, 64);
}
