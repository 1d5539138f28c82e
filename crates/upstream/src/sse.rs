//! Streaming pass-through: the upstream's SSE bytes go to the client as they
//! arrive (never re-serialised); a scanner reads `usage` and `data: [DONE]`
//! on the side, and a failure after the first byte ends the stream with one
//! OpenAI-style error event.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::oneshot;

use crate::error::ErrorClass;
use crate::forward::StreamSummary;
use crate::usage::{Usage, UsageEnvelope};

/// The client-facing body of a streamed answer.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub(crate) type UpstreamBody = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The longest SSE line the usage scanner buffers across chunks (1 MiB); a
/// longer line is passed through but not scanned.
const MAX_SCANNED_LINE: usize = 1 << 20;

/// What a stream's bytes become on their way to the client, and what is
/// read from them on the side. OpenAI upstreams pass through unchanged
/// ([`SseScanner`]); other wire formats translate (crate::anthropic).
pub(crate) trait Framing: Send {
    /// The bytes for the client (possibly none yet) from the upstream's
    /// next bytes; `Err` fails the stream with that message.
    fn feed(&mut self, bytes: Bytes) -> Result<Bytes, String>;
    /// The token usage the stream reported, once it has.
    fn usage(&self) -> Option<Usage>;
    /// Whether the stream's end marker (`data: [DONE]`) has passed.
    fn done(&self) -> bool;
}

impl Framing for SseScanner {
    fn feed(&mut self, bytes: Bytes) -> Result<Bytes, String> {
        self.scan(&bytes);
        Ok(bytes)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn done(&self) -> bool {
        self.saw_done
    }
}

/// Reads SSE `data:` lines as bytes go by: the last non-null `usage`, and
/// whether `data: [DONE]` came.
#[derive(Default)]
pub(crate) struct SseScanner {
    partial: Vec<u8>,
    overflowed: bool,
    pub usage: Option<Usage>,
    pub saw_done: bool,
}

impl SseScanner {
    pub fn scan(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            let (head, rest) = bytes.split_at(newline);
            bytes = &rest[1..];
            if self.overflowed {
                self.overflowed = false;
                self.partial.clear();
            } else if self.partial.is_empty() {
                self.line(head);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line(&line);
                line.clear();
                self.partial = line;
            }
        }
        if self.overflowed {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_SCANNED_LINE {
            self.overflowed = true;
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            self.saw_done = true;
        } else if contains(data, b"\"usage\"") {
            if let Ok(UsageEnvelope { usage: Some(usage) }) = serde_json::from_slice(data) {
                self.usage = Some(usage);
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One OpenAI-style error event, the last thing a failed stream sends.
pub(crate) fn error_event(message: &str, class: ErrorClass) -> Bytes {
    let event = serde_json::json!({
        "error": {
            "message": message,
            "type": "upstream_error",
            "code": class.as_str(),
        }
    });
    Bytes::from(format!("data: {event}\n\n"))
}

/// The stream handed to the front end. Its summary is sent when the
/// upstream ends, fails, or the client drops the stream (`ClientGone`).
pub(crate) struct PassThrough {
    model: String,
    first: Option<Bytes>,
    upstream: UpstreamBody,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    framing: Box<dyn Framing>,
    started: Instant,
    summary: Option<oneshot::Sender<StreamSummary>>,
    finished: bool,
}

impl PassThrough {
    pub fn new(
        model: String,
        first: Bytes,
        upstream: UpstreamBody,
        framing: Box<dyn Framing>,
        idle_timeout: Duration,
        started: Instant,
        summary: oneshot::Sender<StreamSummary>,
    ) -> PassThrough {
        PassThrough {
            model,
            first: Some(first),
            upstream,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            framing,
            started,
            summary: Some(summary),
            finished: false,
        }
    }

    fn finish(&mut self, class: ErrorClass) {
        self.finished = true;
        if let Some(sender) = self.summary.take() {
            // The receiver may be gone (the front end chose not to wait).
            let _ = sender.send(StreamSummary {
                usage: self.framing.usage(),
                latency: self.started.elapsed(),
                class,
            });
        }
    }

    fn fail(&mut self, message: String) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        tracing::warn!(model = %self.model, %message, "upstream stream failed after the first byte");
        self.finish(ErrorClass::MidStream);
        Poll::Ready(Some(Ok(error_event(&message, ErrorClass::MidStream))))
    }
}

impl Stream for PassThrough {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            let bytes = match this.first.take() {
                Some(first) => first,
                None => match this.upstream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(bytes))) => bytes,
                    Poll::Ready(Some(Err(e))) => {
                        let message = format!(
                            "upstream `{}` failed mid-stream: {}",
                            this.model,
                            error_chain(&e)
                        );
                        return this.fail(message);
                    }
                    Poll::Ready(None) if this.framing.done() => {
                        this.finish(ErrorClass::Ok);
                        return Poll::Ready(None);
                    }
                    Poll::Ready(None) => {
                        let message = format!(
                            "upstream `{}` ended the stream without `data: [DONE]`",
                            this.model
                        );
                        return this.fail(message);
                    }
                    Poll::Pending => {
                        if this.idle.as_mut().poll(cx).is_ready() {
                            let message = format!(
                                "upstream `{}` sent nothing for {} ms (idle_timeout_ms)",
                                this.model,
                                this.idle_timeout.as_millis()
                            );
                            return this.fail(message);
                        }
                        return Poll::Pending;
                    }
                },
            };
            if bytes.is_empty() {
                continue;
            }
            let next = tokio::time::Instant::now() + this.idle_timeout;
            this.idle.as_mut().reset(next);
            match this.framing.feed(bytes) {
                Err(message) => {
                    let message = format!("upstream `{}`: {message}", this.model);
                    return this.fail(message);
                }
                // Nothing for the client yet (a partial or ignored event).
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(out))),
            }
        }
    }
}

