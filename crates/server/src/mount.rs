//! Mounting the front ends on the core: the core itself (state, encoder
//! thread, metrics), the gRPC services and the HTTP gateway, each bound to
//! its listener with the shared limits, TLS files and bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use pointsman_classifier::Classifier;
use pointsman_store::OutcomeStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::{
    auth, conn, core, grpc, http, in_flight, pb, Batcher, Core, HttpConfig, Limits, Metrics,
    ServeConfig, StateHolder, StateSource, PER_ITEM_OVERHEAD,
};

/// Loads the state and starts the encoder thread: the core every front end shares.
pub(crate) fn start_core(
    config: &ServeConfig,
    classifier: Classifier,
    encoder_id: String,
    store: Arc<dyn OutcomeStore>,
) -> anyhow::Result<(Arc<Core>, std::thread::JoinHandle<()>)> {
    let heads_version = classifier.heads().metadata.version.clone();
    let state = Arc::new(StateHolder::load(StateSource {
        catalog: config.catalog.clone(),
        router: config.router.clone(),
        heads_version: heads_version.clone(),
        embedding_dim: classifier.encoder().dim(),
        encoder_id: encoder_id.clone(),
    })?);
    let tenants =
        core::tenants::TenantsHolder::load(config.tenants.clone(), &state.snapshot().catalog)?;
    let metrics = Arc::new(Metrics::new());
    metrics.generation.set(1.0);
    let (batcher, encoder_thread) =
        Batcher::start(Arc::new(classifier), config.batch, metrics.clone());
    let core = Arc::new(Core {
        batcher,
        state,
        store,
        metrics,
        limits: config.limits.clone(),
        heads_version,
        encoder_id,
        store_slots: Arc::new(tokio::sync::Semaphore::new(core::STORE_SLOTS)),
        rollout: Arc::new(core::rollout::Rollout::default()),
        tenants: Arc::new(tenants),
        spend: Arc::new(core::tenants::SharedSpend::default()),
    });
    let live = core.state.snapshot().versions.router_artifact.clone();
    core.metrics.set_artifacts(&live, "");
    Ok((core, encoder_thread))
}

/// Loads `--candidate-router` at start-up. It records a rollout event in
/// the store, so it must run off the async runtime (the PostgreSQL client
/// blocks on a runtime of its own, which panics inside another).
pub(crate) fn load_start_up_candidate(core: &Core, config: &ServeConfig) -> anyhow::Result<()> {
    if let Some((path, mode)) = &config.candidate {
        core.load_candidate(
            path,
            *mode,
            core::rollout::Actor {
                who: "serve --candidate-router".into(),
                why: "start-up".into(),
            },
        )
        .map_err(|e| anyhow::anyhow!("--candidate-router {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The gRPC front end, bound and ready to run.
pub(crate) struct GrpcFrontEnd {
    pub addr: SocketAddr,
    pub health: tonic_health::server::HealthReporter,
    pub server: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
    >,
}

/// The largest valid gRPC request: a full RouteBatch, every item a maximal
/// prompt plus its small fields (bounded in fields.rs). Anything bigger is
/// refused before it is buffered (RESOURCE_EXHAUSTED). A chat completion
/// on the HTTP front end may be as large.
pub fn max_message_bytes(limits: &Limits) -> usize {
    limits
        .max_batch_request
        .max(1)
        .saturating_mul(limits.max_prompt_bytes.saturating_add(PER_ITEM_OVERHEAD))
        .saturating_add(PER_ITEM_OVERHEAD)
}

pub(crate) async fn mount_grpc(
    config: &ServeConfig,
    core: &Arc<Core>,
    mut draining: watch::Receiver<bool>,
) -> anyhow::Result<GrpcFrontEnd> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = &core.metrics;
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

    let auth = auth::Auth(config.auth_token.clone().map(Arc::<str>::from));
    let router = in_flight::InFlight::new(
        tonic::service::interceptor::InterceptedService::new(
            pb::router_server::RouterServer::new(grpc::RouterService::new(core.clone()))
                .max_decoding_message_size(max_message_bytes(&config.limits)),
            auth.clone(),
        ),
        metrics.in_flight.clone(),
    );
    let admin = in_flight::InFlight::new(
        pb::admin_server::AdminServer::with_interceptor(
            grpc::AdminService::new(core.clone()),
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
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = draining.wait_for(|d| *d).await;
        });
    Ok(GrpcFrontEnd {
        addr,
        health: health_reporter,
        server: Box::pin(server),
    })
}

pub(crate) async fn mount_http(
    config: &ServeConfig,
    http_config: &HttpConfig,
    core: &Arc<Core>,
    draining: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(http_config.listen)
        .await
        .with_context(|| format!("--http-listen {}", http_config.listen))?;
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        None => None,
        Some((cert, key)) => Some(http::listen::tls_acceptor(cert, key)?),
    };
    let gateway = Arc::new(http::Gateway {
        core: core.clone(),
        upstreams: http_config.upstreams.clone(),
        auth: auth::Auth(config.auth_token.clone().map(Arc::<str>::from)),
        bodies: http::BodyLimits {
            small: config
                .limits
                .max_prompt_bytes
                .saturating_add(PER_ITEM_OVERHEAD),
            chat: max_message_bytes(&config.limits),
        },
        request_timeout: config.net.request_timeout,
    });
    let task = tokio::spawn(http::listen::serve(
        listener,
        http::router(gateway),
        tls,
        config.net.clone(),
        core.metrics.http_connections.clone(),
        draining,
    ));
    Ok((addr, task))
}
