//! The upstream config: one `[[upstream]]` table per catalog model, read from
//! the TOML file given to `serve --upstreams PATH`.
//!
//! Everything is checked at load (URL, timeouts, duplicate models, the API
//! key's variable or file), so a bad config fails before `serve` listens.
//! Keys are read once here and never logged: [`ApiKey`]'s `Debug` redacts.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::error::UpstreamError;

/// Default `connect_timeout_ms`: TCP + TLS handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Default `first_byte_timeout_ms`: from sending the request to the first
/// byte of the answer body (a non-streaming answer is generated whole
/// before its first byte, so this bounds generation time too).
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Default `idle_timeout_ms`: the longest gap between two body chunks after
/// the first byte (a stalled stream ends with an error event).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_millis(60_000);
/// The largest timeout accepted for any of the three (10 minutes).
pub const MAX_TIMEOUT: Duration = Duration::from_millis(600_000);

/// The wire format an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum UpstreamKind {
    /// OpenAI's chat completions (`POST {base_url}/chat/completions`):
    /// OpenAI, vLLM, Ollama, Together, and any compatible server.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API (`POST {base_url}/messages`, `x-api-key`),
    /// translated to and from the OpenAI wire format (text only).
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl UpstreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::OpenAi => "openai",
            UpstreamKind::Anthropic => "anthropic",
        }
    }
}

/// An API key, read from `api_key_env` or `api_key_file` at load. `Debug`
/// prints `ApiKey(<redacted>)`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// One catalog model's upstream, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The catalog model name this upstream serves.
    pub model: String,
    pub kind: UpstreamKind,
    /// The API root: requests go to `{base_url}/chat/completions`.
    pub base_url: Url,
    /// Sent as `model` in the upstream request.
    pub upstream_model: String,
    /// `None`: no `Authorization` header (a local vLLM or Ollama).
    pub api_key: Option<ApiKey>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
}

impl UpstreamConfig {
    /// An OpenAI-compatible upstream with no key and the default timeouts.
    /// `base_url` is checked by [`crate::Upstreams::from_configs`].
    pub fn openai(
        model: &str,
        base_url: &str,
        upstream_model: &str,
    ) -> Result<UpstreamConfig, UpstreamError> {
        let base_url = parse_base_url(base_url).map_err(|message| UpstreamError::Config {
            path: PathBuf::from(IN_MEMORY),
            message: format!("upstream `{model}`: field `base_url`: {message}"),
        })?;
        Ok(UpstreamConfig {
            model: model.to_string(),
            kind: UpstreamKind::OpenAi,
            base_url,
            upstream_model: upstream_model.to_string(),
            api_key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        })
    }

    /// `{base_url}/chat/completions`.
    pub fn chat_completions_url(&self) -> Url {
        self.url_under(&["chat", "completions"])
    }

    /// Where requests go: `{base_url}/chat/completions` for `openai`,
    /// `{base_url}/messages` for `anthropic`.
    pub fn endpoint_url(&self) -> Url {
        match self.kind {
            UpstreamKind::OpenAi => self.chat_completions_url(),
            UpstreamKind::Anthropic => self.url_under(&["messages"]),
        }
    }

    fn url_under(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("base_url is checked to be http(s) at load")
            .pop_if_empty()
            .extend(segments);
        url
    }
}

/// What `Config` errors name as the path for configs built in memory.
pub(crate) const IN_MEMORY: &str = "<upstream configs>";

/// The file as written (before the checks).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamsFile {
    #[serde(default)]
    upstream: Vec<UpstreamEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamEntry {
    model: String,
    kind: UpstreamKind,
    base_url: String,
    upstream_model: String,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

/// Reads and checks the file; keys are read here.
pub(crate) fn load_file(path: &Path) -> Result<Vec<UpstreamConfig>, UpstreamError> {
    let error = |message: String| UpstreamError::Config {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| error(format!("cannot read the upstream config: {e}")))?;
    let file: UpstreamsFile = toml::from_str(&text).map_err(|e| error(toml_error(&text, &e)))?;
    if file.upstream.is_empty() {
        return Err(error(
            "no [[upstream]] table: the gateway would have nothing to forward to".into(),
        ));
    }
    file.upstream
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let model = entry.model.clone();
            entry
                .check()
                .map_err(|message| error(format!("upstream {} (`{model}`): {message}", i + 1)))
        })
        .collect()
}

