//! The gRPC front end: protobuf → core types, call the core, core types →
//! protobuf. Errors become a gRPC status in one place (`ServerError::code`,
//! error.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::core::rollout::{Actor, RolloutMode, RolloutStatus};
use crate::core::{Core, OutcomeReport, RouteConstraints, RouteRequest, Routed, Versions};
use crate::error::ServerError;
use crate::pb;

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

/// Records the metrics of one finished RPC.
fn observe<T>(core: &Core, method: &str, start: Instant, r: &Result<T, ServerError>) {
    let code = match r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    };
    core.metrics
        .requests
        .with_label_values(&[method, &format!("{code:?}")])
        .inc();
    core.metrics
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

fn route_request(r: pb::RouteRequest) -> RouteRequest {
    let c = r.constraints.unwrap_or_default();
    RouteRequest {
        prompt: r.prompt,
        target: r.target,
        lambda_per_usd: r.lambda_per_usd,
        constraints: RouteConstraints {
            allowed_models: c.allowed_models,
            max_cost_usd: c.max_cost_usd,
            max_latency_ms: c.max_latency_ms,
        },
        expected_output_tokens: r.expected_output_tokens,
        tenant: r.tenant,
    }
}

fn versions(v: &Versions) -> pb::Versions {
    pb::Versions {
        catalog: v.catalog.clone(),
        router_artifact: v.router_artifact.clone(),
        heads: v.heads.clone(),
        generation: v.generation,
        arm: String::new(),
    }
}

fn classification(p: &pointsman_classifier::Prediction) -> pb::Classification {
    pb::Classification {
        task: p.task.clone(),
        task_scores: p.task_scores.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        difficulty: p.difficulty,
    }
}

fn route_response(r: Routed) -> pb::RouteResponse {
    let target = r.target();
    let mut v = versions(&r.versions);
    if r.logged.versions.contains_key("arm") {
        v.arm = r.arm.as_str().to_string();
    }
    pb::RouteResponse {
        explored: r.logged.explored,
        propensity: r.logged.propensity,
        typical_failure: r.typical_failure,
        decision_id: r.decision_id,
        model: r.decision.model,
        fallbacks: r.decision.fallbacks,
        candidates: r
            .decision
            .candidates
            .into_iter()
            .map(|c| pb::Candidate {
                model: c.model,
                p_success: c.p_success,
                expected_cost_usd: c.expected_cost_usd,
            })
            .collect(),
        classification: Some(classification(&r.classification)),
        reason: r.decision.reason,
        versions: Some(v),
        target,
        excluded: r.decision.excluded.into_iter().collect(),
    }
}

fn get_catalog(core: &Core) -> pb::GetCatalogResponse {
    let state = core.state.snapshot();
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
        versions: Some(versions(&state.versions)),
    }
}

/// The `pointsman.v1.Router` service.
#[derive(Clone)]
pub struct RouterService {
    core: Arc<Core>,
}

impl RouterService {
    pub fn new(core: Arc<Core>) -> Self {
        RouterService { core }
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
        let r = self
            .core
            .route(&route_request(req.into_inner()), d)
            .await
            .map(route_response);
        observe(&self.core, "Route", start, &r);
        Ok(Response::new(r?))
    }

    async fn route_batch(
        &self,
        req: Request<pb::RouteBatchRequest>,
    ) -> Result<Response<pb::RouteBatchResponse>, Status> {
        let start = Instant::now();
        let d = deadline(&req, start);
        let requests: Vec<RouteRequest> = req
            .into_inner()
            .requests
            .into_iter()
            .map(route_request)
            .collect();
        let r = self
            .core
            .route_batch(&requests, d)
            .await
            .map(|results| pb::RouteBatchResponse {
                items: results
                    .into_iter()
                    .map(|result| pb::RouteBatchItem {
                        result: Some(match result {
                            Ok(routed) => {
                                pb::route_batch_item::Result::Response(route_response(routed))
                            }
                            Err(e) => pb::route_batch_item::Result::Error(pb::ItemError {
                                code: e.code() as i32,
                                message: e.to_string(),
                            }),
                        }),
                    })
                    .collect(),
            });
        observe(&self.core, "RouteBatch", start, &r);
        Ok(Response::new(r?))
    }

    async fn classify(
        &self,
        req: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let start = Instant::now();
        let d = deadline(&req, start);
        let r = self
            .core
            .classify(req.into_inner().prompt, d)
            .await
            .map(|p| pb::ClassifyResponse {
                classification: Some(classification(&p)),
                heads_version: self.core.heads_version.clone(),
            });
        observe(&self.core, "Classify", start, &r);
        Ok(Response::new(r?))
    }

