//! The gateway's upstream layer: calls the LLM provider behind each catalog
//! model, falls back along the router's chain before the first byte, and
//! passes streams through byte for byte.
//!
//! The front end (crates/server) builds a [`ForwardRequest`] from the
//! client's body and the router's decision, calls [`Upstreams::forward`],
//! and logs the outcome from the [`Attempt`]s, the [`Usage`] and the
//! [`StreamSummary`]. This crate knows nothing of routing, HTTP serving,
//! metrics or the outcome store.

mod anthropic;
mod config;
mod error;
mod forward;
mod sse;
mod usage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;

pub use config::{
    ApiKey, UpstreamConfig, UpstreamKind, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, MAX_TIMEOUT,
};
pub use error::{ErrorClass, UpstreamError};
pub use forward::{Attempt, ForwardRequest, Forwarded, StreamSummary, Usage, MAX_RESPONSE_BYTES};
pub use sse::ByteStream;

use forward::AttemptEnd;

/// One configured upstream, ready to call.
pub(crate) struct Upstream {
    pub config: UpstreamConfig,
    pub url: Url,
    pub client: reqwest::Client,
}

/// Every catalog model's upstream, and the HTTP clients they share. Cheap to
/// clone (one `Arc`).
#[derive(Clone)]
pub struct Upstreams {
    by_model: Arc<BTreeMap<String, Upstream>>,
}

impl fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.by_model.values().map(|u| &u.config))
            .finish()
    }
}

impl Upstreams {
    /// Reads and checks the TOML file given to `serve --upstreams PATH`.
    /// Errors name the path, the upstream and the field; API keys are read
    /// here from `api_key_env` / `api_key_file`.
    pub fn load(path: &Path) -> Result<Upstreams, UpstreamError> {
        let configs = config::load_file(path)?;
        Upstreams::build(configs, path)
    }

    /// From configs built in code (tests, embedding).
    pub fn from_configs(configs: Vec<UpstreamConfig>) -> Result<Upstreams, UpstreamError> {
        Upstreams::build(configs, Path::new(config::IN_MEMORY))
    }

    fn build(configs: Vec<UpstreamConfig>, path: &Path) -> Result<Upstreams, UpstreamError> {
        config::check_all(&configs, path)?;
        // One client per connect timeout (reqwest sets it per client), so
        // upstreams on one host share a connection pool in the usual case
        // of one timeout for all.
        let mut clients: HashMap<Duration, reqwest::Client> = HashMap::new();
        let mut by_model = BTreeMap::new();
        for config in configs {
            let client = match clients.get(&config.connect_timeout) {
                Some(client) => client.clone(),
                None => {
                    let client = build_client(config.connect_timeout)?;
                    clients.insert(config.connect_timeout, client.clone());
                    client
                }
            };
            let url = config.endpoint_url();
            by_model.insert(
                config.model.clone(),
                Upstream {
                    config,
                    url,
                    client,
                },
            );
        }
        Ok(Upstreams {
            by_model: Arc::new(by_model),
        })
    }

    /// Catalog model names that have an upstream, sorted.
    pub fn models(&self) -> Vec<String> {
        self.by_model.keys().cloned().collect()
    }

    pub fn get(&self, model: &str) -> Option<&UpstreamConfig> {
        self.by_model.get(model).map(|u| &u.config)
    }

    /// Tries `req.chain` in order. Models without an upstream are skipped
    /// (recorded as `NotConfigured`). Falls back to the next model on a
    /// connect error, a timeout, 429, 5xx or a malformed answer before the
    /// first byte reaches the client, while `req.deadline` allows. A 4xx
    /// other than 429 is returned as is (`Forwarded::Complete`): another
    /// model will not fix a wrong request.
    pub async fn forward(&self, req: ForwardRequest) -> Result<Forwarded, UpstreamError> {
        let started = Instant::now();
        let ForwardRequest {
            chain,
            mut body,
            deadline,
        } = req;
        if !chain.iter().any(|model| self.by_model.contains_key(model)) {
            return Err(UpstreamError::NoUpstream { chain });
        }
        let stream = forward::prepare_body(&mut body)?;
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut last_status = None;
        let mut last_body = None;
        let mut tried = HashSet::new();
        for model in &chain {
            if !tried.insert(model.as_str()) {
                continue;
            }
            let Some(upstream) = self.by_model.get(model) else {
                attempts.push(Attempt {
                    model: model.clone(),
                    class: ErrorClass::NotConfigured,
                    status: None,
                    latency: Duration::ZERO,
                });
                continue;
            };
            if Instant::now() >= deadline {
                attempts.push(Attempt {
                    model: model.clone(),
                    class: ErrorClass::Deadline,
                    status: None,
                    latency: Duration::ZERO,
                });
                break;
            }
            let attempt_started = Instant::now();
            match forward::attempt(upstream, &mut body, stream, deadline, started).await {
                AttemptEnd::Answered(mut answer) => {
                    let (Forwarded::Complete { attempts: own, .. }
                    | Forwarded::Stream { attempts: own, .. }) = &mut answer;
                    attempts.append(own);
                    *own = attempts;
                    return Ok(answer);
                }
                AttemptEnd::Failed {
                    class,
                    status,
                    body,
                } => {
                    tracing::info!(model = %model, class = %class, status = ?status, "upstream attempt failed");
                    attempts.push(Attempt {
                        model: model.clone(),
                        class,
                        status,
                        latency: attempt_started.elapsed(),
                    });
                    if status.is_some() {
                        last_status = status;
                        last_body = body;
                    }
                    if !class.falls_back() {
                        break;
                    }
                }
            }
        }
        Err(UpstreamError::AllFailed {
            attempts,
            last_status,
            last_body,
        })
    }
}

fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, UpstreamError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        // A redirected POST would lose its body or change method: an
        // upstream that redirects is misconfigured (BadResponse).
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| UpstreamError::HttpClient(sse::error_chain(&e)))
}

/// reqwest is built without a crypto provider (its default, aws-lc-rs, needs
/// a C toolchain and cmake); ring is already in the tree through tonic.
/// Installing is a no-op when a provider is already installed.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
