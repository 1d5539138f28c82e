//! Accepting connections: a bound on how many are open at once, an idle
//! timeout on each, and a back-off when `accept` fails (e.g. out of file
//! descriptors) instead of a busy loop.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long the accept loop waits after a failed `accept` (EMFILE, ENFILE,
/// ENOBUFS...). Without it a full descriptor table makes the loop spin at
/// 100% CPU, because the pending connection stays in the backlog and every
/// retry fails at once.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts on `listener`, at most `max_connections` open at once (the next
/// connection waits in the kernel backlog until one closes), each closed
/// after `idle_timeout` without a byte from the peer. Connections are sent
/// on the returned channel; the listener is closed as soon as the receiver
/// is dropped (tonic drops it when shutdown begins).
pub fn accept_loop(
    listener: TcpListener,
    max_connections: usize,
    idle_timeout: Duration,
    what: &'static str,
    open: Option<prometheus::IntGauge>,
) -> tokio::sync::mpsc::Receiver<io::Result<LimitedConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = tx.closed() => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    let conn = LimitedConn::new(sock, permit, idle_timeout, open.clone());
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(listener = what, error = %e, backoff_ms = ACCEPT_BACKOFF.as_millis() as u64, "accept failed; backing off");
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    });
    rx
}

/// A TCP connection that holds one of the server's connection slots and
/// fails its reads with `TimedOut` once the peer has sent nothing for the
/// idle timeout (hyper then closes it).
pub struct LimitedConn {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    open: Option<prometheus::IntGauge>,
}

impl Drop for LimitedConn {
    fn drop(&mut self) {
        if let Some(g) = &self.open {
            g.dec();
        }
    }
}

impl LimitedConn {
    fn new(
        inner: TcpStream,
        slot: OwnedSemaphorePermit,
        idle_timeout: Duration,
        open: Option<prometheus::IntGauge>,
    ) -> Self {
        if let Some(g) = &open {
            g.inc();
        }
        LimitedConn {
            open,
            inner,
            _slot: slot,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle_timeout;
                    self.idle.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle timeout: the peer sent nothing",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}