/// toml's own Display draws the offending line over several lines (and
/// would echo a key someone pasted into the file); one line naming the
/// field reads better in a log: `line L, column C (`field`): message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - line_start + 1;
    // Only the part before `=`: the field's name, never its value.
    let source_line = text[line_start..].lines().next().unwrap_or_default();
    match source_line.split_once('=') {
        Some((field, _)) if !field.trim().is_empty() => {
            format!(
                "line {line}, column {column} (`{}`): {message}",
                field.trim()
            )
        }
        _ => format!("line {line}, column {column}: {message}"),
    }
}

impl UpstreamEntry {
    fn check(self) -> Result<UpstreamConfig, String> {
        let base_url =
            parse_base_url(&self.base_url).map_err(|m| format!("field `base_url`: {m}"))?;
        let api_key = match (self.api_key_env, self.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "fields `api_key_env` and `api_key_file` are both set: choose one".into(),
                );
            }
            (Some(var), None) => Some(key_from_env(&var)?),
            (None, Some(file)) => Some(key_from_file(&file)?),
            (None, None) => None,
        };
        let timeout = |field: &str, ms: Option<u64>, default: Duration| match ms {
            None => Ok(default),
            Some(0) => Err(format!("field `{field}`: must be at least 1")),
            Some(ms) if Duration::from_millis(ms) > MAX_TIMEOUT => Err(format!(
                "field `{field}`: {ms} is over the limit of {} ms",
                MAX_TIMEOUT.as_millis()
            )),
            Some(ms) => Ok(Duration::from_millis(ms)),
        };
        Ok(UpstreamConfig {
            model: self.model,
            kind: self.kind,
            base_url,
            upstream_model: self.upstream_model,
            api_key,
            connect_timeout: timeout(
                "connect_timeout_ms",
                self.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            first_byte_timeout: timeout(
                "first_byte_timeout_ms",
                self.first_byte_timeout_ms,
                DEFAULT_FIRST_BYTE_TIMEOUT,
            )?,
            idle_timeout: timeout(
                "idle_timeout_ms",
                self.idle_timeout_ms,
                DEFAULT_IDLE_TIMEOUT,
            )?,
        })
    }
}

fn key_from_env(var: &str) -> Result<ApiKey, String> {
    match std::env::var(var) {
        Ok(key) => checked_key(
            key.trim(),
            &format!("environment variable `{var}` (field `api_key_env`)"),
        ),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "field `api_key_env`: environment variable `{var}` is not set"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "field `api_key_env`: environment variable `{var}` is not valid UTF-8"
        )),
    }
}

fn key_from_file(file: &Path) -> Result<ApiKey, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "field `api_key_file`: cannot read `{}`: {e}",
            file.display()
        )
    })?;
    checked_key(
        text.trim(),
        &format!("file `{}` (field `api_key_file`)", file.display()),
    )
}

/// A key must be non-empty and fit in an HTTP header; the message names
/// where it came from, never the key.
fn checked_key(key: &str, source: &str) -> Result<ApiKey, String> {
    if key.is_empty() {
        return Err(format!("the API key in {source} is empty"));
    }
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
        return Err(format!(
            "the API key in {source} has characters an HTTP header cannot carry"
        ));
    }
    Ok(ApiKey::new(key))
}

fn parse_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("`{text}`: the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}`: a base URL has no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{}`: credentials in the URL would be logged; use `api_key_env` or `api_key_file`",
            url.host_str().unwrap_or_default()
        ));
    }
    Ok(url)
}

/// Checks what a file cannot check alone: non-empty names, no model twice.
pub(crate) fn check_all(configs: &[UpstreamConfig], path: &Path) -> Result<(), UpstreamError> {
    let error = |message: String| UpstreamError::Config {
        path: path.to_path_buf(),
        message,
    };
    let mut seen = BTreeSet::new();
    for (i, config) in configs.iter().enumerate() {
        if config.model.trim().is_empty() {
            return Err(error(format!("upstream {}: field `model` is empty", i + 1)));
        }
        if config.upstream_model.trim().is_empty() {
            return Err(error(format!(
                "upstream {} (`{}`): field `upstream_model` is empty",
                i + 1,
                config.model
            )));
        }
        if !seen.insert(config.model.as_str()) {
            return Err(error(format!(
                "upstream {} (`{}`): field `model`: this model already has an upstream",
                i + 1,
                config.model
            )));
        }
        for (field, value) in [
            ("connect_timeout_ms", config.connect_timeout),
            ("first_byte_timeout_ms", config.first_byte_timeout),
            ("idle_timeout_ms", config.idle_timeout),
        ] {
            if value.is_zero() || value > MAX_TIMEOUT {
                return Err(error(format!(
                    "upstream {} (`{}`): field `{field}`: must be between 1 and {} ms",
                    i + 1,
                    config.model,
                    MAX_TIMEOUT.as_millis()
                )));
            }
        }
    }
    Ok(())
}
