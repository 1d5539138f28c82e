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
pub mod codec;
pub mod conn;
pub mod core;
pub mod error;
pub mod fields;
pub mod grpc;
pub mod in_flight;
pub mod metrics;
pub mod prompt_cache;
pub mod state;

/// Code generated from `proto/pointsman/v1/router.proto`.
// Generated code: prost lays out oneofs as it likes.
#[allow(clippy::large_enum_variant)]
pub mod pb {
    tonic::include_proto!("pointsman.v1");

    /// The encoded FileDescriptorSet of the API (served by reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/pointsman_descriptor.bin"));
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pointsman_classifier::Classifier;
use pointsman_store::OutcomeStore;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use batcher::{BatchConfig, Batcher};
pub use core::{Core, Limits};
pub use error::ServerError;
pub use metrics::Metrics;
pub use prompt_cache::PromptCache;
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
    pub net: NetLimits,
}

/// Connection and time limits (docs/RELIABILITY.md lists them all).
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// After the shutdown signal, how long requests in flight may take
    /// before every connection is closed and `serve` returns.
    pub drain_timeout: Duration,
    /// gRPC connections open at once; more wait in the kernel backlog.
    pub max_connections: usize,
    /// A connection whose peer sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Longest a call may take, its upload included (answered CANCELLED).
    pub request_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Interval of the server's HTTP/2 keep-alive pings (a peer that does
    /// not answer within the same interval is dropped).
    pub keepalive: Duration,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            drain_timeout: Duration::from_secs(5),
            max_connections: 512,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            max_concurrent_streams: 64,
            keepalive: Duration::from_secs(20),
        }
    }
}

/// How `serve` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight was answered and every connection closed.
    Drained,
    /// The drain deadline passed; the connections still open were cut.
    DrainDeadline,
    /// A second shutdown signal arrived during the drain; connections cut.
    Forced,
}

/// Bytes allowed per request beside its prompt (tenant, constraints and
/// framing; allowed_models entries are bounded in fields.rs).
pub const PER_ITEM_OVERHEAD: usize = 2 << 10;

