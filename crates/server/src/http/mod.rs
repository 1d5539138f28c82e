//! The HTTP front end (`serve --http-listen`): an OpenAI-compatible gateway
//! on axum. JSON in, core types, the core, JSON out; errors in OpenAI's
//! shape (error.rs). Endpoints (docs/GATEWAY.md, "HTTP endpoints"):
//!
//! - `POST /v1/chat/completions`: route (`model: "pointsman"`) or name a
//!   catalog model, forward to the upstreams with fallback, stream or not;
//! - `POST /v1/route`: the decision only;
//! - `POST /v1/feedback`: a quality score for a decision;
//! - `GET /v1/models`.

mod chat;
pub mod error;
pub mod listen;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, Limited};
use pointsman_upstream::Upstreams;
use serde_json::json;

use crate::auth::Auth;
use crate::core::Core;
use crate::error::ServerError;
use error::ApiError;
use wire::{parse, FeedbackJson, RouteJson};

/// The names that ask the gateway to route.
pub const AUTO_MODELS: [&str; 2] = ["pointsman", "pointsman/auto"];

/// Request-body limits of the HTTP front end (docs/RELIABILITY.md).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `/v1/route` and `/v1/feedback`: one prompt plus its small fields.
    pub small: usize,
    /// `/v1/chat/completions`: a whole conversation.
    pub chat: usize,
}

/// What the HTTP handlers share.
pub struct Gateway {
    pub core: Arc<Core>,
    /// None: the server has no `--upstreams`; chat completions answer 503.
    pub upstreams: Option<Upstreams>,
    pub auth: Auth,
    pub bodies: BodyLimits,
    /// Longest a request may take, its upload included; also the total
    /// deadline for an upstream call and its fallbacks.
    pub request_timeout: Duration,
}

/// The routes, with auth and metrics.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/route", post(route))
        .route("/v1/feedback", post(feedback))
        .route("/v1/models", get(models))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            observe,
        ))
        .with_state(gateway)
}

/// Every route needs the bearer token when the server has one.
async fn authenticate(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let header = req.headers().get("authorization").map(|v| v.as_bytes());
    match gw.auth.check(header) {
        Ok(()) => next.run(req).await,
        Err(why) => ApiError(ServerError::Unauthenticated(why)).into_response(),
    }
}

/// Counts requests by route and status, and their latency to the head.
async fn observe(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route: &'static str = match req.uri().path() {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/route" => "/v1/route",
        "/v1/feedback" => "/v1/feedback",
        "/v1/models" => "/v1/models",
        _ => "other",
    };
    let resp = next.run(req).await;
    let m = &gw.core.metrics;
    m.http_requests
        .with_label_values(&[route, resp.status().as_str()])
        .inc();
    m.http_latency
        .with_label_values(&[route])
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError(ServerError::not_found(
        "path",
        "no such endpoint (POST /v1/chat/completions, POST /v1/route, POST /v1/feedback, GET /v1/models)",
    ))
}

impl Gateway {
    /// Reads a request body: at most `limit` bytes (413 beyond), within
    /// the request timeout (a stalled upload gets 504 `deadline_exceeded`).
    async fn read_body(
        &self,
        body: Body,
        limit: usize,
        what: &'static str,
    ) -> Result<Bytes, ServerError> {
        let read = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.request_timeout, read).await {
            Err(_) => Err(ServerError::DeadlineExceeded),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(ServerError::BodyTooLarge { limit, why: what })
            }
            Ok(Err(e)) => Err(ServerError::invalid(
                "body",
                format!("could not be read: {e}"),
            )),
        }
    }
}

/// `POST /v1/route`: the decision as JSON.
async fn route(State(gw): State<Arc<Gateway>>, body: Body) -> Result<Response, ApiError> {
    let bytes = gw
        .read_body(body, gw.bodies.small, "--max-prompt-bytes plus 2 KiB")
        .await?;
    let mut options: RouteJson = parse(&bytes, "")?;
    let prompt = options
        .prompt
        .take()
        .ok_or_else(|| ServerError::invalid("prompt", "is required"))?;
    let deadline = Instant::now() + gw.request_timeout;
    let routed = gw
        .core
        .route(&options.into_request(prompt), Some(deadline))
        .await?;
    Ok(Json(wire::routed_json(&routed)).into_response())
}

/// `POST /v1/feedback`: stores a quality score (gRPC ReportOutcome's
/// semantics: the same model reported again replaces its earlier outcome).
async fn feedback(State(gw): State<Arc<Gateway>>, body: Body) -> Result<Response, ApiError> {
    let bytes = gw
        .read_body(body, gw.bodies.small, "--max-prompt-bytes plus 2 KiB")
        .await?;
    let fb: FeedbackJson = parse(&bytes, "")?;
    let model = match &fb.model {
        Some(m) => m.clone(),
        None => gw.core.answering_model(&fb.decision_id).await?,
    };
    let decision_id = fb.decision_id.clone();
    let n = gw
        .core
        .report_outcome(fb.into_report(model.clone()))
        .await?;
    Ok(Json(json!({
        "decision_id": decision_id,
        "model": model,
        "outcomes_for_decision": n,
    }))
    .into_response())
}

/// `GET /v1/models`: the routing names, then every catalog model with an
/// upstream (OpenAI's list shape).
async fn models(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let state = gw.core.state.snapshot();
    let entry = |id: &str, owner: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": owner});
    let mut data: Vec<_> = AUTO_MODELS.iter().map(|m| entry(m, "pointsman")).collect();
    if let Some(u) = &gw.upstreams {
        data.extend(
            state
                .catalog
                .names()
                .into_iter()
                .filter(|m| u.get(m).is_some())
                .map(|m| entry(m, "upstream")),
        );
    }
    Json(json!({"object": "list", "data": data}))
}

/// Headers every gateway answer carries.
fn decision_headers(headers: &mut HeaderMap, decision_id: &str, model: &str) {
    if let Ok(v) = decision_id.parse() {
        headers.insert("x-pointsman-decision-id", v);
    }
    if let Ok(v) = model.parse() {
        headers.insert("x-pointsman-model", v);
    }
}

/// Says whether exploration chose the model (`x-pointsman-explored:
/// true|false`) and with what probability (`x-pointsman-propensity`).
fn exploration_headers(headers: &mut HeaderMap, explored: bool, propensity: f64) {
    headers.insert(
        "x-pointsman-explored",
        axum::http::HeaderValue::from_static(if explored { "true" } else { "false" }),
    );
    if let Ok(v) = propensity.to_string().parse() {
        headers.insert("x-pointsman-propensity", v);
    }
}

/// The router's difficulty of a routed prompt (`x-pointsman-typical-failure`:
/// 1 − the mean P(success) of every catalog model); absent for a named
/// model, which is forwarded without an encoder pass.
fn difficulty_header(headers: &mut HeaderMap, typical_failure: Option<f64>) {
    if let Some(Ok(v)) = typical_failure.map(|t| t.to_string().parse()) {
        headers.insert("x-pointsman-typical-failure", v);
    }
}

/// A JSON answer with a status.
fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}
