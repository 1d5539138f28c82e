//! Per-tenant policies (docs/ROLLOUT.md, "Per-tenant policies"): a TOML
//! file of defaults for τ or λ, allowed models, exploration rate and an
//! optional spend budget per period, hot-reloaded with the catalog.
//!
//! ```toml
//! [tenants.free]
//! target = 0.6
//! allowed_models = ["cheap"]
//! budget_usd = 5.0
//! period = "day"          # hour | day | month (UTC)
//! on_budget = "downgrade" # or "reject"
//!
//! [tenants.premium]
//! lambda_per_usd = 200.0
//! fixed_policy = true     # requests may not set target / lambda_per_usd
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pointsman_router::Catalog;
use serde::Deserialize;

use super::request::RouteRequest;
use crate::error::ServerError;
use crate::fields::quote;

/// A budget's period: calendar hours, days or months in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hour,
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The start (ms since the epoch, UTC) of the period holding `now_ms`.
    pub fn start(self, now_ms: i64) -> i64 {
        const HOUR: i64 = 3_600_000;
        const DAY: i64 = 24 * HOUR;
        match self {
            Period::Hour => now_ms.div_euclid(HOUR) * HOUR,
            Period::Day => now_ms.div_euclid(DAY) * DAY,
            Period::Month => {
                let days = now_ms.div_euclid(DAY);
                let (_, _, d) = civil_from_days(days);
                (days - (d as i64 - 1)) * DAY
            }
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What a tenant over its budget gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBudget {
    /// The cheapest model the request may use (its constraints and the
    /// tenant's allowed models still apply).
    Downgrade,
    /// RESOURCE_EXHAUSTED (gRPC) / 429 (HTTP), naming tenant and budget.
    Reject,
}

/// A spend budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub usd: f64,
    pub period: Period,
    pub on_breach: OnBudget,
}

/// One tenant's policy, as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Default quality target in [0, 1] (a mean P(success) within
    /// 1 − target of the best over the traffic: `pointsman_router::target`).
    pub target: Option<f64>,
    /// Default willingness to pay (>= 0); exclusive with `target`.
    pub lambda_per_usd: Option<f64>,
    /// Only these catalog models; a request may narrow, never widen.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Exploration rate in [0, 1): replaces the server's `--explore` rate
    /// for this tenant's decisions (0 turns exploration off for it).
    pub explore: Option<f64>,
    /// Spend budget per `period`, USD (> 0).
    pub budget_usd: Option<f64>,
    pub period: Option<Period>,
    pub on_budget: Option<OnBudget>,
    /// Requests may not set their own target or lambda_per_usd.
    #[serde(default)]
    pub fixed_policy: bool,
}

impl TenantPolicy {
    pub fn budget(&self) -> Option<Budget> {
        Some(Budget {
            usd: self.budget_usd?,
            period: self.period.unwrap_or(Period::Day),
            on_breach: self.on_budget.unwrap_or(OnBudget::Reject),
        })
    }
}

/// Every tenant's policy (empty without a tenants file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tenants {
    pub tenants: BTreeMap<String, TenantPolicy>,
}

/// A tenants file that cannot be used: the message names the file, the
/// tenant and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TenantsError(String);

