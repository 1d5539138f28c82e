//! Counts the gRPC calls a service is working on, from the moment their
//! headers arrive (before the body is read) until the response is built:
//! the `pointsman_requests_in_flight` gauge. Operators see what a drain
//! waits for; tests use it to know a call is in flight before they signal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use prometheus::IntGauge;
use tonic::codegen::Service;
use tonic::server::NamedService;

#[derive(Clone)]
pub struct InFlight<S> {
    inner: S,
    gauge: IntGauge,
}

impl<S> InFlight<S> {
    pub fn new(inner: S, gauge: IntGauge) -> Self {
        InFlight { inner, gauge }
    }
}

/// Decrements the gauge when the call ends, however it ends (answered,
/// failed, or dropped because the client went away).
struct Guard(IntGauge);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<S, Req> Service<Req> for InFlight<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.gauge.inc();
        let guard = Guard(self.gauge.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

impl<S: NamedService> NamedService for InFlight<S> {
    const NAME: &'static str = S::NAME;
}