impl Drop for PassThrough {
    fn drop(&mut self) {
        if self.summary.is_some() {
            self.finish(ErrorClass::ClientGone);
        }
    }
}

/// An error and its sources, one line (reqwest's Display alone hides the
/// cause, e.g. "error decoding response body").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,\"total_tokens\":46}}\r\n\r\n";

    #[test]
    fn reads_usage_and_done_split_at_every_byte() {
        let mut stream =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n".to_vec();
        stream.extend_from_slice(USAGE);
        stream.extend_from_slice(b"data: [DONE]\n\n");
        for split in 0..stream.len() {
            let mut scanner = SseScanner::default();
            scanner.scan(&stream[..split]);
            scanner.scan(&stream[split..]);
            assert_eq!(
                scanner.usage,
                Some(Usage {
                    prompt_tokens: 12,
                    completion_tokens: 34
                }),
                "split at {split}"
            );
            assert!(scanner.saw_done, "split at {split}");
        }
    }

    #[test]
    fn ignores_null_usage_comments_and_done_inside_content() {
        let mut scanner = SseScanner::default();
        scanner.scan(b": keep-alive\n\ndata: {\"usage\": null}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"data: [DONE]\"}}]}\n\n");
        assert_eq!(scanner.usage, None);
        assert!(!scanner.saw_done);
    }

    #[test]
    fn an_overlong_line_is_skipped_and_scanning_resumes_after_it() {
        let mut scanner = SseScanner::default();
        let long = vec![b'x'; MAX_SCANNED_LINE + 10];
        scanner.scan(b"data: ");
        scanner.scan(&long);
        assert!(
            scanner.overflowed && scanner.partial.is_empty(),
            "not buffered"
        );
        scanner.scan(b"\n\n");
        assert!(!scanner.overflowed);
        scanner.scan(USAGE);
        assert_eq!(scanner.usage.map(|u| u.completion_tokens), Some(34));
    }

    #[test]
    fn the_error_event_is_openai_shaped() {
        let event = error_event("upstream `m` failed", ErrorClass::MidStream);
        let text = std::str::from_utf8(&event).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert!(text.ends_with("\n\n"));
        assert_eq!(json["error"]["code"], "mid_stream");
        assert_eq!(json["error"]["message"], "upstream `m` failed");
    }
}
