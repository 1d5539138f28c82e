//! Prometheus metrics and the plain-HTTP endpoint that serves them.

use std::sync::Arc;

use prometheus::{
    exponential_buckets, Counter, CounterVec, Encoder, Gauge, Histogram, HistogramOpts,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every metric the server exports (names start with `pointsman_`).
pub struct Metrics {
    pub registry: Registry,
    /// RPCs answered, by method and gRPC code name.
    pub requests: IntCounterVec,
    /// RPC latency in seconds, by method.
    pub latency: HistogramVec,
    /// Prompts per encoder pass.
    pub batch_size: Histogram,
    /// Seconds per encoder pass.
    pub encoder_seconds: Histogram,
    /// Prompts waiting for the encoder.
    pub queue_depth: IntGauge,
    /// Prompts refused because the queue was full.
    pub overloaded: IntCounter,
    /// Prompts answered from the prompt cache (no encoder pass).
    pub prompt_cache_hits: IntCounter,
    /// Prompts looked up in the prompt cache and queued for the encoder
    /// (not counted when the cache is off).
    pub prompt_cache_misses: IntCounter,
    /// Prompts held in the prompt cache.
    pub prompt_cache_entries: IntGauge,
    /// Decisions, by chosen model.
    pub routes: IntCounterVec,
    /// Σ (expected cost of the eligible model with the highest P(success) −
    /// expected cost of the chosen model), USD.
    pub cost_saved_usd: Counter,
    /// Σ expected cost of the chosen models, USD.
    pub expected_cost_usd: Counter,
    /// The router's difficulty of each routed prompt (`typical_failure`):
    /// a shift in it says the traffic got harder or easier.
    pub typical_failure: Histogram,
    /// Outcomes reported, by model.
    pub outcomes: IntCounterVec,
    /// Successful reloads and rollbacks of the catalog/artifact.
    pub reloads: CounterVec,
    /// The loaded state's generation (see Versions.generation).
    pub generation: Gauge,
    /// Published artifact versions acted on, by result (`swapped`,
    /// `invalid`: kept the old state; `store`: could not read the store).
    pub published: IntCounterVec,
    /// The published version served (0: the files given at start).
    pub published_version: IntGauge,
    /// Router and Admin calls whose headers have arrived and whose response
    /// is not yet built (a stalled upload counts).
    pub in_flight: IntGauge,
    /// Open gRPC connections (bounded by --max-connections).
    pub connections: IntGauge,
    /// HTTP front end: requests answered, by route and HTTP status.
    pub http_requests: IntCounterVec,
    /// HTTP front end: latency to the response head, by route.
    pub http_latency: HistogramVec,
    /// Open HTTP connections (bounded by --max-connections, apart from gRPC's).
    pub http_connections: IntGauge,
    /// Upstream calls, by catalog model and how they ended (error class).
    pub upstream_requests: IntCounterVec,
    /// Upstream call latency (whole answer or stream), by model.
    pub upstream_latency: HistogramVec,
    /// Upstream time to the first byte of a streamed answer, by model.
    pub upstream_ttft: HistogramVec,
    /// Tokens from the upstreams' `usage`, by model and kind (prompt, completion).
    pub upstream_tokens: IntCounterVec,
    /// Catalog prices x `usage` tokens, by model (USD).
    pub upstream_cost_usd: CounterVec,
    /// Times the gateway moved on to the next model of a fallback chain, by
    /// the model that failed.
    pub upstream_fallbacks: IntCounterVec,
    /// Rollout (docs/ROLLOUT.md): decisions by the artifact that decided
    /// (`live` or `candidate`: two values, whatever the versions) and model.
    pub artifact_routes: IntCounterVec,
    /// Σ expected cost of the chosen models, by deciding artifact (USD).
    pub artifact_expected_cost_usd: CounterVec,
    /// Outcomes for the chosen model, by the artifact that decided.
    pub artifact_outcomes: IntCounterVec,
    /// Σ scores of those outcomes (÷ outcomes = reported success rate).
    pub artifact_outcome_score: CounterVec,
    /// Σ reported cost of those outcomes (USD).
    pub artifact_reported_cost_usd: CounterVec,
    /// 1 for the live and the candidate artifact's versions (info metric:
    /// join on `artifact` to name the version behind each series).
    pub artifact_info: prometheus::GaugeVec,
    /// Shadow decisions by the model the candidate would have chosen.
    pub shadow_routes: IntCounterVec,
    /// Σ expected cost of the candidate's shadow choices (USD).
    pub shadow_expected_cost_usd: Counter,
    /// Shadow decisions that chose the live decision's model.
    pub shadow_agreements: IntCounter,
    /// Requests of a tenant over its budget, by action (`downgrade`, `reject`).
    pub budget_breaches: IntCounterVec,
    /// Syncs of the per-tenant spend counters with the store, by result
    /// (`ok`, `error`).
    pub spend_syncs: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            requests: IntCounterVec::new(Opts::new("pointsman_requests_total", "RPCs answered, by method and gRPC code"), &["method", "code"]).unwrap(),
            latency: HistogramVec::new(
                HistogramOpts::new("pointsman_request_duration_seconds", "RPC latency").buckets(exponential_buckets(0.0005, 2.0, 16).unwrap()),
                &["method"],
            )
            .unwrap(),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("pointsman_batch_size", "Prompts per encoder pass").buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            )
            .unwrap(),
            encoder_seconds: Histogram::with_opts(
                HistogramOpts::new("pointsman_encoder_seconds", "Seconds per encoder pass").buckets(exponential_buckets(0.0005, 2.0, 16).unwrap()),
            )
            .unwrap(),
            queue_depth: IntGauge::new("pointsman_queue_depth", "Prompts waiting for the encoder").unwrap(),
            overloaded: IntCounter::new("pointsman_overloaded_total", "Prompts refused because the encoder queue was full").unwrap(),
            prompt_cache_hits: IntCounter::new("pointsman_prompt_cache_hits_total", "Prompts answered from the prompt cache without an encoder pass").unwrap(),
            prompt_cache_misses: IntCounter::new("pointsman_prompt_cache_misses_total", "Prompts not in the prompt cache, queued for the encoder").unwrap(),
            prompt_cache_entries: IntGauge::new("pointsman_prompt_cache_entries", "Prompts held in the prompt cache").unwrap(),
            routes: IntCounterVec::new(Opts::new("pointsman_routes_total", "Decisions by chosen model"), &["model"]).unwrap(),
            cost_saved_usd: Counter::new(
                "pointsman_cost_saved_usd_total",
                "Expected cost of the highest-P eligible model minus that of the chosen model, summed (USD)",
            )
            .unwrap(),
            expected_cost_usd: Counter::new("pointsman_expected_cost_usd_total", "Expected cost of the chosen models, summed (USD)").unwrap(),
            typical_failure: Histogram::with_opts(
                HistogramOpts::new(
                    "pointsman_typical_failure",
                    "Routed prompts' typical_failure: 1 - the mean P(success) of every catalog model",
                )
                .buckets((1..=20).map(|i| i as f64 / 20.0).collect()),
            )
            .unwrap(),
            outcomes: IntCounterVec::new(Opts::new("pointsman_outcomes_total", "Outcomes reported, by model"), &["model"]).unwrap(),
            reloads: CounterVec::new(Opts::new("pointsman_reloads_total", "Catalog/artifact swaps, by kind"), &["kind"]).unwrap(),
            generation: Gauge::new("pointsman_state_generation", "Generation of the loaded catalog/artifact").unwrap(),
            published: IntCounterVec::new(Opts::new("pointsman_published_total", "Published artifact versions acted on, by result (swapped, invalid, store)"), &["result"]).unwrap(),
            published_version: IntGauge::new("pointsman_published_version", "Published artifact version served (0: the files given at start)").unwrap(),
            in_flight: IntGauge::new("pointsman_requests_in_flight", "Router and Admin calls received and not yet answered").unwrap(),
            connections: IntGauge::new("pointsman_connections", "Open gRPC connections").unwrap(),
            http_requests: IntCounterVec::new(Opts::new("pointsman_http_requests_total", "HTTP requests answered, by route and status"), &["route", "status"]).unwrap(),
            http_latency: HistogramVec::new(
                HistogramOpts::new("pointsman_http_request_duration_seconds", "HTTP latency to the response head").buckets(exponential_buckets(0.0005, 2.0, 18).unwrap()),
                &["route"],
            )
            .unwrap(),
            http_connections: IntGauge::new("pointsman_http_connections", "Open HTTP connections").unwrap(),
            upstream_requests: IntCounterVec::new(Opts::new("pointsman_upstream_requests_total", "Upstream calls, by model and error class"), &["model", "class"]).unwrap(),
            upstream_latency: HistogramVec::new(
                HistogramOpts::new("pointsman_upstream_duration_seconds", "Upstream call latency").buckets(exponential_buckets(0.001, 2.0, 18).unwrap()),
                &["model"],
            )
            .unwrap(),
            upstream_ttft: HistogramVec::new(
                HistogramOpts::new("pointsman_upstream_ttft_seconds", "Upstream time to first byte of a streamed answer").buckets(exponential_buckets(0.001, 2.0, 18).unwrap()),
                &["model"],
            )
            .unwrap(),
            upstream_tokens: IntCounterVec::new(Opts::new("pointsman_upstream_tokens_total", "Tokens from upstream usage, by model and kind"), &["model", "kind"]).unwrap(),
            upstream_cost_usd: CounterVec::new(Opts::new("pointsman_upstream_cost_usd_total", "Catalog price of upstream usage, by model (USD)"), &["model"]).unwrap(),
            upstream_fallbacks: IntCounterVec::new(Opts::new("pointsman_upstream_fallbacks_total", "Moves to the next model of a fallback chain, by the model that failed"), &["model"]).unwrap(),
            artifact_routes: IntCounterVec::new(Opts::new("pointsman_artifact_routes_total", "Decisions by deciding artifact (live, candidate) and model"), &["artifact", "model"]).unwrap(),
            artifact_expected_cost_usd: CounterVec::new(Opts::new("pointsman_artifact_expected_cost_usd_total", "Expected cost of the chosen models by deciding artifact (USD)"), &["artifact"]).unwrap(),
            artifact_outcomes: IntCounterVec::new(Opts::new("pointsman_artifact_outcomes_total", "Outcomes for the chosen model by the artifact that decided"), &["artifact"]).unwrap(),
            artifact_outcome_score: CounterVec::new(Opts::new("pointsman_artifact_outcome_score_total", "Sum of outcome scores for the chosen model by the artifact that decided"), &["artifact"]).unwrap(),
            artifact_reported_cost_usd: CounterVec::new(Opts::new("pointsman_artifact_reported_cost_usd_total", "Reported cost of outcomes for the chosen model by the artifact that decided (USD)"), &["artifact"]).unwrap(),
            artifact_info: prometheus::GaugeVec::new(Opts::new("pointsman_artifact_info", "1 for the live and the candidate router artifact versions"), &["artifact", "version"]).unwrap(),
            shadow_routes: IntCounterVec::new(Opts::new("pointsman_shadow_routes_total", "Shadow decisions by the model the candidate would have chosen"), &["model"]).unwrap(),
            shadow_expected_cost_usd: Counter::new("pointsman_shadow_expected_cost_usd_total", "Expected cost of the candidate's shadow choices (USD)").unwrap(),
            shadow_agreements: IntCounter::new("pointsman_shadow_agreements_total", "Shadow decisions that chose the live decision's model").unwrap(),
            budget_breaches: IntCounterVec::new(Opts::new("pointsman_budget_breaches_total", "Requests of a tenant over its budget, by action"), &["action"]).unwrap(),
            spend_syncs: IntCounterVec::new(Opts::new("pointsman_spend_syncs_total", "Syncs of the per-tenant spend counters with the store, by result"), &["result"]).unwrap(),
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.requests.clone())).unwrap();
        r.register(Box::new(m.latency.clone())).unwrap();
        r.register(Box::new(m.batch_size.clone())).unwrap();
        r.register(Box::new(m.encoder_seconds.clone())).unwrap();
        r.register(Box::new(m.queue_depth.clone())).unwrap();
        r.register(Box::new(m.overloaded.clone())).unwrap();
        r.register(Box::new(m.prompt_cache_hits.clone())).unwrap();
        r.register(Box::new(m.prompt_cache_misses.clone())).unwrap();
        r.register(Box::new(m.prompt_cache_entries.clone()))
            .unwrap();
        r.register(Box::new(m.routes.clone())).unwrap();
        r.register(Box::new(m.cost_saved_usd.clone())).unwrap();
        r.register(Box::new(m.expected_cost_usd.clone())).unwrap();
        r.register(Box::new(m.typical_failure.clone())).unwrap();
        r.register(Box::new(m.outcomes.clone())).unwrap();
        r.register(Box::new(m.reloads.clone())).unwrap();
        r.register(Box::new(m.generation.clone())).unwrap();
        r.register(Box::new(m.published.clone())).unwrap();
        r.register(Box::new(m.published_version.clone())).unwrap();
        r.register(Box::new(m.in_flight.clone())).unwrap();
        r.register(Box::new(m.connections.clone())).unwrap();
        r.register(Box::new(m.http_requests.clone())).unwrap();
        r.register(Box::new(m.http_latency.clone())).unwrap();
        r.register(Box::new(m.http_connections.clone())).unwrap();
        r.register(Box::new(m.upstream_requests.clone())).unwrap();
        r.register(Box::new(m.upstream_latency.clone())).unwrap();
        r.register(Box::new(m.upstream_ttft.clone())).unwrap();
        r.register(Box::new(m.upstream_tokens.clone())).unwrap();
        r.register(Box::new(m.upstream_cost_usd.clone())).unwrap();
        r.register(Box::new(m.upstream_fallbacks.clone())).unwrap();
        r.register(Box::new(m.artifact_routes.clone())).unwrap();
        r.register(Box::new(m.artifact_expected_cost_usd.clone()))
            .unwrap();
        r.register(Box::new(m.artifact_outcomes.clone())).unwrap();
        r.register(Box::new(m.artifact_outcome_score.clone()))
            .unwrap();
        r.register(Box::new(m.artifact_reported_cost_usd.clone()))
            .unwrap();
        r.register(Box::new(m.artifact_info.clone())).unwrap();
        r.register(Box::new(m.shadow_routes.clone())).unwrap();
        r.register(Box::new(m.shadow_expected_cost_usd.clone()))
            .unwrap();
        r.register(Box::new(m.shadow_agreements.clone())).unwrap();
        r.register(Box::new(m.budget_breaches.clone())).unwrap();
        r.register(Box::new(m.spend_syncs.clone())).unwrap();
        m
    }

    /// Points `pointsman_artifact_info` at the live and candidate versions
    /// ("" = none), dropping the old ones (bounded: two series).
    pub fn set_artifacts(&self, live: &str, candidate: &str) {
        self.artifact_info.reset();
        self.artifact_info
            .with_label_values(&["live", live])
            .set(1.0);
        if !candidate.is_empty() {
            self.artifact_info
                .with_label_values(&["candidate", candidate])
                .set(1.0);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves `GET /metrics` over plain HTTP/1 until the task is dropped.
/// Anything else gets 404. At most `METRICS_MAX_CONNECTIONS` at once, each
/// given `METRICS_READ_TIMEOUT` to send its request head; accept errors
/// (e.g. out of file descriptors) back off instead of spinning.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    let mut conns = crate::conn::accept_loop(
        listener,
        METRICS_MAX_CONNECTIONS,
        METRICS_READ_TIMEOUT,
        "metrics",
        None,
    );
    while let Some(Ok(mut sock)) = conns.recv().await {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read until the end of the request head (or the buffer is
            // full); the connection's idle timeout ends a silent client.
            while n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "not found; try /metrics\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Scrapers open one connection at a time; a few spare for humans.
pub const METRICS_MAX_CONNECTIONS: usize = 16;
/// How long a metrics client may stay silent.
pub const METRICS_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
