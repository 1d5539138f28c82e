//! Off-policy evaluation: a candidate router (artifact and policy) scored
//! on logged traffic it never served, from the decisions, their logged
//! propensities and the outcomes reported for the chosen models
//! (`pointsman eval --from-store` / `--from-export`).
//!
//! For every logged row the candidate decides again from what the store
//! kept (the embedding, the task scores and the eligible candidates with
//! their expected costs; no prompt text, no encoder): `a_c` is its choice,
//! `a` the logged model, `μ` its logged propensity, `r` the reported score,
//! `q(x, m)` the candidate artifact's P(success).
//!
//! ```text
//! w      = [a_c = a] / μ                              importance weight
//! IPS    = mean(w · r)
//! SNIPS  = Σ w · r / Σ w                              self-normalised
//! DR     = mean(q(x, a_c) + w · (r − q(x, a)))        doubly robust
//! ESS    = (Σ w)² / Σ w²                              effective sample size
//! ```
//!
//! Cost is estimated the same ways with the observed cost of the logged
//! call (the reported `cost_usd`, else the logged expected cost) in place
//! of `r` and the logged expected cost as the direct part of DR. The live
//! (logging) policy's observed means are reported beside. Intervals are
//! bootstrap percentiles over rows (seeded).
//!
//! The logs support an estimate only where the logging policy could have
//! made the candidate's choice: a row logged with propensity 1 (no
//! exploration) on which the candidate picks another model has no
//! evidence. [`evaluate`] refuses (an error) when there are fewer than
//! [`OpeConfig::min_rows`] usable rows, when no row explored and the
//! candidate disagrees with the log somewhere, or when the ESS is below
//! [`MIN_ESS`]; it warns when the ESS is below [`WARN_ESS`] or when some
//! rows are unsupported.

use std::collections::BTreeMap;

use pointsman_records::Record;
use pointsman_router::{choose, Policy, SuccessModel};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::error::EvalError;

/// Below this effective sample size the estimate is refused.
pub const MIN_ESS: f64 = 10.0;
/// Below this effective sample size the report carries a warning.
pub const WARN_ESS: f64 = 100.0;

/// One model the logged decision could have used.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedChoice {
    pub model: String,
    pub expected_cost_usd: f64,
}

/// One logged decision with the outcome of its chosen model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRow {
    pub id: String,
    pub embedding: Vec<f32>,
    pub task_scores: BTreeMap<String, f32>,
    /// The eligible models as logged (the chosen one first).
    pub candidates: Vec<LoggedChoice>,
    /// Index of the logged (used) model in `candidates`.
    pub chosen: usize,
    /// Probability the logged model was chosen with, in (0, 1].
    pub propensity: f64,
    /// The reported score of the logged model, in [0, 1].
    pub score: f64,
    /// The observed cost of the logged call (reported, else expected).
    pub cost_usd: f64,
}

/// Logged rows read from exported records, and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct LoggedRows {
    pub rows: Vec<LoggedRow>,
    /// Decisions with no outcome for their chosen model.
    pub without_outcome: usize,
}

fn field<'a>(r: &'a Record, name: &str) -> Result<&'a serde_json::Value, EvalError> {
    r.extra.get(name).ok_or_else(|| {
        EvalError::Data(format!(
            "record {}: no `{name}` field (not a record from `pointsman store export`?)",
            r.id
        ))
    })
}

fn parse<T: serde::de::DeserializeOwned>(r: &Record, name: &str) -> Result<T, EvalError> {
    serde_json::from_value(field(r, name)?.clone())
        .map_err(|e| EvalError::Data(format!("record {}: `{name}`: {e}", r.id)))
}

