//! Decide, then log: the one pipeline every front end runs (gRPC Route and
//! RouteBatch, HTTP /v1/route and /v1/chat/completions, `pointsman route`).
//!
//! ```text
//! check_route ─► classify (batcher, or the caller's classifier) ─► decide ─► log (store) ─► Routed
//! ```

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pointsman_classifier::features::{surface_features, FEATURE_NAMES};
use pointsman_classifier::Embedded;
use pointsman_router::catalog::estimate_tokens;
use pointsman_router::{policy, Decision, RouterError, SuccessModel};
use pointsman_store::{LoggedCandidate, LoggedDecision, ShadowDecision};

use super::request::{RouteRequest, Routed};
use super::rollout::Arm;
use super::tenants::{OnBudget, SpendCounter};
use super::validate::{check_route, Plan};
use super::{Core, Limits};
use crate::error::ServerError;
use crate::fields::quote;
use crate::state::RoutingState;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Refuses work whose deadline has passed.
pub fn check_deadline(deadline: Option<Instant>) -> Result<(), ServerError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(ServerError::DeadlineExceeded),
        _ => Ok(()),
    }
}

/// Decides for one classified prompt (no I/O): the answer and the row to
/// log. `prefix` is prepended to field names in errors.
pub fn decide(
    limits: &Limits,
    encoder_id: &str,
    state: &RoutingState,
    prefix: &str,
    r: &RouteRequest,
    embedded: Embedded,
    plan: Plan,
) -> Result<Routed, ServerError> {
    let Plan {
        policy,
        mut constraints,
        rollout,
        downgrade,
        explore_rate,
    } = plan;
    let live = state
        .success
        .as_ref()
        .ok_or_else(|| ServerError::NotReady("no router artifact is loaded".into()))?;
    let catalog = &state.catalog;
    let names = catalog.names();
    let id = uuid::Uuid::new_v4().to_string();
    // Under canary the candidate decides this request's share of traffic.
    let arm = rollout
        .as_ref()
        .map_or(Arm::Live, |a| a.arm(r.tenant.as_deref(), &id));
    let (success, artifact) = match (&rollout, arm) {
        (Some(a), Arm::Canary) => (&a.candidate.success, &a.candidate.version),
        _ => (live, &state.versions.router_artifact),
    };
    let p = predict(success, &names, &embedded, &r.prompt);
    // Artifacts are checked at load, but a decision on a NaN would pick
    // the first model and poison the store: never emit one.
    pointsman_router::validate::check_probabilities(&names, &p)
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    // Over every catalog model, before constraints: a property of the
    // prompt, not of this request's allowed models.
    let typical_failure = (1.0 - p.iter().sum::<f64>() / p.len().max(1) as f64).clamp(0.0, 1.0);
    let input_tokens = estimate_tokens(&r.prompt);
    let output_tokens = r
        .expected_output_tokens
        .unwrap_or(limits.default_output_tokens) as u64;
    // Catalog prices, times the artifact's per-prompt cost factor unless
    // the request states its own output tokens (pointsman_router::cost).
    let cost = pointsman_router::expected_costs(
        catalog,
        success,
        &embedded.embedding,
        input_tokens,
        output_tokens,
        r.expected_output_tokens.is_none(),
    );
    constraints.min_context_tokens = Some(input_tokens + output_tokens);
    // A target is priced by the deciding artifact's target table
    // (pointsman_router::target); the shadow below resolves its own.
    let resolved = success.resolve_policy(policy);
    let mut decision =
        policy::decide(catalog, &p, &cost, resolved, &constraints).map_err(|e| match e {
            RouterError::NoEligibleModel(why) => ServerError::invalid(
                format!("{prefix}constraints"),
                format!("no model satisfies them ({why})"),
            ),
            other => ServerError::Internal(other.to_string()),
        })?;
    // A tenant over its budget with on_budget = "downgrade" gets the
    // cheapest model and does not explore. Otherwise exploration after the
    // policy, at the tenant's rate if its policy sets one, else the
    // server's: only among the candidates the constraints left, with the
    // propensity logged either way.
    let explore = &limits.explore;
    let explored = if downgrade {
        decision = cheapest(decision, r.tenant.as_deref().unwrap_or_default());
        pointsman_router::explore::Explored {
            index: 0,
            propensity: 1.0,
            explored: false,
        }
    } else {
        let cold = |m: &str| explore.is_cold(success, m);
        let rate = explore_rate.unwrap_or(explore.rate);
        pointsman_router::explore::apply(&mut decision, rate, &cold, rand::random())
    };
    // The artifact that did not decide decides too, on the same
    // embedding, costs and constraints; logged (the row's `shadow`), never
    // acted on. Under shadow, and on the live arm of a canary, that is the
    // candidate; on the canary arm it is the live artifact, so off-policy
    // comparisons have both artifacts' choices on every request.
    let other = match (&rollout, arm) {
        (Some(_), Arm::Canary) => Some((live, &state.versions.router_artifact)),
        (Some(a), Arm::Live) => Some((&a.candidate.success, &a.candidate.version)),
        (None, _) => None,
    };
    let shadow = other.and_then(|other| {
        shadow_decision(
            other,
            catalog,
            &names,
            (&embedded, &r.prompt),
            &cost,
            policy,
            &constraints,
        )
    });
    let mut versions = state.versions.clone();
    versions.router_artifact = artifact.clone();
    let mut logged_versions = BTreeMap::from([
        ("catalog".to_string(), versions.catalog.clone()),
        (
            "router_artifact".to_string(),
            versions.router_artifact.clone(),
        ),
        ("heads".to_string(), versions.heads.clone()),
        ("encoder".to_string(), encoder_id.to_string()),
    ]);
    if rollout.is_some() {
        logged_versions.insert("arm".to_string(), arm.as_str().to_string());
    }
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
        versions: logged_versions,
        tenant: r.tenant.clone(),
        prompt: limits.store_prompts.then(|| r.prompt.clone()),
        propensity: explored.propensity,
        explored: explored.explored,
        shadow,
    };
    let saved_usd = decision
        .candidates
        .iter()
        .max_by(|a, b| a.p_success.total_cmp(&b.p_success))
        .map_or(0.0, |best| {
            (best.expected_cost_usd - decision.expected_cost_usd).max(0.0)
        });
    Ok(Routed {
        decision_id: id,
        decision,
        classification: embedded.prediction,
        versions,
        input_tokens,
        saved_usd,
        typical_failure,
        tenant: r.tenant.clone(),
        arm,
        logged,
    })
}

