//! Export from PostgreSQL: decisions in pages (keyset on `seq`, so no
//! transaction is held open while `each` runs), with the outcomes and
//! calls of a whole page in one query each.

use std::collections::HashMap;

use super::PostgresStore;
use crate::{DecisionWithOutcomes, LoggedCall, LoggedDecision, LoggedOutcome, StoreError};

/// Decisions read per round trip.
const PAGE: i64 = 500;

pub(super) fn export(
    s: &PostgresStore,
    each: &mut dyn FnMut(DecisionWithOutcomes) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    let mut conn = s.conn()?;
    let mut after: i64 = 0;
    let mut count = 0;
    loop {
        let rows = conn
            .query(
                "SELECT seq, id, time_ms, tenant, prompt, model, task, difficulty, task_scores, candidates, versions, embedding, propensity, explored, shadow
                 FROM decisions WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &PAGE],
            )
            .map_err(|e| s.pg(e))?;
        let Some(last) = rows.last() else {
            return Ok(count);
        };
        after = last.get(0);
        let ids: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
        let mut outcomes: HashMap<String, Vec<LoggedOutcome>> = HashMap::new();
        for r in conn
            .query(
                "SELECT decision_id, model, score, cost_usd, input_tokens, output_tokens, latency_ms, time_ms
                 FROM outcomes WHERE decision_id = ANY($1) ORDER BY seq",
                &[&ids],
            )
            .map_err(|e| s.pg(e))?
        {
            let o = LoggedOutcome {
                decision_id: r.get(0),
                model: r.get(1),
                score: r.get(2),
                cost_usd: r.get(3),
                input_tokens: r.get::<_, Option<i64>>(4).map(|t| t as u64),
                output_tokens: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                latency_ms: r.get(6),
                time_ms: r.get(7),
            };
            outcomes.entry(o.decision_id.clone()).or_default().push(o);
        }
        let mut calls: HashMap<String, Vec<LoggedCall>> = HashMap::new();
        for r in conn
            .query(
                "SELECT decision_id, model, error_class, status, latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, time_ms
                 FROM calls WHERE decision_id = ANY($1) ORDER BY seq",
                &[&ids],
            )
            .map_err(|e| s.pg(e))?
        {
            let c = LoggedCall {
                decision_id: r.get(0),
                model: r.get(1),
                error_class: r.get(2),
                status: r.get::<_, Option<i32>>(3).map(|v| v as u16),
                latency_ms: r.get(4),
                ttft_ms: r.get(5),
                input_tokens: r.get::<_, Option<i64>>(6).map(|t| t as u64),
                output_tokens: r.get::<_, Option<i64>>(7).map(|t| t as u64),
                cost_usd: r.get(8),
                time_ms: r.get(9),
            };
            calls.entry(c.decision_id.clone()).or_default().push(c);
        }
        for r in &rows {
            let json = |i: usize| -> Result<serde_json::Value, StoreError> {
                let text: String = r.get(i);
                serde_json::from_str(&text).map_err(|e| s.err(format!("column {i}: {e}")))
            };
            let id: String = r.get(1);
            let blob: Vec<u8> = r.get(11);
            let decision = LoggedDecision {
                id: id.clone(),
                time_ms: r.get(2),
                tenant: r.get(3),
                prompt: r.get(4),
                model: r.get(5),
                task: r.get(6),
                difficulty: r.get::<_, f64>(7) as f32,
                task_scores: serde_json::from_value(json(8)?).map_err(|e| s.err(e))?,
                candidates: serde_json::from_value(json(9)?).map_err(|e| s.err(e))?,
                versions: serde_json::from_value(json(10)?).map_err(|e| s.err(e))?,
                embedding: blob
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                propensity: r.get(12),
                explored: r.get(13),
                shadow: match r.get::<_, Option<String>>(14) {
                    None => None,
                    Some(text) => Some(
                        serde_json::from_str(&text)
                            .map_err(|e| s.err(format!("column shadow: {e}")))?,
                    ),
                },
            };
            each(DecisionWithOutcomes {
                decision,
                outcomes: outcomes.remove(&id).unwrap_or_default(),
                calls: calls.remove(&id).unwrap_or_default(),
            })?;
            count += 1;
        }
    }
}