/// Reads the store's exported records (`DecisionWithOutcomes::to_record`,
/// `pointsman store export`): `embedding`, `task_scores`, `candidates`,
/// `chosen_model` and `propensity` (missing: 1.0, a row from before
/// exploration). A decision without an outcome for its chosen model is
/// counted and skipped; a record missing a field fails naming it.
pub fn logged_rows(records: &[Record]) -> Result<LoggedRows, EvalError> {
    #[derive(serde::Deserialize)]
    struct Cand {
        model: String,
        expected_cost_usd: f64,
    }
    let mut out = LoggedRows::default();
    for r in records {
        let chosen_model: String = parse(r, "chosen_model")?;
        let Some(outcome) = r.outcomes.get(&chosen_model) else {
            out.without_outcome += 1;
            continue;
        };
        let cands: Vec<Cand> = parse(r, "candidates")?;
        let candidates: Vec<LoggedChoice> = cands
            .into_iter()
            .map(|c| LoggedChoice {
                model: c.model,
                expected_cost_usd: c.expected_cost_usd,
            })
            .collect();
        let chosen = candidates
            .iter()
            .position(|c| c.model == chosen_model)
            .ok_or_else(|| {
                EvalError::Data(format!(
                    "record {}: chosen_model {chosen_model} is not among its candidates",
                    r.id
                ))
            })?;
        let propensity: f64 = match r.extra.get("propensity") {
            None => 1.0,
            Some(_) => parse(r, "propensity")?,
        };
        if !(propensity > 0.0 && propensity <= 1.0) {
            return Err(EvalError::Data(format!(
                "record {}: propensity {propensity} is not in (0, 1]",
                r.id
            )));
        }
        out.rows.push(LoggedRow {
            id: r.id.clone(),
            embedding: parse(r, "embedding")?,
            task_scores: parse(r, "task_scores")?,
            cost_usd: outcome
                .cost_usd
                .unwrap_or(candidates[chosen].expected_cost_usd),
            candidates,
            chosen,
            propensity,
            score: outcome.score,
        });
    }
    Ok(out)
}

/// Parses `target:0.8` or `lambda:50` (successes per USD).
pub fn parse_policy(s: &str) -> Result<Policy, String> {
    let (kind, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s}: expected target:T or lambda:L"))?;
    let v: f64 = value
        .parse()
        .map_err(|e| format!("{s}: {value} is not a number ({e})"))?;
    match kind {
        "target" if (0.0..=1.0).contains(&v) => Ok(Policy::Target { target: v }),
        "lambda" if v.is_finite() && v >= 0.0 => Ok(Policy::WillingnessToPay { lambda_per_usd: v }),
        "target" => Err(format!("{s}: a target must be in [0, 1]")),
        "lambda" => Err(format!("{s}: lambda must be finite and >= 0")),
        _ => Err(format!("{s}: unknown policy {kind} (target or lambda)")),
    }
}

/// The candidate's decision on one logged row: the index of its choice in
/// `row.candidates` and its P(success) for every candidate. Only the
/// logged eligible models are considered (the request's constraints at
/// the time), priced at their logged expected costs.
pub fn candidate_choice(
    model: &SuccessModel,
    policy: Policy,
    row: &LoggedRow,
) -> Result<(usize, Vec<f64>), EvalError> {
    if row.embedding.len() != model.dim {
        return Err(EvalError::Data(format!(
            "decision {}: the embedding has {} values but the candidate artifact expects {} (logged with another encoder?)",
            row.id,
            row.embedding.len(),
            model.dim
        )));
    }
    let names: Vec<&str> = row.candidates.iter().map(|c| c.model.as_str()).collect();
    let scores = || row.task_scores.iter().map(|(k, v)| (k.as_str(), *v));
    let tasks = model.task_vector(scores());
    // An artifact reading the task head's outputs takes them from the
    // logged task_scores (no difficulty or surface features are logged
    // here: such an artifact fails naming the feature).
    let heads = match &model.head_features {
        Some(h) => h
            .outputs_from(scores(), None, &[])
            .map_err(|e| EvalError::Data(format!("decision {}: {e}", row.id)))?,
        None => Vec::new(),
    };
    let p = model
        .try_predict(&names, &row.embedding, &tasks, &heads)
        .map_err(|e| EvalError::Data(format!("decision {}: {e}", row.id)))?;
    let cost: Vec<f64> = row.candidates.iter().map(|c| c.expected_cost_usd).collect();
    let eligible = vec![true; p.len()];
    let policy = model.resolve_policy(policy);
    let i = choose(&p, &cost, &eligible, policy).ok_or_else(|| {
        EvalError::Data(format!("decision {}: no candidates were logged", row.id))
    })?;
    Ok((i, p))
}