/// P(success) of every catalog model under one artifact. An artifact that
/// reads the heads' outputs (pointsman_router::head_features) takes them
/// from the classification; when one is missing (heads other than those it
/// was trained with) the reason, naming the feature, is logged and every P
/// is NaN, which the callers' probability check refuses.
fn predict(success: &SuccessModel, names: &[&str], e: &Embedded, prompt: &str) -> Vec<f64> {
    let scores = || {
        e.prediction
            .task_scores
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
    };
    let tasks = success.task_vector(scores());
    let heads = match &success.head_features {
        Some(h) => {
            // Computed only for an artifact that reads them: a pass over the text.
            let surface: Vec<(&str, f32)> = if h.reads_surface() {
                FEATURE_NAMES
                    .into_iter()
                    .zip(surface_features(prompt))
                    .collect()
            } else {
                Vec::new()
            };
            h.outputs_from(scores(), Some(e.prediction.difficulty), &surface)
        }
        None => Ok(Vec::new()),
    };
    match heads.and_then(|h| success.try_predict(names, &e.embedding, &tasks, &h)) {
        Ok(p) => p,
        Err(err) => {
            tracing::error!(error = %err, "the router artifact cannot decide on this classification");
            vec![f64::NAN; names.len()]
        }
    }
}

/// The other artifact's (success model and version) policy decision for
/// the same request, unexplored (None, with a warning, if it cannot make
/// one: a shadow never fails the request).
fn shadow_decision(
    (success, version): (&SuccessModel, &String),
    catalog: &pointsman_router::Catalog,
    names: &[&str],
    (e, prompt): (&Embedded, &str),
    cost: &[f64],
    policy: pointsman_router::Policy,
    constraints: &pointsman_router::Constraints,
) -> Option<ShadowDecision> {
    let p = predict(success, names, e, prompt);
    let made = pointsman_router::validate::check_probabilities(names, &p)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let policy = success.resolve_policy(policy);
            policy::decide(catalog, &p, cost, policy, constraints).map_err(|e| e.to_string())
        });
    match made {
        Ok(d) => Some(ShadowDecision {
            artifact: version.clone(),
            model: d.model,
            p_success: d.p_success,
            expected_cost_usd: d.expected_cost_usd,
        }),
        Err(e) => {
            tracing::warn!(artifact = %version, error = %e, "shadow decision failed");
            None
        }
    }
}

