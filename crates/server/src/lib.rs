//! Pointsman's server (`pointsman serve`): one transport-neutral core
//! (`core`) with front ends mounted on it.
//!
//! ```text
//! gRPC (grpc.rs) ─┐
//! HTTP (http/)  ──┼─► core: validate ─► batcher (prompt cache, bounded queue, encoder thread)
//! CLI route ──────┘        ─► decide ─► OutcomeStore::append_decision ─► Routed
//! ```
//!
//! gRPC is always served: `pointsman.v1.Router` and `pointsman.v1.Admin`,
//! `grpc.health.v1.Health` and server reflection (v1 and v1alpha). The
//! HTTP gateway (OpenAI-compatible, forwarding to upstream models) is
//! served when an HTTP address is given, and Prometheus metrics on a
//! separate plain-HTTP port.

pub mod auth;
pub mod batcher;
pub mod codec;
pub mod conn;
pub mod core;
pub mod error;
pub mod exposure;
pub mod fields;
pub mod grpc;
pub mod http;
pub mod in_flight;
pub mod metrics;
mod mount;
pub mod prompt_cache;
pub mod published;
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
use tokio::sync::watch;

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub use batcher::{BatchConfig, Batcher};
pub use core::rollout::{RolloutMode, RolloutSignal};
pub use core::{Core, Exploration, Limits};
pub use error::ServerError;
pub use metrics::Metrics;
pub use mount::max_message_bytes;
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
    /// The HTTP gateway; None = gRPC only.
    pub http: Option<HttpConfig>,
    /// How often to poll the store for a newly published router artifact
    /// (published.rs); None = never. The first poll runs before serving.
    pub publish_poll: Option<Duration>,
    /// Per-tenant policies (TOML, docs/ROLLOUT.md); None = none.
    pub tenants: Option<PathBuf>,
    /// A candidate router artifact to load beside the live one, and how.
    pub candidate: Option<(PathBuf, core::rollout::RolloutMode)>,
    /// How often the per-tenant spend counters sync with the store (the
    /// staleness bound of another replica's spend; docs/ROLLOUT.md).
    pub spend_sync: Duration,
}

/// The HTTP front end: where it listens and whom it forwards to. It shares
/// TLS, auth, connection limits and the drain with gRPC.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// None: routing endpoints only; chat completions answer 503.
    pub upstreams: Option<pointsman_upstream::Upstreams>,
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
    pub http: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Builds and runs the server: the core on shared state, then the front
/// ends mounted on it (gRPC always, HTTP when configured, metrics when
/// configured).
///
/// `run` serves until `shutdown` resolves, then stops accepting, lets
/// requests in flight finish, drains the encoder queue and returns. The
/// drain ends early, cutting the connections still open, when
/// `net.drain_timeout` passes or `force` resolves (a second signal); the
/// caller should then exit without waiting for background work.
pub struct Serve {
    config: ServeConfig,
    classifier: Classifier,
    encoder_id: String,
    store: Arc<dyn OutcomeStore>,
    shutdown: BoxFuture,
    force: BoxFuture,
    reload: Option<tokio::sync::mpsc::Receiver<()>>,
    rollout_signals: Option<tokio::sync::mpsc::Receiver<RolloutSignal>>,
    on_bound: Option<Box<dyn FnOnce(Bound) + Send>>,
}

impl Serve {
    /// `encoder_id` identifies the classifier's embeddings (logged with
    /// every decision; router artifacts for another encoder are refused).
    pub fn new(
        config: ServeConfig,
        classifier: Classifier,
        encoder_id: String,
        store: Arc<dyn OutcomeStore>,
    ) -> Serve {
        Serve {
            config,
            classifier,
            encoder_id,
            store,
            shutdown: Box::pin(std::future::pending()),
            force: Box::pin(std::future::pending()),
            reload: None,
            rollout_signals: None,
            on_bound: None,
        }
    }

    /// Resolves when the server should drain and stop (first signal).
    pub fn shutdown(mut self, f: impl std::future::Future<Output = ()> + Send + 'static) -> Serve {
        self.shutdown = Box::pin(f);
        self
    }

    /// Resolves when a drain in progress should be cut short (second signal).
    pub fn force(mut self, f: impl std::future::Future<Output = ()> + Send + 'static) -> Serve {
        self.force = Box::pin(f);
        self
    }

    /// Yields once per reload request (SIGHUP).
    pub fn reload(mut self, rx: tokio::sync::mpsc::Receiver<()>) -> Serve {
        self.reload = Some(rx);
        self
    }

    /// Yields once per promote or abort signal (SIGUSR1, SIGUSR2).
    pub fn rollout_signals(mut self, rx: tokio::sync::mpsc::Receiver<RolloutSignal>) -> Serve {
        self.rollout_signals = Some(rx);
        self
    }

    /// Called once every listener is bound.
    pub fn on_bound(mut self, f: impl FnOnce(Bound) + Send + 'static) -> Serve {
        self.on_bound = Some(Box::new(f));
        self
    }