impl Tenants {
    /// Parses and checks a tenants file (`file` names it in errors).
    pub fn parse(file: &Path, text: &str) -> Result<Tenants, TenantsError> {
        let err = |msg: String| TenantsError(format!("{}: {msg}", file.display()));
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            err(match e.span() {
                Some(span) => format!(
                    "line {}: {}",
                    text[..span.start.min(text.len())].matches('\n').count() + 1,
                    e.message().trim_end()
                ),
                None => e.message().trim_end().to_string(),
            })
        })?;
        let mut tenants = BTreeMap::new();
        for (key, value) in table {
            if key != "tenants" {
                return Err(err(format!(
                    "`{key}`: unknown top-level key; tenants go in [tenants.NAME] tables"
                )));
            }
            let toml::Value::Table(all) = value else {
                return Err(err(
                    "`tenants`: must be a table of [tenants.NAME] tables".into()
                ));
            };
            for (name, spec) in all {
                let at = |k: &str| format!("tenant {}, key `{k}`", quote(&name));
                let policy: TenantPolicy = serde_path_to_error::deserialize(spec).map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    if path == "." || path.is_empty() {
                        err(format!("tenant {}: {inner}", quote(&name)))
                    } else {
                        err(format!("{}: {inner}", at(&path)))
                    }
                })?;
                check(&policy).map_err(|(k, m)| err(format!("{}: {m}", at(k))))?;
                if name.is_empty() || name.len() > crate::fields::MAX_NAME_BYTES {
                    return Err(err(format!(
                        "tenant {}: the name must be 1 to {} bytes",
                        quote(&name),
                        crate::fields::MAX_NAME_BYTES
                    )));
                }
                tenants.insert(name, policy);
            }
        }
        Ok(Tenants { tenants })
    }

    /// Every tenant's allowed models must be in `catalog`.
    pub fn check_catalog(&self, file: &Path, catalog: &Catalog) -> Result<(), TenantsError> {
        for (name, p) in &self.tenants {
            for (i, m) in p.allowed_models.iter().enumerate() {
                if catalog.get(m).is_none() {
                    return Err(TenantsError(format!(
                        "{}: tenant {}, key `allowed_models[{i}]`: {} is not in the catalog (models: {})",
                        file.display(),
                        quote(name),
                        quote(m),
                        catalog.names().join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, tenant: Option<&str>) -> Option<&TenantPolicy> {
        self.tenants.get(tenant?)
    }

    /// Applies the tenant's defaults to a request; `prefix` starts field
    /// names in errors. Precedence: a request's own target or
    /// lambda_per_usd wins over the tenant's (refused when the tenant has
    /// `fixed_policy`); the tenant's λ or τ over the catalog default; a
    /// request's allowed_models must lie within the tenant's.
    pub fn apply(&self, prefix: &str, r: &RouteRequest) -> Result<RouteRequest, ServerError> {
        let mut r = r.clone();
        let Some(tenant) = r.tenant.clone() else {
            return Ok(r);
        };
        let Some(p) = self.tenants.get(&tenant) else {
            return Ok(r);
        };
        let own_policy = r.target.is_some() || r.lambda_per_usd.is_some();
        if own_policy && p.fixed_policy {
            let field = if r.lambda_per_usd.is_some() {
                "lambda_per_usd"
            } else {
                "target"
            };
            return Err(ServerError::invalid(
                format!("{prefix}{field}"),
                format!(
                    "tenant {} has a fixed policy (fixed_policy = true in the tenants file): leave target and lambda_per_usd unset",
                    quote(&tenant)
                ),
            ));
        }
        if !own_policy {
            r.target = p.target;
            r.lambda_per_usd = p.lambda_per_usd;
        }
        if !p.allowed_models.is_empty() {
            if r.constraints.allowed_models.is_empty() {
                r.constraints.allowed_models = p.allowed_models.clone();
            } else if let Some((i, m)) = r
                .constraints
                .allowed_models
                .iter()
                .enumerate()
                .find(|(_, m)| !p.allowed_models.contains(m))
            {
                return Err(ServerError::invalid(
                    format!("{prefix}constraints.allowed_models[{i}]"),
                    format!(
                        "{} is not among tenant {}'s allowed models ({})",
                        quote(m),
                        quote(&tenant),
                        p.allowed_models.join(", ")
                    ),
                ));
            }
        }
        Ok(r)
    }
}

/// Range checks of one policy: Err((key, message)).
fn check(p: &TenantPolicy) -> Result<(), (&'static str, String)> {
    if let Some(t) = p.target {
        if !(0.0..=1.0).contains(&t) {
            return Err(("target", format!("{t} is outside [0, 1]")));
        }
    }
    if let Some(l) = p.lambda_per_usd {
        if !(l >= 0.0 && l.is_finite()) {
            return Err((
                "lambda_per_usd",
                format!("{l} must be a finite number >= 0"),
            ));
        }
        if p.target.is_some() {
            return Err((
                "lambda_per_usd",
                "set target or lambda_per_usd, not both".into(),
            ));
        }
    }
    if let Some(e) = p.explore {
        pointsman_router::explore::check_rate(e).map_err(|m| ("explore", m))?;
    }
    if let Some(b) = p.budget_usd {
        if !(b > 0.0 && b.is_finite()) {
            return Err(("budget_usd", format!("{b} must be a finite number > 0")));
        }
    } else if p.period.is_some() {
        return Err(("period", "is set without budget_usd".into()));
    } else if p.on_budget.is_some() {
        return Err(("on_budget", "is set without budget_usd".into()));
    }
    if p.allowed_models.len() > crate::fields::MAX_ALLOWED_MODELS {
        return Err((
            "allowed_models",
            format!(
                "{} entries, over the maximum of {}",
                p.allowed_models.len(),
                crate::fields::MAX_ALLOWED_MODELS
            ),
        ));
    }
    Ok(())
}

/// The tenants in force and where they come from (re-read on reload).
pub struct TenantsHolder {
    pub path: Option<PathBuf>,
    current: ArcSwap<Tenants>,
}

impl TenantsHolder {
    /// Reads `path` (None = no tenant policies) and checks it against `catalog`.
    pub fn load(path: Option<PathBuf>, catalog: &Catalog) -> Result<TenantsHolder, TenantsError> {
        let first = match &path {
            None => Tenants::default(),
            Some(p) => read(p, catalog)?,
        };
        Ok(TenantsHolder {
            path,
            current: ArcSwap::from_pointee(first),
        })
    }

    pub fn snapshot(&self) -> Arc<Tenants> {
        self.current.load_full()
    }

    /// Re-reads the file (without swapping it in: see [`TenantsHolder::store`]).
    pub fn read(&self, catalog: &Catalog) -> Result<Option<Tenants>, TenantsError> {
        self.path.as_deref().map(|p| read(p, catalog)).transpose()
    }

    pub fn store(&self, tenants: Tenants) {
        self.current.store(Arc::new(tenants));
    }
}

fn read(path: &Path, catalog: &Catalog) -> Result<Tenants, TenantsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TenantsError(format!("{}: {e}", path.display())))?;
    let t = Tenants::parse(path, &text)?;
    t.check_catalog(path, catalog)?;
    Ok(t)
}

mod spend;
pub use spend::{SharedSpend, SpendCounter};

#[cfg(test)]
mod tests;