/// A tenant over its budget with `on_budget = "downgrade"`: the cheapest
/// eligible model (the higher P on a tie) goes first, the rest keep the
/// policy's fallback order.
fn cheapest(mut d: Decision, tenant: &str) -> Decision {
    let Some(i) = (0..d.candidates.len()).min_by(|&a, &b| {
        let (x, y) = (&d.candidates[a], &d.candidates[b]);
        x.expected_cost_usd
            .total_cmp(&y.expected_cost_usd)
            .then(y.p_success.total_cmp(&x.p_success))
    }) else {
        return d;
    };
    let chosen = d.candidates.remove(i);
    d.candidates.insert(0, chosen);
    let first = &d.candidates[0];
    d.reason = format!(
        "tenant {} is over its spend budget (on_budget = downgrade): the cheapest eligible model, {:.6} USD (the policy chose {})",
        quote(tenant),
        first.expected_cost_usd,
        d.model
    );
    d.model = first.model.clone();
    d.p_success = first.p_success;
    d.expected_cost_usd = first.expected_cost_usd;
    d.fallbacks = d.candidates[1..].iter().map(|c| c.model.clone()).collect();
    d
}

impl Core {
    /// Counts and logs one decision the store has acknowledged.
    fn routed(&self, r: &Routed) {
        let m = &self.metrics;
        m.routes.with_label_values(&[&r.decision.model]).inc();
        m.expected_cost_usd
            .inc_by(r.decision.expected_cost_usd.max(0.0));
        m.cost_saved_usd.inc_by(r.saved_usd);
        m.typical_failure.observe(r.typical_failure);
        self.count_rollout_and_spend(r);
        tracing::info!(decision_id = %r.decision_id, model = %r.decision.model, p = r.decision.p_success, tenant = ?r.tenant, "routed");
    }

    /// Validates, classifies, decides and logs one request; returns once
    /// the store has the decision.
    pub async fn route(
        &self,
        r: &RouteRequest,
        deadline: Option<Instant>,
    ) -> Result<Routed, ServerError> {
        let state = self.state.snapshot();
        let r = &self.tenants.snapshot().apply("", r)?;
        let mut plan = check_route(&self.limits, "", r, &state)?;
        self.plan_rollout_and_budget(r, &mut plan)?;
        check_deadline(deadline)?;
        let embedded = self.batcher.classify(r.prompt.clone(), deadline).await?;
        let routed = decide(
            &self.limits,
            &self.encoder_id,
            &state,
            "",
            r,
            embedded,
            plan,
        )?;
        let logged = routed.logged.clone();
        self.store_work(move |s| s.append_decision(&logged))
            .await??;
        self.routed(&routed);
        Ok(routed)
    }

