//! Pointsman's gRPC service (`pointsman serve`).
//!
//! ```text
//! request ─► auth ─► validate ─► batcher (prompt cache, bounded queue, encoder thread) ─► router::decide
//!         ─► OutcomeStore::append_decision ─► response
//! ```
//!
//! Besides `pointsman.v1.Router` and `pointsman.v1.Admin` the server
//! offers `grpc.health.v1.Health` and server reflection (v1 and v1alpha),
//! and Prometheus metrics on a separate plain-HTTP port.

pub mod batcher;
pub mod error;
pub mod metrics;
pub mod prompt_cache;
pub mod service;
pub mod state;

/// Code generated from `proto/pointsman/v1/router.proto`.
pub mod pb {
    tonic::include_proto!("pointsman.v1");

    /// The encoded FileDescriptorSet of the API (served by reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/pointsman_descriptor.bin"));
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use pointsman_classifier::Classifier;
use pointsman_store::OutcomeStore;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use batcher::{BatchConfig, Batcher};
pub use error::ServerError;
pub use metrics::Metrics;
pub use prompt_cache::PromptCache;
pub use service::{Limits, Shared};
pub use state::{StateHolder, StateSource};

/// Everything `serve` needs besides the classifier and the store.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// gRPC address (loopback by default).
    pub listen: SocketAddr,
    /// Prometheus address; None = no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    pub batch: BatchConfig,
    pub limits: Limits,
    pub catalog: PathBuf,
    pub router: Option<PathBuf>,
    /// PEM certificate chain and private key; None = plaintext.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Clients must send `authorization: Bearer TOKEN`; None = no auth.
    pub auth_token: Option<String>,
}

/// Where the server ended up listening (ports may have been 0).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Runs the server until `shutdown` resolves, then stops accepting, lets
/// requests in flight finish, drains the encoder queue and returns.
/// `encoder_id` identifies the classifier's embeddings (logged with every
/// decision; router artifacts for another encoder are refused).
/// `on_bound` is called once both listeners are bound. `reload` yields
/// once per reload request (SIGHUP).
pub async fn serve(
    config: ServeConfig,
    classifier: Classifier,
    encoder_id: String,
    store: Arc<dyn OutcomeStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let heads_version = classifier.heads().metadata.version.clone();
    let state = Arc::new(StateHolder::load(StateSource {
        catalog: config.catalog.clone(),
        router: config.router.clone(),
        heads_version: heads_version.clone(),
        embedding_dim: classifier.encoder().dim(),
        encoder_id: encoder_id.clone(),
    })?);
    let metrics = Arc::new(Metrics::new());
    metrics.generation.set(1.0);
    let (batcher, encoder_thread) =
        Batcher::start(Arc::new(classifier), config.batch, metrics.clone());
    let shared = Arc::new(Shared {
        batcher,
        state,
        store,
        metrics: metrics.clone(),
        limits: config.limits.clone(),
        heads_version,
        encoder_id,
    });

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}", config.listen))?;
    let grpc_addr = listener.local_addr()?;
    let metrics_task = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?;
            let bound = l.local_addr()?;
            Some((
                bound,
                tokio::spawn(metrics::serve_metrics(l, metrics.clone())),
            ))
        }
    };

    let reload_task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while reload.recv().await.is_some() {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || service::reload(&s, false)).await;
            }
        })
    };

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::router_server::RouterServer<service::RouterService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let auth = Auth(
        config
            .auth_token
            .clone()
            .map(|t| Arc::<str>::from(format!("Bearer {t}"))),
    );
    let max_message = (config
        .limits
        .max_prompt_bytes
        .saturating_mul(config.limits.max_batch_request.max(1))
        + (1 << 16))
        .max(4 << 20);
    let router = tonic::service::interceptor::InterceptedService::new(
        pb::router_server::RouterServer::new(service::RouterService::new(shared.clone()))
            .max_decoding_message_size(max_message),
        auth.clone(),
    );
    let admin = pb::admin_server::AdminServer::with_interceptor(
        service::AdminService::new(shared.clone()),
        auth,
    );

    let mut builder = Server::builder();
    if let Some((cert, key)) = &config.tls {
        let cert = std::fs::read(cert).with_context(|| format!("--tls-cert {}", cert.display()))?;
        let key = std::fs::read(key).with_context(|| format!("--tls-key {}", key.display()))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .context("TLS configuration")?;
    }
    let health_for_shutdown = health_reporter.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests in flight");
        health_for_shutdown
            .set_not_serving::<pb::router_server::RouterServer<service::RouterService>>()
            .await;
    };
    let server = builder
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(router)
        .add_service(admin)
        // TCP_NODELAY on every accepted connection: with Nagle on, a small
        // response frame waits for the client's delayed ACK (~40 ms on
        // Linux); tonic's `tcp_nodelay` (on by default) is ignored by
        // `serve_with_incoming*`, so it is set here.
        // Measured with benches/route_load.rs: short prompts at concurrency 1,
        // p50 76 ms -> 31 ms (docs/PERFORMANCE.md).
        .serve_with_incoming_shutdown(
            tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |s| {
                if let Ok(s) = &s {
                    let _ = s.set_nodelay(true);
                }
                s
            }),
            shutdown,
        );

    on_bound(Bound {
        grpc: grpc_addr,
        metrics: metrics_task.as_ref().map(|(a, _)| *a),
    });
    tracing::info!(%grpc_addr, tls = config.tls.is_some(), auth = config.auth_token.is_some(), "serving");
    let served = server.await;

    // Every request has been answered: close the queue and wait for the encoder thread.
    reload_task.abort();
    let _ = reload_task.await;
    drop(shared);
    tokio::task::spawn_blocking(move || encoder_thread.join())
        .await?
        .ok();
    if let Some((_, t)) = metrics_task {
        t.abort();
    }
    served.context("gRPC server")?;
    tracing::info!("stopped");
    Ok(())
}

/// Bearer-token check for the Router and Admin services (health and
/// reflection stay open so probes and tooling work without a token).
#[derive(Clone)]
struct Auth(Option<Arc<str>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(expected) = &self.0 else {
            return Ok(req);
        };
        match req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some(got) if constant_time_eq(got.as_bytes(), expected.as_bytes()) => Ok(req),
            Some(_) => Err(tonic::Status::unauthenticated(
                "authorization: wrong bearer token",
            )),
            None => Err(tonic::Status::unauthenticated(
                "authorization: missing; send `authorization: Bearer TOKEN`",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
