//! Anthropic's Messages API behind the OpenAI wire format: the client's
//! chat-completions body becomes a Messages request, and the answer (whole,
//! or its event stream) becomes a chat completion (or its chunks).
//!
//! Text only: fields that would change the answer's shape (tools, images,
//! `n` > 1, `response_format`, logprobs) are refused with a 400 naming the
//! field, rather than silently answered differently.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use crate::sse::Framing;
use crate::usage::Usage;

/// `max_tokens` is required by the Messages API; sent when the client gives
/// neither `max_completion_tokens` nor `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The `anthropic-version` header sent with every request.
pub const API_VERSION: &str = "2023-06-01";
/// The longest single event buffered from an Anthropic stream (1 MiB).
const MAX_EVENT: usize = 1 << 20;

/// Fields refused: the answer would not be what the client asked for.
const REFUSED: [&str; 10] = [
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logprobs",
    "top_logprobs",
    "audio",
    "modalities",
    "prediction",
];

/// The Messages request for `body` (an OpenAI chat-completions body), or a
/// message naming the field that cannot be translated.
pub(crate) fn request(
    body: &Map<String, Value>,
    upstream_model: &str,
    stream: bool,
) -> Result<Vec<u8>, String> {
    for field in REFUSED {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "field `{field}` is not supported by Anthropic upstreams"
            ));
        }
    }
    if let Some(n) = body.get("n").filter(|v| !v.is_null()) {
        if n.as_u64() != Some(1) {
            return Err("field `n`: Anthropic upstreams give one choice".into());
        }
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("field `messages` must be an array")?;
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content, i)?),
            "user" | "assistant" => {
                if message.get("tool_calls").is_some_and(|v| !v.is_null()) {
                    return Err(format!(
                        "field `messages[{i}].tool_calls` is not supported by Anthropic upstreams"
                    ));
                }
                turns.push(json!({"role": role, "content": blocks_of(content, i)?}));
            }
            other => {
                return Err(format!(
                    "field `messages[{i}].role`: `{other}` is not supported by Anthropic upstreams"
                ))
            }
        }
    }
    let max_tokens = match body
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| body.get("max_tokens").filter(|v| !v.is_null()))
    {
        None => DEFAULT_MAX_TOKENS,
        Some(v) => v
            .as_u64()
            .ok_or("field `max_tokens` must be a positive integer")?,
    };
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("max_tokens".into(), max_tokens.into());
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    for field in ["temperature", "top_p"] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), v.clone());
        }
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(all)) => {
            out.insert("stop_sequences".into(), Value::Array(all.clone()));
        }
        Some(_) => return Err("field `stop` must be a string or an array".into()),
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        out.insert("stream".into(), true.into());
    }
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