    /// Routes many requests: one result per request in order (a bad item
    /// fails alone, its errors prefixed `requests[i].`); classified in
    /// shared encoder passes and logged in one transaction.
    pub async fn route_batch(
        &self,
        requests: &[RouteRequest],
        deadline: Option<Instant>,
    ) -> Result<Vec<Result<Routed, ServerError>>, ServerError> {
        if requests.len() > self.limits.max_batch_request {
            return Err(ServerError::invalid(
                "requests",
                format!(
                    "{} items, over the maximum of {} (--max-batch-request)",
                    requests.len(),
                    self.limits.max_batch_request
                ),
            ));
        }
        check_deadline(deadline)?;
        let state = self.state.snapshot();
        let prefix = |i: usize| format!("requests[{i}].");
        let tenants = self.tenants.snapshot();
        // Each item with its tenant's defaults applied, then checked (an
        // error fails the item alone).
        let mut items: Vec<RouteRequest> = Vec::with_capacity(requests.len());
        let mut checked: Vec<Result<Plan, ServerError>> = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            match tenants.apply(&prefix(i), r) {
                Err(e) => {
                    items.push(r.clone());
                    checked.push(Err(e));
                }
                Ok(a) => {
                    checked.push(check_route(&self.limits, &prefix(i), &a, &state).and_then(
                        |mut plan| {
                            self.plan_rollout_and_budget(&a, &mut plan)?;
                            Ok(plan)
                        },
                    ));
                    items.push(a);
                }
            }
        }
        let good: Vec<usize> = (0..requests.len())
            .filter(|&i| checked[i].is_ok())
            .collect();
        let embedded = self
            .batcher
            .classify_many(
                good.iter().map(|&i| requests[i].prompt.clone()).collect(),
                deadline,
            )
            .await;
        let mut embedded: BTreeMap<usize, Result<Embedded, ServerError>> =
            good.into_iter().zip(embedded).collect();
        // Decide every item, then log every decision in one transaction.
        let mut results: Vec<Result<Routed, ServerError>> = items
            .iter()
            .zip(checked)
            .enumerate()
            .map(|(i, (r, plan))| {
                let plan = plan?;
                let e = embedded.remove(&i).expect("every good item was queued")?;
                decide(
                    &self.limits,
                    &self.encoder_id,
                    &state,
                    &prefix(i),
                    r,
                    e,
                    plan,
                )
            })
            .collect();
        let rows: Vec<LoggedDecision> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.logged.clone()))
            .collect();
        if !rows.is_empty() {
            let mut stored = self
                .store_work(move |s| s.append_decisions(&rows))
                .await?
                .into_iter();
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                if let Err(e) = stored.next().expect("one result per row") {
                    *r = Err(e.into());
                }
            }
        }
        for r in results.iter().flatten() {
            self.routed(r);
        }
        Ok(results)
    }

    /// Puts the rollout in progress into `plan` and enforces the tenant's
    /// budget: over it, `reject` fails the request and `downgrade` marks
    /// the plan. The check is before the decision, so concurrent requests
    /// may overshoot a budget by their own expected cost.
    fn plan_rollout_and_budget(
        &self,
        r: &RouteRequest,
        plan: &mut Plan,
    ) -> Result<(), ServerError> {
        plan.rollout = self.rollout.snapshot();
        let tenants = self.tenants.snapshot();
        plan.explore_rate = tenants.get(r.tenant.as_deref()).and_then(|p| p.explore);
        match self.budget_breach(r) {
            None => Ok(()),
            Some((OnBudget::Reject, e)) => {
                self.count_breach("reject");
                Err(e)
            }
            Some((OnBudget::Downgrade, _)) => {
                self.count_breach("downgrade");
                plan.downgrade = true;
                Ok(())
            }
        }
    }

    /// The request's tenant is over its budget for this period: the action
    /// its policy names and the error that `reject` answers. None within
    /// budget, without a tenant, or without a budget.
    pub(super) fn budget_breach(&self, r: &RouteRequest) -> Option<(OnBudget, ServerError)> {
        let tenant = r.tenant.as_deref()?;
        let budget = self.tenants.snapshot().get(Some(tenant))?.budget()?;
        let spent = self.spend.spent(tenant, budget.period.start(now_ms()));
        (spent >= budget.usd).then(|| {
            let error = ServerError::BudgetExhausted {
                tenant: quote(tenant),
                budget_usd: budget.usd,
                period: budget.period.as_str(),
                spent_usd: spent,
            };
            (budget.on_breach, error)
        })
    }

    /// Counts a budget breach by the action taken.
    pub(super) fn count_breach(&self, action: &str) {
        self.metrics
            .budget_breaches
            .with_label_values(&[action])
            .inc();
    }

    /// Adds a decision's expected cost to its tenant's spend, when the
    /// tenant has a budget.
    pub(super) fn add_spend(&self, tenant: Option<&str>, time_ms: i64, expected_cost_usd: f64) {
        let Some(tenant) = tenant else { return };
        let tenants = self.tenants.snapshot();
        if let Some(b) = tenants.get(Some(tenant)).and_then(|p| p.budget()) {
            self.spend
                .add(tenant, b.period.start(time_ms), expected_cost_usd.max(0.0));
        }
    }

    /// Rollout metrics by deciding artifact, shadow metrics, and the
    /// tenant's spend (the decision's expected cost).
    fn count_rollout_and_spend(&self, r: &Routed) {
        let m = &self.metrics;
        let artifact = r.arm.artifact_label();
        m.artifact_routes
            .with_label_values(&[artifact, &r.decision.model])
            .inc();
        m.artifact_expected_cost_usd
            .with_label_values(&[artifact])
            .inc_by(r.decision.expected_cost_usd.max(0.0));
        // The shadow metrics say what the candidate would do: its
        // decisions on the live arm (under shadow or canary), not the live
        // artifact's logged beside a canary decision.
        if let Some(s) = r.logged.shadow.as_ref().filter(|_| r.arm == Arm::Live) {
            m.shadow_routes.with_label_values(&[&s.model]).inc();
            m.shadow_expected_cost_usd
                .inc_by(s.expected_cost_usd.max(0.0));
            if s.model == r.decision.model {
                m.shadow_agreements.inc();
            }
        }
        self.add_spend(
            r.tenant.as_deref(),
            r.logged.time_ms,
            r.decision.expected_cost_usd,
        );
    }

    /// Classifies one prompt (no decision, nothing logged).
    pub async fn classify(
        &self,
        prompt: String,
        deadline: Option<Instant>,
    ) -> Result<pointsman_classifier::Prediction, ServerError> {
        super::validate::check_prompt(&self.limits, "prompt", &prompt)?;
        check_deadline(deadline)?;
        Ok(self.batcher.classify(prompt, deadline).await?.prediction)
    }
}
