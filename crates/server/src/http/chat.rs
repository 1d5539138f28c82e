//! `POST /v1/chat/completions`: decide (or take the named catalog model),
//! forward along the decision's chain, pass the answer through, and log
//! every upstream call for the decision.
//!
//! The routing prompt is the last `user` message: its string content, or
//! the `text` parts of array content joined by newlines (a `prompt` in the
//! `pointsman` object replaces it). Options come from `x-pointsman-*`
//! headers and the body's `pointsman` object (which wins, and is removed
//! before forwarding).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pointsman_upstream::{Attempt, ErrorClass, ForwardRequest, Forwarded, UpstreamError};
use serde_json::{Map, Value};

use super::error::{error_response, ApiError};
use super::wire::{parse, RouteJson};
use super::{
    decision_headers, difficulty_header, exploration_headers, json_response, Gateway, AUTO_MODELS,
};
use crate::core::calls::UpstreamCall;
use crate::core::validate::check_prompt;
use crate::error::ServerError;
use crate::fields::{check_len, quote, MAX_NAME_BYTES};

/// Options from `x-pointsman-*` headers (the body's `pointsman` object
/// overrides each field it sets).
fn header_options(headers: &HeaderMap) -> Result<RouteJson, ServerError> {
    fn get<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ServerError> {
        h.get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ServerError::invalid(name, "is not visible ASCII"))
            })
            .transpose()
    }
    fn num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Result<Option<T>, ServerError> {
        get(h, name)?
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    ServerError::invalid(name, format!("{} is not a number", quote(v)))
                })
            })
            .transpose()
    }
    let mut o = RouteJson {
        target: num(headers, "x-pointsman-target")?,
        lambda: num(headers, "x-pointsman-lambda")?,
        expected_output_tokens: num(headers, "x-pointsman-expected-output-tokens")?,
        tenant: get(headers, "x-pointsman-tenant")?.map(str::to_string),
        ..RouteJson::default()
    };
    o.constraints.max_cost_usd = num(headers, "x-pointsman-max-cost-usd")?;
    o.constraints.max_latency_ms = num(headers, "x-pointsman-max-latency-ms")?;
    if let Some(list) = get(headers, "x-pointsman-allowed-models")? {
        o.constraints.allowed_models = list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
    }
    Ok(o)
}

/// Fields the body's object sets replace the headers' ones.
fn merge(headers: RouteJson, body: RouteJson) -> RouteJson {
    let c = body.constraints;
    let h = headers.constraints;
    RouteJson {
        prompt: body.prompt,
        target: body.target.or(headers.target),
        lambda: body.lambda.or(headers.lambda),
        expected_output_tokens: body
            .expected_output_tokens
            .or(headers.expected_output_tokens),
        tenant: body.tenant.or(headers.tenant),
        constraints: super::wire::ConstraintsJson {
            allowed_models: if c.allowed_models.is_empty() {
                h.allowed_models
            } else {
                c.allowed_models
            },
            max_cost_usd: c.max_cost_usd.or(h.max_cost_usd),
            max_latency_ms: c.max_latency_ms.or(h.max_latency_ms),
        },
    }
}

/// The routing prompt: the last user message's text, with the field it
/// came from (for errors).
fn last_user_text(body: &Map<String, Value>) -> Result<(String, String), ServerError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ServerError::invalid("messages", "is required: an array of chat messages")
        })?;
    let (i, message) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or_else(|| {
            ServerError::invalid("messages", "has no message with role `user` to route on")
        })?;
    let field = format!("messages[{i}].content");
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() {
                return Err(ServerError::invalid(field, "has no text part to route on"));
            }
            texts.join("\n")
        }
        _ => {
            return Err(ServerError::invalid(
                field,
                "must be a string or an array of content parts",
            ))
        }
    };
    Ok((text, field))
}

/// The calls of a forward, the answering one (if any) last.
fn calls_of(attempts: &[Attempt]) -> Vec<UpstreamCall> {
    attempts
        .iter()
        .map(|a| UpstreamCall {
            model: a.model.clone(),
            class: a.class,
            status: a.status,
            latency: a.latency,
            ttft: None,
            usage: None,
        })
        .collect()
}

/// Logs a forward's calls in the background: the client's answer does not
/// wait for the store (docs/GATEWAY.md, "Outcomes").
fn log_in_background(gw: &Arc<Gateway>, decision_id: String, calls: Vec<UpstreamCall>) {
    let core = gw.core.clone();
    tokio::spawn(async move {
        if let Err(e) = core.log_calls(decision_id.clone(), calls).await {
            tracing::warn!(%decision_id, error = %e, "upstream calls not logged");
        }
    });
}

