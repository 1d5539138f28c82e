//! The gRPC services: adapt proto types to core types and back. Decisions
//! are made by `pointsman_router`; prompts are read by the batcher.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pointsman_classifier::Embedded;
use pointsman_router::catalog::estimate_tokens;
use pointsman_router::policy::decide;
use pointsman_router::{Constraints, Decision, Policy, RouterError};
use pointsman_store::{LoggedCandidate, LoggedDecision, LoggedOutcome, OutcomeStore};
use tonic::{Request, Response, Status};

use crate::batcher::Batcher;
use crate::error::ServerError;
use crate::fields::{
    check_len, is_invisible, quote, MAX_ALLOWED_MODELS, MAX_DECISION_ID_BYTES, MAX_NAME_BYTES,
};
use crate::metrics::Metrics;
use crate::pb;
use crate::state::{RoutingState, StateHolder};

/// Request limits and what to log.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest prompt accepted, in UTF-8 bytes.
    pub max_prompt_bytes: usize,
    /// Most items in one RouteBatch call.
    pub max_batch_request: usize,
    /// Completion length assumed for pricing when a request gives none.
    pub default_output_tokens: u32,
    /// Whether raw prompt text goes into the store.
    pub store_prompts: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_prompt_bytes: 64 * 1024,
            max_batch_request: 256,
            default_output_tokens: 256,
            store_prompts: false,
        }
    }
}

/// Store calls running at once (each holds a blocking-pool thread while it
/// waits for the database lock and fsync); more are refused.
pub const STORE_SLOTS: usize = 64;

/// One decision made, not yet acknowledged by the store.
struct Routed {
    response: pb::RouteResponse,
    logged: LoggedDecision,
    expected_cost_usd: f64,
    saved_usd: f64,
    tenant: Option<String>,
}

/// What every handler shares.
pub struct Shared {
    pub batcher: Batcher,
    pub state: Arc<StateHolder>,
    pub store: Arc<dyn OutcomeStore>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub heads_version: String,
    /// Identifies the encoder's embeddings (logged as `versions.encoder`).
    pub encoder_id: String,
    /// Bounds store calls in flight ([`STORE_SLOTS`]).
    pub store_slots: Arc<tokio::sync::Semaphore>,
}

/// The `pointsman.v1.Router` service.
#[derive(Clone)]
pub struct RouterService {
    shared: Arc<Shared>,
}

impl RouterService {
    pub fn new(shared: Arc<Shared>) -> Self {
        RouterService { shared }
    }
}

/// Our answers to a passed deadline must beat tonic's own timeout layer
/// (which answers CANCELLED), so we stop a little early.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// The request's deadline from its `grpc-timeout` header, if any.
fn deadline<T>(req: &Request<T>, start: Instant) -> Option<Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    // A timeout too large for an Instant is no deadline (it used to panic).
    start.checked_add(d.saturating_sub(DEADLINE_MARGIN))
}

