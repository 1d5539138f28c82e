//! Serving the HTTP front end's connections with the gRPC listener's
//! limits: the same connection bound, idle timeout and accept back-off
//! (conn.rs), HTTP/2 stream and keep-alive limits, a header read timeout
//! for HTTP/1, optional TLS, and a graceful drain that the caller can cut
//! short (see `serve` in lib.rs).

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::conn::accept_loop;
use crate::NetLimits;

/// A TLS acceptor from PEM files (the same ones gRPC serves), offering
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("TLS certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `draining` turns true, then stops
/// accepting and returns once every open connection has finished its
/// requests in flight (the caller bounds that wait with the drain deadline).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    net: NetLimits,
    open: prometheus::IntGauge,
    mut draining: watch::Receiver<bool>,
) {
    let mut incoming = accept_loop(
        listener,
        net.max_connections,
        net.idle_timeout,
        "http",
        Some(open),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // A client that takes longer than this to send its headers is cut.
        .header_read_timeout(net.idle_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(net.max_concurrent_streams)
        .keep_alive_interval(net.keepalive)
        .keep_alive_timeout(net.keepalive)
        .max_pending_accept_reset_streams(64);
    let graceful = GracefulShutdown::new();
    loop {
        let conn = tokio::select! {
            c = incoming.recv() => match c {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
            _ = draining.wait_for(|d| *d) => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = net.idle_timeout;
        tokio::spawn(async move {
            match tls {
                None => {
                    let c = builder
                        .serve_connection_with_upgrades(TokioIo::new(conn), service)
                        .into_owned();
                    let _ = watcher.watch(c).await;
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(conn),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let c = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(c).await;
                }
            }
        });
    }
    // Closes the listener: new connections are refused from here on.
    drop(incoming);
    graceful.shutdown().await;
}
