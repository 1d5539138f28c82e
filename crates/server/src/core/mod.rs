//! The transport-neutral core: domain types, validation, decide-and-log,
//! outcomes and reload. Front ends (gRPC in `grpc`, HTTP in `http`, the
//! `pointsman route` command) convert their wire format to these types,
//! call the core and convert back; the core knows no protobuf and no HTTP.

pub mod calls;
pub mod decide;
pub mod exploration;
pub mod named;
pub mod outcome;
pub mod request;
pub mod rollout;
pub mod tenants;
pub mod validate;

use std::sync::Arc;

use pointsman_store::OutcomeStore;

use crate::batcher::Batcher;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::state::StateHolder;
use tenants::SpendCounter;

pub use exploration::Exploration;
pub use request::{OutcomeReport, RouteConstraints, RouteRequest, Routed, Versions};

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
    /// Exploration with logged propensities (off by default).
    pub explore: Exploration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_prompt_bytes: 64 * 1024,
            max_batch_request: 256,
            default_output_tokens: 256,
            store_prompts: false,
            explore: Exploration::default(),
        }
    }
}

/// Store calls running at once (each holds a blocking-pool thread while it
/// waits for the database lock and fsync); more are refused.
pub const STORE_SLOTS: usize = 64;

/// What every front end shares: the encoder queue, the routing state, the
/// store and the metrics.
pub struct Core {
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
    /// The candidate artifact under shadow or canary, if any.
    pub rollout: Arc<rollout::Rollout>,
    /// Per-tenant policies (re-read on reload).
    pub tenants: Arc<tenants::TenantsHolder>,
    /// Per-tenant spend in the current budget period, synced with the
    /// other replicas through the store ([`Core::sync_spend`]).
    pub spend: Arc<tenants::SharedSpend>,
}

impl Core {
    /// Runs `work` on the blocking pool, at most `STORE_SLOTS` at once:
    /// beyond that the call is refused (RESOURCE_EXHAUSTED) instead of
    /// piling up unbounded blocking tasks (prompt-cache hits never wait
    /// in the encoder queue, so only this bounds their store writes).
    pub async fn store_work<T: Send + 'static>(
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
        self.store_work_with(permit, work).await
    }

    /// [`Core::store_work`] for background writes that must not be lost
    /// (the gateway's call logs): waits for a slot instead of failing.
    pub async fn store_work_waiting<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn OutcomeStore) -> T + Send + 'static,
    ) -> Result<T, ServerError> {
        let permit = self
            .store_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ServerError::Internal(format!("store slots: {e}")))?;
        self.store_work_with(permit, work).await
    }

    async fn store_work_with<T: Send + 'static>(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        work: impl FnOnce(&dyn OutcomeStore) -> T + Send + 'static,
    ) -> Result<T, ServerError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let out = work(store.as_ref());
            drop(permit);
            out
        })
        .await
        .map_err(|e| ServerError::Internal(format!("store task: {e}")))
    }

    /// Reloads (or rolls back) the state, logging and counting the result.
    pub fn reload(&self, rollback: bool) -> Result<Versions, String> {
        let kind = if rollback { "rollback" } else { "reload" };
        let mut tenants = None;
        let r = if rollback {
            self.state.rollback()
        } else {
            // The tenants file is re-read and checked against the new
            // catalog first: if it is bad, nothing is swapped.
            self.state.reload_checked(|s| {
                tenants = self.tenants.read(&s.catalog)?;
                Ok(())
            })
        };
        match r {
            Ok(s) => {
                if let Some(t) = tenants {
                    self.tenants.store(t);
                    self.seed_spend();
                }
                self.metrics.reloads.with_label_values(&[kind]).inc();
                self.metrics.generation.set(s.versions.generation as f64);
                let candidate = self
                    .rollout
                    .snapshot()
                    .map(|a| a.candidate.version.clone())
                    .unwrap_or_default();
                self.metrics
                    .set_artifacts(&s.versions.router_artifact, &candidate);
                tracing::info!(kind, catalog = %s.versions.catalog, router = %s.versions.router_artifact, generation = s.versions.generation, "state swapped");
                Ok(s.versions.clone())
            }
            Err(e) => {
                tracing::warn!(kind, error = %e, "state kept");
                Err(format!("{e:#}"))
            }
        }
    }

    /// The shared counter of every tenant with a budget, in its current
    /// period (the tenants file in force).
    fn spend_keys(&self) -> Vec<pointsman_store::SpendKey> {
        let now = decide::now_ms();
        self.tenants
            .snapshot()
            .tenants
            .iter()
            .filter_map(|(name, p)| {
                let b = p.budget()?;
                Some(pointsman_store::SpendKey {
                    tenant: name.clone(),
                    period: b.period.as_str().to_string(),
                    period_start_ms: b.period.start(now),
                })
            })
            .collect()
    }

    /// Seeds the spend of every tenant with a budget that has no count for
    /// its current period from the store: its shared counter, first raised
    /// to what the logged decisions say it spent this period (reported
    /// cost where an outcome reports one, else expected), so neither a
    /// restart nor a replica that crashed before its last sync hands out
    /// a fresh budget. Blocking (store calls); run at start-up and after a
    /// reload.
    pub fn seed_spend(&self) {
        let keys: Vec<_> = self
            .spend_keys()
            .into_iter()
            .filter(|k| !self.spend.has(&k.tenant, k.period_start_ms))
            .collect();
        if keys.is_empty() {
            return;
        }
        match self.store.reconcile_tenant_spend(&keys) {
            Ok(totals) => {
                for (k, usd) in keys.iter().zip(totals) {
                    self.spend.seed(&k.tenant, k.period_start_ms, usd);
                    tracing::info!(tenant = %k.tenant, spent_usd = usd, period = %k.period, "tenant spend seeded from the store");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tenants = keys.len(), "could not seed tenant spend from the store; counting from 0 until the next sync")
            }
        }
    }

    /// Pushes the spend counted here since the last sync to the store's
    /// shared counters and takes the fleet's totals back (every tenant
    /// with a budget; nothing to do without one). Blocking (one store
    /// transaction); `serve` runs it every `--spend-sync` seconds and once
    /// more when it stops. A failure keeps the unsynced spend for the
    /// next sync.
    pub fn sync_spend(&self) -> Result<(), pointsman_store::StoreError> {
        let keys = self.spend_keys();
        let r = self
            .spend
            .sync(&keys, |deltas| self.store.add_tenant_spend(deltas));
        if !keys.is_empty() {
            let result = if r.is_ok() { "ok" } else { "error" };
            self.metrics.spend_syncs.with_label_values(&[result]).inc();
        }
        r
    }
}

/// Runs [`Core::sync_spend`] every `every` until aborted, on the blocking
/// pool outside the request store slots (one sync at a time). A failure is
/// logged when syncs start failing and when they recover, and counted
/// (`pointsman_spend_syncs_total{result="error"}`) every time.
pub async fn sync_spend_forever(core: Arc<Core>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let c = core.clone();
        match tokio::task::spawn_blocking(move || c.sync_spend()).await {
            Ok(Ok(())) if failing => {
                failing = false;
                tracing::info!("tenant spend syncs with the store again");
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "tenant spend sync failed: budgets count this replica's spend only until it recovers");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(error = %e, "tenant spend sync task failed"),
        }
    }
}
