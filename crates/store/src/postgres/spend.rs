//! The shared per-tenant spend counters in PostgreSQL (`tenant_spend`, see
//! [`crate::OutcomeStore::add_tenant_spend`]). Every replica adds its
//! deltas to the same rows; rows are touched in key order so two replicas'
//! transactions cannot deadlock on each other.

use super::PostgresStore;
use crate::{SpendKey, StoreError};

/// sqlite/spend.rs's LOGGED_SPEND in PostgreSQL's JSON operators, raising
/// the counter to it (GREATEST) and returning the total.
const RECONCILE: &str = "
INSERT INTO tenant_spend (tenant, period, period_start_ms, usd)
SELECT $1::text, $2::text, $3::int8, COALESCE(SUM(COALESCE(
    (SELECT o.cost_usd FROM outcomes o
     WHERE o.decision_id = d.id AND o.model = d.model
     ORDER BY o.seq DESC LIMIT 1),
    (d.candidates::jsonb -> 0 ->> 'expected_cost_usd')::float8)), 0.0)
FROM decisions d WHERE d.tenant = $1::text AND d.time_ms >= $3::int8
ON CONFLICT (tenant, period, period_start_ms)
    DO UPDATE SET usd = GREATEST(tenant_spend.usd, excluded.usd)
RETURNING usd";

const ADD: &str = "
INSERT INTO tenant_spend (tenant, period, period_start_ms, usd) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant, period, period_start_ms)
    DO UPDATE SET usd = tenant_spend.usd + excluded.usd
RETURNING usd";

const READ: &str =
    "SELECT usd FROM tenant_spend WHERE tenant = $1 AND period = $2 AND period_start_ms = $3";

/// The indices of `keys` in key order (the order rows are locked in).
fn in_key_order<T>(items: &[T], key: impl Fn(&T) -> &SpendKey) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| key(&items[a]).cmp(key(&items[b])));
    order
}

pub(super) fn add(s: &PostgresStore, deltas: &[(SpendKey, f64)]) -> Result<Vec<f64>, StoreError> {
    crate::check::spend_deltas(deltas)?;
    let mut conn = s.conn()?;
    let mut tx = conn.transaction().map_err(|e| s.pg(e))?;
    let mut totals = vec![0.0; deltas.len()];
    for i in in_key_order(deltas, |d| &d.0) {
        let (k, delta) = &deltas[i];
        let row = if *delta != 0.0 {
            Some(
                tx.query_one(ADD, &[&k.tenant, &k.period, &k.period_start_ms, delta])
                    .map_err(|e| s.pg(e))?,
            )
        } else {
            tx.query_opt(READ, &[&k.tenant, &k.period, &k.period_start_ms])
                .map_err(|e| s.pg(e))?
        };
        totals[i] = row.map_or(0.0, |r| r.get(0));
    }
    tx.commit().map_err(|e| s.pg(e))?;
    Ok(totals)
}

pub(super) fn reconcile(s: &PostgresStore, keys: &[SpendKey]) -> Result<Vec<f64>, StoreError> {
    let mut conn = s.conn()?;
    let mut tx = conn.transaction().map_err(|e| s.pg(e))?;
    let mut totals = vec![0.0; keys.len()];
    for i in in_key_order(keys, |k| k) {
        let k = &keys[i];
        totals[i] = tx
            .query_one(RECONCILE, &[&k.tenant, &k.period, &k.period_start_ms])
            .map_err(|e| s.pg(e))?
            .get(0);
    }
    tx.commit().map_err(|e| s.pg(e))?;
    Ok(totals)
}