fn check_deadline(deadline: Option<Instant>) -> Result<(), ServerError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(ServerError::DeadlineExceeded),
        _ => Ok(()),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shared {
    /// Records the metrics of one finished RPC.
    fn observe<T>(&self, method: &str, start: Instant, r: &Result<T, ServerError>) {
        let code = match r {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        };
        self.metrics
            .requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[method])
            .observe(start.elapsed().as_secs_f64());
        if let Err(e) = r {
            match e.code() {
                tonic::Code::Internal => tracing::error!(method, error = %e, "request failed"),
                _ => tracing::debug!(method, error = %e, "request refused"),
            }
        }
    }

    fn check_prompt(&self, field: &str, prompt: &str) -> Result<(), ServerError> {
        if prompt.trim().is_empty() {
            return Err(ServerError::invalid(field, "is empty"));
        }
        if prompt.chars().all(is_invisible) {
            return Err(ServerError::invalid(
                field,
                "has no visible characters (only white space, zero-width or other format characters)",
            ));
        }
        if prompt.len() > self.limits.max_prompt_bytes {
            return Err(ServerError::invalid(
                field,
                format!(
                    "is {} bytes, over the maximum of {} (--max-prompt-bytes)",
                    prompt.len(),
                    self.limits.max_prompt_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Validates a RouteRequest against the state; `prefix` is prepended to
    /// field names ("" or "requests[3].").
    fn check_route(
        &self,
        prefix: &str,
        r: &pb::RouteRequest,
        state: &RoutingState,
    ) -> Result<(Policy, Constraints), ServerError> {
        let f = |name: &str| format!("{prefix}{name}");
        self.check_prompt(&f("prompt"), &r.prompt)?;
        let policy = match (r.lambda_per_usd, r.target) {
            (Some(l), _) if !(l >= 0.0 && l.is_finite()) => {
                return Err(ServerError::invalid(
                    f("lambda_per_usd"),
                    format!("{l} must be a finite number >= 0"),
                ))
            }
            (Some(l), _) => Policy::WillingnessToPay { lambda_per_usd: l },
            (None, Some(t)) if !(0.0..=1.0).contains(&t) => {
                return Err(ServerError::invalid(
                    f("target"),
                    format!("{t} is outside [0, 1]"),
                ))
            }
            (None, Some(t)) => Policy::Target { target: t },
            (None, None) => Policy::Target {
                target: state.catalog.default_target,
            },
        };
        if r.expected_output_tokens == Some(0) {
            return Err(ServerError::invalid(
                f("expected_output_tokens"),
                "must be > 0",
            ));
        }
        if let Some(t) = &r.tenant {
            check_len(&f("tenant"), t, MAX_NAME_BYTES)?;
        }
        let mut constraints = Constraints::default();
        if let Some(c) = &r.constraints {
            if c.allowed_models.len() > MAX_ALLOWED_MODELS {
                return Err(ServerError::invalid(
                    f("constraints.allowed_models"),
                    format!(
                        "{} entries, over the maximum of {MAX_ALLOWED_MODELS}",
                        c.allowed_models.len()
                    ),
                ));
            }
            if !c.allowed_models.is_empty() {
                for (i, m) in c.allowed_models.iter().enumerate() {
                    let field = f(&format!("constraints.allowed_models[{i}]"));
                    check_len(&field, m, MAX_NAME_BYTES)?;
                    if state.catalog.get(m).is_none() {
                        return Err(ServerError::invalid(
                            field,
                            format!(
                                "{} is not in the catalog (models: {})",
                                quote(m),
                                state.catalog.names().join(", ")
                            ),
                        ));
                    }
                }
                constraints.allowed = Some(c.allowed_models.clone());
            }
            if let Some(x) = c.max_cost_usd {
                if !(x > 0.0 && x.is_finite()) {
                    return Err(ServerError::invalid(
                        f("constraints.max_cost_usd"),
                        format!("{x} must be > 0"),
                    ));
                }
                constraints.max_cost_usd = Some(x);
            }
            if let Some(x) = c.max_latency_ms {
                if !(x > 0.0 && x.is_finite()) {
                    return Err(ServerError::invalid(
                        f("constraints.max_latency_ms"),
                        format!("{x} must be > 0"),
                    ));
                }
                constraints.max_latency_ms = Some(x);
            }
        }
        if state.success.is_none() {
            return Err(ServerError::NotReady(
                "no router artifact is loaded: start the server with --router FILE (from `pointsman train router`), then reload".into(),
            ));
        }
        Ok((policy, constraints))
    }

    /// Decides for one classified prompt: the answer and the row to log.
    fn decide_one(
        &self,
        prefix: &str,
        r: &pb::RouteRequest,
        embedded: Embedded,
        policy: Policy,
        mut constraints: Constraints,
        state: &RoutingState,
    ) -> Result<Routed, ServerError> {
        let success = state.success.as_ref().expect("checked in check_route");
        let catalog = &state.catalog;
        let names = catalog.names();
        let tasks = success.task_vector(
            embedded
                .prediction
                .task_scores
                .iter()
                .map(|(k, v)| (k.as_str(), *v)),
        );
        let p = success.predict(&names, &embedded.embedding, &tasks);
        // Artifacts are checked at load, but a decision on a NaN would pick
        // the first model and poison the store: never emit one.
        pointsman_router::validate::check_probabilities(&names, &p)
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        let input_tokens = estimate_tokens(&r.prompt);
        let output_tokens = r
            .expected_output_tokens
            .unwrap_or(self.limits.default_output_tokens) as u64;
        let cost: Vec<f64> = catalog
            .models
            .iter()
            .map(|m| m.cost_usd(input_tokens, output_tokens))
            .collect();
        constraints.min_context_tokens = Some(input_tokens + output_tokens);
        let decision: Decision =
            decide(catalog, &p, &cost, policy, &constraints).map_err(|e| match e {
                RouterError::NoEligibleModel(why) => ServerError::invalid(
                    format!("{prefix}constraints"),
                    format!("no catalog model satisfies them ({why})"),
                ),
                other => ServerError::Internal(other.to_string()),
            })?;
        let id = uuid::Uuid::new_v4().to_string();
        let versions = state.versions.clone();
        let logged = LoggedDecision {
            id: id.clone(),
            time_ms: now_ms(),
            embedding: embedded.embedding,
            task: embedded.prediction.task.clone(),
            task_scores: embedded.prediction.task_scores.clone(),
            difficulty: embedded.prediction.difficulty,
            model: decision.model.clone(),
            candidates: decision
                .candidates
                .iter()
                .map(|c| LoggedCandidate {
                    model: c.model.clone(),
                    p_success: c.p_success,
                    expected_cost_usd: c.expected_cost_usd,
                })
                .collect(),
            versions: BTreeMap::from([
                ("catalog".to_string(), versions.catalog.clone()),
                (
                    "router_artifact".to_string(),
                    versions.router_artifact.clone(),
                ),
                ("heads".to_string(), versions.heads.clone()),
                ("encoder".to_string(), self.encoder_id.clone()),
            ]),
            tenant: r.tenant.clone(),
            prompt: self.limits.store_prompts.then(|| r.prompt.clone()),
        };
        let saved = decision
            .candidates
            .iter()
            .max_by(|a, b| a.p_success.total_cmp(&b.p_success))
            .map_or(0.0, |best| {
                (best.expected_cost_usd - decision.expected_cost_usd).max(0.0)
            });
        let response = pb::RouteResponse {
            decision_id: id,
            model: decision.model,
            fallbacks: decision.fallbacks,
            candidates: decision
                .candidates
                .into_iter()
                .map(|c| pb::Candidate {
                    model: c.model,
                    p_success: c.p_success,
                    expected_cost_usd: c.expected_cost_usd,
                })
                .collect(),
            classification: Some(classification(&embedded.prediction)),
            reason: decision.reason,
            versions: Some(versions),
            target: match policy {
                Policy::Target { target } => Some(target),
                Policy::WillingnessToPay { .. } => None,
            },
            excluded: decision.excluded.into_iter().collect(),
        };
        Ok(Routed {
            response,
            logged,
            expected_cost_usd: decision.expected_cost_usd,
            saved_usd: saved,
            tenant: r.tenant.clone(),
        })
    }

    /// Counts and logs one decision the store has acknowledged.
    fn routed(&self, r: &Routed) {
        let m = &self.metrics;
        m.routes.with_label_values(&[&r.response.model]).inc();
        m.expected_cost_usd.inc_by(r.expected_cost_usd.max(0.0));
        m.cost_saved_usd.inc_by(r.saved_usd);
        tracing::info!(decision_id = %r.response.decision_id, model = %r.response.model, p = r.response.candidates.first().map_or(0.0, |c| c.p_success), tenant = ?r.tenant, "routed");
    }

    /// Runs `work` on the blocking pool, at most `STORE_SLOTS` at once:
    /// beyond that the call is refused (RESOURCE_EXHAUSTED) instead of
    /// piling up unbounded blocking tasks (prompt-cache hits never wait
    /// in the encoder queue, so only this bounds their store writes).
    async fn store_work<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn OutcomeStore) -> T + Send + 'static,
    ) -> Result<T, ServerError> {
        let permit =
            self.store_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| ServerError::StoreBusy {
                    capacity: STORE_SLOTS,
                })?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let out = work(store.as_ref());
            drop(permit);
            out
        })
        .await
        .map_err(|e| ServerError::Internal(format!("store task: {e}")))
    }

    async fn route(
        &self,
        r: pb::RouteRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::RouteResponse, ServerError> {
        let state = self.state.snapshot();
        let (policy, constraints) = self.check_route("", &r, &state)?;
        check_deadline(deadline)?;
        let embedded = self.batcher.classify(r.prompt.clone(), deadline).await?;
        let routed = self.decide_one("", &r, embedded, policy, constraints, &state)?;
        let logged = routed.logged.clone();
        self.store_work(move |s| s.append_decision(&logged))
            .await??;
        self.routed(&routed);
        Ok(routed.response)
    }

    async fn route_batch(
        &self,
        b: pb::RouteBatchRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::RouteBatchResponse, ServerError> {
        if b.requests.len() > self.limits.max_batch_request {
            return Err(ServerError::invalid(
                "requests",
                format!(
                    "{} items, over the maximum of {} (--max-batch-request)",
                    b.requests.len(),
                    self.limits.max_batch_request
                ),
            ));
        }
        check_deadline(deadline)?;
        let state = self.state.snapshot();
        let checked: Vec<_> = b
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| self.check_route(&format!("requests[{i}]."), r, &state))
            .collect();
        let good: Vec<usize> = (0..b.requests.len())
            .filter(|&i| checked[i].is_ok())
            .collect();
        let embedded = self
            .batcher
            .classify_many(
                good.iter().map(|&i| b.requests[i].prompt.clone()).collect(),
                deadline,
            )
            .await;
        let mut embedded: BTreeMap<usize, Result<Embedded, ServerError>> =
            good.into_iter().zip(embedded).collect();
        // Decide every item, then log every decision in one transaction.
        let mut results: Vec<Result<Routed, ServerError>> = b
            .requests
            .iter()
            .zip(checked)
            .enumerate()
            .map(|(i, (r, check))| {
                let (policy, constraints) = check?;
                let e = embedded.remove(&i).expect("every good item was queued")?;
                self.decide_one(
                    &format!("requests[{i}]."),
                    r,
                    e,
                    policy,
                    constraints,
                    &state,
                )
            })
            .collect();
        let rows: Vec<LoggedDecision> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.logged.clone()))
            .collect();
        if !rows.is_empty() {
            let mut stored = match self.store_work(move |s| s.append_decisions(&rows)).await {
                Ok(v) => v.into_iter(),
                Err(e) => return Err(e),
            };
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                if let Err(e) = stored.next().expect("one result per row") {
                    *r = Err(e.into());
                }
            }
        }
        let items = results
            .into_iter()
            .map(|result| pb::RouteBatchItem {
                result: Some(match result {
                    Ok(routed) => {
                        self.routed(&routed);
                        pb::route_batch_item::Result::Response(routed.response)
                    }
                    Err(e) => pb::route_batch_item::Result::Error(pb::ItemError {
                        code: e.code() as i32,
                        message: e.to_string(),
                    }),
                }),
            })
            .collect();
        Ok(pb::RouteBatchResponse { items })
    }

    async fn classify(
        &self,
        r: pb::ClassifyRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::ClassifyResponse, ServerError> {
        self.check_prompt("prompt", &r.prompt)?;
        check_deadline(deadline)?;
        let embedded = self.batcher.classify(r.prompt, deadline).await?;
        Ok(pb::ClassifyResponse {
            classification: Some(classification(&embedded.prediction)),
            heads_version: self.heads_version.clone(),
        })
    }

    async fn report_outcome(
        &self,
        r: pb::ReportOutcomeRequest,
    ) -> Result<pb::ReportOutcomeResponse, ServerError> {
        if r.decision_id.trim().is_empty() {
            return Err(ServerError::invalid("decision_id", "is empty"));
        }
        check_len("decision_id", &r.decision_id, MAX_DECISION_ID_BYTES)?;
        if r.model.trim().is_empty() {
            return Err(ServerError::invalid("model", "is empty"));
        }
        check_len("model", &r.model, MAX_NAME_BYTES)?;
        if !(0.0..=1.0).contains(&r.score) || !r.score.is_finite() {
            return Err(ServerError::invalid(
                "score",
                format!("{} is outside [0, 1]", r.score),
            ));
        }
        if let Some(c) = r.cost_usd.filter(|c| !(*c >= 0.0 && c.is_finite())) {
            return Err(ServerError::invalid(
                "cost_usd",
                format!("{c} must be a finite number >= 0"),
            ));
        }
        if let Some(l) = r.latency_ms.filter(|l| !(*l >= 0.0 && l.is_finite())) {
            return Err(ServerError::invalid(
                "latency_ms",
                format!("{l} must be a finite number >= 0"),
            ));
        }
        // A model of the current catalog, or one the decision itself
        // considered (a reload may have dropped it since).
        let state = self.state.snapshot();
        if state.catalog.get(&r.model).is_none() {
            let id = r.decision_id.clone();
            let considered = self.store_work(move |s| s.decision_models(&id)).await??;
            match considered {
                None => return Err(pointsman_store::StoreError::UnknownDecision(r.decision_id).into()),
                Some(models) if models.contains(&r.model) => {}
                Some(models) => {
                    return Err(ServerError::not_found(
                        "model",
                        format!(
                            "{} is neither in the catalog (models: {}) nor among the decision's candidates ({})",
                            quote(&r.model),
                            state.catalog.names().join(", "),
                            models.join(", ")
                        ),
                    ))
                }
            }
        }
        let outcome = LoggedOutcome {
            decision_id: r.decision_id,
            model: r.model.clone(),
            score: r.score,
            cost_usd: r.cost_usd,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            latency_ms: r.latency_ms,
            time_ms: now_ms(),
        };
        let n = self
            .store_work(move |s| s.append_outcome(&outcome))
            .await??;
        self.metrics.outcomes.with_label_values(&[&r.model]).inc();
        Ok(pb::ReportOutcomeResponse {
            outcomes_for_decision: n,
        })
    }

    fn get_catalog(&self) -> pb::GetCatalogResponse {
        let state = self.state.snapshot();
        let fitted = |name: &str| {
            state
                .success
                .as_ref()
                .and_then(|s| s.model_index(name).map(|i| s.outcome_counts[i] as u64))
                .unwrap_or(0)
        };
        pb::GetCatalogResponse {
            models: state
                .catalog
                .models
                .iter()
                .map(|m| pb::ModelSpec {
                    name: m.name.clone(),
                    input_usd_per_mtok: m.input_usd_per_mtok,
                    output_usd_per_mtok: m.output_usd_per_mtok,
                    context_window: m.context_window,
                    latency_ms: m.latency_ms,
                    tags: m.tags.clone(),
                    fitted_outcomes: fitted(&m.name),
                })
                .collect(),
            default_target: state.catalog.default_target,
            versions: Some(state.versions.clone()),
        }
    }
}

