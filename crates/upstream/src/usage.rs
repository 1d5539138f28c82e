//! Token usage as OpenAI reports it (`usage` in a completion, or in the last
//! chunk of a stream asked for with `stream_options.include_usage`).

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The one field read from a completion or a chunk; the rest is skipped.
#[derive(Deserialize)]
pub(crate) struct UsageEnvelope {
    #[serde(default)]
    pub usage: Option<Usage>,
}
