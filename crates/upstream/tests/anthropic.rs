//! `kind = "anthropic"`: the OpenAI body translated to the Messages API and
//! the answer (whole or streamed) translated back, against the stub's
//! `/messages` endpoint.

mod support;

use std::time::Duration;

use pointsman_upstream::{ErrorClass, UpstreamConfig, UpstreamKind, Usage};
use serde_json::{json, Value};
use support::{
    chat_body, classes, collect, complete, content, events, request, streamed, upstreams, Stub,
};

const WITHIN: Duration = Duration::from_secs(20);

fn claude(stub: &Stub, model: &str, stub_model: &str) -> UpstreamConfig {
    let mut config = stub.upstream(model, stub_model);
    config.kind = UpstreamKind::Anthropic;
    config
}

#[tokio::test]
async fn a_whole_answer_is_translated_both_ways() {
    let stub = Stub::start();
    let mut config = claude(&stub, "claude", "stub-ok");
    config.api_key = Some(pointsman_upstream::ApiKey::new("sk-ant-test"));
    let ups = upstreams(vec![config]);
    let mut body = chat_body("tell me four words", false);
    body.insert("stop".into(), "END".into());
    body.insert("user".into(), "client-9".into());

    let (model, status, answer, usage, attempts) = complete(
        ups.forward(request(&["claude"], body, WITHIN))
            .await
            .unwrap(),
    );
    assert_eq!((model.as_str(), status), ("claude", 200));
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "tell me four words"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["total_tokens"], 11);
    // "You answer briefly." (3, as `system`) + 4 words in; 4 out.
    assert_eq!(
        usage,
        Some(Usage {
            prompt_tokens: 7,
            completion_tokens: 4
        })
    );
    assert_eq!(classes(&attempts), [("claude", ErrorClass::Ok)]);
    assert_eq!(attempts[0].status, Some(200));

    let stats = stub.stats().await;
    let sent = &stats["last_request"]["stub-ok"];
    assert_eq!(
        *sent,
        json!({
            "model": "stub-ok",
            "max_tokens": 4096,
            "system": "You answer briefly.",
            "messages": [{"role": "user", "content": "tell me four words"}],
            "temperature": 0.25,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "client-9"},
        })
    );
    assert_eq!(
        stats["auth"]["stub-ok"],
        "x-api-key sk-ant-test; anthropic-version 2023-06-01"
    );
}

#[tokio::test]
async fn a_stream_is_translated_to_chat_completion_chunks() {
    let stub = Stub::start();
    let ups = upstreams(vec![claude(&stub, "claude", "stub-ok")]);
    let text = "stream these words back";
    let got = streamed(
        ups.forward(request(&["claude"], chat_body(text, true), WITHIN))
            .await
            .unwrap(),
    );
    let summary = got.summary;
    let payloads = events(&collect(got.body).await);
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert_eq!(content(&payloads), text);
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec!["stop"]);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 4);

    let summary = summary.await.unwrap();
    assert_eq!(summary.class, ErrorClass::Ok);
    assert_eq!(
        summary.usage,
        Some(Usage {
            prompt_tokens: 7,
            completion_tokens: 4
        })
    );
    assert_eq!(
        stub.stats().await["last_request"]["stub-ok"]["stream"],
        true
    );
}

#[tokio::test]
async fn anthropic_failures_fall_back_and_a_400_comes_back_in_openai_shape() {
    let stub = Stub::start();
    let ups = upstreams(vec![
        claude(&stub, "limited", "stub-429"),
        claude(&stub, "overloaded", "stub-529"),
        claude(&stub, "reset", "stub-reset"),
        claude(&stub, "picky", "stub-400"),
        stub.upstream("gpt", "stub-ok"),
    ]);
    let req = request(
        &["limited", "overloaded", "reset", "gpt"],
        chat_body("hi", false),
        WITHIN,
    );
    let (model, _, answer, _, attempts) = complete(ups.forward(req).await.unwrap());
    assert_eq!(model, "gpt");
    assert_eq!(answer["choices"][0]["message"]["content"], "hi");
    let classes: Vec<_> = attempts.iter().map(|a| a.class).collect();
    assert_eq!(
        classes,
        vec![
            ErrorClass::RateLimited,
            ErrorClass::Server,
            ErrorClass::Connect,
            ErrorClass::Ok
        ]
    );

    let req = request(&["picky", "gpt"], chat_body("hi", false), WITHIN);
    let (model, status, answer, _, attempts) = complete(ups.forward(req).await.unwrap());
    assert_eq!((model.as_str(), status), ("picky", 400));
    assert_eq!(answer["error"]["message"], "Invalid request (stub)");
    assert_eq!(answer["error"]["type"], "invalid_request_error");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        stub.requests("stub-ok").await,
        1,
        "no fallback after the 400"
    );
}

#[tokio::test]
async fn a_field_anthropic_cannot_take_is_a_400_naming_it_and_nothing_is_sent() {
    let stub = Stub::start();
    let ups = upstreams(vec![
        claude(&stub, "claude", "stub-ok"),
        stub.upstream("gpt", "stub-ok"),
    ]);
    let mut body = chat_body("hi", false);
    body.insert(
        "tools".into(),
        json!([{"type": "function", "function": {"name": "f"}}]),
    );
    let (model, status, answer, _, attempts) = complete(
        ups.forward(request(&["claude", "gpt"], body, WITHIN))
            .await
            .unwrap(),
    );
    assert_eq!((model.as_str(), status), ("claude", 400));
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`tools`") && message.contains("claude"),
        "{message}"
    );
    assert_eq!(classes(&attempts), [("claude", ErrorClass::Client)]);
    assert_eq!(attempts[0].status, None, "nothing was sent");
    assert_eq!(stub.requests("stub-ok").await, 0);
}

async fn mid_stream(stub_model: &str, says: &str) {
    let stub = Stub::start();
    let ups = upstreams(vec![claude(&stub, "claude", stub_model)]);
    let got = streamed(
        ups.forward(request(
            &["claude"],
            chat_body("one two three", true),
            WITHIN,
        ))
        .await
        .unwrap(),
    );
    let summary = got.summary;
    let text = String::from_utf8(collect(got.body).await.to_vec()).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let last: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "mid_stream", "{text}");
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    assert!(
        text.contains("\"role\":\"assistant\""),
        "the first chunk went through: {text}"
    );
    assert_eq!(summary.await.unwrap().class, ErrorClass::MidStream);
}

#[tokio::test]
async fn a_reset_mid_stream_ends_with_an_error_event() {
    mid_stream("stub-midstream", "failed mid-stream").await;
}

#[tokio::test]
async fn an_anthropic_error_event_ends_the_stream_with_an_error_event() {
    mid_stream("stub-error-event", "Overloaded (stub)").await;
}
