//! The shared per-tenant spend counters in SQLite (`tenant_spend`, see
//! [`crate::OutcomeStore::add_tenant_spend`]).

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::{SpendKey, StoreError};

/// Schema version 4: one row per (tenant, period kind, period start).
pub(super) const TENANT_SPEND: &str = "
CREATE TABLE tenant_spend (
    tenant          TEXT NOT NULL,
    period          TEXT NOT NULL,   -- hour | day | month
    period_start_ms INTEGER NOT NULL,
    usd             REAL NOT NULL,
    PRIMARY KEY (tenant, period, period_start_ms)
);
";

/// Σ over `tenant`'s decisions since `since_ms` of the chosen model's
/// reported cost (its latest outcome's, when that reports one), else its
/// expected cost (the first candidate's).
const LOGGED_SPEND: &str = "
SELECT COALESCE(SUM(COALESCE(
    (SELECT o.cost_usd FROM outcomes o
     WHERE o.decision_id = d.id AND o.model = d.model
     ORDER BY o.seq DESC LIMIT 1),
    json_extract(d.candidates, '$[0].expected_cost_usd'))), 0.0)
FROM decisions d WHERE d.tenant = ?1 AND d.time_ms >= ?2";

pub(super) fn add(s: &SqliteStore, deltas: &[(SpendKey, f64)]) -> Result<Vec<f64>, StoreError> {
    crate::check::spend_deltas(deltas)?;
    // A sync with nothing to add only reads: it need not take the write
    // lock (and wait behind decision commits) every interval.
    let behavior = if deltas.iter().all(|(_, d)| *d == 0.0) {
        rusqlite::TransactionBehavior::Deferred
    } else {
        rusqlite::TransactionBehavior::Immediate
    };
    let mut conn = s.lock();
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(|e| s.err(e))?;
    let mut totals = Vec::with_capacity(deltas.len());
    for (k, delta) in deltas {
        if *delta != 0.0 {
            tx.execute(
                "INSERT INTO tenant_spend (tenant, period, period_start_ms, usd) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, period, period_start_ms) DO UPDATE SET usd = usd + excluded.usd",
                params![k.tenant, k.period, k.period_start_ms, delta],
            )
            .map_err(|e| s.err(e))?;
        }
        totals.push(read(&tx, k).map_err(|e| s.err(e))?);
    }
    tx.commit().map_err(|e| s.err(e))?;
    Ok(totals)
}

pub(super) fn reconcile(s: &SqliteStore, keys: &[SpendKey]) -> Result<Vec<f64>, StoreError> {
    let mut conn = s.lock();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| s.err(e))?;
    let mut totals = Vec::with_capacity(keys.len());
    for k in keys {
        let logged: f64 = tx
            .query_row(LOGGED_SPEND, params![k.tenant, k.period_start_ms], |r| {
                r.get(0)
            })
            .map_err(|e| s.err(e))?;
        tx.execute(
            "INSERT INTO tenant_spend (tenant, period, period_start_ms, usd) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, period, period_start_ms) DO UPDATE SET usd = MAX(usd, excluded.usd)",
            params![k.tenant, k.period, k.period_start_ms, logged],
        )
        .map_err(|e| s.err(e))?;
        totals.push(read(&tx, k).map_err(|e| s.err(e))?);
    }
    tx.commit().map_err(|e| s.err(e))?;
    Ok(totals)
}

fn read(conn: &rusqlite::Connection, k: &SpendKey) -> rusqlite::Result<f64> {
    Ok(conn
        .query_row(
            "SELECT usd FROM tenant_spend WHERE tenant = ?1 AND period = ?2 AND period_start_ms = ?3",
            params![k.tenant, k.period, k.period_start_ms],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0.0))
}