/// Settings of an off-policy evaluation.
#[derive(Debug, Clone)]
pub struct OpeConfig {
    pub policy: Policy,
    /// Bootstrap resamples for the intervals.
    pub bootstrap: usize,
    pub seed: u64,
    /// Fewest usable rows (decisions with an outcome for their model).
    pub min_rows: usize,
}

impl Default for OpeConfig {
    fn default() -> Self {
        OpeConfig {
            policy: Policy::Target { target: 0.8 },
            bootstrap: 1000,
            seed: 7,
            min_rows: 50,
        }
    }
}

/// An estimate with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// Estimates of one quantity (mean quality or mean cost per request).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimates {
    /// The logging (live) policy's observed mean.
    pub live: Interval,
    pub ips: Interval,
    pub snips: Interval,
    pub dr: Interval,
}

/// What [`evaluate`] found.
#[derive(Debug, Clone, Serialize)]
pub struct OpeReport {
    pub rows: usize,
    /// Rows on which the candidate chose the logged model.
    pub agree: usize,
    /// Rows logged with propensity < 1.
    pub explored_rows: usize,
    /// Rows logged with propensity 1 on which the candidate picks
    /// another model: no evidence there.
    pub unsupported: usize,
    pub ess: f64,
    pub quality: Estimates,
    pub cost_usd: Estimates,
    /// The candidate's choice per row (model name), aligned with the rows.
    #[serde(skip)]
    pub choices: Vec<String>,
    pub warnings: Vec<String>,
}

/// Per-row terms every estimator averages.
#[derive(Debug, Clone, Copy)]
struct Terms {
    w: f64,
    score: f64,
    cost: f64,
    dr_quality: f64,
    dr_cost: f64,
}

/// The estimators on the rows `idx` (a bootstrap resample or all rows):
/// [live, ips, snips, dr] for quality, then for cost.
fn estimate(terms: &[Terms], idx: impl Iterator<Item = usize>) -> [f64; 8] {
    let mut s = [0f64; 8];
    let (mut n, mut sw) = (0f64, 0f64);
    for i in idx {
        let t = &terms[i];
        n += 1.0;
        sw += t.w;
        s[0] += t.score;
        s[1] += t.w * t.score;
        s[2] += t.w * t.score;
        s[3] += t.dr_quality;
        s[4] += t.cost;
        s[5] += t.w * t.cost;
        s[6] += t.w * t.cost;
        s[7] += t.dr_cost;
    }
    for k in [0, 1, 3, 4, 5, 7] {
        s[k] /= n.max(1.0);
    }
    for k in [2, 6] {
        s[k] = if sw > 0.0 { s[k] / sw } else { f64::NAN };
    }
    s
}