pub(super) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = gw
        .read_body(
            body,
            gw.bodies.chat,
            "--max-batch-request x (--max-prompt-bytes + 2 KiB)",
        )
        .await?;
    let mut body: Map<String, Value> = parse(&bytes, "")?;
    let model = match body.get("model") {
        Some(Value::String(m)) => m.clone(),
        _ => {
            return Err(ServerError::invalid(
                "model",
                "is required: `pointsman` (route), `pointsman/auto`, or a catalog model",
            )
            .into())
        }
    };
    check_len("model", &model, MAX_NAME_BYTES)?;
    let options = match body.remove("pointsman") {
        None => RouteJson::default(),
        Some(v) => parse(v.to_string().as_bytes(), "pointsman.")?,
    };
    let mut options = merge(header_options(&headers)?, options);
    let prompt = match options.prompt.take() {
        Some(p) => {
            check_prompt(&gw.core.limits, "pointsman.prompt", &p)?;
            p
        }
        None => {
            let (text, field) = last_user_text(&body)?;
            check_prompt(&gw.core.limits, &field, &text)?;
            text
        }
    };
    let Some(upstreams) = &gw.upstreams else {
        return Err(ServerError::NoUpstream(
            "no upstreams are configured: start the server with --upstreams FILE".into(),
        )
        .into());
    };
    let auto = AUTO_MODELS.contains(&model.as_str());
    let mut request = options.into_request(prompt);
    {
        let state = gw.core.state.snapshot();
        if auto {
            // Route among the models that can be called.
            if request.constraints.allowed_models.is_empty() {
                request.constraints.allowed_models = state
                    .catalog
                    .names()
                    .into_iter()
                    .filter(|m| upstreams.get(m).is_some())
                    .map(str::to_string)
                    .collect();
                if request.constraints.allowed_models.is_empty() {
                    return Err(ServerError::NoUpstream(
                        "no catalog model has an upstream in --upstreams".into(),
                    )
                    .into());
                }
            }
        } else {
            if state.catalog.get(&model).is_none() {
                return Err(ServerError::not_found(
                    "model",
                    format!(
                        "{} is neither `pointsman` nor a catalog model (GET /v1/models lists them)",
                        quote(&model)
                    ),
                )
                .into());
            }
            if upstreams.get(&model).is_none() {
                return Err(ServerError::NoUpstream(format!(
                    "model {} has no upstream in --upstreams",
                    quote(&model)
                ))
                .into());
            }
        }
    }
    let deadline = Instant::now() + gw.request_timeout;
    let (decision_id, chain, explored, propensity, typical_failure) = if auto {
        let routed = gw.core.route(&request, Some(deadline)).await?;
        let chain: Vec<String> = std::iter::once(routed.decision.model.clone())
            .chain(routed.decision.fallbacks.iter().cloned())
            .collect();
        let logged = &routed.logged;
        (
            routed.decision_id,
            chain,
            logged.explored,
            logged.propensity,
            Some(routed.typical_failure),
        )
    } else {
        // A named model is forwarded as is, with no encoder pass on the
        // way: its decision is logged unclassified (core/named.rs).
        let id = gw.core.log_named(&request, &model, Some(deadline)).await?;
        // The client chose the model: no exploration, propensity 1, and
        // no router estimate (no encoder pass).
        (id, vec![model.clone()], false, 1.0, None)
    };
    let first_choice = chain[0].clone();
    let forwarded = upstreams
        .forward(ForwardRequest {
            chain,
            body,
            deadline,
        })
        .await;
    match forwarded {
        Ok(Forwarded::Complete {
            model,
            status,
            body,
            usage,
            latency: _,
            attempts,
        }) => {
            let mut calls = calls_of(&attempts);
            if let Some(last) = calls.last_mut() {
                last.usage = usage;
            }
            log_in_background(&gw, decision_id.clone(), calls);
            let mut resp = json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                body,
            );
            decision_headers(resp.headers_mut(), &decision_id, &model);
            exploration_headers(resp.headers_mut(), explored, propensity);
            difficulty_header(resp.headers_mut(), typical_failure);
            Ok(resp)
        }
        Ok(Forwarded::Stream {
            model,
            status,
            first_byte,
            body,
            attempts,
            summary,
        }) => {
            let earlier = calls_of(&attempts[..attempts.len().saturating_sub(1)]);
            let answering = attempts.last().map(|a| (a.model.clone(), a.status));
            let gw2 = gw.clone();
            let id = decision_id.clone();
            tokio::spawn(async move {
                let mut calls = earlier;
                if let Some((model, status)) = answering {
                    let (class, latency, usage) = match summary.await {
                        Ok(s) => (s.class, s.latency, s.usage),
                        // The stream was dropped without a summary.
                        Err(_) => (ErrorClass::ClientGone, first_byte, None),
                    };
                    calls.push(UpstreamCall {
                        model,
                        class,
                        status,
                        latency,
                        ttft: Some(first_byte),
                        usage,
                    });
                }
                log_in_background(&gw2, id, calls);
            });
            let mut resp = Response::new(Body::from_stream(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let h = resp.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            decision_headers(h, &decision_id, &model);
            exploration_headers(h, explored, propensity);
            difficulty_header(h, typical_failure);
            Ok(resp)
        }
        Err(e) => {
            if let UpstreamError::AllFailed { attempts, .. } = &e {
                log_in_background(&gw, decision_id.clone(), calls_of(attempts));
            }
            let mut resp = error_response(&ServerError::Upstream(e));
            decision_headers(resp.headers_mut(), &decision_id, &first_choice);
            exploration_headers(resp.headers_mut(), explored, propensity);
            difficulty_header(resp.headers_mut(), typical_failure);
            Ok(resp.into_response())
        }
    }
}