    pub async fn run(self) -> anyhow::Result<Stopped> {
        let Serve {
            config,
            classifier,
            encoder_id,
            store,
            shutdown,
            force,
            reload,
            rollout_signals,
            on_bound,
        } = self;
        let (core, encoder_thread) = mount::start_core(&config, classifier, encoder_id, store)?;
        let metrics = core.metrics.clone();
        let (c, cfg) = (core.clone(), config.clone());
        tokio::task::spawn_blocking(move || mount::load_start_up_candidate(&c, &cfg)).await??;
        // Budgets start from the store's count for this period (off the
        // runtime: the PostgreSQL client blocks).
        let c = core.clone();
        tokio::task::spawn_blocking(move || c.seed_spend()).await?;
        // A replica joining a fleet serves the fleet's published version
        // from its first request, not the files it was started with.
        let publish_task = match config.publish_poll {
            None => None,
            Some(every) => {
                let mut poller = published::Poller::default();
                poller.poll(&core).await;
                Some(tokio::spawn(published::poll_forever(
                    core.clone(),
                    poller,
                    every,
                )))
            }
        };

        let spend_task = tokio::spawn(core::sync_spend_forever(core.clone(), config.spend_sync));

        // The one drain signal every front end watches.
        let (draining_tx, draining) = watch::channel(false);
        let grpc = mount::mount_grpc(&config, &core, draining.clone()).await?;
        let http = match &config.http {
            None => None,
            Some(h) => Some(mount::mount_http(&config, h, &core, draining.clone()).await?),
        };
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
            let core = core.clone();
            let mut reload = reload;
            tokio::spawn(async move {
                let Some(rx) = reload.as_mut() else {
                    return;
                };
                while rx.recv().await.is_some() {
                    let c = core.clone();
                    let _ = tokio::task::spawn_blocking(move || c.reload(false)).await;
                }
            })
        };
        let rollout_task = {
            let core = core.clone();
            let mut signals = rollout_signals;
            tokio::spawn(async move {
                let Some(rx) = signals.as_mut() else {
                    return;
                };
                while let Some(sig) = rx.recv().await {
                    let c = core.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let actor = core::rollout::Actor {
                            who: format!("signal:{}", sig.signal_name()),
                            why: String::new(),
                        };
                        let r = match sig {
                            RolloutSignal::Promote => c.promote(actor),
                            RolloutSignal::Abort => c.abort(actor),
                        };
                        if let Err(e) = r {
                            tracing::warn!(signal = sig.signal_name(), error = %e, "rollout signal refused");
                        }
                    })
                    .await;
                }
            })
        };

        if let Some(f) = on_bound {
            f(Bound {
                grpc: grpc.addr,
                http: http.as_ref().map(|(a, _)| *a),
                metrics: metrics_task.as_ref().map(|(a, _)| *a),
            });
        }
        tracing::info!(grpc = %grpc.addr, http = ?http.as_ref().map(|(a, _)| *a), tls = config.tls.is_some(), auth = config.auth_token.is_some(), "serving");

        let drain_timeout = config.net.drain_timeout;
        let health = grpc.health.clone();
        let (drain_began_tx, drain_began) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!(
                deadline_s = drain_timeout.as_secs_f64(),
                "shutting down: draining requests in flight (a second signal exits at once)"
            );
            let _ = drain_began_tx.send(());
            let _ = draining_tx.send(true);
            health
                .set_not_serving::<pb::router_server::RouterServer<grpc::RouterService>>()
                .await;
            // Keep the sender alive: a dropped sender would read as "not draining".
            std::future::pending::<()>().await;
        });
        // The drain is bounded: once it begins, the deadline or a second
        // signal ends it, and dropping the servers leaves their connection
        // tasks to the runtime's shutdown, which closes their sockets.
        let cut_short = async move {
            if drain_began.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(drain_timeout) => Stopped::DrainDeadline,
                _ = force => Stopped::Forced,
            }
        };
        let http_done = async move {
            if let Some((_, task)) = http {
                let _ = task.await;
            }
        };
        let served = tokio::select! {
            (r, ()) = async { tokio::join!(grpc.server, http_done) } => r,
            how = cut_short => {
                tracing::warn!(
                    ?how,
                    in_flight = metrics.in_flight.get(),
                    connections = metrics.connections.get(),
                    http_connections = metrics.http_connections.get(),
                    "drain cut short: closing the connections still open"
                );
                reload_task.abort();
                if let Some(t) = publish_task {
                    t.abort();
                }
                rollout_task.abort();
                spend_task.abort();
                if let Some((_, t)) = metrics_task {
                    t.abort();
                }
                return Ok(how);
            }
        };

        // Every request has been answered: close the queue and wait for the encoder thread.
        reload_task.abort();
        rollout_task.abort();
        let _ = reload_task.await;
        if let Some(t) = publish_task {
            t.abort();
            let _ = t.await;
        }
        let _ = rollout_task.await;
        // The spend counted since the last sync goes to the store, so the
        // other replicas (and this one's restart) count it.
        spend_task.abort();
        let _ = spend_task.await;
        let c = core.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.sync_spend()).await {
            tracing::warn!(error = %e, "last tenant spend sync failed: this replica's spend since the last sync is not in the store");
        }
        drop(core);
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
}