fn text_of(content: &Value, i: usize) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(part.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
                _ => Err(format!(
                    "field `messages[{i}].content[{j}]`: only text parts are supported by Anthropic upstreams"
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
        _ => Err(format!("field `messages[{i}].content` must be a string or an array of parts")),
    }
}

fn blocks_of(content: &Value, i: usize) -> Result<Value, String> {
    match content {
        Value::String(s) => Ok(Value::String(s.clone())),
        Value::Array(_) => Ok(json!([{"type": "text", "text": text_of(content, i)?}])),
        _ => Err(format!(
            "field `messages[{i}].content` must be a string or an array of parts"
        )),
    }
}

fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        None => Value::Null,
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("refusal") => "content_filter".into(),
        Some(_) => "stop".into(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage_of(usage: &Value) -> Usage {
    Usage {
        prompt_tokens: usage
            .get("input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: usage
            .get("output_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

/// A whole Messages answer as a chat completion, and its usage.
pub(crate) fn response(body: &[u8]) -> Result<(Bytes, Option<Usage>), String> {
    let message: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err("not a Messages API answer (`type` is not `message`)".into());
    }
    let text: String = message
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let usage = message.get("usage").map(usage_of);
    let completion = json!({
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": now(),
        "model": message.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage.map(|u| json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        })),
    });
    Ok((Bytes::from(completion.to_string()), usage))
}

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`)
/// in OpenAI's shape; anything else is left as it is.
pub(crate) fn error_body(body: Bytes) -> Bytes {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let Some(error) = value.get("error").filter(|e| e.is_object()) else {
        return body;
    };
    Bytes::from(
        json!({"error": {
            "message": error.get("message").cloned().unwrap_or(Value::Null),
            "type": error.get("type").cloned().unwrap_or(Value::Null),
            "param": null,
            "code": null,
        }})
        .to_string(),
    )
}

/// Translates an Anthropic event stream into chat-completion chunks as the
/// events arrive: `message_start` → the role chunk, each `text_delta` → a
/// content chunk, `message_delta` → the finish chunk, `message_stop` → the
/// usage chunk and `data: [DONE]`; an `error` event fails the stream.
#[derive(Default)]
pub(crate) struct AnthropicStream {
    buffer: Vec<u8>,
    id: Value,
    model: Value,
    created: u64,
    usage: Usage,
    finished: Option<Usage>,
    done: bool,
}

impl AnthropicStream {
    fn chunk(&self, out: &mut BytesMut, delta: Value, finish: Value) {
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
    }

    fn event(&mut self, data: &Value, out: &mut BytesMut) -> Result<(), String> {
        match data.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                let message = data.get("message").cloned().unwrap_or(Value::Null);
                self.id = message.get("id").cloned().unwrap_or(Value::Null);
                self.model = message.get("model").cloned().unwrap_or(Value::Null);
                self.created = now();
                if let Some(usage) = message.get("usage") {
                    self.usage = usage_of(usage);
                }
                self.chunk(
                    out,
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                );
            }
            "content_block_delta" => {
                let delta = data.get("delta").cloned().unwrap_or(Value::Null);
                if delta.get("type").and_then(Value::as_str) == Some("text_delta") {
                    let text = delta.get("text").cloned().unwrap_or(Value::Null);
                    self.chunk(out, json!({"content": text}), Value::Null);
                }
            }
            "message_delta" => {
                if let Some(output) = data.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.completion_tokens = output;
                }
                let stop = data.pointer("/delta/stop_reason").and_then(Value::as_str);
                self.chunk(out, json!({}), finish_reason(stop));
            }
            "message_stop" => {
                let u = self.usage;
                let chunk = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [],
                    "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                              "total_tokens": u.prompt_tokens + u.completion_tokens},
                });
                out.extend_from_slice(format!("data: {chunk}\n\ndata: [DONE]\n\n").as_bytes());
                self.finished = Some(u);
                self.done = true;
            }
            "error" => {
                let message = data
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("error event");
                return Err(format!("Anthropic stream error: {message}"));
            }
            // ping, content_block_start, content_block_stop, and anything new.
            _ => {}
        }
        Ok(())
    }
}

impl Framing for AnthropicStream {
    fn feed(&mut self, bytes: Bytes) -> Result<Bytes, String> {
        self.buffer.extend_from_slice(&bytes);
        let mut out = BytesMut::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: String = text
                .lines()
                .filter_map(|line| line.trim_end_matches('\r').strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&data)
                .map_err(|e| format!("an Anthropic event is not JSON: {e}"))?;
            self.event(&data, &mut out)?;
        }
        if self.buffer.len() > MAX_EVENT {
            return Err(format!("an Anthropic event is over {MAX_EVENT} bytes"));
        }
        Ok(out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        self.finished
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, String> {
        request(body.as_object().unwrap(), "claude-x", false)
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn text_parts_max_tokens_and_developer_messages_translate() {
        let out = translate(json!({
            "model": "pointsman",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be terse."}]},
                {"role": "system", "content": "No lists."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "c"},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": ["x", "y"],
            "seed": 7,
        }))
        .unwrap();
        assert_eq!(out["system"], "Be terse.\n\nNo lists.");
        assert_eq!(out["max_tokens"], 20, "max_completion_tokens wins");
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"type": "text", "text": "a\nb"}])
        );
        assert_eq!(out["messages"].as_array().unwrap().len(), 3);
        assert_eq!(out["stop_sequences"], json!(["x", "y"]));
        assert!(out.get("seed").is_none() && out.get("stream").is_none());
    }

    #[test]
    fn what_cannot_be_said_is_refused_naming_the_field() {
        let user = json!({"role": "user", "content": "hi"});
        for (extra, field) in [
            (json!({"n": 2}), "`n`"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "`response_format`",
            ),
            (json!({"max_tokens": -1}), "`max_tokens`"),
            (json!({"stop": 5}), "`stop`"),
        ] {
            let mut body = json!({"messages": [user.clone()]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let error = translate(body).unwrap_err();
            assert!(error.contains(field), "{error}");
        }
        let image = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]});
        assert!(translate(image)
            .unwrap_err()
            .contains("messages[0].content[0]"));
        let tool =
            json!({"messages": [user, {"role": "tool", "content": "r", "tool_call_id": "1"}]});
        assert!(translate(tool).unwrap_err().contains("messages[1].role"));
        assert!(translate(json!({"n": 1, "messages": []})).is_ok());
    }

    #[test]
    fn stream_events_split_anywhere_translate_the_same() {
        let events = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"c\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hé\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
        .as_bytes();
        let mut whole = AnthropicStream::default();
        let expected = whole.feed(Bytes::from_static(events)).unwrap();
        assert!(whole.done());
        assert_eq!(
            whole.usage(),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 9
            })
        );
        let text = std::str::from_utf8(&expected).unwrap();
        assert!(
            text.contains("\"finish_reason\":\"length\"") && text.contains("\"content\":\"hé\"")
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        for split in 1..events.len() {
            let mut parts = AnthropicStream::default();
            let mut out = parts
                .feed(Bytes::copy_from_slice(&events[..split]))
                .unwrap()
                .to_vec();
            out.extend_from_slice(
                &parts
                    .feed(Bytes::copy_from_slice(&events[split..]))
                    .unwrap(),
            );
            // `created` is the clock's second: compare without it.
            let strip = |b: &[u8]| -> String {
                let text = String::from_utf8(b.to_vec()).unwrap();
                text.split("\"created\":")
                    .map(|part| part.trim_start_matches(|c: char| c.is_ascii_digit()))
                    .collect::<Vec<_>>()
                    .join("\"created\":0")
            };
            assert_eq!(strip(&out), strip(&expected), "split at {split}");
        }
    }
}