    async fn report_outcome(
        &self,
        req: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let start = Instant::now();
        let r = req.into_inner();
        let report = OutcomeReport {
            decision_id: r.decision_id,
            model: r.model,
            score: r.score,
            cost_usd: r.cost_usd,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            latency_ms: r.latency_ms,
            time_ms: 0, // stamped when stored
        };
        let r = self
            .core
            .report_outcome(report)
            .await
            .map(|n| pb::ReportOutcomeResponse {
                outcomes_for_decision: n,
            });
        observe(&self.core, "ReportOutcome", start, &r);
        Ok(Response::new(r?))
    }

    async fn get_catalog(
        &self,
        _req: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::GetCatalogResponse>, Status> {
        let start = Instant::now();
        let r = Ok(get_catalog(&self.core));
        observe(&self.core, "GetCatalog", start, &r);
        Ok(Response::new(r?))
    }
}

/// The `pointsman.v1.Admin` service: reload and roll back.
#[derive(Clone)]
pub struct AdminService {
    core: Arc<Core>,
}

impl AdminService {
    pub fn new(core: Arc<Core>) -> Self {
        AdminService { core }
    }

    async fn swap(&self, rollback: bool) -> Result<Response<pb::ReloadResponse>, Status> {
        let core = self.core.clone();
        let r = tokio::task::spawn_blocking(move || core.reload(rollback))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        r.map(|v| {
            Response::new(pb::ReloadResponse {
                versions: Some(versions(&v)),
            })
        })
        .map_err(Status::failed_precondition)
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn reload(
        &self,
        _req: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        self.swap(false).await
    }

    async fn rollback(
        &self,
        _req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        self.swap(true).await
    }

    async fn load_candidate(
        &self,
        req: Request<pb::LoadCandidateRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = req.into_inner();
        if r.path.trim().is_empty() {
            return Err(ServerError::invalid("path", "is empty").into());
        }
        let mode = rollout_mode("mode", &r.mode)?;
        let actor = actor(r.who, r.why)?;
        self.rollout(move |c| c.load_candidate(std::path::Path::new(&r.path), mode, actor))
            .await
    }

    async fn set_rollout_mode(
        &self,
        req: Request<pb::SetRolloutModeRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = req.into_inner();
        if r.mode.trim().is_empty() {
            return Err(ServerError::invalid("mode", "is empty").into());
        }
        let mode = rollout_mode("mode", &r.mode)?;
        let actor = actor(r.who, r.why)?;
        self.rollout(move |c| c.set_rollout_mode(mode, actor)).await
    }

    async fn promote(
        &self,
        req: Request<pb::RolloutActionRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = req.into_inner();
        let actor = actor(r.who, r.why)?;
        self.rollout(move |c| c.promote(actor)).await
    }

    async fn abort(
        &self,
        req: Request<pb::RolloutActionRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = req.into_inner();
        let actor = actor(r.who, r.why)?;
        self.rollout(move |c| c.abort(actor)).await
    }

    async fn get_rollout(
        &self,
        _req: Request<pb::GetRolloutRequest>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        Ok(Response::new(rollout_status(self.core.rollout_status())))
    }
}

impl AdminService {
    /// Runs one rollout action on the blocking pool (it reads files and
    /// writes the store).
    async fn rollout(
        &self,
        action: impl FnOnce(&Core) -> Result<RolloutStatus, ServerError> + Send + 'static,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let core = self.core.clone();
        let r = tokio::task::spawn_blocking(move || action(&core))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(rollout_status(r?)))
    }
}

/// Who and why of a rollout action, bounded (they go into the store).
fn actor(who: String, why: String) -> Result<Actor, ServerError> {
    crate::fields::check_len("who", &who, crate::fields::MAX_NAME_BYTES)?;
    crate::fields::check_len("why", &why, MAX_WHY_BYTES)?;
    Ok(Actor { who, why })
}

/// Longest `why` of a rollout action, in UTF-8 bytes.
pub const MAX_WHY_BYTES: usize = 4096;

/// A mode field: empty = shadow.
fn rollout_mode(field: &str, s: &str) -> Result<RolloutMode, ServerError> {
    if s.trim().is_empty() {
        return Ok(RolloutMode::Shadow);
    }
    s.parse().map_err(|e| ServerError::invalid(field, e))
}

fn rollout_status(s: RolloutStatus) -> pb::RolloutStatus {
    pb::RolloutStatus {
        live: s.live,
        candidate: s.candidate,
        mode: s.mode,
    }
}