fn classification(p: &pointsman_classifier::Prediction) -> pb::Classification {
    pb::Classification {
        task: p.task.clone(),
        task_scores: p.task_scores.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        difficulty: p.difficulty,
    }
}

#[tonic::async_trait]
impl pb::router_server::Router for RouterService {
    async fn route(
        &self,
        req: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let start = Instant::now();
        let d = deadline(&req, start);
        let r = self.shared.route(req.into_inner(), d).await;
        self.shared.observe("Route", start, &r);
        Ok(Response::new(r?))
    }

    async fn route_batch(
        &self,
        req: Request<pb::RouteBatchRequest>,
    ) -> Result<Response<pb::RouteBatchResponse>, Status> {
        let start = Instant::now();
        let d = deadline(&req, start);
        let r = self.shared.route_batch(req.into_inner(), d).await;
        self.shared.observe("RouteBatch", start, &r);
        Ok(Response::new(r?))
    }

    async fn classify(
        &self,
        req: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let start = Instant::now();
        let d = deadline(&req, start);
        let r = self.shared.classify(req.into_inner(), d).await;
        self.shared.observe("Classify", start, &r);
        Ok(Response::new(r?))
    }

    async fn report_outcome(
        &self,
        req: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let start = Instant::now();
        let r = self.shared.report_outcome(req.into_inner()).await;
        self.shared.observe("ReportOutcome", start, &r);
        Ok(Response::new(r?))
    }