/// Scores `model` under `cfg.policy` on `rows` (see the module docs).
pub fn evaluate(
    model: &SuccessModel,
    rows: &[LoggedRow],
    cfg: &OpeConfig,
) -> Result<OpeReport, EvalError> {
    if rows.len() < cfg.min_rows.max(2) {
        return Err(EvalError::Unsupported(format!(
            "{} logged decision(s) with an outcome for their model, fewer than the {} needed",
            rows.len(),
            cfg.min_rows.max(2)
        )));
    }
    let mut terms = Vec::with_capacity(rows.len());
    let mut choices = Vec::with_capacity(rows.len());
    let (mut agree, mut explored_rows, mut unsupported) = (0, 0, 0);
    for row in rows {
        let (c, q) = candidate_choice(model, cfg.policy, row)?;
        let matched = c == row.chosen;
        agree += matched as usize;
        explored_rows += (row.propensity < 1.0) as usize;
        unsupported += (!matched && row.propensity >= 1.0) as usize;
        let w = if matched { 1.0 / row.propensity } else { 0.0 };
        let logged_cost = row.candidates[row.chosen].expected_cost_usd;
        terms.push(Terms {
            w,
            score: row.score,
            cost: row.cost_usd,
            dr_quality: q[c] + w * (row.score - q[row.chosen]),
            dr_cost: row.candidates[c].expected_cost_usd + w * (row.cost_usd - logged_cost),
        });
        choices.push(row.candidates[c].model.clone());
    }
    if explored_rows == 0 && agree < rows.len() {
        return Err(EvalError::Unsupported(format!(
            "no logged decision explored (every propensity is 1) and the candidate picks another model on {} of {} rows: the logs hold no outcome for those choices. Serve with --explore (e.g. 0.05) to collect them",
            rows.len() - agree,
            rows.len()
        )));
    }
    let sw: f64 = terms.iter().map(|t| t.w).sum();
    let sw2: f64 = terms.iter().map(|t| t.w * t.w).sum();
    let ess = if sw2 > 0.0 { sw * sw / sw2 } else { 0.0 };
    if ess < MIN_ESS {
        return Err(EvalError::Unsupported(format!(
            "effective sample size {ess:.1} is below {MIN_ESS}: the candidate agrees with the logged choice on {agree} of {} rows, too few to weight",
            rows.len()
        )));
    }
    let mut warnings = Vec::new();
    if ess < WARN_ESS {
        warnings.push(format!(
            "effective sample size {ess:.1} is below {WARN_ESS}: the intervals rest on few rows"
        ));
    }
    if unsupported > 0 {
        warnings.push(format!(
            "{unsupported} row(s) were logged without exploration and the candidate picks another model there: IPS counts them as 0 and DR falls back on the success model"
        ));
    }
    let point = estimate(&terms, 0..terms.len());
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let n = terms.len();
    let samples: Vec<[f64; 8]> = (0..cfg.bootstrap.max(1))
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            estimate(&terms, idx.into_iter())
        })
        .collect();
    let interval = |k: usize| {
        let mut v: Vec<f64> = samples
            .iter()
            .map(|s| s[k])
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if v.is_empty() {
                f64::NAN
            } else {
                v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
            }
        };
        Interval {
            value: point[k],
            lo: at(0.025),
            hi: at(0.975),
        }
    };
    let est = |base: usize| Estimates {
        live: interval(base),
        ips: interval(base + 1),
        snips: interval(base + 2),
        dr: interval(base + 3),
    };
    let quality = est(0);
    let cost_usd = est(4);
    Ok(OpeReport {
        rows: rows.len(),
        agree,
        explored_rows,
        unsupported,
        ess,
        quality,
        cost_usd,
        choices,
        warnings,
    })
}

impl OpeReport {
    /// A plain-text table: live beside the candidate's IPS, SNIPS and DR.
    pub fn table(&self) -> String {
        let mut s = format!(
            "off-policy evaluation on {} logged decisions ({} logged with propensity < 1; the candidate agrees with the logged model on {}; ESS {:.1})\n",
            self.rows, self.explored_rows, self.agree, self.ess
        );
        s.push_str(&format!(
            "{:<22} {:>28} {:>34}\n",
            "estimate", "mean quality [95% CI]", "mean cost USD [95% CI]"
        ));
        let rows = [
            (
                "live (logged policy)",
                self.quality.live,
                self.cost_usd.live,
            ),
            ("candidate IPS", self.quality.ips, self.cost_usd.ips),
            ("candidate SNIPS", self.quality.snips, self.cost_usd.snips),
            ("candidate DR", self.quality.dr, self.cost_usd.dr),
        ];
        for (name, q, c) in rows {
            s.push_str(&format!(
                "{name:<22} {:>8.4} [{:.4}, {:.4}] {:>12.7} [{:.7}, {:.7}]\n",
                q.value, q.lo, q.hi, c.value, c.lo, c.hi
            ));
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }
}

#[cfg(test)]
mod tests;