/// Where the server ended up listening (ports may have been 0).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Runs the server until `shutdown` resolves, then stops accepting, lets
/// requests in flight finish, drains the encoder queue and returns. The
/// drain ends early, cutting the connections still open, when
/// `net.drain_timeout` passes or `force` resolves (a second signal); the
/// caller should then exit without waiting for background work.
/// `encoder_id` identifies the classifier's embeddings (logged with every
/// decision; router artifacts for another encoder are refused).
/// `on_bound` is called once both listeners are bound. `reload` yields
/// once per reload request (SIGHUP).
// Eight arguments until the gateway issue turns serve() into a builder that
// mounts front ends on shared state.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    config: ServeConfig,
    classifier: Classifier,
    encoder_id: String,
    store: Arc<dyn OutcomeStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    force: impl std::future::Future<Output = ()> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<Stopped> {
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
    let shared = Arc::new(Core {
        batcher,
        state,
        store,
        metrics: metrics.clone(),
        limits: config.limits.clone(),
        heads_version,
        encoder_id,
        store_slots: Arc::new(tokio::sync::Semaphore::new(core::STORE_SLOTS)),
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
                let _ = tokio::task::spawn_blocking(move || s.reload(false)).await;
            }
        })
    };

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::router_server::RouterServer<grpc::RouterService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let auth = Auth(config.auth_token.clone().map(Arc::<str>::from));
    // The largest valid request is a full RouteBatch: every item a
    // maximal prompt plus its small fields (bounded in fields.rs). Anything
    // bigger is refused before it is buffered (RESOURCE_EXHAUSTED).
    let max_message = config
        .limits
        .max_batch_request
        .max(1)
        .saturating_mul(
            config
                .limits
                .max_prompt_bytes
                .saturating_add(PER_ITEM_OVERHEAD),
        )
        .saturating_add(PER_ITEM_OVERHEAD);
    let router = in_flight::InFlight::new(
        tonic::service::interceptor::InterceptedService::new(
            pb::router_server::RouterServer::new(grpc::RouterService::new(shared.clone()))
                .max_decoding_message_size(max_message),
            auth.clone(),
        ),
        metrics.in_flight.clone(),
    );
    let admin = in_flight::InFlight::new(
        pb::admin_server::AdminServer::with_interceptor(
            grpc::AdminService::new(shared.clone()),
            auth,
        ),
        metrics.in_flight.clone(),
    );

    let net = config.net.clone();
    let mut builder = Server::builder()
        .timeout(net.request_timeout)
        .max_concurrent_streams(net.max_concurrent_streams)
        .http2_keepalive_interval(Some(net.keepalive))
        .http2_keepalive_timeout(Some(net.keepalive))
        // Bounds what a client can make us hold by resetting streams.
        .http2_max_pending_accept_reset_streams(Some(64));
    if let Some((cert, key)) = &config.tls {
        let cert = std::fs::read(cert).with_context(|| format!("--tls-cert {}", cert.display()))?;
        let key = std::fs::read(key).with_context(|| format!("--tls-key {}", key.display()))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .context("TLS configuration")?;
    }
    let health_for_shutdown = health_reporter.clone();
    let drain_timeout = net.drain_timeout;
    let (drain_began_tx, drain_began) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(
            deadline_s = drain_timeout.as_secs_f64(),
            "shutting down: draining requests in flight (a second signal exits at once)"
        );
        let _ = drain_began_tx.send(());
        health_for_shutdown
            .set_not_serving::<pb::router_server::RouterServer<grpc::RouterService>>()
            .await;
    };
    // Connections are bounded, time out when idle, and the accept loop
    // backs off on errors (conn.rs); TCP_NODELAY is set on each (with
    // Nagle on, a small response frame waits for the client's delayed ACK,
    // ~40 ms on Linux; measured with benches/route_load.rs: short prompts at
    // concurrency 1, p50 76 ms -> 31 ms, docs/PERFORMANCE.md).
    let incoming = ReceiverStream::new(conn::accept_loop(
        listener,
        net.max_connections,
        net.idle_timeout,
        "grpc",
        Some(metrics.connections.clone()),
    ));
    let server = builder
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(router)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown);

    on_bound(Bound {
        grpc: grpc_addr,
        metrics: metrics_task.as_ref().map(|(a, _)| *a),
    });
    tracing::info!(%grpc_addr, tls = config.tls.is_some(), auth = config.auth_token.is_some(), "serving");
    // The drain is bounded: once it begins, the deadline or a second signal
    // ends it, and dropping `server` leaves its connection tasks to the
    // runtime's shutdown, which closes their sockets.
    let cut_short = async move {
        if drain_began.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(drain_timeout) => Stopped::DrainDeadline,
            _ = force => Stopped::Forced,
        }
    };
    let served = tokio::select! {
        r = server => r,
        how = cut_short => {
            tracing::warn!(
                ?how,
                in_flight = metrics.in_flight.get(),
                connections = metrics.connections.get(),
                "drain cut short: closing the connections still open"
            );
            reload_task.abort();
            if let Some((_, t)) = metrics_task {
                t.abort();
            }
            return Ok(how);
        }
    };

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
    Ok(Stopped::Drained)
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
        let Some(got) = req.metadata().get("authorization") else {
            return Err(tonic::Status::unauthenticated(
                "authorization: missing; send `authorization: Bearer TOKEN`",
            ));
        };
        match bearer_token(got.as_bytes()) {
            Some(token) if constant_time_eq(token, expected.as_bytes()) => Ok(req),
            Some(_) => Err(tonic::Status::unauthenticated(
                "authorization: wrong bearer token",
            )),
            None => Err(tonic::Status::unauthenticated(
                "authorization: not a bearer token; send `authorization: Bearer TOKEN`",
            )),
        }
    }
}

/// The token of an `authorization: Bearer TOKEN` header; the scheme is
/// case-insensitive (RFC 7235), spaces around the token are ignored.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = header[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares in time that depends only on the lengths (the length of the
/// expected token is not a secret worth hiding: it is fixed per server).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