    async fn get_catalog(
        &self,
        _req: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::GetCatalogResponse>, Status> {
        let start = Instant::now();
        let r = Ok(self.shared.get_catalog());
        self.shared.observe("GetCatalog", start, &r);
        Ok(Response::new(r?))
    }
}

/// The `pointsman.v1.Admin` service: reload and roll back.
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminService { shared }
    }
}

/// Reloads the state, logging and counting the result.
pub fn reload(shared: &Shared, rollback: bool) -> Result<pb::Versions, String> {
    let kind = if rollback { "rollback" } else { "reload" };
    let r = if rollback {
        shared.state.rollback()
    } else {
        shared.state.reload()
    };
    match r {
        Ok(s) => {
            shared.metrics.reloads.with_label_values(&[kind]).inc();
            shared.metrics.generation.set(s.versions.generation as f64);
            tracing::info!(kind, catalog = %s.versions.catalog, router = %s.versions.router_artifact, generation = s.versions.generation, "state swapped");
            Ok(s.versions.clone())
        }
        Err(e) => {
            tracing::warn!(kind, error = %e, "state kept");
            Err(format!("{e:#}"))
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        _req: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let shared = self.shared.clone();
        let r = tokio::task::spawn_blocking(move || reload(&shared, false))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        r.map(|v| Response::new(pb::ReloadResponse { versions: Some(v) }))
            .map_err(Status::failed_precondition)
    }

    async fn rollback(
        &self,
        _req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let shared = self.shared.clone();
        let r = tokio::task::spawn_blocking(move || reload(&shared, true))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        r.map(|v| Response::new(pb::ReloadResponse { versions: Some(v) }))
            .map_err(Status::failed_precondition)
    }
}
