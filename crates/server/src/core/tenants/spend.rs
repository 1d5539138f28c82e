//! Per-tenant spend counters, shared by the replicas of a fleet through
//! the store (docs/ROLLOUT.md, "Budgets across replicas").
//!
//! The request path never waits for the store: each replica counts its own
//! spend locally at once, and every sync interval pushes what it counted
//! since the last sync to the store's shared counter and reads back the
//! fleet's total ([`SharedSpend::sync`]). So a replica sees its own spend
//! immediately and the other replicas' at most one sync interval (plus a
//! store round trip) late.

use std::collections::HashMap;
use std::sync::Mutex;

use pointsman_store::SpendKey;

/// Per-tenant spend in the current period. The budget check reads it on
/// every request, so it must be cheap (no I/O).
pub trait SpendCounter: Send + Sync {
    /// USD counted for `tenant` in the period that starts at `period_start_ms`.
    fn spent(&self, tenant: &str, period_start_ms: i64) -> f64;
    /// Adds `usd` (negative when a reported cost is below the expected
    /// one) to `tenant`'s spend in that period (an earlier period's count
    /// is dropped; an add for a period that has ended is ignored).
    fn add(&self, tenant: &str, period_start_ms: i64, usd: f64);
    /// Whether the counter has anything for that tenant and period (else
    /// it is seeded from the store).
    fn has(&self, tenant: &str, period_start_ms: i64) -> bool;
}

/// One tenant's count in one period.
#[derive(Debug, Clone, Copy)]
struct Count {
    period_start_ms: i64,
    /// The fleet's total as the store last reported it.
    fleet: f64,
    /// Counted here and being pushed to the store by the sync under way.
    in_flight: f64,
    /// Counted here since the last sync began.
    pending: f64,
}

impl Count {
    fn new(period_start_ms: i64) -> Count {
        Count {
            period_start_ms,
            fleet: 0.0,
            in_flight: 0.0,
            pending: 0.0,
        }
    }

    fn total(&self) -> f64 {
        self.fleet + self.in_flight + self.pending
    }
}

/// `tenant`'s count for the period starting at `period_start_ms`, started
/// afresh if the count held is for an earlier period; None if it holds a
/// later one (the period asked for has ended: periods only move forward,
/// so a late add for the old one cannot reset the new one's count).
fn count_for<'a>(
    m: &'a mut HashMap<String, Count>,
    tenant: &str,
    period_start_ms: i64,
) -> Option<&'a mut Count> {
    let c = m
        .entry(tenant.to_string())
        .or_insert(Count::new(period_start_ms));
    if c.period_start_ms < period_start_ms {
        *c = Count::new(period_start_ms);
    }
    (c.period_start_ms == period_start_ms).then_some(c)
}

/// [`SpendCounter`] kept in this process and synced with the fleet's
/// through the store: one [`Count`] per tenant with a budget, so bounded
/// by the tenants file. Without syncs it counts this process's spend only.
#[derive(Default)]
pub struct SharedSpend {
    counts: Mutex<HashMap<String, Count>>,
}

impl SharedSpend {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Count>> {
        // Plain numbers: a panic elsewhere cannot leave them half-written.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `tenant`'s fleet total for the period from the store (start-up
    /// and reload: [`pointsman_store::OutcomeStore::reconcile_tenant_spend`]);
    /// what this process counted since stays on top.
    pub fn seed(&self, tenant: &str, period_start_ms: i64, fleet_usd: f64) {
        if let Some(c) = count_for(&mut self.lock(), tenant, period_start_ms) {
            c.fleet = fleet_usd;
        }
    }

    /// One sync: for each key (every tenant with a budget, in its current
    /// period) hands what was counted here since the last sync to `push`,
    /// which adds it to the store's counters and returns their totals in
    /// order; the totals become the fleet's. A tenant's count that is for
    /// an older period starts the new one (its unsynced spend belonged to
    /// the period that ended). If `push` fails, the deltas stay counted
    /// here and go with the next sync.
    pub fn sync<E>(
        &self,
        keys: &[SpendKey],
        push: impl FnOnce(&[(SpendKey, f64)]) -> Result<Vec<f64>, E>,
    ) -> Result<(), E> {
        let deltas: Vec<(SpendKey, f64)> = {
            let mut m = self.lock();
            keys.iter()
                .filter_map(|k| {
                    let c = count_for(&mut m, &k.tenant, k.period_start_ms)?;
                    c.in_flight += c.pending;
                    c.pending = 0.0;
                    Some((k.clone(), c.in_flight))
                })
                .collect()
        };
        if deltas.is_empty() {
            return Ok(());
        }
        let pushed = push(&deltas);
        let mut m = self.lock();
        for (i, (k, _)) in deltas.iter().enumerate() {
            let Some(c) = m.get_mut(&k.tenant) else {
                continue;
            };
            // A count that moved to a new period meanwhile is not this one.
            if c.period_start_ms != k.period_start_ms {
                continue;
            }
            match &pushed {
                Ok(totals) => {
                    c.fleet = totals.get(i).copied().unwrap_or(c.fleet + c.in_flight);
                    c.in_flight = 0.0;
                }
                Err(_) => {
                    c.pending += c.in_flight;
                    c.in_flight = 0.0;
                }
            }
        }
        pushed.map(|_| ())
    }
}

impl SpendCounter for SharedSpend {
    fn spent(&self, tenant: &str, period_start_ms: i64) -> f64 {
        match self.lock().get(tenant) {
            Some(c) if c.period_start_ms == period_start_ms => c.total(),
            _ => 0.0,
        }
    }

    fn add(&self, tenant: &str, period_start_ms: i64, usd: f64) {
        if let Some(c) = count_for(&mut self.lock(), tenant, period_start_ms) {
            c.pending += usd;
        }
    }

    fn has(&self, tenant: &str, period_start_ms: i64) -> bool {
        self.lock()
            .get(tenant)
            .is_some_and(|c| c.period_start_ms == period_start_ms)
    }
}
